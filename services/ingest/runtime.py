"""The ingest object graph (shared by the service, the CLI commands and the benchmark)."""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import AsyncIterator

from services.core import crypto
from services.core.config import Settings
from services.core.db import create_pool, ensure_schema
from services.core.secrets import SecretSettings
from services.core.tenancy import Registry
from services.core.tenantdb import TenantPools
from services.ingest.directory import EhrDirectory
from services.ingest.hl7.patientkey import PatientKeys
from services.ingest.mllp.pipeline import Hl7Pipeline
from services.ingest.publishing import Publishers
from services.ingest.receiver.handler import NotificationHandler
from services.ingest.store import schema



@dataclass
class Runtime:
    settings: Settings
    secrets: SecretSettings
    registry: Registry
    pools: TenantPools
    keyring: crypto.Keyring
    publishers: Publishers
    directory: EhrDirectory
    pipeline: Hl7Pipeline
    handler: NotificationHandler


async def migrate_all(admin) -> None:
    """Ingest's tables, and the tenant data keys' table (every raw HL7 message is sealed with them),
    so ingest starts on a fresh database before any other service has run."""
    await schema.migrate(admin)
    await ensure_schema(admin, crypto.SCHEMA_MODULE, crypto.SCHEMA_STEPS)


@contextlib.asynccontextmanager
async def runtime(settings: Settings, registry: Registry | None = None, secrets: SecretSettings | None = None,
                  *, migrate: bool = True, clients: dict | None = None) -> AsyncIterator[Runtime]:
    secrets = secrets or SecretSettings.from_env()
    registry = registry or Registry.load(settings.tenants_file)
    if migrate:
        admin = await create_pool(settings, min_size=1, max_size=2)
        try:
            await migrate_all(admin)
        finally:
            await admin.close()
    pools = TenantPools(settings, secrets)
    keyring = crypto.Keyring(pools)
    publishers = Publishers(settings)
    await publishers.start()
    directory = EhrDirectory(settings, registry, clients=clients)
    try:
        yield Runtime(settings, secrets, registry, pools, keyring, publishers, directory,
                      Hl7Pipeline(registry, keyring, publishers, PatientKeys(secrets)),
                      NotificationHandler(pools, publishers, directory))
    finally:
        await publishers.stop()
        await directory.close()
        await pools.close()
