"""The EHR sandbox's OpenAPI document describes every route of the route table, and only those."""
from __future__ import annotations

import pytest

from services.ehr import openapi, routes


def test_every_route_is_documented_once():
    doc = openapi.document(routes.ROUTES)
    documented = {(path, method.upper()) for path, item in doc["paths"].items() for method in item}
    routed = {(path, method) for path, methods, _ in routes.ROUTES for method in methods}
    assert routed <= documented
    assert documented - routed == {(path, "GET") for path in openapi.typed_searches()}
    with pytest.raises(LookupError):
        openapi.document([*routes.ROUTES, ("/nowhere", ["GET"], None)])


def test_limits_in_the_document_follow_the_server():
    doc = openapi.document(routes.ROUTES)
    task = doc["paths"]["/fhir/{tenant}/Task"]["get"]
    names = {p["name"] for p in task["parameters"]}
    assert {"authored-on", "patient", "status", "_count", "_lastUpdated"} <= names
    assert "Task" in doc["components"]["schemas"]["ResourceType"]["enum"]
    count = next(p for p in task["parameters"] if p["name"] == "_count")
    assert count["schema"]["maximum"] == 10**18 - 1
