"""The notification receiver's edge: odd Content-Length values, non-ASCII and huge event numbers and
unexpected failures all get an OperationOutcome, and nothing reaches the handler."""
from __future__ import annotations

import json

import httpx
import pytest

from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.ingest.receiver import auth
from services.ingest.receiver.app import ReceiverContext, create_app
from services.ingest.receiver.notification import BadNotification, parse_notification

SECRETS = SecretSettings.from_env({"VIGIL_ENV": "test"})
TENANT = Tenant(id="tedge", display_name="edge", partitions=1, mode="active")


class RefusingHandler:
    """The receiver's handler seam: any call means a bad request got through."""

    async def handle(self, tenant, note):
        raise AssertionError("a refused request reached the handler")



def notification(since: object, number: object = "1") -> dict:
    params = [{"name": "subscription", "valueReference": {"reference": "Subscription/s1"}},
              {"name": "type", "valueCode": "event-notification"},
              {"name": "events-since-subscription-start", "valueString": since},
              {"name": "notification-event", "part": [{"name": "event-number", "valueString": number}]}]
    return {"resourceType": "Bundle", "type": "history",
            "entry": [{"resource": {"resourceType": "Parameters", "parameter": params}}]}


@pytest.fixture
def client(tmp_path):
    def make(handler) -> httpx.AsyncClient:
        app = create_app(ReceiverContext(Registry(tmp_path / "t.toml", [TENANT]), SECRETS, handler))
        return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, raise_app_exceptions=False),
                                 base_url="http://ingest")
    return make


def headers(body: bytes | str = b"", **extra) -> dict:
    """The tenant's EHR's headers: channel token and the body's signature."""
    raw = body.encode() if isinstance(body, str) else body
    return {"Content-Type": "application/fhir+json", auth.SIGNATURE_HEADER: auth.sign(SECRETS, TENANT.id, raw),
            "Authorization": f"Bearer {auth.channel_token(SECRETS, TENANT.id)}", **extra}


@pytest.mark.parametrize("since,number", [("\u00b2", "1"), ("1", "\u00b2"), ("\u0663", "1"), ("9" * 5000, "1"),
                                          ("1", "9" * 20), (-1, "1"), ("1", 1.5), ("1", True)])
def test_event_numbers_must_be_ascii_whole_numbers(since, number):
    with pytest.raises(BadNotification):
        parse_notification(notification(since, number))


async def test_bad_numbers_and_lengths_are_refused_before_the_handler(client):
    async with client(RefusingHandler()) as http:
        for since in ("\u00b2", "9" * 5000):
            body = json.dumps(notification(since))
            r = await http.post(f"/notify/{TENANT.id}", content=body, headers=headers(body))
            assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome", r.text
        body = b'{"n": ' + b"9" * 5000 + b"}"
        r = await http.post(f"/notify/{TENANT.id}", content=body, headers=headers(body))
        assert r.status_code == 400 and r.json()["resourceType"] == "OperationOutcome"
        for length in (b"\xb2", b"9" * 5000):
            r = await http.post(f"/notify/{TENANT.id}", content=b"{}", headers=headers(**{"Content-Length": length}))
            assert r.status_code == 413 and r.json()["resourceType"] == "OperationOutcome", r.text


async def test_the_document_is_served(client):
    async with client(RefusingHandler()) as http:
        r = await http.get("/openapi.json")
    assert r.status_code == 200 and "/notify/{tenant}" in r.json()["paths"]


async def test_an_unexpected_failure_is_an_outcome_that_closes_the_connection(client, monkeypatch):
    from services.ingest.receiver import app as receiver_app

    def broken(*_args):
        raise RuntimeError("a defect")

    monkeypatch.setattr(receiver_app.auth, "check", broken)
    async with client(RefusingHandler()) as http:
        r = await http.post(f"/notify/{TENANT.id}", content=b"{}", headers=headers())
    assert r.status_code == 500 and r.json()["resourceType"] == "OperationOutcome"
    assert r.headers["connection"] == "close"


@pytest.fixture
def served(tmp_path):
    """The receiver served by uvicorn on a free port (the handler refuses every call)."""
    import socket
    import threading
    import time

    import uvicorn

    app = create_app(ReceiverContext(Registry(tmp_path / "t.toml", [TENANT]), SECRETS, RefusingHandler()))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical", lifespan="off"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    yield sock.getsockname()[1]
    server.should_exit = True
    thread.join(5)
    sock.close()


def test_after_each_refusal_the_keep_alive_connection_still_serves(served, monkeypatch):
    import http.client

    from services.ingest.receiver import app as receiver_app

    conn = http.client.HTTPConnection("127.0.0.1", served, timeout=10)
    good = headers()
    cases = [
        ("/notify/nosuchtenant", good, b"{}", 404),
        (f"/notify/{TENANT.id}", {**good, "Content-Type": "text/plain"}, b"{}", 415),
        (f"/notify/{TENANT.id}", {**good, "Authorization": "Bearer wrong"}, b"{}", 401),
        (f"/notify/{TENANT.id}", good, b"{" * 10, 401),  # signed over another body
        (f"/notify/{TENANT.id}", headers(b"{" * 10), b"{" * 10, 400),
        (f"/notify/{TENANT.id}", headers(json.dumps(notification("\u00b2"))), json.dumps(notification("\u00b2")).encode(),
         400),
        (f"/notify/{TENANT.id}", good, b"x" * (5 * 1024 * 1024 + 1), 413),
        (f"/notify/{TENANT.id}", good, b"{}", 500),
    ]
    for path, sent_headers, body, status in cases:
        if status == 500:
            monkeypatch.setattr(receiver_app.auth, "check", lambda *_: 1 / 0)
        conn.request("POST", path, body=body, headers=sent_headers)
        response = conn.getresponse()
        outcome = json.loads(response.read())
        assert response.status == status and outcome["resourceType"] == "OperationOutcome", (path, status)
        if (response.getheader("connection") or "").lower() == "close":
            conn.close()
        else:
            assert status != 500, "an unexpected failure says Connection: close"
        conn.request("GET", "/healthz")
        again = conn.getresponse()
        assert again.status == 200 and json.loads(again.read())["status"] == "ok", (path, status)
