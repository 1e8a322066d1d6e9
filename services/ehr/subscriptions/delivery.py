"""The delivery worker: handshakes, in-order event delivery with retries, heartbeats.

One loop per server process. Each round it leases the subscriptions with work due
(``store.lease_due``) and serves each one:

- ``requested``: POST a ``handshake`` (status requested). 2xx -> ``active``; after
  ``HANDSHAKE_ATTEMPTS`` failures -> ``error`` (a client re-requests by writing status
  ``requested``).
- queued events (``delivered_through < events_since_start``): POST the oldest up to
  ``maxCount`` as one ``event-notification``; 2xx advances ``delivered_through``. A failure
  leaves them queued and retries after a backoff, so order is kept and nothing is skipped
  while the endpoint is down; after ``FAILURES_BEFORE_ERROR`` failures the status becomes
  ``error`` (still retried), and the first success makes it ``active`` again.
- ``active`` with ``heartbeatPeriod`` and nothing sent for that long: POST a ``heartbeat``.
- ``end`` passed: status ``off``.
- R4 criteria subscriptions (``spec.style`` r4) are never ``requested`` (no handshake) and have no
  heartbeat; each event is one POST of the matching version (or an empty body), with the same
  ordering, retries and ``error`` status as above.
- The ``drop_notifications`` fault marks due events sent without sending them (a lost notification).
Status changes are written to the Subscription resource as new versions.
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from datetime import datetime, timezone

import httpx

from services.core.httpclient import async_client
from services.core.logging import get_logger
from services.ehr.registry import Registry
from services.ehr.storage import Store
from services.ehr.subscriptions import bundles, events, store as substore
from services.ehr.subscriptions.spec import MAX_TIMEOUT_S, R4
from services.ehr.subscriptions.store import SubState

log = get_logger("ehr.subscriptions.delivery")

#: Backoff after the n-th consecutive failure: min(RETRY_BASE_S * 2**(n-1), RETRY_CAP_S)
#: = 0.25, 0.5, 1, 2, 4, 5, 5, ... seconds. The cap is short because this server stands in for
#: an EHR in development and tests; a receiver back up is caught up within 5 s.
RETRY_BASE_S = 0.25
RETRY_CAP_S = 5.0
#: 4 failures in a row (0.25 + 0.5 + 1 = 1.75 s of waits, plus request timeouts) -> status error.
FAILURES_BEFORE_ERROR = 4
#: A handshake that fails 3 times (0.25 + 0.5 s apart) puts the subscription in error.
HANDSHAKE_ATTEMPTS = 3
POLL_INTERVAL_S = 0.5
#: A lease outlives the longest allowed request timeout, so a crashed worker's lease expires.
LEASE_S = MAX_TIMEOUT_S + 10
LEASE_BATCH = 50
CONCURRENCY = 16
#: The signature header of rest-hook POSTs when the tenant has a signing secret: ``sha256=<hex>``.
SIGNATURE_HEADER = "X-Vigil-Signature"
SIGNATURE_PREFIX = "sha256="


def _r4_body(st: SubState, event) -> tuple[bytes, str | None]:
    """An R4 criteria notification: the version that matched as the body, or an empty body."""
    if st.spec.content == "full-resource" and event.content is not None:
        return json.dumps(event.content, separators=(",", ":")).encode(), st.spec.payload_type
    return b"", None


def backoff_s(failures: int) -> float:
    return min(RETRY_BASE_S * 2 ** max(failures - 1, 0), RETRY_CAP_S)


class DeliveryWorker:
    def __init__(self, store: Store, *, transport: httpx.AsyncBaseTransport | None = None, registry=None):
        self.store = store
        self.registry = registry or Registry(store)
        self._http = async_client(transport=transport, follow_redirects=False)
        self._wake = asyncio.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._task: asyncio.Task | None = None
        self._sem = asyncio.Semaphore(CONCURRENCY)

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        events.add_waker(self.wake)
        self._task = asyncio.create_task(self._run(), name="ehr-subscription-delivery")

    async def stop(self) -> None:
        events.remove_waker(self.wake)
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        await self._http.aclose()

    def wake(self) -> None:
        """Thread-safe: a write committed, there may be work."""
        if self._loop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._wake.set)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            try:
                due = await substore.lease_due(self.store.platform, LEASE_S, LEASE_BATCH)
            except Exception as exc:  # the database may be briefly unavailable; try again next round
                log.warning("subscriptions.lease_failed", error=type(exc).__name__)
                due = []
            if due:
                await asyncio.gather(*(self._serve(st) for st in due))
                continue
            try:
                await asyncio.wait_for(self._wake.wait(), POLL_INTERVAL_S)
            except asyncio.TimeoutError:
                pass

    # --- one subscription ----------------------------------------------------------------

    async def _serve(self, st: SubState) -> None:
        async with self._sem:
            try:
                if st.spec.end is not None and st.spec.end <= datetime.now(timezone.utc):
                    await self.set_status(st, "off", ("requested", "active", "error"))
                    await substore.release(self.store.platform, st)
                elif st.status == "requested":
                    await self._handshake(st)
                elif st.events_since_start > st.delivered_through:
                    await self._deliver(st)
                elif st.status == "active":
                    await self._heartbeat(st)
                else:
                    await substore.release(self.store.platform, st)
            except Exception as exc:  # keep the worker alive; the lease is released or expires
                log.error("subscriptions.serve_failed", tenant=st.tenant, subscription=st.id,
                          error=type(exc).__name__)
                await substore.failed(self.store.platform, st, backoff_s(st.failures + 1), type(exc).__name__)

    async def _post(self, st: SubState, bundle: dict) -> str | None:
        """POST a notification Bundle; None on a 2xx, else a short reason (no payload, no PHI)."""
        return await self._send(st, json.dumps(bundle, separators=(",", ":")).encode(), st.spec.payload_type)

    async def _send(self, st: SubState, body: bytes, content_type: str | None) -> str | None:
        """POST ``body`` with the channel headers; None on a 2xx, else a short reason. When the
        tenant has a notification signing secret (admin API), the body is signed with it (both
        subscription styles)."""
        headers = {name: value for name, value in st.spec.headers}
        if content_type:
            headers["Content-Type"] = content_type
        try:
            secret = await self.registry.notify_secret(st.tenant)
        except Exception as exc:  # the database may be briefly unavailable: not sent unsigned, retried
            return f"signing secret unavailable ({type(exc).__name__})"
        if secret is not None:
            headers[SIGNATURE_HEADER] = SIGNATURE_PREFIX + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()
        try:
            response = await self._http.post(st.spec.endpoint, content=body, headers=headers,
                                             timeout=st.spec.timeout_s)
        except httpx.HTTPError as exc:
            return type(exc).__name__
        if 200 <= response.status_code < 300:
            return None
        return f"HTTP {response.status_code}"

    async def _handshake(self, st: SubState) -> None:
        error = await self._post(st, bundles.notification(st, "handshake", status="requested"))
        if error is None:
            await substore.delivered(self.store.platform, st, None)
            await self.set_status(st, "active", ("requested",))
            log.info("subscriptions.active", tenant=st.tenant, subscription=st.id)
            return
        failures = await substore.failed(self.store.platform, st, backoff_s(st.failures + 1), error)
        log.warning("subscriptions.handshake_failed", tenant=st.tenant, subscription=st.id, error=error,
                    failures=failures)
        if failures >= HANDSHAKE_ATTEMPTS:
            await self.set_status(st, "error", ("requested",))

    async def _deliver(self, st: SubState) -> None:
        full = st.spec.content == "full-resource"
        async with self.store.connection(st.tenant) as conn:
            queued = await substore.events(conn, st.tenant, st.id, st.delivered_through + 1,
                                           st.events_since_start, st.spec.max_count, with_content=full)
        if not queued:  # nothing retained in the range (cannot happen unless rows were removed)
            await substore.delivered(self.store.platform, st, st.events_since_start)
            return
        if await substore.notifications_dropped(self.store.platform, st.tenant):
            # Fault injection (drop_notifications): the events count as sent, the endpoint never hears.
            await substore.delivered(self.store.platform, st, queued[-1].number)
            log.info("subscriptions.notification_dropped", tenant=st.tenant, subscription=st.id)
            return
        if st.spec.style == R4:
            error = await self._send(st, *_r4_body(st, queued[0]))
        else:
            error = await self._post(st, bundles.notification(st, "event-notification", queued))
        if error is None:
            await substore.delivered(self.store.platform, st, queued[-1].number)
            if st.status == "error":
                await self.set_status(st, "active", ("error",))
            return
        await self._failed(st, error)

    async def _heartbeat(self, st: SubState) -> None:
        error = await self._post(st, bundles.notification(st, "heartbeat"))
        if error is None:
            await substore.delivered(self.store.platform, st, None)
        else:
            await self._failed(st, error)

    async def _failed(self, st: SubState, error: str) -> None:
        failures = await substore.failed(self.store.platform, st, backoff_s(st.failures + 1), error)
        log.warning("subscriptions.delivery_failed", tenant=st.tenant, subscription=st.id, error=error,
                    failures=failures, queued=st.events_since_start - st.delivered_through)
        if failures >= FAILURES_BEFORE_ERROR and st.status == "active":
            await self.set_status(st, "error", ("active",))

    async def set_status(self, st: SubState, status: str, expected: tuple[str, ...]) -> bool:
        """Move the subscription to ``status`` if it is still in one of ``expected``; the
        Subscription resource gets a new version saying so."""
        with events.internal_write():
            async with self.store.transaction(st.tenant) as tx:
                await tx.lock("Subscription", st.id)
                current_state = await substore.get(tx.conn, st.tenant, st.id, for_update=True)
                if current_state is None or current_state.status not in expected:
                    return False
                current = await tx.current("Subscription", st.id)
                if current is not None and not current.deleted and current.content.get("status") != status:
                    await tx.update("Subscription", st.id, {**current.content, "status": status})
                await substore.set_status(tx.conn, st.tenant, st.id, status)
        return True
