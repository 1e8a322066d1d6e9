"""bench/roundtrips.py's counting proxy against the EHR sandbox: a SMART client behind it works
unchanged (token audience and fullUrls follow the proxy) and every request is counted per tenant
and kind."""
from __future__ import annotations

import asyncio

from bench.roundtrips import CountingProxies, kind_of, per_note, what_of
from services.core.fhir import FhirClient


def test_requests_are_classified_by_tenant_and_kind():
    assert kind_of("/fhir/acme/auth/token", b"") == ("acme", "token")
    assert kind_of("/fhir/acme/.well-known/smart-configuration", b"") == ("acme", "discovery")
    assert kind_of("/fhir/acme/metadata", b"") == ("acme", "discovery")
    assert kind_of("/fhir/acme/Task", b"") == ("acme", "fhir")
    assert kind_of("/fhir/acme", b"{}") == ("acme", "fhir")
    assert kind_of("/notify/acme", b'{"type": "heartbeat"}') == ("acme", "heartbeat")
    assert kind_of("/notify/acme/r4/DocumentReference", b"{}") == ("acme", "notification")
    assert kind_of("/healthz", b"") == (None, "other")
    assert what_of("GET", "/fhir/acme/DocumentReference/7/_history/2", "") == "GET DocumentReference/{id}/_history/{id}"
    assert what_of("GET", "/fhir/acme/Task", "identifier=x") == "GET Task?"
    assert what_of("POST", "/fhir/acme", "") == "POST /"


async def test_the_proxy_forwards_a_smart_client_and_counts_every_request(ehr_tenant):
    proxies = CountingProxies()
    proxies.start()
    try:
        base = await asyncio.to_thread(proxies.add, "svc", ehr_tenant.base_url.split("/fhir/")[0])
        creds = await ehr_tenant.admin.new_client(ehr_tenant.tenant, "counted", ["system/*.cruds"])
        async with FhirClient(f"{base}/fhir/{ehr_tenant.tenant}", credentials=creds) as client:
            created = await client.create({"resourceType": "Patient", "name": [{"family": "Counted"}]})
            await client.read("Patient", created.id)
            await client.read("Patient", created.id)   # the token is reused: no second grant
        counts = proxies.snapshot()
    finally:
        await asyncio.to_thread(proxies.stop)
    assert counts[("svc", ehr_tenant.tenant, "token")] == 1
    assert counts[("svc", ehr_tenant.tenant, "discovery")] == 2   # metadata + smart-configuration
    assert counts[("svc", ehr_tenant.tenant, "fhir")] == 3
    assert per_note(type(counts)(), counts, ehr_tenant.tenant, 3)["svc"]["fhir"] == 1.0
    assert ehr_tenant.tenant != "other" and per_note(type(counts)(), counts, "other", 3) == {}
