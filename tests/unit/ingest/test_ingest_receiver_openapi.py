"""The receiver's OpenAPI document lists exactly its routes, with the headers and errors it sends."""
from __future__ import annotations

import pytest

from services.core.routes import Route
from services.ingest.receiver import auth, openapi

ROUTES = [Route("/notify/{tenant}", ["POST"], None), Route("/notify/{tenant}/r4/{resource_type}", ["POST"], None),
          Route("/notify/{tenant}/r4/{resource_type}/{path_type}/{rid}", ["PUT"], None),
          Route("/healthz", ["GET"], None), Route("/openapi.json", ["GET"], None)]


def test_the_document_lists_exactly_the_routes():
    doc = openapi.document(ROUTES)
    assert {(p, m.upper()) for p, item in doc["paths"].items() for m in item} == {
        (p, m) for p, methods, _ in ROUTES for m in methods}
    with pytest.raises(LookupError):
        openapi.document([*ROUTES, Route("/other", ["GET"], None)])
    with pytest.raises(LookupError):
        openapi.document(ROUTES[:1])


def test_notify_documents_its_auth_and_errors():
    notify = openapi.document(ROUTES)["paths"]["/notify/{tenant}"]["post"]
    assert {"200", "400", "401", "404", "413", "415", "422", "500", "503"} == set(notify["responses"])
    assert "Retry-After" in notify["responses"]["503"]["headers"]
    assert any(p["name"] == auth.SIGNATURE_HEADER for p in notify["parameters"])


def test_r4_notify_documents_its_auth_errors_and_optional_body():
    r4 = openapi.document(ROUTES)["paths"]["/notify/{tenant}/r4/{resource_type}"]["post"]
    assert {"200", "400", "401", "403", "404", "413", "415", "422", "500", "503"} == set(r4["responses"])
    assert r4["requestBody"]["required"] is False and r4["security"] == [{"channelToken": []}]
    assert "WWW-Authenticate" in r4["responses"]["401"]["headers"]
