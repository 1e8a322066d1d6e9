"""The pipeline driver: demo patients and notes written into the EHR through FHIR (so they flow
subscription -> ingest -> extraction -> triage -> writeback like a real EHR's) or, for a tenant
whose EHR sends notes by HL7v2, sent as MDM^T02 over MLLP to ingest's listener (as its interface
engine would: hl7 stage -> extraction -> triage -> hl7out), CDS Hooks patient-view calls made as
the EHR makes them, a watcher on the
tenants' ``findings`` topics, the drain check against the decision ledger, and clinician
decisions made through the inbox pages.
"""
from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone

import httpx
from aiokafka import AIOKafkaConsumer, TopicPartition
from hl7.mllp import open_hl7_connection

from services.commands.demo.notes import ClinicDay, DemoPatient
from services.core import contracts
from services.core import hl7wire
from services.core.bus.topics import topic_partitions
from services.core.config import Settings
from services.core.events import decode
from services.core.fhir import FhirClient
from services.core.httpclient import async_client
from services.core.tenancy import topic_name
from services.ehr import seed as ehr_seed
from services.ehr.inbox import session as inbox_session

RUN_SYSTEM = "https://vigil.health/fhir/sid/demo-run"


def parse_time(raw: str) -> datetime:
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


@dataclass
class SentNote:
    tenant: str
    id: str
    patient: str
    expect: str | None
    created: datetime  # the EHR's meta.lastUpdated of version 1


@dataclass
class TenantRun:
    tenant: str
    client: FhirClient
    practitioners: dict[str, str]
    patients: dict[str, str] = field(default_factory=dict)  # demo key -> Patient id
    notes: list[SentNote] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)
    feed: "Hl7Feed | None" = None   # set for a tenant whose notes arrive as an HL7v2 feed
    mrns: dict[str, str] = field(default_factory=dict)  # demo key -> MRN (PID-3)


def _patient_entries(run_id: str, patient: DemoPatient, oncologist_id: str) -> list[dict]:
    url = f"urn:uuid:{uuid.uuid4()}"
    mrn = f"DEMO-{run_id}-{patient.key}"
    return [
        {"fullUrl": url, "request": {"method": "POST", "url": "Patient"},
         "resource": {"resourceType": "Patient", "active": True,
                      "identifier": [{"system": ehr_seed.MRN, "value": mrn}, {"system": RUN_SYSTEM, "value": run_id}],
                      "name": [{"family": patient.family, "given": [patient.given]}]}},
        {"request": {"method": "POST", "url": "MedicationRequest"},
         "resource": {"resourceType": "MedicationRequest", "status": "active", "intent": "order",
                      "category": [{"text": "immunotherapy"}],
                      "medicationCodeableConcept": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm",
                                                                "code": ehr_seed.ICIS[patient.drug],
                                                                "display": patient.drug}], "text": patient.drug},
                      "subject": {"reference": url}, "requester": {"reference": f"Practitioner/{oncologist_id}"}}},
        {"request": {"method": "POST", "url": "CareTeam"},
         "resource": {"resourceType": "CareTeam", "status": "active", "name": "Oncology care team",
                      "subject": {"reference": url},
                      "participant": [{"role": [{"coding": [{"system": ehr_seed.ROLE_SYSTEM, "code": "oncologist",
                                                             "display": "Treating oncologist"}]}],
                                       "member": {"reference": f"Practitioner/{oncologist_id}"}}]}},
    ]


async def create_patients(run: TenantRun, run_id: str, day: ClinicDay) -> None:
    entries, keys = [], []
    for patient in day.patients:
        entries += _patient_entries(run_id, patient, run.practitioners[patient.oncologist])
        keys.append(patient.key)
    response = await run.client.transaction({"resourceType": "Bundle", "type": "transaction", "entry": entries})
    locations = [e["response"]["location"] for e in response["entry"]]
    patient_ids = [loc.split("/")[1] for loc in locations if loc.startswith("Patient/")]
    run.patients = dict(zip(keys, patient_ids))
    run.mrns = {key: f"DEMO-{run_id}-{key}" for key in keys}


async def send_note(run: TenantRun, run_id: str, index: int, patient_key: str, text: str,
                    expect: str | None, author: str) -> SentNote:
    when = datetime.now(timezone.utc).replace(microsecond=0)
    resource = ehr_seed.note_resource(f"Patient/{run.patients[patient_key]}", f"Practitioner/{author}", text, when,
                                      f"demo-{run_id}-{index:04d}")
    result = await run.client.create(resource)
    stored = result.resource or await run.client.read("DocumentReference", result.id)
    note = SentNote(run.tenant, stored["id"], run.patients[patient_key], expect,
                    parse_time(stored["meta"]["lastUpdated"]))
    run.notes.append(note)
    return note


ACK_TIMEOUT_S = 15.0


class Hl7Feed:
    """One tenant's HL7v2 note feed into ingest's MLLP listener, on one long-lived connection
    (as an interface engine keeps one): MDM^T02 per note; a note counts as sent on AA only."""

    def __init__(self, host: str, port: int, facility: str):
        self.host, self.port, self.facility = host, port, facility
        self._reader = self._writer = None

    async def send(self, text: str) -> hl7wire.Ack:
        if self._writer is None:
            self._reader, self._writer = await open_hl7_connection(self.host, self.port, encoding=hl7wire.ENCODING)
        self._writer.writeblock(text.encode(hl7wire.ENCODING))
        await self._writer.drain()
        block = await asyncio.wait_for(self._reader.readblock(), ACK_TIMEOUT_S)
        return hl7wire.parse_ack(block.decode(hl7wire.ENCODING))

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            await self._writer.wait_closed()
            self._reader = self._writer = None


def mdm_t02(facility: str, control_id: str, document_number: str, mrn: str, family: str, given: str,
            author_npi: str, text: str, when: datetime) -> str:
    """An MDM^T02 (original document notification and content) as an Epic-style feed sends a
    progress note: TXA-12 the unique document number, the text in OBX-5 (TX), line breaks kept."""
    e, stamp = hl7wire.escape, when.strftime("%Y%m%d%H%M%S")
    return "\r".join([
        f"MSH|^~\\&|NOTES|{e(facility)}|VIGIL|VIGIL|{stamp}||MDM^T02^MDM_T02|{e(control_id)}|P|2.5.1",
        f"EVN|T02|{stamp}",
        f"PID|1||{e(mrn)}^^^{e(facility)}^MR||{e(family)}^{e(given)}",
        f"TXA|1|PN|TX|{stamp}|{e(author_npi)}|{stamp}||||||{e(document_number)}|||||AU",
        f"OBX|1|TX|11506-3^Progress note^LN||{e(text, keep_breaks=True)}||||||F"]) + "\r"


async def send_hl7_note(run: TenantRun, run_id: str, index: int, patient: DemoPatient, text: str,
                        expect: str | None, author_npi: str) -> SentNote:
    """The note as its interface engine sends it; its id is the document store's id for TXA-12."""
    from services.ingest.hl7.mapping.common import identifier_system
    from services.ingest.store.documents import document_id

    number = f"demo-{run_id}-{index:04d}"
    control = "D" + hashlib.sha256(number.encode()).hexdigest()[:19].upper()  # MSH-10: at most 20 characters
    message = mdm_t02(run.feed.facility, control, number, run.mrns[patient.key], patient.family,
                      patient.given, author_npi, text, datetime.now(timezone.utc))
    ack = await run.feed.send(message)
    if not ack.accepted:
        raise RuntimeError(f"{run.tenant}: ingest answered {ack.code} to note {index} (error {ack.error_code})")
    note = SentNote(run.tenant, document_id(run.tenant, identifier_system(run.feed.facility, "document"), number),
                    run.patients[patient.key], expect, datetime.now(timezone.utc))
    run.notes.append(note)
    return note


#: A CDS service that answers 5xx (a busy shared database) is asked again, this many times in all.
CDS_ATTEMPTS = 6
CDS_BACKOFF_S = 1.0


async def patient_view(cds_url: str, tenant: str, token_for, patient: str, user: str) -> list[dict]:
    """The EHR's ``patient-view`` hook call as it opens a chart: the cards the CDS service returns.
    ``token_for()`` mints a fresh JWT per attempt (a token's ``jti`` is good for one call)."""
    from services.cdshooks.cards import SERVICE_ID

    body = {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": user, "patientId": patient}}
    status = 0
    async with async_client(timeout=30) as http:
        for attempt in range(CDS_ATTEMPTS):
            if attempt:
                await asyncio.sleep(CDS_BACKOFF_S * attempt)
            try:
                response = await http.post(f"{cds_url}/{tenant}/cds-services/{SERVICE_ID}", json=body,
                                           headers={"Authorization": f"Bearer {token_for()}"})
            except httpx.TransportError:
                continue
            status = response.status_code
            if status == 200:
                return response.json().get("cards") or []
            if status < 500:
                break
    raise RuntimeError(f"{tenant}: CDS patient-view answered HTTP {status or 'nothing'}")


async def send_message(run: TenantRun, patient_key: str, text: str, recipient: str) -> str:
    patient = f"Patient/{run.patients[patient_key]}"
    result = await run.client.create({
        "resourceType": "Communication", "status": "completed", "subject": {"reference": patient},
        "sender": {"reference": patient}, "recipient": [{"reference": f"Practitioner/{recipient}"}],
        "sent": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "category": [{"text": "patient-message"}], "payload": [{"contentString": text}]})
    run.messages.append(result.id)
    return result.id


class FindingsWatcher:
    """Reads the tenants' ``findings`` topics from their end at start: document id -> findings."""

    def __init__(self, settings: Settings, tenants: list[str]):
        self.settings, self.tenants = settings, tenants
        self.seen: dict[str, dict[str, int]] = {t: {} for t in tenants}
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        consumer = AIOKafkaConsumer(enable_auto_commit=False, **self.settings.kafka.client_kwargs())
        await consumer.start()
        parts = [TopicPartition(topic_name(t, contracts.FINDINGS), p) for t in self.tenants
                 for p in sorted(await topic_partitions(consumer, topic_name(t, contracts.FINDINGS)))]
        consumer.assign(parts)
        await consumer.seek_to_end(*parts)
        for tp in parts:  # resolve the end offsets now, before any note is sent
            await consumer.position(tp)
        self._consumer = consumer
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self._consumer.getmany(timeout_ms=300)
            for tp, messages in batch.items():
                tenant = tp.topic.split(".")[1]
                for m in messages:
                    try:
                        data = decode(m.key, m.value, m.headers).data
                    except Exception:  # not ours to judge here: the stage validated it
                        continue
                    self.seen[tenant][data["document"]["id"]] = len(data.get("findings") or [])

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        if self._consumer:
            await self._consumer.stop()


_CSRF = re.compile(r'name="csrf"\s+value="([^"]+)"')
_VERSION = re.compile(r'name="version"\s+value="(\d+)"')


async def clinician_decides(ehr_url: str, admin_secret: str, tenant: str, practitioner: str, task_id: str,
                            decision: str, reason: str | None = None) -> int:
    """Sign in to the tenant's inbox as ``practitioner`` and accept or override one Task."""
    async with async_client(base_url=ehr_url, timeout=30, follow_redirects=True, keep_cookies=True) as http:
        token = inbox_session.issue_link(admin_secret, tenant, practitioner)  # the practitioner's own link
        await http.get(f"/inbox/{tenant}/login", params={"token": token})
        page = await http.get(f"/inbox/{tenant}/tasks/{task_id}")
        version = _VERSION.search(page.text)
        if version is None:
            raise RuntimeError(f"inbox task page of {tenant} Task/{task_id}: HTTP {page.status_code}, no form")
        form = {"csrf": _CSRF.search(page.text).group(1), "version": version.group(1), "comment": ""}
        if reason:
            form["reason"] = reason
        response = await http.post(f"/inbox/{tenant}/tasks/{task_id}/{decision}", data=form)
        return response.status_code


#: What a patient answers to the scheduling agent's last message (first matching marker wins).
PATIENT_ANSWERS = (("Reply with the number", "1"), ("Please reply yes or no", "yes"))


def _sent_order(communication: dict) -> tuple[datetime, datetime]:
    """Order of a thread by time (not text: "10:00:05Z" sorts after "10:00:05.4Z" as a string)."""
    updated = parse_time(communication["meta"]["lastUpdated"])
    return (parse_time(communication["sent"]) if communication.get("sent") else updated), updated


def _text(communication: dict) -> str:
    return " ".join(p.get("contentString", "") for p in communication.get("payload") or [])


async def patients_reply(run: TenantRun) -> int:
    """Each run patient answers the agent's newest message once (picks the first offered time,
    then confirms). Returns how many answers were sent."""
    sent = 0
    for patient in run.patients.values():
        ref = f"Patient/{patient}"
        thread = await run.client.search("Communication", {"patient": ref, "_count": "100"})
        thread.sort(key=_sent_order)
        if not thread or (thread[-1].get("sender") or {}).get("reference") == ref:
            continue  # nothing from the agent yet, or the patient spoke last
        for marker, answer in PATIENT_ANSWERS:
            if marker in _text(thread[-1]):
                await run.client.create({
                    "resourceType": "Communication", "status": "completed", "subject": {"reference": ref},
                    "sender": {"reference": ref}, "recipient": [thread[-1].get("sender") or {}],
                    "inResponseTo": [{"reference": f"Communication/{thread[-1]['id']}"}],
                    "sent": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
                    "category": [{"text": "patient-message"}], "payload": [{"contentString": answer}]})
                sent += 1
                break
    return sent


#: Stage counters whose sum is the events a stage has finished with (written, dead-lettered or
#: recognised as already done).
FINISHED_COUNTERS = ("vigil_stage_succeeded_total", "vigil_stage_dead_lettered_total",
                     "vigil_stage_duplicates_total")


async def stage_caught_up(settings: Settings, tenant: str, stage: str, stream: str) -> bool:
    """Has the stage's consumer group (``vigil.<tenant>.<stage>``) committed every record the
    tenant's ``stream`` holds now? (A stage commits only what it finished.)"""
    topic = topic_name(tenant, stream)
    consumer = AIOKafkaConsumer(enable_auto_commit=False, group_id=f"vigil.{tenant}.{stage}",
                                **settings.kafka.client_kwargs(tenant))
    await consumer.start()
    try:
        tps = [TopicPartition(topic, p) for p in sorted(await topic_partitions(consumer, topic))]
        ends = await consumer.end_offsets(tps) if tps else {}
        for tp in tps:
            if ends[tp] > (await consumer.committed(tp) or 0):
                return False
        return True
    finally:
        await consumer.stop()


async def stage_finished(metrics_url: str, stage: str, tenant: str) -> int:
    """Events a running stage has finished for a tenant, from its /metrics (0 if it does not answer)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        async with async_client(timeout=5.0) as client:
            response = await client.get(metrics_url)
            response.raise_for_status()
    except httpx.HTTPError:
        return 0
    total = 0
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name in FINISHED_COUNTERS and sample.labels.get("stage") == stage \
                    and sample.labels.get("tenant") == tenant:
                total += int(sample.value)
    return total
