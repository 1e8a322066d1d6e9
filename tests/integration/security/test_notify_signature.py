"""Notifications to ingest are authenticated by something a FHIR reader cannot learn.

A SMART client allowed to read Subscriptions reads the channel header's bearer token straight out
of the tenant's Subscription. With the default ``notify_auth = "signature"``, that token alone is
401 and publishes nothing: a notification also needs an HMAC of its body under the tenant's
signing secret, which lives in the EHR's admin configuration, not in the resource. The sandbox
signs its deliveries with it (a note written to the EHR arrives and is published); key rotation
accepts two generations at once; ``notify_auth = "header-token"`` is the explicit fallback for an
EHR that cannot sign."""
from __future__ import annotations

import base64
import dataclasses
import json

import httpx

from services.ingest.receiver import auth
from services.ingest.subscribe import TOPICS, ensure_subscriptions
from tests.integration.ingest.conftest import ingest, ingest_admin  # noqa: F401  (fixtures)
from tests.integration.ingest.notify import notification
from tests.integration.ingest.test_ingest_e2e import receiver, wait_for  # noqa: F401  (fixture, helper)


def _note(patient: str) -> dict:
    return {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": f"Patient/{patient}"},
            "content": [{"attachment": {"contentType": "text/plain",
                                        "data": base64.b64encode(b"Signed delivery note.").decode()}}]}


def _settings(ingest, **settings) -> None:
    tenant = ingest.registry.get(ingest.tenant.id)
    ingest.registry.put(dataclasses.replace(tenant, settings={**tenant.settings, **settings}))


async def test_a_token_read_from_the_subscription_is_not_enough(ingest, receiver, secrets, adversary):  # noqa: F811
    t, client = ingest.tenant.id, ingest.ehr.client
    await ingest.ehr.admin.set_notify_secret(t, auth.signing_secret(secrets, t))
    [row] = await ensure_subscriptions(client, f"http://127.0.0.1:{receiver.port}/notify/{t}",
                                       auth.channel_header(secrets, t), [TOPICS[0]])

    async def active():
        return (await client.read("Subscription", row["id"])).get("status") == "active"
    assert await wait_for(active), "the sandbox's signed handshake was refused"
    patient = (await client.create({"resourceType": "Patient", "name": [{"family": "Signedpatient"}]})).id
    doc = (await client.create(_note(patient))).resource

    async def published():
        found = await ingest.events(want=1, timeout=1, settle=0)
        return found or None
    (event,) = await wait_for(published)
    assert event.data["id"] == doc["id"]  # the sandbox's signed delivery was accepted and published

    # a SMART client that may only read Subscriptions learns the channel header ...
    reader = await ingest.ehr.new_client("subscription-reader", ["system/Subscription.rs"])
    header = (await reader.read("Subscription", row["id"]))["channel"]["header"][0]
    assert header == auth.channel_header(secrets, t)
    name, _, value = header.partition(": ")
    forged = json.dumps(notification(row["id"], "event-notification", since=5, events=[(5, doc)],
                                     content="id-only")).encode()
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{receiver.port}", timeout=15) as http:
        # ... and with it alone (no signature, or a wrong one) its notification is refused
        for what, extra in (("no signature", {}),
                            ("a signature under a guessed key", {auth.SIGNATURE_HEADER: auth.sign_with("guess" * 8,
                                                                                                      forged)}),
                            ("a signature over another body", {auth.SIGNATURE_HEADER: auth.sign(secrets, t, b"{}")}),
                            ("a malformed Medplum-style signature", {auth.MEDPLUM_SIGNATURE_HEADER: "00"})):
            response = await http.post(f"/notify/{t}", content=forged, headers={
                name: value, "Content-Type": "application/fhir+json", **extra})
            adversary.check(f"ingest: notification with the Subscription's channel token and {what}",
                            response.status_code == 401, f"HTTP {response.status_code}")
    assert await ingest.events(want=2, timeout=2, settle=0) == [event], "a refused notification published nothing"


async def test_rotation_accepts_two_generations_then_only_the_new_one(ingest, receiver, secrets):  # noqa: F811
    t = ingest.tenant.id
    body = json.dumps(notification("sub-rot", "heartbeat", since=0)).encode()
    base = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {auth.channel_token(secrets, t)}"}

    async def status(generation: int | None = None, header: str = auth.SIGNATURE_HEADER) -> int:
        extra = {}
        if generation is not None:
            signed = auth.sign(secrets, t, body, generation)
            extra = {header: signed if header == auth.SIGNATURE_HEADER else signed.split("=", 1)[1]}
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{receiver.port}", timeout=15) as http:
            return (await http.post(f"/notify/{t}", content=body, headers={**base, **extra})).status_code

    assert (await status(1), await status(2), await status(None)) == (200, 401, 401)
    _settings(ingest, notify_signing_keys=[2, 1])  # rotation under way: the EHR may hold either secret
    assert (await status(1), await status(2), await status(2, auth.MEDPLUM_SIGNATURE_HEADER)) == (200, 200, 200)
    _settings(ingest, notify_signing_keys=[2])  # rotation done
    assert (await status(1), await status(2)) == (401, 200)
    assert auth.signing_secret(secrets, t, 1) != auth.signing_secret(secrets, t, 2)
    _settings(ingest, notify_signing_keys=["two"])  # a malformed setting is named, never guessed
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{receiver.port}", timeout=15) as http:
        refused = await http.post(f"/notify/{t}", content=body, headers={**base})
    assert refused.status_code == 503 and "notify_signing_keys" in refused.text


async def test_header_token_mode_is_an_explicit_per_tenant_fallback(ingest, receiver, secrets):  # noqa: F811
    t = ingest.tenant.id
    body = json.dumps(notification("sub-ht", "heartbeat", since=0)).encode()
    headers = {"Content-Type": "application/fhir+json", "Authorization": f"Bearer {auth.channel_token(secrets, t)}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{receiver.port}", timeout=15) as http:
        assert (await http.post(f"/notify/{t}", content=body, headers=headers)).status_code == 401
        _settings(ingest, notify_auth="header-token")  # an EHR that cannot sign: token + network controls
        assert (await http.post(f"/notify/{t}", content=body, headers=headers)).status_code == 200
        wrong = {**headers, auth.SIGNATURE_HEADER: "sha256=" + "0" * 64}
        assert (await http.post(f"/notify/{t}", content=body, headers=wrong)).status_code == 401  # still checked
        _settings(ingest, notify_auth="none")
        assert (await http.post(f"/notify/{t}", content=body, headers=headers)).status_code == 503


async def test_the_sandbox_admin_api_never_returns_the_secret(ingest, secrets):
    t = ingest.tenant.id
    secret = auth.signing_secret(secrets, t)
    set_ = await ingest.ehr.admin.set_notify_secret(t, secret)
    got = await ingest.ehr.admin.notify_secret(t)
    assert set_ == got and got["set"] is True and secret not in json.dumps(got)
    subs = await ingest.ehr.client.search("Subscription", {"_count": "100"})
    assert secret not in json.dumps(subs)


async def test_notify_key_commands_print_and_configure_the_secret(ingest, secrets, tmp_path):
    """`vigil notify-key show | sandbox`, each in its own process."""
    import asyncio
    import os
    import subprocess
    import sys
    from pathlib import Path

    t, server = ingest.tenant.id, ingest.ehr.server
    ingest.registry.save()  # the CLI reads the registry file (notify_signing_keys: the default [1])
    env = {**os.environ, "VIGIL_TENANTS_FILE": str(ingest.registry.path), "VIGIL_EHR_URL": server.url,
           "VIGIL_EHR_ADMIN_SECRET": server.admin_secret, "VIGIL_ENV": "test"}
    env.pop("VIGIL_MASTER_KEY", None)
    env.pop("VIGIL_MASTER_KEY_FILE", None)

    def vigil(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "services.cli", "notify-key", *args], env=env,
                              cwd=Path(__file__).resolve().parents[3], capture_output=True, text=True, timeout=120)

    shown = await asyncio.to_thread(vigil, "show", "--tenant", t)
    assert shown.returncode == 0, shown.stderr
    assert shown.stdout.strip() == auth.signing_secret(secrets, t) and "generation 1" in shown.stderr
    second = await asyncio.to_thread(vigil, "show", "--tenant", t, "--generation", "2")
    assert second.stdout.strip() == auth.signing_secret(secrets, t, 2)
    pushed = await asyncio.to_thread(vigil, "sandbox", "--tenant", t)
    assert pushed.returncode == 0, pushed.stderr
    assert (await ingest.ehr.admin.notify_secret(t))["fingerprint"] in pushed.stdout
    bad = await asyncio.to_thread(vigil, "show", "--tenant", "Not A Tenant")
    assert bad.returncode == 2
