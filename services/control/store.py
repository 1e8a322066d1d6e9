"""The control service's tables: the dead-letter index, replay jobs, loop-guard counts, fingerprints.

``vigil_dlq_entries`` is the one dead-letter table: the stage runtime only publishes dead
letters to each tenant's ``dlq`` topic (the bus's record of them, stack and attempt history in
its headers), and the indexer (``indexer.py``) reads the topic and writes one row per dead letter
here: bounded headers in clear, the record key and payload and the stack encrypted with the
tenant's data key (purpose ``dlq``), the patient key also as a hash so it can be filtered on
without being stored in clear. Only the control service reads it; everyone else (the CLI, the
console, the demo's summary) asks the control service's API.
Every table below has forced tenant RLS; all reads and writes go through ``TenantPools``.
Only ``vigil_dlq_index_offsets`` (topic positions, no tenant data) is platform-level.

Statuses: ``dead`` (waiting), ``replayed`` (sent back by a replay job), ``purged``
(tombstone: payload, key and stack erased; kept so a re-read of the topic does not revive it).
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone

import asyncpg

from services.core.errors import ValidationError
from services.core.tenantdb import tenant_rls_sql

MODULE = "control"
STATUSES = ("dead", "replayed", "purged")
STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_dlq_entries (
    tenant text NOT NULL,
    id text NOT NULL,
    stage text NOT NULL,
    event_id text,
    event_type text,
    original_topic text NOT NULL,
    original_partition integer NOT NULL,
    original_offset bigint NOT NULL,
    error_class text NOT NULL,
    error_code text NOT NULL,
    fingerprint text NOT NULL,
    message text NOT NULL,
    attempts integer NOT NULL,
    first_failure timestamptz NOT NULL,
    last_failure timestamptz NOT NULL,
    key_hash text,
    key_enc bytea,
    payload_enc bytea,
    stack_enc bytea,
    history jsonb NOT NULL DEFAULT '[]',
    headers jsonb NOT NULL,
    dlq_partition integer NOT NULL,
    dlq_offset bigint NOT NULL,
    status text NOT NULL DEFAULT 'dead' CHECK (status IN ('dead', 'replayed', 'purged')),
    replayed_from_job text,
    last_replay_job text,
    replayed_at timestamptz,
    indexed_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);
CREATE INDEX IF NOT EXISTS vigil_dlq_entries_browse ON vigil_dlq_entries (tenant, stage, status, last_failure);
CREATE TABLE IF NOT EXISTS vigil_dlq_replay_counts (
    tenant text NOT NULL,
    stage text NOT NULL,
    event_id text NOT NULL,
    count integer NOT NULL,
    PRIMARY KEY (tenant, stage, event_id)
);
CREATE TABLE IF NOT EXISTS vigil_dlq_replay_jobs (
    tenant text NOT NULL,
    id text NOT NULL,
    filter jsonb NOT NULL,
    entries jsonb NOT NULL,
    force boolean NOT NULL,
    max_replays integer NOT NULL,
    rate double precision NOT NULL,
    status text NOT NULL,
    checkpoint integer NOT NULL DEFAULT 0,
    sent integer NOT NULL DEFAULT 0,
    skipped integer NOT NULL DEFAULT 0,
    created_by text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, id)
);
CREATE TABLE IF NOT EXISTS vigil_dlq_fingerprints (
    tenant text NOT NULL,
    stage text NOT NULL,
    fingerprint text NOT NULL,
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant, stage, fingerprint)
);
CREATE TABLE IF NOT EXISTS vigil_dlq_index_offsets (
    topic text NOT NULL,
    partition integer NOT NULL,
    next_offset bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);
REVOKE ALL ON vigil_dlq_index_offsets FROM PUBLIC;
""",
    tenant_rls_sql("vigil_dlq_entries", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("vigil_dlq_replay_counts", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("vigil_dlq_replay_jobs", ("SELECT", "INSERT", "UPDATE")),
    tenant_rls_sql("vigil_dlq_fingerprints", ("SELECT", "INSERT")),
    # the dlq id of the record just before next_offset: tells a topic created again from the one indexed
    "ALTER TABLE vigil_dlq_index_offsets ADD COLUMN IF NOT EXISTS last_id text",
]

#: Listing page size bounds.
DEFAULT_PAGE = 50
MAX_PAGE = 500

COLUMNS = ("id, tenant, stage, event_id, event_type, original_topic, original_partition, original_offset, "
           "error_class, error_code, fingerprint, message, attempts, first_failure, last_failure, status, "
           "replayed_from_job, last_replay_job, dlq_partition, dlq_offset")


def key_hash(tenant: str, key: bytes | str | None) -> str | None:
    """The patient key as stored and filtered on: a tenant-salted hash, never the key itself."""
    if key is None:
        return None
    raw = key.encode() if isinstance(key, str) else bytes(key)
    return hashlib.sha256(f"vigil/dlq-key|{tenant}|".encode() + raw).hexdigest()[:32]


def ms(when: datetime | None) -> int:
    return int(when.timestamp() * 1000) if when else 0


def from_ms(value: int) -> datetime:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc)


@dataclass(frozen=True)
class Filter:
    tenant: str
    stage: str = ""
    since_ms: int = 0
    until_ms: int = 0
    error_class: str = ""
    fingerprint: str = ""
    event_type: str = ""
    patient_key: str = ""
    status: str = "dead"
    ids: tuple[str, ...] = field(default_factory=tuple)

    def __post_init__(self) -> None:
        if self.status not in (*STATUSES, "any"):
            raise ValidationError(f"status {self.status!r}: expected one of {', '.join(STATUSES)} or any",
                                  code="bad_status")
        if self.since_ms < 0 or self.until_ms < 0 or (self.until_ms and self.since_ms > self.until_ms):
            raise ValidationError("time range: since must be <= until, both >= 0", code="bad_range")

    def as_dict(self) -> dict:
        """For the audit log and the job record (the patient key only as its hash)."""
        out = {k: v for k, v in (("stage", self.stage), ("since_ms", self.since_ms), ("until_ms", self.until_ms),
                                  ("error_class", self.error_class), ("fingerprint", self.fingerprint),
                                  ("event_type", self.event_type), ("status", self.status)) if v}
        if self.patient_key:
            out["patient_key_hash"] = key_hash(self.tenant, self.patient_key)
        if self.ids:
            out["ids"] = list(self.ids)[:100]
            out["id_count"] = len(self.ids)
        return out

    def where(self) -> tuple[str, list]:
        clauses, args = ["tenant = $1"], [self.tenant]

        def add(sql: str, value) -> None:
            args.append(value)
            clauses.append(sql.format(f"${len(args)}"))

        if self.status != "any":
            add("status = {}", self.status)
        for column, value in (("stage", self.stage), ("error_class", self.error_class),
                              ("fingerprint", self.fingerprint), ("event_type", self.event_type)):
            if value:
                add(f"{column} = {{}}", value)
        if self.patient_key:
            add("key_hash = {}", key_hash(self.tenant, self.patient_key))
        if self.since_ms:
            add("last_failure >= {}", from_ms(self.since_ms))
        if self.until_ms:
            add("last_failure < {}", from_ms(self.until_ms))
        if self.ids:
            add("id = ANY({}::text[])", list(self.ids))
        return " AND ".join(clauses), args


def _page_token(row) -> str:
    return base64.urlsafe_b64encode(f"{ms(row['last_failure'])}|{row['id']}".encode()).decode()


def _parse_token(token: str) -> tuple[datetime, str]:
    try:
        at, _, last_id = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return from_ms(int(at)), last_id
    except (ValueError, UnicodeDecodeError):
        raise ValidationError("page_token is not one this service issued", code="bad_page_token") from None


async def list_entries(conn: asyncpg.Connection, flt: Filter, page_size: int = DEFAULT_PAGE,
                       page_token: str = "") -> tuple[list, str, int]:
    """Newest failure first; keyset paging on (last_failure, id)."""
    size = page_size or DEFAULT_PAGE
    if not 1 <= size <= MAX_PAGE:
        raise ValidationError(f"page_size must be 1..{MAX_PAGE}", code="bad_page_size")
    where, args = flt.where()
    total = await conn.fetchval(f"SELECT count(*) FROM vigil_dlq_entries WHERE {where}", *args)
    page_where, page_args = where, list(args)
    if page_token:
        at, last_id = _parse_token(page_token)
        page_args += [at, last_id]
        page_where += f" AND (last_failure, id) < (${len(page_args) - 1}, ${len(page_args)})"
    rows = await conn.fetch(f"SELECT {COLUMNS} FROM vigil_dlq_entries WHERE {page_where} "
                            f"ORDER BY last_failure DESC, id DESC LIMIT {size + 1}", *page_args)
    more = len(rows) > size
    rows = rows[:size]
    return rows, (_page_token(rows[-1]) if more and rows else ""), total


async def select_for_replay(conn: asyncpg.Connection, flt: Filter) -> list:
    """Every match, oldest failure first (the order a replay job sends them in)."""
    where, args = flt.where()
    return await conn.fetch(f"SELECT {COLUMNS} FROM vigil_dlq_entries WHERE {where} "
                            "ORDER BY last_failure, id", *args)


async def get_entry(conn: asyncpg.Connection, tenant: str, dlq_id: str):
    return await conn.fetchrow(f"SELECT {COLUMNS}, headers, history, key_enc, payload_enc, stack_enc "
                               "FROM vigil_dlq_entries WHERE tenant = $1 AND id = $2", tenant, dlq_id)


async def replay_counts(conn: asyncpg.Connection, tenant: str, pairs: list[tuple[str, str]]) -> dict:
    """(stage, event id) -> times replayed."""
    if not pairs:
        return {}
    rows = await conn.fetch("SELECT stage, event_id, count FROM vigil_dlq_replay_counts WHERE tenant = $1 AND "
                            "(stage, event_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))",
                            tenant, [p[0] for p in pairs], [p[1] for p in pairs])
    return {(r["stage"], r["event_id"]): r["count"] for r in rows}


async def mark_replayed(conn: asyncpg.Connection, tenant: str, entry, job_id: str, checkpoint: int) -> None:
    """After the broker acknowledged the replayed record: entry, loop-guard count and job checkpoint."""
    await conn.execute("UPDATE vigil_dlq_entries SET status = 'replayed', last_replay_job = $3, replayed_at = now() "
                       "WHERE tenant = $1 AND id = $2", tenant, entry["id"], job_id)
    await conn.execute("INSERT INTO vigil_dlq_replay_counts (tenant, stage, event_id, count) VALUES ($1, $2, $3, 1) "
                       "ON CONFLICT (tenant, stage, event_id) DO UPDATE SET count = vigil_dlq_replay_counts.count + 1",
                       tenant, entry["stage"], entry["event_id"] or entry["id"])
    await conn.execute("UPDATE vigil_dlq_replay_jobs SET checkpoint = $3, sent = sent + 1, updated_at = now() "
                       "WHERE tenant = $1 AND id = $2", tenant, job_id, checkpoint)


async def skip_in_job(conn: asyncpg.Connection, tenant: str, job_id: str, checkpoint: int) -> None:
    await conn.execute("UPDATE vigil_dlq_replay_jobs SET checkpoint = $3, skipped = skipped + 1, updated_at = now() "
                       "WHERE tenant = $1 AND id = $2", tenant, job_id, checkpoint)


async def create_job(conn: asyncpg.Connection, tenant: str, job_id: str, flt: Filter, entry_ids: list[str],
                     force: bool, max_replays: int, rate: float, actor: str) -> None:
    await conn.execute(
        "INSERT INTO vigil_dlq_replay_jobs (tenant, id, filter, entries, force, max_replays, rate, status, created_by) "
        "VALUES ($1, $2, $3::jsonb, $4::jsonb, $5, $6, $7, 'running', $8)",
        tenant, job_id, json.dumps(flt.as_dict()), json.dumps(entry_ids), force, max_replays, rate, actor)


async def get_job(conn: asyncpg.Connection, tenant: str, job_id: str):
    return await conn.fetchrow("SELECT * FROM vigil_dlq_replay_jobs WHERE tenant = $1 AND id = $2", tenant, job_id)


async def set_job_status(conn: asyncpg.Connection, tenant: str, job_id: str, status: str) -> None:
    await conn.execute("UPDATE vigil_dlq_replay_jobs SET status = $3, updated_at = now() WHERE tenant = $1 AND id = $2",
                       tenant, job_id, status)


async def purge(conn: asyncpg.Connection, flt: Filter, older_than_s: int, dry_run: bool) -> tuple[int, int]:
    """Tombstone matching entries (erase key, payload and stack); returns (matched, purged)."""
    where, args = flt.where()
    if older_than_s:
        args.append(older_than_s)
        where += f" AND last_failure < now() - make_interval(secs => ${len(args)})"
    where += " AND status <> 'purged'"
    matched = await conn.fetchval(f"SELECT count(*) FROM vigil_dlq_entries WHERE {where}", *args)
    if dry_run or not matched:
        return matched, 0
    status = await conn.execute(f"UPDATE vigil_dlq_entries SET status = 'purged', key_enc = NULL, payload_enc = NULL, "
                                f"stack_enc = NULL WHERE {where}", *args)
    return matched, int(status.split()[-1])


STATS_SQL = """
SELECT e.tenant, e.stage,
       count(*) FILTER (WHERE e.status = 'dead') AS depth,
       count(*) FILTER (WHERE e.status = 'replayed') AS replayed,
       min(e.last_failure) FILTER (WHERE e.status = 'dead') AS oldest,
       (SELECT coalesce(array_agg(f.fingerprint ORDER BY f.fingerprint), '{{}}') FROM vigil_dlq_fingerprints f
         WHERE f.tenant = e.tenant AND f.stage = e.stage AND f.first_seen >= now() - make_interval(secs => $1))
         AS new_fingerprints
FROM vigil_dlq_entries e {where}
GROUP BY e.tenant, e.stage ORDER BY e.tenant, e.stage
"""


async def stats(conn: asyncpg.Connection, tenant: str | None, window_s: int) -> list:
    """Per (tenant, stage). ``tenant=None`` only on the platform (admin) connection: every tenant."""
    if tenant is None:
        return await conn.fetch(STATS_SQL.format(where=""), window_s)
    return await conn.fetch(STATS_SQL.format(where="WHERE e.tenant = $2"), window_s, tenant)
