"""The gRPC plumbing over loopback: credentials, tenant from the credential, health, reflection, TLS."""
from __future__ import annotations

import time

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.core import errors
from services.core.grpc.auth import current_caller
from services.core.grpc.client import connect
from services.core.grpc.server import start_server
from services.core.grpc.settings import GrpcSettings
from services.core.grpc.status import error_from_rpc
from services.core.tokens import TokenSettings, TokenSource, issue
from vigil.v1 import inference_pb2, inference_pb2_grpc

from tests.fixtures.tls import make_self_signed

TEST_KEY = b"k" * 48  # same key as the grpc_settings fixture


class EchoInference(inference_pb2_grpc.InferenceServicer):
    """Answers with the caller's tenant and sub, or raises what the document id asks for."""

    async def Extract(self, request, context):
        caller = current_caller()
        if request.document_id == "missing":
            raise errors.NotFoundError("no such document")
        if request.document_id == "busy":
            raise errors.RetryableError("try later", code="budget_exhausted", retry_after=7.5)
        if request.document_id == "bug":
            raise KeyError("secret note text must not leak")
        return inference_pb2.ExtractResponse(document_id=request.document_id, engine=caller.tenant,
                                             engine_version=caller.sub)


def bindings():
    return [(inference_pb2_grpc.add_InferenceServicer_to_server, EchoInference(),
             inference_pb2.DESCRIPTOR.services_by_name["Inference"].full_name)]


@pytest.fixture
async def server(grpc_settings):
    running = await start_server(bindings(), grpc_settings, "127.0.0.1:0")
    yield running
    await running.stop(None)


def raw_channel(server):
    return grpc.aio.insecure_channel(f"127.0.0.1:{server.port}")


async def call_with_metadata(server, metadata, request=None):
    async with raw_channel(server) as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        return await stub.Extract(request or inference_pb2.ExtractRequest(document_id="d1"), metadata=metadata)


async def test_tenant_comes_from_the_credential(server, grpc_settings, token_source, tenant_id):
    async with connect(grpc_settings, "inference", token_source, tenant_id,
                       target=f"127.0.0.1:{server.port}") as channel:
        reply = await inference_pb2_grpc.InferenceStub(channel).Extract(
            inference_pb2.ExtractRequest(document_id="d1", version="1", text="x"))
    assert reply.engine == tenant_id
    assert reply.engine_version == "extraction"


async def test_request_naming_own_tenant_is_accepted(server, grpc_settings, token_source, tenant_id):
    async with connect(grpc_settings, "inference", token_source, tenant_id,
                       target=f"127.0.0.1:{server.port}") as channel:
        reply = await inference_pb2_grpc.InferenceStub(channel).Extract(
            inference_pb2.ExtractRequest(document_id="d1", tenant=tenant_id))
    assert reply.engine == tenant_id


async def test_forged_tenant_in_body_is_denied(server, grpc_settings, token_source, tenant_id):
    async with connect(grpc_settings, "inference", token_source, tenant_id,
                       target=f"127.0.0.1:{server.port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await inference_pb2_grpc.InferenceStub(channel).Extract(
                inference_pb2.ExtractRequest(document_id="d1", tenant="other-hospital"))
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    err = error_from_rpc(info.value)
    assert isinstance(err, errors.PermissionDeniedError) and err.code == "tenant_mismatch"


@pytest.mark.parametrize("case", ["missing", "not-bearer", "garbage", "expired", "wrong-key", "bad-tenant"])
async def test_bad_credentials_are_unauthenticated(server, grpc_settings, tenant_id, case):
    now = time.time()
    if case == "missing":
        metadata = ()
    elif case == "not-bearer":
        metadata = (("authorization", "Basic dXNlcjpwYXNz"),)
    elif case == "garbage":
        metadata = (("authorization", "Bearer not.a.jwt"),)
    elif case == "expired":
        token = issue(grpc_settings.tokens, sub="extraction", tenant=tenant_id, ttl_seconds=10, now=now - 3600)
        metadata = (("authorization", f"Bearer {token}"),)
    elif case == "wrong-key":
        token = issue(TokenSettings.for_tests(b"z" * 48), sub="extraction", tenant=tenant_id)
        metadata = (("authorization", f"Bearer {token}"),)
    else:
        import jwt
        token = jwt.encode({"sub": "x", "tenant": "../etc", "role": "service", "iss": "vigil",
                            "aud": "vigil-grpc", "exp": int(now) + 60}, TEST_KEY, algorithm="HS256")
        metadata = (("authorization", f"Bearer {token}"),)
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call_with_metadata(server, metadata)
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    assert "Bearer" not in (info.value.details() or "")


async def test_alg_none_token_is_refused(server, tenant_id):
    import jwt
    token = jwt.encode({"sub": "x", "tenant": tenant_id, "role": "service", "iss": "vigil", "aud": "vigil-grpc",
                        "exp": int(time.time()) + 60}, None, algorithm="none")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call_with_metadata(server, (("authorization", f"Bearer {token}"),))
    assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED


async def test_errors_map_to_status_codes(server, grpc_settings, token_source, tenant_id):
    async with connect(grpc_settings, "inference", token_source, tenant_id,
                       target=f"127.0.0.1:{server.port}") as channel:
        stub = inference_pb2_grpc.InferenceStub(channel)
        outcomes = {}
        for doc in ("missing", "busy", "bug"):
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await stub.Extract(inference_pb2.ExtractRequest(document_id=doc))
            outcomes[doc] = info.value
    assert outcomes["missing"].code() == grpc.StatusCode.NOT_FOUND
    assert outcomes["busy"].code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    busy = error_from_rpc(outcomes["busy"])
    assert isinstance(busy, errors.RetryableError) and busy.retry_after == pytest.approx(7.5)
    assert outcomes["bug"].code() == grpc.StatusCode.INTERNAL
    assert "secret" not in outcomes["bug"].details()


async def test_health_and_reflection_answer_without_credentials(server):
    async with raw_channel(server) as channel:
        overall = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(service=""))
        named = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="vigil.v1.Inference"))
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = [r async for r in stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]))]
    assert overall.status == health_pb2.HealthCheckResponse.SERVING
    assert named.status == health_pb2.HealthCheckResponse.SERVING
    services = {s.name for s in responses[0].list_services_response.service}
    assert {"vigil.v1.Inference", "grpc.health.v1.Health"} <= services


async def test_tls_with_self_signed_certificate(tmp_path, tenant_id):
    cert, key = make_self_signed(tmp_path)
    env = {"VIGIL_GRPC_TOKEN_KEY": TEST_KEY.decode(), "VIGIL_GRPC_TLS": "tls", "VIGIL_GRPC_TLS_CERT_FILE": str(cert),
           "VIGIL_GRPC_TLS_KEY_FILE": str(key), "VIGIL_GRPC_TLS_CA_FILE": str(cert)}
    settings = GrpcSettings.from_env(env)
    running = await start_server(bindings(), settings, "127.0.0.1:0")
    try:
        tokens = TokenSource(settings.tokens, sub="extraction")
        async with connect(settings, "inference", tokens, tenant_id, target=f"127.0.0.1:{running.port}") as ch:
            reply = await inference_pb2_grpc.InferenceStub(ch).Extract(inference_pb2.ExtractRequest(document_id="d"))
        assert reply.engine == tenant_id
        # A plaintext client cannot talk to the TLS server.
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.port}") as plain:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await inference_pb2_grpc.InferenceStub(plain).Extract(inference_pb2.ExtractRequest(), timeout=3)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.stop(None)


async def test_mtls_refuses_a_client_without_certificate(tmp_path, tenant_id):
    server_cert, server_key = make_self_signed(tmp_path, "localhost")
    client_dir = tmp_path / "client"
    client_dir.mkdir()
    client_cert, client_key = make_self_signed(client_dir, "extraction")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(server_cert.read_bytes() + client_cert.read_bytes())
    base = {"VIGIL_GRPC_TOKEN_KEY": TEST_KEY.decode(), "VIGIL_GRPC_TLS": "mtls", "VIGIL_GRPC_TLS_CA_FILE": str(bundle)}
    server_settings = GrpcSettings.from_env({**base, "VIGIL_GRPC_TLS_CERT_FILE": str(server_cert),
                                             "VIGIL_GRPC_TLS_KEY_FILE": str(server_key)})
    client_settings = GrpcSettings.from_env({**base, "VIGIL_GRPC_TLS_CERT_FILE": str(client_cert),
                                             "VIGIL_GRPC_TLS_KEY_FILE": str(client_key)})
    running = await start_server(bindings(), server_settings, "127.0.0.1:0")
    try:
        tokens = TokenSource(client_settings.tokens, sub="extraction")
        target = f"127.0.0.1:{running.port}"
        async with connect(client_settings, "inference", tokens, tenant_id, target=target) as ch:
            reply = await inference_pb2_grpc.InferenceStub(ch).Extract(inference_pb2.ExtractRequest(document_id="d"))
        assert reply.engine == tenant_id
        tls_only = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TEST_KEY.decode(), "VIGIL_GRPC_TLS": "tls",
                                          "VIGIL_GRPC_TLS_CA_FILE": str(bundle)})
        async with connect(tls_only, "inference", tokens, tenant_id, target=target) as ch:
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await inference_pb2_grpc.InferenceStub(ch).Extract(inference_pb2.ExtractRequest(), timeout=3)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    finally:
        await running.stop(None)


async def test_plaintext_health_port_beside_an_mtls_server(tmp_path):
    """Kubelet probes reach health in plaintext; the services stay behind mTLS."""
    cert, key = make_self_signed(tmp_path)
    settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_KEY": TEST_KEY.decode(), "VIGIL_GRPC_TLS": "mtls",
                                      "VIGIL_GRPC_TLS_CERT_FILE": str(cert), "VIGIL_GRPC_TLS_KEY_FILE": str(key),
                                      "VIGIL_GRPC_TLS_CA_FILE": str(cert)})
    running = await start_server(bindings(), settings, "127.0.0.1:0", health_address="127.0.0.1:0")
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
            answer = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="vigil.v1.Inference"), timeout=3)
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await inference_pb2_grpc.InferenceStub(channel).Extract(inference_pb2.ExtractRequest(), timeout=3)
        assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await running.stop(None)
    # after stop, the health port reports nothing any more
    async with grpc.aio.insecure_channel(f"127.0.0.1:{running.health_port}") as channel:
        with pytest.raises(grpc.aio.AioRpcError):
            await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=1)


async def test_eddsa_tokens_servers_hold_only_the_public_key(tmp_path, tenant_id):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    private = Ed25519PrivateKey.generate()
    private_file, public_file = tmp_path / "signing.pem", tmp_path / "verify.pem"
    private_file.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                   serialization.NoEncryption()))
    public_file.write_bytes(private.public_key().public_bytes(serialization.Encoding.PEM,
                                                              serialization.PublicFormat.SubjectPublicKeyInfo))
    server_settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_ALG": "EdDSA",
                                             "VIGIL_GRPC_TOKEN_PUBLIC_KEY_FILE": str(public_file)})
    client_settings = GrpcSettings.from_env({"VIGIL_GRPC_TOKEN_ALG": "EdDSA",
                                             "VIGIL_GRPC_TOKEN_PRIVATE_KEY_FILE": str(private_file)})
    with pytest.raises(Exception):
        issue(server_settings.tokens, sub="control", tenant=tenant_id)      # a verifier cannot mint
    running = await start_server(bindings(), server_settings, "127.0.0.1:0")
    try:
        tokens = TokenSource(client_settings.tokens, sub="extraction")
        async with connect(client_settings, "inference", tokens, tenant_id,
                           target=f"127.0.0.1:{running.port}") as channel:
            reply = await inference_pb2_grpc.InferenceStub(channel).Extract(inference_pb2.ExtractRequest())
        assert reply.engine == tenant_id
        # An HS256 token (even with a "key" equal to the public PEM) is refused: no algorithm confusion.
        import jwt
        forged = jwt.encode({"sub": "x", "tenant": tenant_id, "role": "service", "iss": "vigil", "aud": "vigil-grpc",
                             "exp": int(time.time()) + 60}, b"k" * 48, algorithm="HS256")
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await call_with_metadata(running, (("authorization", f"Bearer {forged}"),))
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        await running.stop(None)


async def test_channels_open_one_channel_per_service_and_tenant(server, grpc_settings, tenant_id):
    from services.core.grpc.client import Channels

    channels = Channels(grpc_settings, sub="triage", targets={"inference": f"127.0.0.1:{server.port}"})
    try:
        first = channels.get("inference", tenant_id)
        assert channels.get("inference", tenant_id) is first
        other = channels.get("inference", tenant_id + "b")
        assert other is not first
        replies = [await inference_pb2_grpc.InferenceStub(ch).Extract(inference_pb2.ExtractRequest(document_id="d"))
                   for ch in (first, other)]
        assert [(r.engine, r.engine_version) for r in replies] == [(tenant_id, "triage"), (tenant_id + "b", "triage")]
    finally:
        await channels.close()


async def test_large_messages_pass(server, grpc_settings, token_source, tenant_id):
    text = "x" * (6 * 1024 * 1024)          # above gRPC's 4 MB default
    async with connect(grpc_settings, "inference", token_source, tenant_id,
                       target=f"127.0.0.1:{server.port}") as channel:
        reply = await inference_pb2_grpc.InferenceStub(channel).Extract(
            inference_pb2.ExtractRequest(document_id="d", text=text))
    assert reply.engine == tenant_id
