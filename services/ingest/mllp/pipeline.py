"""One HL7 message in, one ACK out: AA on durable receipt; nothing in the ACK path calls the EHR
or the database.

The listener checks framing (the server), MSH and encoding (``parse``, ``check_header``),
routes the message to a tenant (MSH-4 / MSH-6 facility, then MSH-3 / MSH-5 application),
seals the raw message with the tenant data key and produces it to ``vigil.<tenant>.hl7-inbound``
(acks=all, key = the patient key from PID-3, so a patient's messages keep their order). Only
then is the answer AA; a broker failure is AE and nothing was stored, so the sender's resend is
processed afresh.

Dedupe on MSH-10: the event id is deterministic in (tenant, facility, MSH-10, message type,
body digest), so a resend is the same event. The listener answers a resend it has just
accepted from memory (``RECENT``, bounded) without producing it again; any other resend is
produced again and is the same note downstream (the hl7 stage's ledger, its receipt log in
``ingest_hl7_messages`` and the document store's content key). A message that reuses an MSH-10
with other content is a different message (senders do reuse ids) and is kept and counted.

Every well-formed, routable message gets AA, whatever its type: what Vigil uses and how is the
``hl7`` stage's business (``services.ingest.hl7stage``), not the sender's.
"""
from __future__ import annotations

import base64
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime, timezone

from prometheus_client import Counter

from services.core import contracts
from services.core.errors import classify
from services.core.events import Event, deterministic_id
from services.core.logging import get_logger
from services.core.tenancy import Registry, Tenant
from services.ingest.hl7.ack import build_ack
from services.ingest.hl7.errors import INTERNAL_ERROR, UNKNOWN_KEY, Hl7Error, error, reject
from services.ingest.hl7.light import LightMessage as Message, parse_light
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.hl7.validate import check_header

log = get_logger("ingest.mllp")
RAW_PURPOSE = "hl7-raw"
HL7_INBOUND = contracts.HL7_INBOUND
HL7_RECEIVED = contracts.HL7_RECEIVED
APPLICATIONS_SETTING = "hl7_applications"

MESSAGES = Counter("vigil_ingest_hl7_messages_total", "HL7 messages answered, by tenant, message type and ACK code",
                   ("tenant", "kind", "ack"))
#: Resends of recently accepted messages answered from memory (per listener process).
RECENT = 50_000


@dataclass(frozen=True)
class Outcome:
    ack: str
    code: str  # AA / AE / AR
    tenant: str | None = None
    published: int = 0
    duplicate: bool = False
    error_code: str | None = None


def route(registry: Registry, msg: Message) -> Tenant:
    """The tenant of a message: MSH-4 (sending facility), MSH-6 (receiving facility), then the
    applications (MSH-3, MSH-5) a tenant lists in its ``hl7_applications`` setting."""
    h = msg.header
    for facility in (h.sending_facility, h.receiving_facility):
        if facility:
            tenant = registry.by_facility(facility)
            if tenant is not None:
                return tenant
    for application in (h.sending_application, h.receiving_application):
        if application:
            for tenant in registry:
                if application in (tenant.setting(APPLICATIONS_SETTING) or ()):
                    return tenant
    raise reject(UNKNOWN_KEY, "sending/receiving facility (MSH-4, MSH-6) or application (MSH-3, MSH-5) is not "
                 "registered to any tenant", "MSH-4")


def received_event(tenant: str, msg: Message, facility: str, sealed: bytes, key: str | None) -> Event:
    h = msg.header
    digest = msg.body_digest()
    data = {"facility": facility[:200], "controlId": h.control_id, "kind": h.kind[:40],
            "receivedAt": datetime.now(timezone.utc).isoformat(timespec="milliseconds"),
            "bodySha256": digest, "sealed": base64.b64encode(sealed).decode("ascii")}
    return Event.new(HL7_RECEIVED, source=f"/ingest/{tenant}/mllp", tenant=tenant, key=key, data=data,
                     id=deterministic_id(tenant, HL7_RECEIVED, facility, h.control_id, h.kind, digest))


class Hl7Pipeline:
    """``await pipeline.handle(raw_bytes)`` -> Outcome with the ACK text."""

    def __init__(self, registry: Registry, keyring, publishers, keys: PatientKeys):
        self.registry, self.keyring = registry, keyring
        self.publishers, self.keys = publishers, keys
        self._recent: OrderedDict[str, None] = OrderedDict()
        self._counters: dict[tuple[str, str, str], object] = {}  # label lookups cost more than the count

    async def handle(self, raw: bytes | str) -> Outcome:
        outcome, kind = await self._handle(raw)
        labels = (outcome.tenant or "unrouted", kind, outcome.code)
        counter = self._counters.get(labels)
        if counter is None:
            counter = self._counters[labels] = MESSAGES.labels(*labels)
        counter.inc()
        return outcome

    async def _handle(self, raw: bytes | str) -> tuple[Outcome, str]:
        raw_bytes = raw.encode("utf-8") if isinstance(raw, str) else bytes(raw)
        try:
            msg = parse_light(raw_bytes)
        except Hl7Error as exc:
            log.info("hl7.rejected", ack="AR", error_code=exc.code, stage="parse")
            return Outcome(build_ack(None, exc.ack_code, exc), exc.ack_code, error_code=exc.code), "unknown"
        try:
            check_header(msg)
            tenant = route(self.registry, msg)
        except Hl7Error as exc:
            log.info("hl7.rejected", ack=exc.ack_code, error_code=exc.code, stage="route")
            return (Outcome(build_ack(msg.header, exc.ack_code, exc), exc.ack_code, error_code=exc.code),
                    _metric_kind(msg.header.kind))
        kind = _metric_kind(msg.header.kind)
        try:
            return await self._accept(tenant, msg, raw_bytes), kind
        except Hl7Error as exc:
            return (Outcome(build_ack(msg.header, exc.ack_code, exc), exc.ack_code, tenant.id, error_code=exc.code),
                    kind)
        except Exception as exc:  # broker or database trouble: AE so the sender resends later
            err = classify(exc)
            log.warning("hl7.failed", tenant=tenant.id, error_code=err.code, retryable=err.retryable,
                        control_id=msg.header.control_id)
            text = "temporarily unavailable, resend later" if err.retryable else f"could not be stored ({err.code})"
            failure = error(INTERNAL_ERROR, text)
            return Outcome(build_ack(msg.header, "AE", failure), "AE", tenant.id, error_code=INTERNAL_ERROR), kind

    async def _accept(self, tenant: Tenant, msg: Message, raw: bytes) -> Outcome:
        h = msg.header
        facility = h.sending_facility or h.receiving_facility or h.sending_application or "unknown"
        sealed = await self.keyring.encrypt(tenant.id, raw, RAW_PURPOSE)
        event = received_event(tenant.id, msg, facility, sealed, self.keys.of_message(tenant.id, msg))
        if event.id in self._recent:
            self._recent.move_to_end(event.id)
            log.info("hl7.duplicate", tenant=tenant.id, control_id=h.control_id)
            return Outcome(build_ack(h, "AA"), "AA", tenant.id, duplicate=True)
        await self.publishers.publish(tenant.id, [(HL7_INBOUND, event)])
        self._recent[event.id] = None
        if len(self._recent) > RECENT:
            self._recent.popitem(last=False)
        log.info("hl7.accepted", tenant=tenant.id, control_id=h.control_id, kind=h.kind)
        return Outcome(build_ack(h, "AA"), "AA", tenant.id, published=1)


KNOWN_TYPES = frozenset({"ADT", "ORU", "MDM", "SIU", "ORM", "OML", "DFT", "VXU", "MFN", "ACK", "BAR", "RDE", "RAS"})


def _metric_kind(kind: str) -> str:
    """Bounded metric label: the message type when it is a known one, else ``other``."""
    message_type = kind.split("^", 1)[0].upper()
    return message_type if message_type in KNOWN_TYPES else "other"
