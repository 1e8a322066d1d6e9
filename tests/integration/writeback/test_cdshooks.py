"""CDS Hooks 2.0: discovery, patient-view cards for open AI findings, feedback as
``vigil.cdshooks.feedback`` events (which triage's ledger and the monitor's labels take in), and
JWT verification of the CDS client (real broker, PostgreSQL, Redis, EHR sandbox)."""
from __future__ import annotations

import json
import time
import uuid

import httpx
import jwt
import pytest

from services.cdshooks.app import create_app
from services.cdshooks.config import CdsSettings
from services.core import evidence
from services.core.fhir import new_client_key
from services.monitor.feedback import card_labels
from tests.integration.writeback.test_writeback import patient, written

BASE = "http://cds.test"
ISS = "https://ehr.example.org"


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
    async with wb.host():
        await wb.publish("actions", [ev])
        await wb.wait(lambda: written(wb, ev.data["decisionId"]))
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
    async with wb.host(stages=("triage-feedback",)):   # triage takes the answer into its ledger
        await wb.wait(lambda: _action(wb, ev.data["decisionId"]))
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
    async with wb.host():
        await wb.publish("actions", list(events))
        await wb.wait(lambda: _all_recorded(wb, [e.data["decisionId"] for e in events]))
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
    async with wb.host(stages=("triage-feedback",)):
        for e in (first, second):
            await wb.wait(lambda e=e: _action(wb, e.data["decisionId"]))
    for e in (first, second):
        assert (await wb.ledger.get(wb.tenant, e.data["decisionId"]))["clinician_action"] == "accepted"
    assert (await wb.ledger.get(wb.tenant, other.data["decisionId"]))["clinician_action"] is None
    r = await cds.post(f"/{wb.tenant}/cds-services/irae-patient-view", json=hook_body(pid),
                       headers={"Authorization": f"Bearer {token(cds, wb.tenant)}"})
    assert r.json() == {"cards": []}


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
