"""Ingest fixtures: one tenant with its EHR (sandbox), PostgreSQL role, topics and ingest wiring."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from tests.fixtures import kafka

from services.core import crypto
from services.core.events import decode
from services.core.tenancy import Registry, Tenant
from services.core.tenantdb import TenantPools, provision_tenant_role, quote_ident, tenant_role
from services.core.topics import ensure_tenant_topics
from services.ingest.directory import EhrDirectory
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.mllp.pipeline import Hl7Pipeline
from services.ingest.publishing import Publishers
from services.ingest.receiver.handler import NotificationHandler
from services.ingest.store import schema


#: MSH-4 facilities of the public samples, all routed to the test tenant.
SAMPLE_FACILITIES = ("GHHSFacility", "XYZHOSPITAL", "SFAC", "NIST Lab Facility", "IA Public Health Lab")
#: MSH-3 of the one public sample with no facility at all (LAB-ORU-1), routed by application.
SAMPLE_APPLICATIONS = ["SomeSystem"]
#: The identifier system the test EHR files PID-3 values under (a site's MRN OID).
EHR_MRN_SYSTEM = "urn:oid:2.16.840.1.113883.3.9999.1"


@dataclass
class Ingest:
    tenant: Tenant
    registry: Registry
    pools: TenantPools
    keyring: crypto.Keyring
    publishers: Publishers
    directory: EhrDirectory
    pipeline: Hl7Pipeline
    handler: NotificationHandler
    ehr: object  # tests.fixtures.ehr.EhrTenant
    settings: object

    def topic(self, stream: str) -> str:
        return self.tenant.topic(stream)

    async def events(self, stream: str = "ehr-events", want: int = 0, timeout: float = 10.0, settle: float = 1.0):
        return [decode(r.key, r.value, r.headers) for r in
                await read_topic(self.settings, self.topic(stream), want, timeout=timeout, settle=settle)]


async def read_topic(settings, topic: str, want: int, timeout: float = 10.0, settle: float = 1.0,
                     partitions: int = 4) -> list:
    """Ingest's reads wait a second past ``want`` so that a duplicate would be seen."""
    return await kafka.read_topic(settings, topic, want, timeout=timeout, partitions=partitions, settle=settle)


@pytest.fixture
async def ingest_admin(admin_pool):
    await schema.migrate(admin_pool)
    return admin_pool


@pytest.fixture
async def ingest(stack, ingest_admin, secrets, ehr_tenant, tmp_path):
    tenant_id = ehr_tenant.tenant
    async with ingest_admin.acquire() as conn:
        await provision_tenant_role(conn, tenant_id, secrets)
    tenant = Tenant(id=tenant_id, display_name="ingest test", partitions=4, mode="active",
                    hl7_facilities=SAMPLE_FACILITIES,
                    settings={"hl7_applications": SAMPLE_APPLICATIONS, "hl7_patient_identifier_system": EHR_MRN_SYSTEM})
    await ensure_tenant_topics(stack, tenant)
    registry = Registry(tmp_path / "tenants.toml", [tenant])
    pools = TenantPools(stack, secrets, max_size=8)
    keyring = crypto.Keyring(pools)
    publishers = Publishers(stack)
    await publishers.start()
    directory = EhrDirectory(stack, registry, clients={tenant_id: ehr_tenant.client})
    pipeline = Hl7Pipeline(registry, keyring, publishers, PatientKeys(secrets))
    handler = NotificationHandler(pools, publishers, directory)
    try:
        yield Ingest(tenant, registry, pools, keyring, publishers, directory, pipeline, handler, ehr_tenant, stack)
    finally:
        # Stop the EHR delivering to endpoints that are gone with this test.
        for sub in await ehr_tenant.client.search("Subscription", {"_count": "100"}):
            await ehr_tenant.client.delete("Subscription", sub["id"])
        await publishers.stop()
        await directory.close()
        await pools.close()
        async with ingest_admin.acquire() as conn:
            await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = $1",
                               tenant_role(tenant_id))
            try:
                await conn.execute(f"DROP ROLE IF EXISTS {quote_ident(tenant_role(tenant_id))}")
            except Exception:
                pass  # a backend still closing; the role owns nothing, leaving it is harmless
