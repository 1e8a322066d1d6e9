"""One HL7 message in, one ACK out: route, validate, map, dedupe, write to the EHR, publish.

AA is returned only after the broker acknowledged the events (acks=all). Everything that
happens for an accepted message runs inside one tenant transaction: the MSH-10 dedupe row
and the (resource, version) claims commit only after the publish succeeded, so a failure
at any step leaves nothing recorded and the sender's resend is processed afresh.
"""
from __future__ import annotations

from dataclasses import dataclass

from services.core.errors import classify
from services.core.logging import get_logger
from services.core.tenancy import Registry, Tenant
from services.ingest import events as ev
from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.errors import DUPLICATE_KEY, INTERNAL_ERROR, UNKNOWN_KEY, Hl7Error, error, reject
from services.ingest.hl7.mapping import map_message
from services.ingest.hl7.parse import Message, parse
from services.ingest.hl7.validate import check_header
from services.ingest.store import hl7_log, ledger

log = get_logger("ingest.mllp")
RAW_PURPOSE = "hl7-raw"


@dataclass(frozen=True)
class Outcome:
    ack: str
    code: str  # AA / AE / AR
    tenant: str | None = None
    published: int = 0
    duplicate: bool = False
    error_code: str | None = None


def route(registry: Registry, msg: Message) -> Tenant:
    """The tenant of a message: MSH-4 (sending facility) first, then MSH-6 (receiving)."""
    for facility in (msg.header.sending_facility, msg.header.receiving_facility):
        if facility:
            tenant = registry.by_facility(facility)
            if tenant is not None:
                return tenant
    raise reject(UNKNOWN_KEY, "sending/receiving facility (MSH-4, MSH-6) is not registered to any tenant", "MSH-4")


class Hl7Pipeline:
    """``await pipeline.handle(raw_bytes)`` -> Outcome with the ACK text."""

    def __init__(self, registry: Registry, pools, keyring, publishers, writer):
        self.registry, self.pools, self.keyring = registry, pools, keyring
        self.publishers, self.writer = publishers, writer

    async def handle(self, raw: bytes | str) -> Outcome:
        raw_bytes = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        try:
            msg = parse(raw_bytes)
        except Hl7Error as exc:
            log.info("hl7.rejected", ack="AR", error_code=exc.code, stage="parse")
            return Outcome(build_ack(None, exc.ack_code, exc), exc.ack_code, error_code=exc.code)
        try:
            check_header(msg)
            tenant = route(self.registry, msg)
        except Hl7Error as exc:
            log.info("hl7.rejected", ack=exc.ack_code, error_code=exc.code, stage="route")
            return Outcome(build_ack(msg.header, exc.ack_code, exc), exc.ack_code, error_code=exc.code)
        try:
            mapping = map_message(msg, tenant.setting("hl7_timezone"))
        except Hl7Error as exc:
            await self._keep_reject(tenant.id, msg, raw_bytes, exc)
            return Outcome(build_ack(msg.header, exc.ack_code, exc), exc.ack_code, tenant.id, error_code=exc.code)
        try:
            return await self._accept(tenant, msg, mapping, raw_bytes)
        except Hl7Error as exc:
            return Outcome(build_ack(msg.header, exc.ack_code, exc), exc.ack_code, tenant.id, error_code=exc.code)
        except Exception as exc:  # EHR, broker or database trouble: AE so the sender resends later
            err = classify(exc)
            log.warning("hl7.failed", tenant=tenant.id, error_code=err.code, retryable=err.retryable,
                        control_id=msg.header.control_id)
            text = "temporarily unavailable, resend later" if err.retryable else f"could not be stored ({err.code})"
            failure = error(INTERNAL_ERROR, text)
            return Outcome(build_ack(msg.header, "AE", failure), "AE", tenant.id, error_code=INTERNAL_ERROR)

    async def _keep_reject(self, tenant: str, msg: Message, raw: bytes, exc: Hl7Error) -> None:
        log.info("hl7.rejected", tenant=tenant, ack=exc.ack_code, error_code=exc.code, location=exc.location,
                 control_id=msg.header.control_id)
        try:
            blob = await self.keyring.encrypt(tenant, raw, RAW_PURPOSE)
            async with self.pools.tx(tenant) as conn:
                await hl7_log.keep_reject(conn, tenant, msg.header.control_id, exc.ack_code, exc.code, blob)
        except Exception as store_exc:  # the ACK still tells the sender; the copy is best effort
            log.warning("hl7.reject_not_kept", tenant=tenant, error_code=classify(store_exc).code)

    async def _accept(self, tenant: Tenant, msg: Message, mapping, raw: bytes) -> Outcome:
        h = msg.header
        facility = h.sending_facility or h.receiving_facility
        blob = await self.keyring.encrypt(tenant.id, raw, RAW_PURPOSE)
        async with self.pools.tx(tenant.id) as conn:
            prior = await hl7_log.claim_message(conn, tenant.id, facility, h.control_id, h.kind, msg.body_digest(), blob)
            if prior is not None:
                if prior.body_sha256 != msg.body_digest():
                    raise error(DUPLICATE_KEY, "message control id (MSH-10) was already used for a different "
                                "message", "MSH-10")
                log.info("hl7.duplicate", tenant=tenant.id, control_id=h.control_id)
                return Outcome(build_ack(h, "AA"), "AA", tenant.id, duplicate=True)
            written = await self.writer.write(tenant.id, mapping)
            routed = []
            for resource, action in written:
                ref = ev.ref_of(resource)
                if await ledger.claim_version(conn, tenant.id, ref.resource_type, ref.id, ref.version_id, "hl7"):
                    routed.append((ev.EHR_EVENTS, ev.resource_changed(tenant.id, ref, action=action, origin="hl7")))
            await hl7_log.set_resources(conn, tenant.id, facility, h.control_id, h.kind,
                                        [ev.ref_of(r).as_dict() for r, _ in written])
            await self.publishers.publish(tenant.id, routed)
        log.info("hl7.accepted", tenant=tenant.id, control_id=h.control_id, kind=h.kind, published=len(routed))
        return Outcome(build_ack(h, "AA"), "AA", tenant.id, published=len(routed))
