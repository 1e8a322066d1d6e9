"""The inference service over loopback gRPC: real server, real PostgreSQL and Redis (tenant ACL
users), the rules engine, and the scripted OpenAI-compatible server for the llm and hybrid routes."""
from __future__ import annotations

import json

import grpc
import pytest

from services.core import errors
from services.core.grpc.client import connect
from services.core.grpc.status import error_from_rpc
from services.core.tenancy import Registry, Tenant
from services.core.tokens import TokenSource
from services.inference import app as inference_app
from services.inference.llm.client import RetryPolicy
from services.inference.llm.ledger import Ledger
from tests.fixtures.fake_llm import findings_reply
from vigil.v1 import inference_pb2, inference_pb2_grpc


KEY_ENV = "VIGIL_TEST_LLM_KEY"
NOTE = ("Oncology clinic. Cycle 8 of pembrolizumab.\n"
        "Assessment: grade 2 immune-mediated colitis, improving on prednisone.\n"
        "Plan: continue steroid taper, hold pembrolizumab.\n")
QUIET_NOTE = "Routine follow-up. Tolerating treatment. Vitals stable. Return in three weeks.\n"
COLITIS = {"category": "colitis", "quote": "grade 2 immune-mediated colitis", "attribution": "immunotherapy",
           "grade": 2, "grade_evidence": "grade 2", "confidence": 0.9}


def llm_settings(base_url: str, **extra) -> dict:
    return {"llm_base_url": base_url, "llm_model": "fake-model", "llm_api_key_env": KEY_ENV,
            "llm_price_input_per_mtok": 1.0, "llm_price_output_per_mtok": 2.0, **extra}


@pytest.fixture
async def service(stack, tmp_path, provision, fake_llm, grpc_settings, secrets):
    """Five tenants (PostgreSQL role + Redis ACL user each), one per routing case."""
    ids = {name: await provision() for name in ("rules", "llm", "hybrid", "defer", "fallback")}
    tenants = [
        Tenant(id=ids["rules"], settings={}),
        Tenant(id=ids["llm"], settings={"engine": "llm", **llm_settings(fake_llm.base_url)}),
        Tenant(id=ids["hybrid"], settings={"engine": "hybrid", **llm_settings(fake_llm.base_url)}),
        Tenant(id=ids["defer"], settings={"engine": "llm", **llm_settings(
            fake_llm.base_url, llm_daily_budget_usd=0.0005, llm_over_budget="defer")}),
        Tenant(id=ids["fallback"], settings={"engine": "llm", **llm_settings(
            fake_llm.base_url, llm_daily_budget_usd=0.0005, llm_over_budget="rules")}),
    ]
    registry = Registry(tmp_path / "tenants.toml", tenants)
    registry.save()
    settings = stack.with_overrides(tenants_file=registry.path)
    running = await inference_app.start(settings, grpc_settings, address="127.0.0.1:0",
                                        env={KEY_ENV: "sk-1", "VIGIL_ENV": "test"},
                                        policy=RetryPolicy(backoff_base=0.05, backoff_max=0.2))
    yield running, ids
    await running.stop()


async def extract(running, grpc_settings, as_tenant, **fields):
    tokens = TokenSource(grpc_settings.tokens, sub="extraction")
    request = inference_pb2.ExtractRequest(**{"document_id": "doc-1", "version": "1", "text": NOTE, **fields})
    async with connect(grpc_settings, "inference", tokens, as_tenant, target=f"127.0.0.1:{running.port}") as channel:
        return await inference_pb2_grpc.InferenceStub(channel).Extract(request, timeout=30)


async def test_rules_is_the_default_engine(service, grpc_settings, fake_llm):
    running, ids = service
    reply = await extract(running, grpc_settings, ids["rules"])
    assert reply.engine == "rules" and reply.engine_version.startswith("rules-") and reply.prompt_hash == ""
    assert [(f.category, f.grade) for f in reply.findings] == [("colitis", 2)]
    for f in reply.findings:
        assert NOTE[f.start:f.end] == f.quote
    assert (reply.document_id, reply.version) == ("doc-1", "1") and not fake_llm.requests


async def test_llm_tenant_is_routed_to_its_endpoint(service, grpc_settings, fake_llm):
    running, ids = service
    fake_llm.script(findings_reply([COLITIS]))
    reply = await extract(running, grpc_settings, ids["llm"])
    assert reply.engine == "llm" and reply.engine_version == "fake-model" and len(reply.prompt_hash) == 64
    [f] = reply.findings
    assert NOTE[f.start:f.end] == f.quote and f.grade == 2 and not reply.review_required
    # same note again: served from the tenant's Redis cache, no second HTTP request
    await extract(running, grpc_settings, ids["llm"])
    assert len(fake_llm.requests) == 1


async def test_fabricated_quote_flags_review(service, grpc_settings, fake_llm):
    running, ids = service
    fake_llm.script(findings_reply([COLITIS, {**COLITIS, "category": "hepatitis", "quote": "AST 300"}]))
    reply = await extract(running, grpc_settings, ids["llm"], document_id="doc-fab")
    assert [f.category for f in reply.findings] == ["colitis"]
    assert reply.review_required and reply.dropped_findings == 1


async def test_engine_override_and_bad_override(service, grpc_settings, fake_llm):
    running, ids = service
    reply = await extract(running, grpc_settings, ids["llm"], engine="rules")
    assert reply.engine == "rules" and not fake_llm.requests
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await extract(running, grpc_settings, ids["rules"], engine="gpt")
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_hybrid_sends_only_notes_with_candidates(service, grpc_settings, fake_llm):
    running, ids = service
    quiet = await extract(running, grpc_settings, ids["hybrid"], text=QUIET_NOTE)
    assert quiet.engine == "hybrid" and not quiet.findings and not fake_llm.requests
    fake_llm.script(findings_reply([COLITIS]))
    busy = await extract(running, grpc_settings, ids["hybrid"])
    assert busy.engine == "hybrid" and "llm fake-model" in busy.engine_version and len(fake_llm.requests) == 1
    assert [f.category for f in busy.findings] == ["colitis"]


async def test_budget_exhausted_defer_and_fallback(service, grpc_settings, fake_llm, stack):
    running, ids = service
    fake_llm.script(findings_reply([COLITIS], prompt_tokens=1000), findings_reply([COLITIS], prompt_tokens=1000))
    for tenant in (ids["defer"], ids["fallback"]):
        first = await extract(running, grpc_settings, tenant)       # spends $0.00104 > $0.0005
        assert first.engine == "llm"
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await extract(running, grpc_settings, ids["defer"], document_id="doc-2", text=NOTE + "\n")
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    deferred = error_from_rpc(info.value)
    assert isinstance(deferred, errors.RetryableError) and 0 < deferred.retry_after <= 86400
    fallback = await extract(running, grpc_settings, ids["fallback"], document_id="doc-2", text=NOTE + "\n")
    assert fallback.engine == "rules" and [f.category for f in fallback.findings] == ["colitis"]
    assert len(fake_llm.requests) == 2
    rows = await Ledger(running.pool, running.tenant_pools).rows(ids["defer"])
    assert [(r["document_id"], r["prompt_tokens"], r["outcome"]) for r in rows] == [("doc-1", 1000, "ok")]


@pytest.mark.parametrize("fields, code", [({"version": ""}, grpc.StatusCode.INVALID_ARGUMENT),
                                          ({"document_id": ""}, grpc.StatusCode.INVALID_ARGUMENT),
                                          ({"text": "x" * 1_000_001}, grpc.StatusCode.INVALID_ARGUMENT)])
async def test_bad_requests_are_invalid_argument(service, grpc_settings, fields, code):
    running, ids = service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await extract(running, grpc_settings, ids["rules"], **fields)
    assert info.value.code() == code


async def test_forged_and_unknown_tenants_are_denied(service, grpc_settings, adversary):
    running, ids = service
    with adversary.attempt("inference Extract: request body names another tenant", grpc.aio.AioRpcError) as forged:
        await extract(running, grpc_settings, ids["rules"], tenant=ids["llm"])
    with adversary.attempt("inference Extract: credential for an unregistered tenant", grpc.aio.AioRpcError) as unknown:
        await extract(running, grpc_settings, "nobody-registered")
    assert forged.error.code() == unknown.error.code() == grpc.StatusCode.PERMISSION_DENIED


async def chat(running, grpc_settings, as_tenant, **fields):
    tokens = TokenSource(grpc_settings.tokens, sub="scheduling")
    request = inference_pb2.ChatRequest(**{
        "purpose": "scheduling", "conversation_id": "conv-1",
        "messages": [inference_pb2.ChatMessage(role="system", content="You book follow-ups."),
                     inference_pb2.ChatMessage(role="user", content="Tuesday?")],
        "tools": [inference_pb2.ToolDefinition(name="find_slots", description="d",
                                               parameters_json='{"type": "object", "properties": {}}')],
        **fields})
    async with connect(grpc_settings, "inference", tokens, as_tenant, target=f"127.0.0.1:{running.port}") as channel:
        return await inference_pb2_grpc.InferenceStub(channel).Chat(request, timeout=30)


@pytest.fixture
async def chat_service(stack, tmp_path, provision, fake_llm, grpc_settings):
    ids = {name: await provision() for name in ("chat", "unset")}
    registry = Registry(tmp_path / "tenants.toml", [
        Tenant(id=ids["chat"], settings={"scheduling_llm_base_url": fake_llm.base_url,
                                         "scheduling_llm_model": "chat-model",
                                         "scheduling_llm_price_input_per_mtok": 1.0}),
        Tenant(id=ids["unset"], settings={})])
    registry.save()
    running = await inference_app.start(stack.with_overrides(tenants_file=registry.path), grpc_settings,
                                        address="127.0.0.1:0", env={"VIGIL_ENV": "test"},
                                        policy=RetryPolicy(backoff_base=0.05, backoff_max=0.2))
    yield running, ids
    await running.stop()


async def test_chat_passes_the_turn_through_and_records_it(chat_service, grpc_settings, fake_llm):
    from tests.fixtures.fake_llm import tool_calls_reply

    running, ids = chat_service
    fake_llm.script(tool_calls_reply(("find_slots", {"date_from": "2030-03-05"}), prompt_tokens=70,
                                     completion_tokens=5))
    answer = await chat(running, grpc_settings, ids["chat"])
    assert answer.model == "chat-model" and (answer.prompt_tokens, answer.completion_tokens) == (70, 5)
    [call] = answer.message.tool_calls
    assert call.name == "find_slots" and json.loads(call.arguments) == {"date_from": "2030-03-05"}
    body = fake_llm.requests[-1].body
    assert body["model"] == "chat-model" and body["messages"][1] == {"role": "user", "content": "Tuesday?"}
    assert body["tools"][0]["function"]["name"] == "find_slots"
    [row] = await Ledger(running.pool, running.tenant_pools).rows(ids["chat"])
    assert (row["purpose"], row["document_id"], row["prompt_tokens"], row["outcome"]) == ("scheduling", "conv-1",
                                                                                         70, "ok")
    assert float(row["cost_usd"]) == pytest.approx(70e-6)


@pytest.mark.parametrize("fields, code", [
    ({"purpose": "poetry"}, "bad_purpose"), ({"conversation_id": ""}, "bad_conversation_id"),
    ({"messages": []}, "bad_messages"),
    ({"messages": [inference_pb2.ChatMessage(role="root", content="x")]}, "bad_role"),
    ({"tools": [inference_pb2.ToolDefinition(name="t", parameters_json="{not json")]}, "bad_tools")])
async def test_bad_chat_requests_are_invalid_argument(chat_service, grpc_settings, fake_llm, fields, code):
    running, ids = chat_service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await chat(running, grpc_settings, ids["chat"], **fields)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert dict(info.value.trailing_metadata())["vigil-error-code"] == code
    assert not fake_llm.requests


async def test_chat_for_a_tenant_without_the_setting_fails_without_a_call(chat_service, grpc_settings, fake_llm):
    running, ids = chat_service
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await chat(running, grpc_settings, ids["unset"])
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert dict(info.value.trailing_metadata())["vigil-error-code"] == "llm_not_configured"
    assert "scheduling_llm_base_url" in info.value.details()
    with pytest.raises(grpc.aio.AioRpcError) as forged:
        await chat(running, grpc_settings, ids["unset"], tenant=ids["chat"])
    assert forged.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert not fake_llm.requests
