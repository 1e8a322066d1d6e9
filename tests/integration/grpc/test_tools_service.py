"""The tools service over loopback gRPC against the EHR sandbox: each tenant read with its own
SMART client; exact note versions; minimum patient context; cross-tenant reads impossible."""
from __future__ import annotations

import asyncio
import base64
import os
import subprocess
import sys
from pathlib import Path

import grpc
import jwt as pyjwt
import pytest

from services.core.grpc.client import connect
from services.core.tenancy import Registry, Tenant
from services.core.tokens import TokenSource, issue
from services.tools import app as tools_app
from vigil.v1 import tools_pb2, tools_pb2_grpc


REPO = Path(__file__).resolve().parents[3]
TEXT_V1 = "Oncology note, draft. Patient on pembrolizumab.\n"
TEXT_V2 = "Oncology note, signed. Grade 2 immune-mediated colitis — started prednisone 1 mg/kg.\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode()


def doc_ref(patient_id: str, text: str) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "date": "2026-03-02T10:15:00Z",
            "type": {"coding": [{"system": "http://loinc.org", "code": "11506-3", "display": "Progress note"}]},
            "subject": {"reference": f"Patient/{patient_id}"},
            "content": [{"attachment": {"contentType": "text/plain; charset=utf-8", "data": b64(text)}}]}


def med_request(patient_id: str, status: str, **medication) -> dict:
    return {"resourceType": "MedicationRequest", "status": status, "intent": "order",
            "subject": {"reference": f"Patient/{patient_id}"}, "authoredOn": "2026-01-05", **medication}


async def seed(client) -> dict:
    patient = (await client.create({"resourceType": "Patient", "name": [{"family": "Testpatient"}]})).id
    oncologist = (await client.create({"resourceType": "Practitioner", "name": [{"family": "Onco"}]})).id
    nurse = (await client.create({"resourceType": "Practitioner", "name": [{"family": "Nurse"}]})).id
    created = await client.create(doc_ref(patient, TEXT_V1))
    document = created.id
    updated = await client.update({**doc_ref(patient, TEXT_V2), "id": document})
    pembro = (await client.create(med_request(patient, "active", medicationCodeableConcept={
        "text": "Pembrolizumab (Keytruda) 200 mg IV q3w"}))).id
    await client.create(med_request(patient, "active", medicationCodeableConcept={"text": "Ondansetron 8 mg"}))
    await client.create(med_request(patient, "stopped", medicationCodeableConcept={"text": "Nivolumab 240 mg"}))
    ipi_med = (await client.create({"resourceType": "Medication", "code": {"coding": [
        {"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "1094833"}]}})).id
    ipi = (await client.create(med_request(patient, "active",
                                           medicationReference={"reference": f"Medication/{ipi_med}"}))).id
    await client.create({"resourceType": "CareTeam", "status": "active", "subject": {"reference": f"Patient/{patient}"},
                         "participant": [
                             {"role": [{"coding": [{"system": "http://snomed.info/sct", "code": "309295000",
                                                    "display": "Oncologist"}]}],
                              "member": {"reference": f"Practitioner/{oncologist}"}},
                             {"role": [{"text": "Infusion nurse"}], "member": {"reference": f"Practitioner/{nurse}"}}]})
    return {"patient": patient, "document": document, "v1": str(created.version), "v2": str(updated.version),
            "oncologist": oncologist, "pembro": pembro, "ipi": ipi}


@pytest.fixture
async def tools(stack, tmp_path, ehr_tenant, ehr_server, grpc_settings):
    """Two tenants on the sandbox, each with its own read-only SMART client for the tools service."""
    other = ehr_tenant.tenant + "b"
    await ehr_tenant.admin.create_tenant(other)
    tenants = []
    for tenant_id in (ehr_tenant.tenant, other):
        creds = await ehr_tenant.admin.new_client(tenant_id, "vigil-tools", ["system/*.rs"])
        key_file = tmp_path / f"{tenant_id}.pem"
        key_file.write_text(creds.private_key_pem)
        tenants.append(Tenant(id=tenant_id, ehr_base_url=ehr_server.base(tenant_id), settings={
            "fhir_client_id": "vigil-tools", "fhir_private_key_file": str(key_file), "fhir_key_id": creds.kid}))
    registry = Registry(tmp_path / "tenants.toml", tenants)
    registry.save()
    running = await tools_app.start(stack.with_overrides(tenants_file=registry.path), grpc_settings,
                                    address="127.0.0.1:0")
    data = await seed(ehr_tenant.client)
    yield running, ehr_tenant.tenant, other, data
    await running.stop()


async def call(running, grpc_settings, tenant, method, request):
    tokens = TokenSource(grpc_settings.tokens, sub="extraction")
    async with connect(grpc_settings, "tools", tokens, tenant, target=f"127.0.0.1:{running.port}") as channel:
        return await getattr(tools_pb2_grpc.ToolsStub(channel), method)(request, timeout=30)


async def test_get_note_reads_the_exact_version(tools, grpc_settings):
    running, tenant, _, data = tools
    v1 = await call(running, grpc_settings, tenant, "GetNote",
                    tools_pb2.GetNoteRequest(document_id=data["document"], version=data["v1"]))
    v2 = await call(running, grpc_settings, tenant, "GetNote",
                    tools_pb2.GetNoteRequest(document_id=data["document"], version=data["v2"]))
    assert (v1.text, v1.version) == (TEXT_V1, data["v1"])
    assert (v2.text, v2.version) == (TEXT_V2, data["v2"])
    assert v2.patient_id == data["patient"] and v2.note_type == "11506-3" and v2.note_type_display == "Progress note"
    assert v2.note_time == "2026-03-02T10:15:00Z"


async def test_patient_context_has_active_ici_and_oncologists_only(tools, grpc_settings):
    running, tenant, _, data = tools
    ctx = await call(running, grpc_settings, tenant, "GetPatientContext",
                     tools_pb2.GetPatientContextRequest(patient_id=data["patient"]))
    assert sorted((t.drug, t.medication_request_id) for t in ctx.active_immunotherapy) == sorted(
        [("pembrolizumab", data["pembro"]), ("ipilimumab", data["ipi"])])
    assert list(ctx.oncologist_refs) == [f"Practitioner/{data['oncologist']}"]


async def test_unknown_note_version_and_patient_are_not_found(tools, grpc_settings):
    running, tenant, _, data = tools
    for method, request in (("GetNote", tools_pb2.GetNoteRequest(document_id=data["document"], version="99")),
                            ("GetNote", tools_pb2.GetNoteRequest(document_id="nope", version="1")),
                            ("GetPatientContext", tools_pb2.GetPatientContextRequest(patient_id="nope"))):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call(running, grpc_settings, tenant, method, request)
        assert info.value.code() == grpc.StatusCode.NOT_FOUND


async def test_bad_ids_are_invalid_argument(tools, grpc_settings):
    running, tenant, _, data = tools
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call(running, grpc_settings, tenant, "GetNote",
                   tools_pb2.GetNoteRequest(document_id="../Patient/x", version="1"))
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_other_tenant_cannot_read_this_tenants_data(tools, grpc_settings, adversary):
    running, tenant, other, data = tools
    # With its own credential the other tenant reads its own EHR, where these ids do not exist.
    with adversary.attempt("tools GetNote: another tenant's document id", grpc.aio.AioRpcError) as by_id:
        await call(running, grpc_settings, other, "GetNote",
                   tools_pb2.GetNoteRequest(document_id=data["document"], version=data["v2"]))
    assert by_id.error.code() == grpc.StatusCode.NOT_FOUND
    with adversary.attempt("tools GetPatientContext: another tenant's patient id", grpc.aio.AioRpcError) as by_patient:
        await call(running, grpc_settings, other, "GetPatientContext",
                   tools_pb2.GetPatientContextRequest(patient_id=data["patient"]))
    assert by_patient.error.code() == grpc.StatusCode.NOT_FOUND
    # Naming the victim tenant in the body is refused outright.
    for method, request in (
            ("GetPatientContext", tools_pb2.GetPatientContextRequest(patient_id=data["patient"], tenant=tenant)),
            ("GetNote", tools_pb2.GetNoteRequest(document_id=data["document"], version=data["v2"], tenant=tenant))):
        with adversary.attempt(f"tools {method}: request body names another tenant", grpc.aio.AioRpcError) as forged:
            await call(running, grpc_settings, other, method, request)
        assert forged.error.code() == grpc.StatusCode.PERMISSION_DENIED


def _vigil(stack, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_POSTGRES_DSN": stack.postgres_dsn}
    return subprocess.run([sys.executable, "-m", "services.cli", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def _get_note(running, grpc_settings, tenant, data, token: str):
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as channel:
        return await tools_pb2_grpc.ToolsStub(channel).GetNote(
            tools_pb2.GetNoteRequest(document_id=data["document"], version=data["v2"]), timeout=30,
            metadata=(("authorization", f"Bearer {token}"),))


@pytest.mark.parametrize("role", ["operator", "platform-admin"])
async def test_operator_credentials_are_refused_by_tools(tools, grpc_settings, adversary, role):
    running, tenant, _, data = tools
    token = issue(grpc_settings.tokens, sub="ops", tenant=tenant if role == "operator" else "platform", role=role)
    with adversary.attempt(f"tools GetNote: a {role} credential", grpc.aio.AioRpcError) as refused:
        await _get_note(running, grpc_settings, tenant, data, token)
    assert refused.error.code() == grpc.StatusCode.PERMISSION_DENIED


async def test_a_revoked_token_is_refused_on_its_next_call(tools, grpc_settings, stack, adversary):
    running, tenant, _, data = tools
    token = issue(grpc_settings.tokens, sub="extraction", tenant=tenant)
    assert (await _get_note(running, grpc_settings, tenant, data, token)).text == TEXT_V2
    jti = pyjwt.decode(token, options={"verify_signature": False})["jti"]
    revoked = await asyncio.to_thread(_vigil, stack, "token", "revoke", jti)
    assert revoked.returncode == 0 and f"revoked {jti}" in revoked.stdout, revoked.stderr
    with adversary.attempt("tools GetNote: a revoked credential, on its next call", grpc.aio.AioRpcError) as refused:
        await _get_note(running, grpc_settings, tenant, data, token)
    assert refused.error.code() == grpc.StatusCode.UNAUTHENTICATED and "revoked" in refused.error.details()
    other = issue(grpc_settings.tokens, sub="extraction", tenant=tenant)  # a fresh token still works
    assert (await _get_note(running, grpc_settings, tenant, data, other)).text == TEXT_V2
    again = await asyncio.to_thread(_vigil, stack, "token", "revoke", jti)
    assert again.returncode == 0 and "already revoked" in again.stdout


class _Counting:
    """httpx transport counting the FHIR interactions a client sends (not the token grant or metadata)."""

    def __new__(cls):
        import httpx

        class Counting(httpx.AsyncBaseTransport):
            def __init__(self):
                self.inner, self.calls = httpx.AsyncHTTPTransport(), []

            async def handle_async_request(self, request):
                path = request.url.path
                if not (path.endswith("/metadata") or "/auth/" in path or "/.well-known/" in path):
                    self.calls.append(request.method)
                return await self.inner.handle_async_request(request)

            async def aclose(self):
                await self.inner.aclose()

        return Counting()


async def test_patient_context_lookups_are_one_batch_when_the_ehr_declares_it(ehr_tenant):
    """Patient check, active orders and care teams: one ``batch`` Bundle on an EHR that declares
    batch, three requests on one that does not; the same answer either way, NOT_FOUND for an
    unknown patient on both paths."""
    from services.core.errors import NotFoundError
    from services.core.fhir import FhirClient
    from services.core.fhirbatch import supports_batch
    from services.tools.patient_context import GetPatientContext

    data = await seed(ehr_tenant.client)
    creds = await ehr_tenant.admin.new_client(ehr_tenant.tenant, "vigil-tools-counted", ["system/*.rs"])
    transport = _Counting()
    async with FhirClient(ehr_tenant.base_url, credentials=creds, transport=transport) as client:
        assert supports_batch(client.capabilities)
        subject = f"Patient/{data['patient']}"
        batched = await GetPatientContext._lookups(client, data["patient"], subject)
        assert transport.calls == ["POST"]
        declared = client.capabilities
        client.capabilities = {**declared, "rest": [{**r, "interaction": [i for i in r.get("interaction", [])
                                                                           if i.get("code") != "batch"]}
                                                    for r in declared.get("rest", [])]}
        transport.calls.clear()
        single = await GetPatientContext._lookups(client, data["patient"], subject)
        assert transport.calls == ["GET", "GET", "GET"]
        ids = lambda found: sorted(r["id"] for r in found)  # noqa: E731
        assert (ids(batched[0]), ids(batched[1])) == (ids(single[0]), ids(single[1]))
        assert {data["pembro"], data["ipi"]} <= set(ids(batched[0])) and len(batched[1]) == 1
        with pytest.raises(NotFoundError):
            await GetPatientContext._lookups(client, "nope", "Patient/nope")
        client.capabilities = declared
        with pytest.raises(NotFoundError):
            await GetPatientContext._lookups(client, "nope", "Patient/nope")
