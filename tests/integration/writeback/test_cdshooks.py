"""CDS Hooks 2.0: discovery, patient-view cards for open AI findings (from cdshooks' own read
model, built by its stages from the events), feedback as ``vigil.cdshooks.feedback`` events
(which triage's ledger, the monitor's labels and the read model take in), and JWT verification of
the CDS client (real broker, PostgreSQL, Redis, EHR sandbox)."""
from __future__ import annotations

import dataclasses
import json
import time
import uuid

import httpx
import jwt
import pytest

from services.cdshooks.app import create_app
from services.cdshooks.config import CdsSettings
from services.core import contracts, evidence
from services.core.bus import Publisher
from services.core.events import Event
from services.core.fhir import new_client_key
from services.monitor.feedback import card_labels
from tests.integration.writeback.test_writeback import patient, written

BASE = "http://cds.test"
ISS = "https://ehr.example.org"
#: writeback writes the Task, triage's ledger and cdshooks' read model take the decision and the Task.
CARD_STAGES = ("writeback", "triage-feedback", "cdshooks-actions", "cdshooks-feedback")
#: a clinician's answer: into triage's ledger and into cdshooks' read model.
ANSWER_STAGES = ("triage-feedback", "cdshooks-feedback")


@pytest.fixture
async def cds(wb_tenant, tmp_path):
    pem, jwk = new_client_key("ES384")
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": [jwk]}))
    wb_tenant.registry(cds_client_iss=ISS, cds_jwks_file=str(tmp_path / "jwks.json"))
    app = create_app(wb_tenant.settings, CdsSettings(0, None, "http://ehr.test"), secrets=wb_tenant.deps.secrets,
                     pools=wb_tenant.pools)
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
    client.key, client.kid = pem, jwk["kid"]
    yield client
    await client.aclose()
    await app.state.vigil.close()


def token(cds, tenant: str, *, path: str = "irae-patient-view", key: str | None = None, iss: str = ISS,
          exp_in: int = 60, jti: str | None = None, alg: str = "ES384", kid: str | None = None) -> str:
    now = int(time.time())
    claims = {"iss": iss, "aud": f"{BASE}/{tenant}/cds-services/{path}", "iat": now, "exp": now + exp_in,
              "jti": jti or uuid.uuid4().hex}
    return jwt.encode(claims, key or cds.key, algorithm=alg, headers={"kid": kid or cds.kid})


def hook_body(pid: str) -> dict:
    return {"hook": "patient-view", "hookInstance": str(uuid.uuid4()),
            "context": {"userId": "Practitioner/onc-1", "patientId": pid}}


async def test_discovery_cards_and_feedback(wb_tenant, cds):
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc, kind="urgent-task", grade=3)
    async with wb.host(stages=CARD_STAGES):
        await wb.publish("actions", [ev])
        await wb.wait(lambda: written(wb, ev.data["decisionId"]))
        await wb.wait(lambda: projected(wb, ev.data["decisionId"], task=True))  # cdshooks' read model has it
    found = (await cds.get(f"/{wb.tenant}/cds-services")).json()
    assert [s["id"] for s in found["services"]] == ["irae-patient-view"]
    assert found["services"][0]["hook"] == "patient-view"

    r = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view", json=hook_body(pid),
                       headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    (task,) = await wb.ehr.client.search("Task", {"patient": pid})
    assert card["indicator"] == "critical" and card["summary"].startswith("[AI]")
    assert card["source"]["label"] == "Vigil (AI-generated)"
    assert card["extension"]["vigil-security-label"]["code"] == "AIAST"
    assert card["links"][0]["url"] == f"http://ehr.test/inbox/{wb.tenant}/tasks/{task['id']}"
    assert "6-7 watery stools per day" in card["detail"]
    other = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view", json=hook_body("nobody"),
                           headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert other.json() == {"cards": []}

    fb = {"feedback": [{"card": card["uuid"], "outcome": "overridden", "outcomeTimestamp": "2026-11-22T10:00:00Z",
                        "overrideReason": {"reason": {"code": "already-managed"}, "userComment": "seen by GI"}}]}
    url = f"/{wb.tenant}/cds-services/irae-patient-view/feedback"
    r = await cds.post(url, json=fb, headers={"Authorization": f"Bearer {token(cds, wb.tenant, path='irae-patient-view/feedback')}"})
    assert r.status_code == 200, r.text
    (event,) = await feedback_events(wb, 1)
    assert event.data["decisions"] == [ev.data["decisionId"]] and "seen by GI" not in json.dumps(event.data)
    (label,) = card_labels(event.data, await evidence.open_text(wb.deps.keyring, wb.tenant,
                                                                event.data["commentSealed"]))
    assert (label.source, label.action, label.reason, label.comment, label.clinician) == (
        "cds-hooks", "overridden", "already-managed", "seen by GI", "Practitioner/onc-1")
    assert (label.category, label.grade, label.task_id) == ("colitis", 3, task["id"])
    async with wb.host(stages=ANSWER_STAGES):   # triage takes the answer into its ledger, cdshooks into its cards
        await wb.wait(lambda: _action(wb, ev.data["decisionId"]))
        await wb.wait(lambda: _projected_action(wb, ev.data["decisionId"]))
    row = await wb.ledger.get(wb.tenant, ev.data["decisionId"])
    assert (row["clinician_action"], row["action_reason"]) == ("overridden", "already-managed")
    # the finding is no longer open: no card
    r = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view", json=hook_body(pid),
                       headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert r.json() == {"cards": []}
    # feedback for a card never issued
    bad = {"feedback": [{**fb["feedback"][0], "card": str(uuid.uuid4())}]}
    r = await cds.post(url, json=bad, headers={"Authorization": f"Bearer {token(cds, wb.tenant, path='irae-patient-view/feedback')}"})
    assert r.status_code == 404


async def test_jwt_rejections(wb_tenant, cds):
    t = wb_tenant.tenant
    url = f"/{t}/cds-services/irae-patient-view"
    body = hook_body("p1")
    other_pem, _ = new_client_key("ES384")
    rsa_pem, _ = new_client_key("RS384")
    replay = token(cds, t, jti="same-jti")
    cases = {
        "no token": None,
        "not a jwt": "abc.def",
        "wrong audience": token(cds, t, path="other-service"),
        "wrong issuer": token(cds, t, iss="https://evil.example"),
        "expired": token(cds, t, exp_in=-120),
        "foreign key": token(cds, t, key=other_pem),
        "unknown kid": token(cds, t, kid="nope"),
        "alg mismatch": token(cds, t, key=rsa_pem, alg="RS384"),
        "hs256": jwt.encode({"iss": ISS, "aud": f"{BASE}{url}", "iat": int(time.time()),
                             "exp": int(time.time()) + 60, "jti": "x"}, "secret-secret-secret-secret-32by",
                            algorithm="HS256"),
    }
    for name, tok in cases.items():
        headers = {"Authorization": f"Bearer {tok}"} if tok else {}
        r = await cds.post(url, json=body, headers=headers)
        assert r.status_code == 401, name
        assert r.json()["error"] == "unauthorized"
    assert (await cds.post(url, json=body, headers={"Authorization": f"Bearer {replay}"})).status_code == 200
    assert (await cds.post(url, json=body, headers={"Authorization": f"Bearer {replay}"})).status_code == 401
    # a valid token of this tenant does not open another tenant's route
    r = await cds.post(f"/tzz{uuid.uuid4().hex[:8]}/cds-services/irae-patient-view", json=body,
                       headers={"Authorization": f"Bearer {token(cds, t)}"})
    assert r.status_code == 404
    r = await cds.post(url, content=b"{not json", headers={"Authorization": f"Bearer {token(cds, t)}",
                                                          "Content-Type": "application/json"})
    assert r.status_code == 400


async def test_a_tenants_token_does_not_open_another_tenants_hooks(wb_tenant, cds, tmp_path):
    from services.core.tenancy import Registry, Tenant

    t = wb_tenant.tenant
    other = "t" + uuid.uuid4().hex[:12]
    pem_b, jwk_b = new_client_key("ES384")
    (tmp_path / "jwks-b.json").write_text(json.dumps({"keys": [jwk_b]}))
    registry = Registry.load(wb_tenant.path)
    Registry(wb_tenant.path, [registry.get(t), Tenant(id=other, settings={
        "cds_client_iss": "https://ehr-b.example.org", "cds_jwks_file": str(tmp_path / "jwks-b.json")})]).save()
    body = hook_body("p1")
    # tenant A's token, re-addressed to tenant B's endpoint: B's keys and issuer refuse it
    forged_aud = token(cds, other)
    r = await cds.post(f"/{other}/cds-services/irae-patient-view", json=body,
                       headers={"Authorization": f"Bearer {forged_aud}"})
    assert r.status_code == 401
    # tenant B's own token on tenant A's route: wrong audience, issuer and key
    b_token = jwt.encode({"iss": "https://ehr-b.example.org", "aud": f"{BASE}/{other}/cds-services/irae-patient-view",
                          "iat": int(time.time()), "exp": int(time.time()) + 60, "jti": uuid.uuid4().hex},
                         pem_b, algorithm="ES384", headers={"kid": jwk_b["kid"]})
    r = await cds.post(f"/{t}/cds-services/irae-patient-view", json=body, headers={"Authorization": f"Bearer {b_token}"})
    assert r.status_code == 401


async def test_a_tenant_without_fhir_results_gets_one_card_per_open_episode(wb_tenant, cds):
    """An Epic-like tenant (results: cds-hooks, no fhir): writeback writes nothing, yet the card is
    there, one per open episode, without an inbox link; its feedback labels the decisions."""
    import dataclasses

    from services.core.integration import parse as parse_profile
    from services.core.tenancy import Registry

    wb = wb_tenant
    entry = Registry.load(wb.path).get(wb.tenant)
    Registry(wb.path, [dataclasses.replace(entry, integration=parse_profile(wb.tenant, {
        "family": "epic-like", "triggers": ["hl7v2-feed"], "note_sources": ["document-store"],
        "results": ["cds-hooks"], "ehr_accepts": []}))]).save()
    pid = await patient(wb)
    doc = await wb.note(pid)
    first = wb.decision(pid, doc, kind="routine-task", grade=2)
    second = wb.decision(pid, doc, kind="urgent-task", grade=3, n=1)  # the same episode, later
    other = wb.decision(pid, doc, kind="routine-task", grade=1, n=2, write=False)  # silent: not a result
    events = (first, second, other)
    async with wb.host(stages=CARD_STAGES):
        await wb.publish("actions", list(events))
        await wb.wait(lambda: _all_recorded(wb, [e.data["decisionId"] for e in events]))
        for e in (first, second):
            await wb.wait(lambda e=e: projected(wb, e.data["decisionId"]))
    assert await wb.count("Task", patient=pid) == 0  # nothing written to the EHR

    auth = {"Authorization": f"Bearer {token(cds, wb.tenant)}"}
    r = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view", json=hook_body(pid), headers=auth)
    assert r.status_code == 200, r.text
    (card,) = r.json()["cards"]
    assert card["indicator"] == "critical" and card["summary"] == "[AI] Possible irAE: colitis, grade 3"
    assert "links" not in card and "vigil-task" not in card["extension"]
    assert card["extension"]["vigil-security-label"]["code"] == "AIAST"

    fb = {"feedback": [{"card": card["uuid"], "outcome": "accepted", "outcomeTimestamp": "2026-11-22T10:00:00Z"}]}
    r = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view/feedback", json=fb, headers={
        "Authorization": f"Bearer {token(cds, wb.tenant, path='irae-patient-view/feedback')}"})
    assert r.status_code == 200, r.text
    (event,) = await feedback_events(wb, 1)
    assert sorted(event.data["decisions"]) == sorted([first.data["decisionId"], second.data["decisionId"]])
    assert event.data["task"] is None and "commentSealed" not in event.data
    async with wb.host(stages=ANSWER_STAGES):
        for e in (first, second):
            await wb.wait(lambda e=e: _action(wb, e.data["decisionId"]))
            await wb.wait(lambda e=e: _projected_action(wb, e.data["decisionId"]))
    for e in (first, second):
        assert (await wb.ledger.get(wb.tenant, e.data["decisionId"]))["clinician_action"] == "accepted"
    assert (await wb.ledger.get(wb.tenant, other.data["decisionId"]))["clinician_action"] is None
    r = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view", json=hook_body(pid),
                       headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert r.json() == {"cards": []}


async def _finding(wb, decision_id: str) -> dict | None:
    """The decision's row of cdshooks' read model (``cdshooks_findings``)."""
    async with wb.pools.tx(wb.tenant, readonly=True) as conn:
        row = await conn.fetchrow("SELECT * FROM cdshooks_findings WHERE decision_id = $1", decision_id)
    return dict(row) if row else None


async def projected(wb, decision_id: str, *, task: bool = False) -> dict | None:
    row = await _finding(wb, decision_id)
    return row if row and row["kind"] and (row["task_id"] or not task) else None


async def _projected_action(wb, decision_id: str) -> str | None:
    row = await _finding(wb, decision_id)
    return row["clinician_action"] if row else None


async def _action(wb, decision_id: str) -> str | None:
    return (await wb.ledger.get(wb.tenant, decision_id))["clinician_action"]


async def feedback_events(wb, want: int, timeout: float = 15.0) -> list:
    """The card answers on the tenant's feedback topic (read from the start)."""
    from aiokafka import AIOKafkaConsumer, TopicPartition

    from services.core.events import decode
    from services.core.tenancy import topic_name

    consumer = AIOKafkaConsumer(enable_auto_commit=False, **wb.stack.kafka.client_kwargs())
    await consumer.start()
    tps = [TopicPartition(topic_name(wb.tenant, "feedback"), p) for p in range(4)]
    consumer.assign(tps)
    await consumer.seek_to_beginning(*tps)
    got: list = []
    deadline = time.monotonic() + timeout
    try:
        while len(got) < want and time.monotonic() < deadline:
            for msgs in (await consumer.getmany(timeout_ms=200)).values():
                got += [decode(m.key, m.value, m.headers) for m in msgs]
    finally:
        await consumer.stop()
    return [e for e in got if e.type == "vigil.cdshooks.feedback"]


async def _all_recorded(wb, decision_ids: list[str]) -> bool:
    from services.core.errors import NotFoundError

    for d in decision_ids:
        try:
            await wb.ledger.get(wb.tenant, d)
        except NotFoundError:
            return False
    return True


async def test_a_database_out_of_connections_is_a_503_not_a_500(wb_tenant, cds, monkeypatch):
    """PostgreSQL refusing connections (too many clients) is a temporary 503 the EHR may retry."""
    import asyncpg

    from services.cdshooks import cards

    async def refused(*_args, **_kwargs):
        raise asyncpg.TooManyConnectionsError("sorry, too many clients already")

    monkeypatch.setattr(cards, "open_findings", refused)
    r = await cds.post(f"/{wb_tenant.tenant}/cds-services/irae-patient-view", json=hook_body("p-1"),
                       headers={"Authorization": f"Bearer {token(cds, wb_tenant.tenant)}"})
    assert r.status_code == 503 and r.json()["error"] == "unavailable"
    assert "too many" not in r.text


# ---- the read model: built from the events alone ----------------------------------------------

def _written_event(wb, decision: Event, task_id: str, *, version: str = "1") -> Event:
    """writeback's ``vigil.writeback.task-written`` for ``decision`` (as writeback emits it)."""
    d = decision.data
    return Event.new(contracts.TASK_WRITTEN, source=f"/writeback/{wb.tenant}", tenant=wb.tenant, key=d["patient"],
                     id=str(uuid.uuid4()),
                     data={"decisionId": d["decisionId"], "patient": d["patient"], "kind": d["kind"],
                           "category": d["category"], "grade": d["grade"], "action": "created",
                           "task": {"id": task_id, "versionId": version}, "owner": d["owner"],
                           "noteTime": d.get("noteTime"), "writtenTime": "2026-11-21T08:00:00+00:00",
                           "refs": [f"Task/{task_id}/_history/{version}", f"Provenance/pv-{task_id}/_history/1"]})


def _task_updated(wb, patient: str, task_id: str, status: str, decisions: list[str]) -> Event:
    """ingest's ``vigil.ehr.task-updated``: a clinician set the Task's status in the inbox."""
    return Event.new(contracts.TASK_UPDATED, source=f"/ingest/{wb.tenant}", tenant=wb.tenant, key=patient,
                     id=str(uuid.uuid4()),
                     data={"task": {"id": task_id, "versionId": "2"}, "patient": patient, "status": status,
                           "statusReason": None, "note": None, "lastUpdated": "2026-11-22T09:00:00+00:00",
                           "decisions": decisions, "clinician": "Practitioner/onc-1"})


async def _send(wb, stream: str, events: list[Event]) -> None:
    """Straight onto the tenant's stream (quotes sealed), without touching triage's ledger."""
    async with Publisher(wb.stack, wb.tenant) as pub:
        await pub.publish_many(stream, [await evidence.seal_event(wb.deps.keyring, e) for e in events])


async def _cards(cds, wb, pid: str) -> list[dict]:
    r = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view", json=hook_body(pid),
                       headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert r.status_code == 200, r.text
    return r.json()["cards"]


async def test_cards_come_from_the_events_and_replays_change_nothing(wb_tenant, cds):
    """decision -> task-written -> a card; the clinician's action on the Task -> no card; the same
    events again (same ids, and the same facts under new ids) leave the read model as it was.
    triage's ledger is never written here: the cards do not need it."""
    from services.core.errors import NotFoundError

    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc, kind="routine-task", grade=2)
    did = ev.data["decisionId"]
    async with wb.host(stages=("writeback", "cdshooks-actions", "cdshooks-feedback")):
        await _send(wb, "actions", [ev])
        row = await wb.wait(lambda: projected(wb, did, task=True))
    with pytest.raises(NotFoundError):
        await wb.ledger.get(wb.tenant, did)
    (task,) = await wb.ehr.client.search("Task", {"patient": pid})
    assert row["task_id"] == task["id"] and row["clinician_action"] is None
    (card,) = await _cards(cds, wb, pid)
    assert card["summary"] == "[AI] Possible irAE: colitis, grade 2" and card["indicator"] == "warning"
    assert card["links"][0]["url"] == f"http://ehr.test/inbox/{wb.tenant}/tasks/{task['id']}"
    assert "6-7 watery stools per day" in card["detail"] and "rules-2026.11" in card["detail"]
    assert bytes(row["quote"]) and b"watery" not in bytes(row["quote"])  # sealed at rest

    updated = _task_updated(wb, pid, task["id"], "accepted", [did])
    async with wb.host(stages=("cdshooks-feedback",)):
        await _send(wb, "feedback", [_task_updated(wb, pid, task["id"], "requested", [did]), updated])
        assert await wb.wait(lambda: _projected_action(wb, did)) == "accepted"
    assert await _cards(cds, wb, pid) == []
    before = await _finding(wb, did)

    # replay: the same events (same ids: the runtime takes them once) and the same facts as new
    # events (new ids: the upserts take them once); a later answer does not overwrite the first
    written_again = _written_event(wb, ev, task["id"])
    overridden = _task_updated(wb, pid, task["id"], "rejected", [did])
    sentinel = wb.decision(pid, doc, kind="routine-task", grade=1, n=9)  # same patient: same partition, after
    fresh = dataclasses.replace(ev, id=str(uuid.uuid4()))
    async with wb.host(stages=("cdshooks-actions", "cdshooks-feedback")):
        await _send(wb, "actions", [ev, fresh, sentinel])
        await _send(wb, "feedback", [written_again, written_again, updated, dataclasses.replace(updated, id=str(uuid.uuid4())), overridden,
                                     _task_updated(wb, pid, "sentinel", "accepted", ["sentinel-" + did])])
        await wb.wait(lambda: projected(wb, sentinel.data["decisionId"]))
        await wb.wait(lambda: _finding(wb, "sentinel-" + did))
    assert await _finding(wb, did) == before
    assert await _cards(cds, wb, pid) == []  # the sentinel has no Task


async def test_task_and_answer_before_the_decision_end_as_in_order(wb_tenant, cds):
    """Out of order: a task-written before its decision waits for it (then the card shows); a
    clinician's answer before the decision and its Task keeps the decision from ever showing."""
    wb = wb_tenant
    pid = await patient(wb)
    doc = await wb.note(pid)
    first = wb.decision(pid, doc, kind="urgent-task", grade=3, episode="ep-a")
    second = wb.decision(pid, doc, kind="routine-task", grade=2, category="hepatitis", n=1, episode="ep-b",
                         quote="6-7 watery stools per day")
    async with wb.host(stages=("cdshooks-actions", "cdshooks-feedback")):
        await _send(wb, "feedback", [_task_updated(wb, pid, "task-b", "completed", [second.data["decisionId"]])])
        await wb.wait(lambda: _finding(wb, second.data["decisionId"]))
        await _send(wb, "feedback", [_written_event(wb, first, "task-a"), _written_event(wb, second, "task-b")])
        row = await wb.wait(lambda: _finding(wb, first.data["decisionId"]))
        assert row["task_id"] == "task-a" and row["kind"] is None
        assert await _cards(cds, wb, pid) == []  # a Task without its decision is not a card yet
        await _send(wb, "actions", [first, second])
        await wb.wait(lambda: projected(wb, first.data["decisionId"], task=True))
        await wb.wait(lambda: projected(wb, second.data["decisionId"], task=True))
    (card,) = await _cards(cds, wb, pid)
    assert card["summary"] == "[AI] Possible irAE: colitis, grade 3" and card["indicator"] == "critical"
    assert card["extension"]["vigil-task"] == "Task/task-a"
    assert (await _finding(wb, second.data["decisionId"]))["clinician_action"] == "accepted"


async def test_the_cdshooks_app_runs_its_read_model_stages(wb_tenant, tmp_path):
    """The process's own lifespan starts ``cdshooks-actions`` and ``cdshooks-feedback`` for the
    registry's tenants: events in, card out, with nothing else running; /healthz reports them."""
    wb = wb_tenant
    pem, jwk = new_client_key("ES384")
    (tmp_path / "jwks-app.json").write_text(json.dumps({"keys": [jwk]}))
    wb.registry(cds_client_iss=ISS, cds_jwks_file=str(tmp_path / "jwks-app.json"))
    app = create_app(wb.settings, CdsSettings(0, None, "http://ehr.test"), secrets=wb.deps.secrets, pools=wb.pools)
    pid = await patient(wb)
    doc = await wb.note(pid)
    ev = wb.decision(pid, doc, kind="urgent-task", grade=4)
    async with app.router.lifespan_context(app):
        state = app.state.vigil
        assert sorted(name for _, name in state.stages[0].runners) == ["cdshooks-actions", "cdshooks-feedback"]
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE) as client:
            client.key, client.kid = pem, jwk["kid"]
            assert (await client.get("/healthz")).json() == {"status": "ok"}
            await _send(wb, "actions", [ev])
            await _send(wb, "feedback", [_written_event(wb, ev, "task-app")])
            await wb.wait(lambda: projected(wb, ev.data["decisionId"], task=True))
            (card,) = await _cards(client, wb, pid)
            assert card["extension"]["vigil-task"] == "Task/task-app" and card["indicator"] == "critical"
            await _send(wb, "feedback", [_task_updated(wb, pid, "task-app", "completed", [ev.data["decisionId"]])])
            await wb.wait(lambda: _projected_action(wb, ev.data["decisionId"]))
            assert await _cards(client, wb, pid) == []
    assert app.state.vigil.stages is None
