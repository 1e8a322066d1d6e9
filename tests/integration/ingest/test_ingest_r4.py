"""Classic R4 criteria rest-hook notifications end to end: sandbox write -> R4 rest-hook (the resource
or an empty body) -> the receiver's /notify/<t>/r4/<Type> -> the tenant's ehr-events topic; duplicates,
out-of-order versions and a wrong token publish nothing; a lost notification is found by the watchdog's
_lastUpdated catch-up search."""
from __future__ import annotations

import asyncio
import base64
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import uvicorn

from services.core.integration import parse as parse_profile
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry
from services.ingest.receiver.app import ReceiverContext, create_app
from services.ingest.receiver import auth
from services.ingest.receiver.auth import channel_header, channel_token
from services.ingest.receiver.watchdog import Watchdog
from services.ingest.subscribe import R4_CRITERIA, ensure_r4_subscriptions
from tests.fixtures.ports import free_port

pytestmark = pytest.mark.integration
REPO = Path(__file__).resolve().parents[3]
R4_PROFILE = {"family": "fhir-server", "triggers": ["r4-criteria"], "note_sources": ["ehr-fhir"],
              "results": ["fhir"]}


class R4Setup:
    """The ingest fixture's tenant with an r4-criteria profile, its receiver on a free port and a watchdog."""

    def __init__(self, ingest, secrets, tmp_path):
        self.ingest, self.secrets = ingest, secrets
        self.tenant = replace(ingest.tenant, integration=parse_profile(ingest.tenant.id, R4_PROFILE))
        self.registry = Registry(tmp_path / "tenants.toml", [self.tenant])
        self.app = create_app(ReceiverContext(self.registry, secrets, ingest.handler))
        self.port = free_port()
        self.watchdog = Watchdog(self.registry, ingest.pools, ingest.handler, ingest.directory)
        self.server = None
        self.task = None

    @property
    def notify_base(self) -> str:
        return f"http://127.0.0.1:{self.port}/notify/{self.tenant.id}"

    async def start(self) -> None:
        # the EHR signs the tenant's notifications (the default notify_auth is "signature")
        await self.ingest.ehr.admin.set_notify_secret(self.tenant.id, auth.signing_secret(self.secrets, self.tenant.id))
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                                    access_log=False, lifespan="off"))
        self.task = asyncio.create_task(self.server.serve())
        while not self.server.started:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task

    async def subscribe(self, *, payload: bool) -> str:
        rows = await ensure_r4_subscriptions(self.ingest.ehr.client, self.notify_base,
                                             channel_header(self.secrets, self.tenant.id), [R4_CRITERIA[0]],
                                             payload=payload)
        assert rows[0]["action"] == "created" and rows[0]["status"] == "active"
        await self.watchdog.prime()  # as the service does at start: the checkpoint begins now
        return rows[0]["id"]

    async def post(self, body: bytes, token: str | None = "valid", rtype: str = "DocumentReference",
                   put_id: str | None = None, signed: bool = True):
        """POST to the type's endpoint, or (``put_id``) PUT to ``<endpoint>/<Type>/<id>`` as HAPI FHIR does;
        signed as the EHR signs unless ``signed`` is false."""
        headers = {"Content-Type": "application/fhir+json"}
        if signed:
            headers[auth.SIGNATURE_HEADER] = auth.sign(self.secrets, self.tenant.id, body)
        if token == "valid":
            headers["Authorization"] = f"Bearer {channel_token(self.secrets, self.tenant.id)}"
        elif token is not None:
            headers["Authorization"] = f"Bearer {token}"
        url = f"{self.notify_base}/r4/{rtype}"
        async with httpx.AsyncClient() as http:
            if put_id is not None:
                return await http.put(f"{url}/{rtype}/{put_id}", content=body, headers=headers)
            return await http.post(url, content=body, headers=headers)


@pytest.fixture
async def r4(ingest, secrets, tmp_path):
    setup = R4Setup(ingest, secrets, tmp_path)
    await setup.start()
    yield setup
    await setup.stop()


def note(patient: str, text: str) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain", "data": base64.b64encode(text.encode()).decode()}}]}


async def events_for(ingest, want: int, timeout: float = 30.0) -> list:
    """The ehr-events of the tenant once ``want`` arrived (or what arrived by the deadline), plus any extra
    that arrive within a settle second (so a duplicate would be seen)."""
    return await ingest.events(want=want, timeout=timeout, settle=1.0)


def versions(events) -> list[tuple[str, str]]:
    return sorted((e.data["id"], e.data["versionId"]) for e in events)


@pytest.mark.parametrize("payload", [True, False], ids=["full-resource", "empty-body"])
async def test_a_note_reaches_ehr_events_through_an_r4_rest_hook(ingest, r4, payload):
    client = ingest.ehr.client
    await r4.subscribe(payload=payload)
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    doc = (await client.create(note(patient, "pembrolizumab cycle 3, new rash"))).resource
    # An empty notification is answered by a search, which sees the current version only: the update
    # waits for the first version's event, so both versions are there to be seen.
    assert versions(await events_for(ingest, 1)) == [(doc["id"], "1")]
    amended = (await client.update({**doc, "docStatus": "amended"})).resource
    events = await events_for(ingest, 2)
    assert versions(events) == [(doc["id"], "1"), (doc["id"], "2")] and amended["meta"]["versionId"] == "2"
    assert all(e.data["origin"] == "subscription" and e.key == patient for e in events)
    assert {e.data["action"] for e in events} == {"create", "update"}


async def test_duplicates_and_out_of_order_versions_publish_nothing_more(ingest, r4):
    client = ingest.ehr.client
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    # Written before any Subscription exists: only the POSTs below notify the receiver.
    v1 = (await client.create(note(patient, "first"))).resource
    v2 = (await client.update({**v1, "docStatus": "amended"})).resource
    answers = []
    for body in (v2, v2, v1, v2):
        response = await r4.post(json.dumps(body).encode())
        assert response.status_code == 200, response.text
        answers.append(response.json()["issue"][0]["diagnostics"])
    assert "published=1" in answers[0]
    assert all("published=0" in a for a in answers[1:])
    assert "duplicates=1" in answers[1] and "ignored=1" in answers[2]  # a repeat; an older version
    events = await events_for(ingest, 1, timeout=5)
    assert versions(events) == [(v1["id"], "2")]


async def test_the_hapi_fhir_put_form_is_accepted_once(ingest, r4):
    client = ingest.ehr.client
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    doc = (await client.create(note(patient, "put form"))).resource
    body = json.dumps(doc).encode()
    wrong = await r4.post(body, put_id="another-id")
    assert wrong.status_code == 400 and wrong.json()["issue"][0]["diagnostics"].startswith("id")
    assert (await r4.post(b"", put_id=doc["id"])).status_code == 400  # a PUT carries the resource
    first, again = await r4.post(body, put_id=doc["id"]), await r4.post(body, put_id=doc["id"])
    assert first.status_code == again.status_code == 200
    assert "published=1" in first.json()["issue"][0]["diagnostics"]
    assert "duplicates=1" in again.json()["issue"][0]["diagnostics"]
    assert (await r4.post(body, put_id=doc["id"], token="nope")).status_code == 401
    assert versions(await events_for(ingest, 1, timeout=5)) == [(doc["id"], "1")]


async def test_a_lost_notification_is_recovered_by_the_catch_up_search(ingest, r4, admin_pool):
    client, tenant = ingest.ehr.client, r4.tenant.id
    sub = await r4.subscribe(payload=True)
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    first = (await client.create(note(patient, "first"))).resource
    assert versions(await events_for(ingest, 1)) == [(first["id"], "1")]

    await ingest.ehr.admin.set_faults(tenant, drop_notifications=True)
    lost = (await client.create(note(patient, "lost"))).resource

    async def dropped() -> bool:  # the sandbox counted the event as sent (and never sent it)
        row = await admin_pool.fetchrow("SELECT delivered_through FROM ehr_sub_state WHERE tenant=$1 AND id=$2",
                                        tenant, sub)
        return row is not None and row["delivered_through"] >= 2
    deadline = asyncio.get_running_loop().time() + 20
    while not await dropped():
        assert asyncio.get_running_loop().time() < deadline, "the sandbox did not process the event"
        await asyncio.sleep(0.1)
    await ingest.ehr.admin.clear_faults(tenant)
    after = (await client.create(note(patient, "after"))).resource
    events = await events_for(ingest, 2)
    assert versions(events) == sorted([(first["id"], "1"), (after["id"], "1")])  # the lost one is missing

    reports = await r4.watchdog.check_tenant(tenant)
    notes = next(r for r in reports if r["subscription"] == "r4:DocumentReference")
    assert notes["recovered"] == 1
    events = await events_for(ingest, 3)
    assert versions(events) == sorted([(first["id"], "1"), (lost["id"], "1"), (after["id"], "1")])
    again = await r4.watchdog.check_tenant(tenant)  # a second round finds nothing new
    assert next(r for r in again if r["subscription"] == "r4:DocumentReference")["recovered"] == 0


async def test_a_wrong_or_missing_channel_token_is_401_and_publishes_nothing(ingest, r4):
    client = ingest.ehr.client
    patient = (await client.create({"resourceType": "Patient"})).resource["id"]
    doc = (await client.create(note(patient, "x"))).resource
    for token in ("not-the-token", channel_token(r4.secrets, "someothertenant"), None):
        response = await r4.post(json.dumps(doc).encode(), token=token)
        assert response.status_code == 401
        assert response.headers["content-type"].startswith("application/fhir+json")
        body = response.json()
        assert body["resourceType"] == "OperationOutcome" and body["issue"][0]["code"] == "login"
    unsigned = await r4.post(json.dumps(doc).encode(), signed=False)  # the token alone, as any FHIR reader has it
    assert unsigned.status_code == 401 and "signature" in unsigned.json()["issue"][0]["diagnostics"]
    bad = await r4.post(b'{"resourceType": "Task", "id": "x", "meta": {"versionId": "1"}}')
    assert bad.status_code == 400 and bad.json()["issue"][0]["diagnostics"].startswith("resourceType")
    assert (await r4.post(b"{}", rtype="Observation")).status_code == 404
    assert await ingest.events(want=1, timeout=2, settle=0) == []


async def test_a_tenant_without_the_r4_trigger_is_refused(ingest, secrets, tmp_path):
    app = create_app(ReceiverContext(ingest.registry, secrets, ingest.handler))  # the default profile
    token = {"Authorization": f"Bearer {channel_token(secrets, ingest.tenant.id)}",
             auth.SIGNATURE_HEADER: auth.sign(secrets, ingest.tenant.id, b"")}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://ingest") as http:
        response = await http.post(f"/notify/{ingest.tenant.id}/r4/DocumentReference", content=b"", headers=token)
    assert response.status_code == 403 and response.json()["issue"][0]["code"] == "forbidden"


def _subscribe_cli(tenants_file: Path, tenant: str, ehr_url: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(tenants_file), "VIGIL_EHR_URL": ehr_url}
    return subprocess.run([sys.executable, "-m", "services.cli", "subscribe", "--tenant", tenant], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=120)


async def test_vigil_subscribe_makes_none_for_an_epic_like_profile(tmp_path, ehr_server):
    tenants = tmp_path / "tenants.toml"
    tenants.write_text('[tenants.epicsite]\nmode = "silent"\n\n[tenants.epicsite.integration]\nfamily = "epic-like"\n'
                       'triggers = ["hl7v2-feed", "patient-poll"]\nwatch_list = "checkpoint-inhibitors"\n'
                       'note_sources = ["ehr-fhir", "document-store"]\nresults = ["cds-hooks"]\nehr_accepts = []\n')
    done = await asyncio.to_thread(_subscribe_cli, tenants, "epicsite", ehr_server.url)
    assert done.returncode == 0, done.stderr
    out = " ".join(done.stdout.split())
    assert "no Subscriptions to make" in out and "epic-like" in out and "hl7v2-feed, patient-poll" in out


async def test_vigil_subscribe_creates_then_keeps_the_r4_subscriptions(tmp_path, ehr_tenant):
    """The CLI in its own process, against the sandbox, for a tenant whose profile names r4-criteria."""
    creds, tenant = ehr_tenant.credentials, ehr_tenant.tenant
    key = tmp_path / "ehr.pem"
    key.write_text(creds.private_key_pem)
    tenants = tmp_path / "tenants.toml"
    tenants.write_text(f'[tenants.{tenant}]\nmode = "silent"\n\n[tenants.{tenant}.settings]\n'
                       f'ehr_client_id = "{creds.client_id}"\nehr_private_key_file = "{key}"\n'
                       f'ehr_key_id = "{creds.kid}"\n\n[tenants.{tenant}.integration]\nfamily = "fhir-server"\n'
                       'triggers = ["r4-criteria"]\nnote_sources = ["ehr-fhir"]\nresults = ["fhir"]\n')
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(tenants), "VIGIL_EHR_URL": ehr_tenant.server.url,
           "VIGIL_INGEST_PUBLIC_URL": "https://ingest.example.org", "COLUMNS": "200"}

    def run() -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli", "subscribe", "--tenant", tenant], cwd=REPO,
                              env=env, capture_output=True, text=True, timeout=120)
    try:
        first = await asyncio.to_thread(run)
        assert first.returncode == 0, first.stderr
        subs = await ehr_tenant.client.search("Subscription")
        assert sorted(s["criteria"] for s in subs) == sorted(c.criteria for c in R4_CRITERIA)
        for sub in subs:
            rtype = sub["criteria"].split("?")[0]
            assert sub["status"] == "active" and sub["channel"]["payload"] == "application/fhir+json"
            assert sub["channel"]["endpoint"] == f"https://ingest.example.org/notify/{tenant}/r4/{rtype}"
            # the CLI's process reads the same environment: the same derived channel token
            assert sub["channel"]["header"] == [channel_header(SecretSettings.from_env(), tenant)]
        assert first.stdout.count("created") == len(R4_CRITERIA)
        second = await asyncio.to_thread(run)
        assert second.returncode == 0 and second.stdout.count("created") == 0
        assert len(await ehr_tenant.client.search("Subscription")) == len(R4_CRITERIA)
    finally:
        for sub in await ehr_tenant.client.search("Subscription"):
            await ehr_tenant.client.delete("Subscription", sub["id"])
