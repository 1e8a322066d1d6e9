"""Tenant setup for the demo: the EHR tenant and its SMART clients, the registry entry (with the
client ids and key files each service reads), the onboarding steps of `vigil tenant add`, the
seed data of `vigil ehr seed`, the mode, and (once ingest runs) the Subscriptions of
`vigil subscribe`.
"""
from __future__ import annotations

import asyncio
import os
from dataclasses import dataclass
from pathlib import Path

from services.commands import tenant as tenant_command
from services.commands.demo.plan import DemoPlan
from services.core import modes
from services.core.db import create_pool
from services.core.errors import NotFoundError
from services.core.logging import get_logger
from services.core.fhir import FhirClient, SmartCredentials
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import TenantPools
from services.ehr import seed as ehr_seed
from services.ehr.config import EhrSettings
from services.ehr.provision import AdminClient

log = get_logger("vigil.demo")

ALL_SCOPES = ["system/*.cruds"]
TOOLS_SCOPE = "system/*.cruds"
#: registry setting prefix -> SMART client id suffix (each service has its own client and key).
SERVICE_CLIENTS = {"ehr": "ingest", "hl7": "hl7", "fhir": "tools", "writeback": "writeback", "hl7out": "hl7out"}
SUBSCRIPTION_ACTIVE_TIMEOUT_S = 30.0
ACTOR = "vigil-demo"


@dataclass(frozen=True)
class DemoTenant:
    id: str
    display_name: str
    mode: str                     # silent | pilot | active
    settings: dict                # free-form registry settings (engine, follow-up days, ...)
    pilot_oncologists: tuple[str, ...] = ()   # seed keys (onc-1 ...) on the pilot list


DEMO_TENANTS: tuple[DemoTenant, ...] = (
    DemoTenant("northvalley", "North Valley Oncology", "active",
               {"engine": "rules", "followup_within_days": 7}),
    DemoTenant("lakeshore", "Lakeshore Cancer Center", "pilot",
               {"engine": "rules", "followup_within_days": 14}, pilot_oncologists=("onc-1", "onc-2")),
)


def ehr_settings(plan: DemoPlan) -> EhrSettings:
    return EhrSettings.from_env(core=plan.settings)


def _write_key(path: Path, pem: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(pem)


async def register_clients(plan: DemoPlan, tenant: DemoTenant) -> tuple[dict, SmartCredentials]:
    """Create the tenant EHR, one SMART client per service (fresh keys under the plan's folder);
    returns the registry settings naming them and the demo driver's own credentials."""
    ehr = ehr_settings(plan)
    settings = dict(tenant.settings)
    async with AdminClient(plan.settings.ehr_url, ehr.admin_secret) as admin:
        await admin.create_tenant(tenant.id)
        for prefix, who in SERVICE_CLIENTS.items():
            creds = await admin.new_client(tenant.id, f"vigil-{who}", ALL_SCOPES)
            key_file = plan.keys_dir / f"{tenant.id}-{who}.pem"
            _write_key(key_file, creds.private_key_pem)
            settings.update({f"{prefix}_client_id": creds.client_id, f"{prefix}_private_key_file": str(key_file),
                             f"{prefix}_key_id": creds.kid})
        # tools also books, holds and messages for the scheduling agent: its default scope is read-only
        settings["fhir_scope"] = TOOLS_SCOPE
        driver = await admin.new_client(tenant.id, "vigil-demo-driver", ALL_SCOPES)
        # the EHR signs its notifications to ingest (the tenant's default notify_auth = "signature")
        try:
            await admin.set_notify_secret(tenant.id, notify_signing_secret(tenant.id))
        except NotFoundError:
            # an EHR sandbox of an older version (already running, not started by this demo) cannot
            # sign: say so, and make the weaker mode explicit for this tenant only
            settings["notify_auth"] = "header-token"
            log.warning("demo.ehr_cannot_sign", tenant=tenant.id, ehr=plan.settings.ehr_url,
                        fallback="notify_auth=header-token", fix="restart the EHR sandbox")
    return settings, driver


def notify_signing_secret(tenant_id: str) -> str:
    from services.ingest.receiver.auth import signing_secret

    return signing_secret(SecretSettings.from_env(), tenant_id)


def write_registry(plan: DemoPlan, demo_tenants, tenants: dict[str, dict], partitions: int = 4) -> Registry:
    """The plan's registry (4 partitions: the broker's default, so existing topics match)."""
    registry = Registry(plan.settings.tenants_file)
    for t in demo_tenants:
        if t.id in tenants:
            registry.put(Tenant(id=t.id, display_name=t.display_name, partitions=partitions, mode=t.mode,
                                hl7_facilities=(t.id.upper(),), settings=tenants[t.id]))
    registry.save()
    return registry


def onboard(plan: DemoPlan, tenant: Tenant) -> list[tuple[str, str]]:
    """The `vigil tenant add` steps (topics, PostgreSQL role, Redis ACL user, data key)."""
    from services.commands import security

    security.register_onboarding()
    return [(name, str(step(plan.settings, tenant))) for name, step in tenant_command.ONBOARDING_STEPS]


def synthea_bundle() -> Path | None:
    """The Synthea sample: VIGIL_SYNTHEA_BUNDLE, else ``shared/data`` beside the checkout (where
    `vigil ehr seed` looks); None when neither exists (the demo then seeds the oncology panel only)."""
    configured = os.environ.get("VIGIL_SYNTHEA_BUNDLE")
    for candidate in ([Path(configured)] if configured else []) + [ehr_seed.SYNTHEA_BUNDLE]:
        if candidate.is_file():
            return candidate
    return None


async def seed(client: FhirClient) -> dict:
    """`vigil ehr seed` (no seed notes: the demo streams its own)."""
    summary = await ehr_seed.seed_tenant(client, synthea=False, oncology=True, notes=0)
    bundle = synthea_bundle()
    summary["synthea"] = await ehr_seed.load_synthea(client, bundle) if bundle else {"loaded": False,
                                                                                      "reason": "bundle not found"}
    return summary


async def practitioner_ids(client: FhirClient) -> dict[str, str]:
    """Seed practitioner key (onc-1 ...) -> Practitioner id in this EHR."""
    ids = {}
    for key, _family, _given, npi, _specialty in ehr_seed.PRACTITIONERS:
        found = await client.search("Practitioner", {"identifier": f"{ehr_seed.NPI}|{npi}"})
        if found:
            ids[key] = found[0]["id"]
    return ids


async def set_modes(plan: DemoPlan, tenant: DemoTenant, practitioners: dict[str, str]) -> modes.AgentState:
    admin = await create_pool(plan.settings, min_size=1, max_size=1)
    try:
        await modes.ensure_schema(admin)
    finally:
        await admin.close()
    pools = TenantPools(plan.settings, SecretSettings.from_env())
    try:
        store = modes.ModeStore(pools, plan.settings.tenants_file)
        await store.kill(tenant.id, None, on=False, actor=ACTOR, reason="demo start")
        pilot = [f"Practitioner/{practitioners[k]}" for k in tenant.pilot_oncologists if k in practitioners]
        return await store.set_mode(tenant.id, tenant.mode, actor=ACTOR, reason="demo setup", force=True,
                                    pilot_practitioners=pilot)
    finally:
        await pools.close()


async def subscribe(plan: DemoPlan, client: FhirClient, tenant_id: str) -> list[dict]:
    """`vigil subscribe`: the tenant's Subscriptions to this plan's ingest; waits until active."""
    from services.ingest.receiver.auth import channel_header
    from services.ingest.subscribe import ensure_subscriptions

    rows = await ensure_subscriptions(client, f"{plan.ingest_url}/notify/{tenant_id}",
                                      channel_header(SecretSettings.from_env(), tenant_id))
    deadline = asyncio.get_running_loop().time() + SUBSCRIPTION_ACTIVE_TIMEOUT_S
    for row in rows:
        while True:
            status = (await client.read("Subscription", row["id"])).get("status")
            if status == "active":
                row["status"] = status
                break
            if asyncio.get_running_loop().time() > deadline:
                raise RuntimeError(f"Subscription {row['topic']} of {tenant_id} is {status!r}, not active; "
                                   f"see {plan.logs_dir / 'ingest.log'}")
            await asyncio.sleep(0.3)
    return rows


async def unsubscribe(plan: DemoPlan, client: FhirClient) -> int:
    """Delete this plan's Subscriptions (the endpoint will be gone)."""
    removed = 0
    for sub in await client.search("Subscription", {"_count": "100"}):
        if str((sub.get("channel") or {}).get("endpoint", "")).startswith(plan.ingest_url + "/"):
            await client.delete("Subscription", sub["id"])
            removed += 1
    return removed
