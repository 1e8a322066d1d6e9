"""Tenant setup for the demo: the EHR tenant and its SMART clients, the registry entry (with the
client ids and key files each service reads), the onboarding steps of `vigil tenant add`, the
seed data of `vigil ehr seed`, the EHR family its sandbox plays, the mode, and (once ingest runs)
the Subscriptions of `vigil subscribe` (for tenants whose profile has topic subscriptions).

A tenant's integration profile (``DemoTenant.integration``) is written to the registry as
``[tenants.<id>.integration]``; an ``hl7_out`` channel points at the plan's interface engine
stand-in (``engine``). Each tenant also gets a CDS client (its own ES384 key; the JWKS under the
plan's folder), so the demo can call the CDS service's patient-view hook as the EHR would.
"""
from __future__ import annotations

import asyncio
import json
import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from services.commands import tenant as tenant_command
from services.commands.demo.plan import SERVICES, DemoPlan
from services.core.errors import NotFoundError
from services.core.logging import get_logger
from services.core.fhir import FhirClient, SmartCredentials, new_client_key
from services.core.integration import parse as parse_profile
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry, Tenant
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
#: The issuer of the demo's CDS client (the EHR calling the hooks); one key per tenant.
CDS_ISSUER = "https://ehr.demo.vigil.health"
CDS_TOKEN_LIFETIME_S = 60


@dataclass(frozen=True)
class DemoTenant:
    id: str
    display_name: str
    mode: str                     # silent | pilot | active
    settings: dict                # free-form registry settings (engine, follow-up days, ...)
    pilot_oncologists: tuple[str, ...] = ()   # seed keys (onc-1 ...) on the pilot list
    family: str = "fhir-server"   # what its EHR sandbox plays (services/ehr/families.py)
    #: ``[integration]`` table (services/core/integration.py); None: the default profile. An
    #: ``hl7v2`` results channel gets ``hl7_out`` pointed at the plan's interface engine.
    integration: dict | None = None

    def profile(self, plan: DemoPlan | None = None):
        table = dict(self.integration) if self.integration is not None else None
        if table is not None and "hl7v2" in table.get("results", ()):
            table["hl7_out"] = {"host": "127.0.0.1", "port": plan.port("engine") if plan else 1,
                                "message": "ORU^R01", "receiving_application": "ENGINE",
                                "receiving_facility": self.id.upper(), "timeout_s": 5.0, **table.get("hl7_out", {})}
        return parse_profile(self.id, table)

    @property
    def hl7_feed(self) -> bool:
        """Its notes arrive as an HL7v2 feed (MDM^T02 over MLLP), not as FHIR writes."""
        return self.profile().has_trigger("hl7v2-feed") and not self.topic_subscriptions

    @property
    def topic_subscriptions(self) -> bool:
        return self.profile().has_trigger("backport-topic")

    @property
    def fhir_results(self) -> bool:
        return self.profile().delivers("fhir")


#: An Epic-like site: notes by its interface engine's HL7v2 feed, results as ORU^R01 to the engine
#: and as CDS Hooks cards, nothing written to its EHR (which refuses Task / Observation / ... writes).
EPIC_LIKE_PROFILE = {"family": "epic-like", "triggers": ["hl7v2-feed"], "note_sources": ["document-store"],
                     "results": ["hl7v2", "cds-hooks"], "ehr_accepts": []}

DEMO_TENANTS: tuple[DemoTenant, ...] = (
    DemoTenant("northvalley", "North Valley Oncology", "active",
               {"engine": "rules", "followup_within_days": 7}),
    DemoTenant("lakeshore", "Lakeshore Cancer Center", "pilot",
               {"engine": "rules", "followup_within_days": 14}, pilot_oncologists=("onc-1", "onc-2")),
    DemoTenant("riverbend", "Riverbend Health (Epic-like)", "active",
               {"engine": "rules", "followup_within_days": 7}, family="epic-like", integration=EPIC_LIKE_PROFILE),
)


def services_needed(tenants) -> set[str]:
    """The optional services some tenant's profile cannot do without."""
    needed = set()
    for t in tenants:
        if t.integration is None:
            continue
        profile = t.profile()
        if profile.has_trigger("hl7v2-feed"):
            needed.add("hl7")
        if profile.delivers("hl7v2"):
            needed.add("hl7out")
        if profile.delivers("cds-hooks"):
            needed.add("cdshooks")
    return needed


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
    # the HL7 feed files PID-3 under the MRN the demo patients carry
    settings["hl7_patient_identifier_system"] = ehr_seed.MRN
    settings.update(cds_client(plan, tenant.id))
    return settings, driver


def notify_signing_secret(tenant_id: str) -> str:
    from services.ingest.receiver.auth import signing_secret

    return signing_secret(SecretSettings.from_env(), tenant_id)


def cds_client(plan: DemoPlan, tenant_id: str) -> dict:
    """A fresh CDS client key for the tenant: the private key beside the SMART keys, its JWKS
    where the CDS service reads it; returns the registry settings naming them."""
    pem, jwk = new_client_key("ES384")
    _write_key(plan.keys_dir / f"{tenant_id}-cds-client.pem", pem)
    jwks = plan.keys_dir / f"{tenant_id}-cds-jwks.json"
    jwks.write_text(json.dumps({"keys": [jwk]}), encoding="utf-8")
    return {"cds_client_iss": CDS_ISSUER, "cds_jwks_file": str(jwks), "cds_client_kid": jwk["kid"]}


def cds_token(plan: DemoPlan, tenant_id: str, kid: str, service_id: str) -> str:
    """A CDS Hooks JWT, as the EHR mints one per hook call (fresh ``jti``, short-lived)."""
    import jwt

    now = int(time.time())
    key = (plan.keys_dir / f"{tenant_id}-cds-client.pem").read_text(encoding="utf-8")
    claims = {"iss": CDS_ISSUER, "aud": f"{plan.cds_url}/{tenant_id}/cds-services/{service_id}", "iat": now,
              "exp": now + CDS_TOKEN_LIFETIME_S, "jti": uuid.uuid4().hex}
    return jwt.encode(claims, key, algorithm="ES384", headers={"kid": kid})


async def set_family(plan: DemoPlan, tenant: DemoTenant) -> str:
    """The EHR family the tenant's sandbox plays (the admin API of `vigil ehr family set`)."""
    async with AdminClient(plan.settings.ehr_url, ehr_settings(plan).admin_secret) as admin:
        return (await admin.set_family(tenant.id, tenant.family)).get("family", tenant.family)


def write_registry(plan: DemoPlan, demo_tenants, tenants: dict[str, dict], partitions: int = 4) -> Registry:
    """The plan's registry (4 partitions: the broker's default, so existing topics match)."""
    registry = Registry(plan.settings.tenants_file)
    for t in demo_tenants:
        if t.id in tenants:
            registry.put(Tenant(id=t.id, display_name=t.display_name, partitions=partitions, mode=t.mode,
                                hl7_facilities=(t.id.upper(),), settings=tenants[t.id],
                                integration=t.profile(plan)))
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


def control_client(plan: DemoPlan, tenant: str | None = None):
    """A client of the plan's control service: as ``tenant``'s operator, or as a platform admin
    (every tenant's dead-letter counts, never a payload) when no tenant is given."""
    from services.control.client import ControlClient
    from services.core.grpc.settings import GrpcSettings
    from services.core.tokens import ADMIN_ROLE, PLATFORM_TENANT, issue

    grpc_settings = GrpcSettings.from_env(plan.service_env(next(s for s in SERVICES if s.name == "control")))
    token = issue(grpc_settings.tokens, sub=ACTOR, tenant=tenant or PLATFORM_TENANT,
                  role="operator" if tenant else ADMIN_ROLE)
    return ControlClient(grpc_settings, token)


async def set_modes(plan: DemoPlan, tenant: DemoTenant, practitioners: dict[str, str]):
    """The tenant's mode and pilot list, and its kill switch off, through the control service (which
    alone writes modes), as the tenant's operator; returns the control service's ``ModeState``."""
    from vigil.v1 import control_pb2 as pb

    pilot = [f"Practitioner/{practitioners[k]}" for k in tenant.pilot_oncologists if k in practitioners]
    async with control_client(plan, tenant.id) as control:
        await control.call("Kill", pb.KillRequest(tenant=tenant.id, on=False, reason="demo start"))
        return await control.call("SetMode", pb.SetModeRequest(
            tenant=tenant.id, mode=tenant.mode, reason="demo setup", force=True, pilot_practitioners=pilot))


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
