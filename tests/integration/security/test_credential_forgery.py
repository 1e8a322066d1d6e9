"""gRPC credentials: a caller cannot claim another tenant by forging, altering or re-using a
token, nor by naming another tenant in a request body. (Attempts against the running tools,
inference and control servers join these once those services exist.)"""
from __future__ import annotations

import base64
import json

import jwt
import pytest

from services.core.errors import PermissionDeniedError, UnauthenticatedError
from services.core.grpc.auth import check_request_tenant
from services.core.tokens import AUDIENCE, ISSUER, TokenSettings, issue, verify
from vigil.v1 import inference_pb2, tools_pb2

KEY = b"s" * 48


@pytest.fixture
def tokens() -> TokenSettings:
    return TokenSettings.for_tests(KEY)


def _swap_tenant(token: str, tenant: str) -> str:
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["tenant"] = tenant
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return ".".join((header, forged, signature))


def test_forged_credentials_are_refused(tokens, adversary):
    a, b = "tcredalpha", "tcredbravo"
    good = issue(tokens, sub="extraction", tenant=a)
    assert verify(tokens, good).tenant == a
    claims = {"sub": "extraction", "tenant": b, "role": "service", "iss": ISSUER, "aud": AUDIENCE,
              "iat": 1_700_000_000, "exp": 4_000_000_000}
    attacks = [
        ("grpc-token: tenant claim edited, signature kept", _swap_tenant(good, b)),
        ("grpc-token: token for another tenant signed with a guessed key",
         jwt.encode(claims, b"g" * 48, algorithm="HS256")),
        ("grpc-token: unsigned token (alg none)", jwt.encode(claims, None, algorithm="none")),
        ("grpc-token: token for another audience", jwt.encode({**claims, "aud": "someone-else"}, KEY,
                                                              algorithm="HS256")),
        ("grpc-token: expired token", issue(tokens, sub="extraction", tenant=b, now=1_000_000)),
        ("grpc-token: token without a tenant claim", jwt.encode({k: v for k, v in claims.items() if k != "tenant"},
                                                                KEY, algorithm="HS256")),
        ("grpc-token: tenant claim that is not a tenant id", jwt.encode({**claims, "tenant": "*"}, KEY,
                                                                       algorithm="HS256")),
    ]
    for name, token in attacks:
        with adversary.attempt(name, UnauthenticatedError):
            verify(tokens, token)


def test_request_body_cannot_name_another_tenant(tokens, adversary):
    caller = verify(tokens, issue(tokens, sub="extraction", tenant="tcredalpha"))
    check_request_tenant(tools_pb2.GetNoteRequest(document_id="d1", version="1"), caller)          # no tenant: ok
    check_request_tenant(tools_pb2.GetNoteRequest(document_id="d1", tenant="tcredalpha"), caller)  # own: ok
    for name, request in (
            ("grpc-body: tools.GetNote naming another tenant",
             tools_pb2.GetNoteRequest(document_id="d1", version="1", tenant="tcredbravo")),
            ("grpc-body: tools.GetPatientContext naming another tenant",
             tools_pb2.GetPatientContextRequest(patient_id="p1", tenant="tcredbravo")),
            ("grpc-body: inference.Extract naming another tenant",
             inference_pb2.ExtractRequest(document_id="d1", text="x", tenant="tcredbravo"))):
        with adversary.attempt(name, PermissionDeniedError):
            check_request_tenant(request, caller)
