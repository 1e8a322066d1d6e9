"""The write hooks: keep subscription state in step with Subscription writes, and number and
queue events for every write a topic covers, inside the transaction that made the write.

An event is queued for a subscription when its topic covers the write (resource type and
action; an R4 criteria subscription's pseudo-topic covers creates and updates of its type) and
every ``backport-filter-criteria`` (or the R4 criteria) matches the written version (for a
delete, the version before it). Numbering is per subscription, gap-free and in commit order: the
subscription's row stays locked until the writing transaction ends.
"""
from __future__ import annotations

import contextvars
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Callable
from urllib.parse import parse_qsl

from services.ehr import hooks, search
from services.ehr.subscriptions import spec as specs, store
from services.ehr.subscriptions.topics import TOPICS, topics_for

#: The server's root URL (``http://host:port``) of the request being served, set by the app's middleware.
REQUEST_ROOT: contextvars.ContextVar[str | None] = contextvars.ContextVar("ehr_request_root", default=None)
#: True while the delivery worker itself writes a Subscription (its status): no re-validation.
_INTERNAL: contextvars.ContextVar[bool] = contextvars.ContextVar("ehr_sub_internal", default=False)
_TOPIC_TYPES = frozenset(t.resource_type for t in TOPICS.values())
#: Used when no request root is known (e.g. a write made outside an HTTP request).
FALLBACK_ROOT = "http://localhost"
_public_root: str = ""
_wakers: list[Callable[[], None]] = []


def configure(public_root: str) -> None:
    global _public_root
    _public_root = public_root.rstrip("/")


def add_waker(fn: Callable[[], None]) -> None:
    if fn not in _wakers:
        _wakers.append(fn)


def remove_waker(fn: Callable[[], None]) -> None:
    if fn in _wakers:
        _wakers.remove(fn)


@contextmanager
def internal_write():
    token = _INTERNAL.set(True)
    try:
        yield
    finally:
        _INTERNAL.reset(token)


def fhir_base(tenant: str) -> str:
    return f"{_public_root or REQUEST_ROOT.get() or FALLBACK_ROOT}/fhir/{tenant}"


async def _filter_matches(conn, change: hooks.Change, content: dict, f: specs.Filter) -> bool:
    q = search.parse(f.resource_type, parse_qsl(f.query, keep_blank_values=True))
    n = len(q.args) + 2  # $1 tenant, $2 type, then the query's own arguments
    where = " AND ".join(q.where) or "true"
    sql = (f"SELECT EXISTS (SELECT 1 FROM (SELECT ${n + 1}::text AS id, ${n + 2}::timestamptz AS last_updated, "
           f"${n + 3}::jsonb AS content) r WHERE $1::text IS NOT NULL AND $2::text IS NOT NULL AND {where})")
    return await conn.fetchval(sql, change.tenant, change.resource_type, *q.args, change.id,
                               datetime.now(timezone.utc), content)


async def _content_for_filters(conn, change: hooks.Change) -> dict | None:
    if change.resource is not None:
        return change.resource
    return await conn.fetchval("SELECT content FROM ehr_history WHERE tenant=$1 AND type=$2 AND id=$3 AND version=$4",
                               change.tenant, change.resource_type, change.id, change.version - 1)


async def _queue_event(conn, change: hooks.Change) -> None:
    topics = topics_for(change.resource_type, change.action)
    if change.action in specs.R4_ACTIONS:
        topics.append(specs.r4_topic(change.resource_type))
    if not topics:
        return
    candidates = await store.candidates(conn, change.tenant, topics)
    if not candidates:
        return
    content = None
    now = datetime.now(timezone.utc)
    for sid, raw in candidates:
        spec = specs.SubscriptionSpec.from_json(raw)
        if spec.filters:
            if content is None:
                content = await _content_for_filters(conn, change)
            if content is None:
                continue
            matched = True
            for f in spec.filters:
                if not await _filter_matches(conn, change, content, f):
                    matched = False
                    break
            if not matched:
                continue
        await store.enqueue(conn, change.tenant, sid, now, change.resource_type, change.id, change.version,
                            change.action)


def _server_status(existing: store.SubState | None, spec: specs.SubscriptionSpec) -> str:
    # R4 criteria subscriptions have no handshake: what would be "requested" is active at once.
    asked = "active" if spec.style == specs.R4 else "requested"
    if spec.client_status == "off":
        return "off"
    if spec.client_status == "requested":
        return asked
    if existing is not None and existing.status == spec.client_status and existing.spec.same_channel(spec):
        return existing.status
    return asked


async def _sync_subscription(conn, change: hooks.Change) -> None:
    if change.action == "delete" or change.resource is None:
        await store.remove(conn, change.tenant, change.id)
        return
    spec = specs.parse(change.resource)
    existing = await store.get(conn, change.tenant, change.id, for_update=True)
    status = _server_status(existing, spec)
    if status != change.resource.get("status"):
        # The server owns active/error: the stored version says what the server will do.
        change.resource["status"] = status
        for table in ("ehr_resources", "ehr_history"):
            await conn.execute(f"UPDATE {table} SET content = jsonb_set(content, '{{status}}', to_jsonb($5::text)) "
                               "WHERE tenant=$1 AND type=$2 AND id=$3 AND version=$4",
                               change.tenant, "Subscription", change.id, change.version, status)
    base = fhir_base(change.tenant) if (REQUEST_ROOT.get() or _public_root or existing is None) \
        else existing.fhir_base
    await store.upsert(conn, change.tenant, change.id, spec, status, base)


async def on_write(conn, change: hooks.Change) -> None:
    """hooks.IN_TRANSACTION callback."""
    if change.resource_type == "Subscription":
        if not _INTERNAL.get():
            await _sync_subscription(conn, change)
        return
    # Any type may be the subject of an R4 criteria subscription (created or updated versions).
    if change.resource_type in _TOPIC_TYPES or change.action in specs.R4_ACTIONS:
        await _queue_event(conn, change)


async def after_commit(change: hooks.Change) -> None:
    """hooks.POST_COMMIT callback: wake the delivery worker."""
    if change.resource_type in _TOPIC_TYPES or change.resource_type == "Subscription" \
            or change.action in specs.R4_ACTIONS:
        for wake in list(_wakers):
            wake()
