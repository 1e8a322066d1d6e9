"""gRPC and token settings fail fast; the error-to-status map is one table; tokens verify strictly."""
from __future__ import annotations

import time

import grpc
import pytest

from services.core import errors
from services.core.config import ConfigError
from services.core.grpc.auth import check_request_tenant
from services.core.grpc.settings import GrpcSettings
from services.core.grpc.status import status_of
from services.core.tokens import DEV_HMAC_KEY, TokenSettings, TokenSource, issue, verify
from vigil.v1 import inference_pb2

KEY = "s" * 40


def test_dev_key_is_used_in_dev_and_refused_in_prod():
    assert TokenSettings.from_env({}).is_dev_key
    with pytest.raises(ConfigError, match="VIGIL_ENV=prod"):
        TokenSettings.from_env({"VIGIL_ENV": "prod", "VIGIL_GRPC_TLS": "mtls"})
    with pytest.raises(ConfigError, match="development key"):
        TokenSettings.from_env({"VIGIL_ENV": "prod", "VIGIL_GRPC_TOKEN_KEY": DEV_HMAC_KEY.decode()})


def test_key_sources_and_checks(tmp_path):
    secret = tmp_path / "key"
    secret.write_text(KEY + "\n")
    assert TokenSettings.from_env({"VIGIL_GRPC_TOKEN_KEY_FILE": str(secret)}).signing_key == KEY.encode()
    for env, message in (({"VIGIL_GRPC_TOKEN_KEY": "short"}, "at least 32"),
                         ({"VIGIL_GRPC_TOKEN_KEY_FILE": str(tmp_path / "none")}, "cannot read"),
                         ({"VIGIL_GRPC_TOKEN_ALG": "RS256"}, "VIGIL_GRPC_TOKEN_ALG"),
                         ({"VIGIL_GRPC_TOKEN_ALG": "EdDSA"}, "PUBLIC_KEY_FILE"),
                         ({"VIGIL_GRPC_TOKEN_TTL": "5"}, "VIGIL_GRPC_TOKEN_TTL")):
        with pytest.raises(ConfigError, match=message):
            TokenSettings.from_env(env)


def test_grpc_settings():
    settings = GrpcSettings.from_env({"VIGIL_GRPC_TOOLS_ADDR": "tools.svc:7000", "VIGIL_GRPC_HEALTH_PORT": "50052"})
    assert settings.address("tools") == "tools.svc:7000" and settings.address("inference") == "127.0.0.1:50061"
    assert settings.health_port == 50052 and settings.server_credentials() is None
    for env, message in (({"VIGIL_ENV": "prod", "VIGIL_GRPC_TOKEN_KEY": KEY}, "refused when VIGIL_ENV=prod"),
                         ({"VIGIL_GRPC_TLS": "mtls"}, "VIGIL_GRPC_TLS_CERT_FILE is required"),
                         ({"VIGIL_GRPC_TLS": "yes"}, "VIGIL_GRPC_TLS"),
                         ({"VIGIL_GRPC_TOOLS_ADDR": "tools"}, "HOST:PORT"),
                         ({"VIGIL_GRPC_HEALTH_PORT": "x"}, "VIGIL_GRPC_HEALTH_PORT")):
        with pytest.raises(ConfigError, match=message):
            GrpcSettings.from_env(env)
    with pytest.raises(ConfigError, match="VIGIL_GRPC_CONTROL2_ADDR"):
        settings.address("control2")


def test_status_map():
    cases = [(errors.UnauthenticatedError(), grpc.StatusCode.UNAUTHENTICATED),
             (errors.PermissionDeniedError(), grpc.StatusCode.PERMISSION_DENIED),
             (errors.NotFoundError(), grpc.StatusCode.NOT_FOUND),
             (errors.ConflictError(), grpc.StatusCode.FAILED_PRECONDITION),
             (errors.ValidationError(), grpc.StatusCode.INVALID_ARGUMENT),
             (errors.RetryableError(), grpc.StatusCode.UNAVAILABLE),
             (errors.RetryableError(code="timeout"), grpc.StatusCode.DEADLINE_EXCEEDED),
             (errors.RetryableError(code="http_429"), grpc.StatusCode.RESOURCE_EXHAUSTED),
             (errors.FatalError(), grpc.StatusCode.INTERNAL),
             (KeyError("x"), grpc.StatusCode.INTERNAL),
             (TimeoutError(), grpc.StatusCode.DEADLINE_EXCEEDED)]
    for exc, status in cases:
        assert status_of(exc) == status, exc


def test_tokens_round_trip_and_strictness():
    settings = TokenSettings.for_tests(KEY.encode())
    token = issue(settings, sub="extraction", tenant="tenant-a")
    claims = verify(settings, token)
    assert (claims.sub, claims.tenant, claims.role) == ("extraction", "tenant-a", "service")
    with pytest.raises(ValueError):
        issue(settings, sub="x", tenant="tenant-a", role="root")
    with pytest.raises(errors.UnauthenticatedError, match="expired"):
        verify(settings, issue(settings, sub="x", tenant="tenant-a", ttl_seconds=10, now=time.time() - 600))
    with pytest.raises(errors.UnauthenticatedError, match="signature"):
        verify(TokenSettings.for_tests(b"t" * 40), token)
    source = TokenSource(settings, "extraction")
    assert source.token("tenant-a") == source.token("tenant-a") != source.token("tenant-b")


def test_request_tenant_check():
    claims = verify(TokenSettings.for_tests(KEY.encode()),
                    issue(TokenSettings.for_tests(KEY.encode()), sub="x", tenant="tenant-a"))
    check_request_tenant(inference_pb2.ExtractRequest(), claims)
    check_request_tenant(inference_pb2.ExtractRequest(tenant="tenant-a"), claims)
    with pytest.raises(errors.PermissionDeniedError):
        check_request_tenant(inference_pb2.ExtractRequest(tenant="tenant-b"), claims)



def test_verified_credentials_are_cached_but_still_expire(monkeypatch):
    from services.core.grpc import auth as vigil_grpc

    settings = TokenSettings.for_tests(KEY.encode(), ttl_seconds=60)
    interceptor = vigil_grpc.AuthInterceptor(settings)
    metadata = (("authorization", "Bearer " + issue(settings, sub="x", tenant="tenant-a")),)
    first = interceptor._authenticate(metadata)
    calls = []

    def verify_again(*args):
        calls.append(args)
        raise errors.UnauthenticatedError("credential expired", code="token_expired")

    monkeypatch.setattr(vigil_grpc, "verify", verify_again)
    assert interceptor._authenticate(metadata) is first and calls == []        # served from the cache
    later = time.time() + 60 + 31                                              # past exp + clock skew
    monkeypatch.setattr(vigil_grpc.time, "time", lambda: later)
    with pytest.raises(errors.UnauthenticatedError, match="expired"):
        interceptor._authenticate(metadata)
    assert len(calls) == 1                                                     # verified afresh, refused


def test_token_issue_defaults_to_one_hour_and_names_the_jti(monkeypatch):
    import jwt as pyjwt
    from typer.testing import CliRunner

    from services.cli import app
    from services.core.grpc.auth import DEFAULT_ROLES

    monkeypatch.setenv("VIGIL_GRPC_TOKEN_KEY", "k" * 48)
    result = CliRunner().invoke(app, ["token", "issue", "--tenant", "tacme", "--sub", "oncall"])
    assert result.exit_code == 0, result.stderr
    claims = pyjwt.decode(result.stdout.strip(), options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == 3600 and claims["role"] == "operator"
    assert f"jti {claims['jti']}" in result.stderr
    assert DEFAULT_ROLES == ("service",)
