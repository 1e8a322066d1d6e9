"""`vigil notify-key show | sandbox`: the secret an EHR signs a tenant's notifications with.

    vigil notify-key show --tenant T [--generation N]     # print it, for the EHR's administrator
    vigil notify-key sandbox --tenant T [--generation N]  # configure the EHR sandbox with it

The secret is derived from the master secret (``services.ingest.receiver.auth``); the tenant's
``notify_signing_keys`` setting says which generations ingest accepts (newest first). Rotation:
add generation N+1 in front, give the EHR the new secret, then drop the old generation.
Exit codes: 0 ok; 1 the sandbox refused or is unreachable; 2 usage (bad tenant, bad generation).
"""
from __future__ import annotations

import asyncio

import typer

from services.core.config import ConfigError
from services.core.secrets import SecretSettings
from services.core.tenancy import TenantError, check_tenant_id

app = typer.Typer(help="The secret an EHR signs a tenant's notifications to ingest with.", no_args_is_help=True)
TENANT = typer.Option(..., "--tenant", help="Tenant id.")
GENERATION = typer.Option(None, "--generation", min=1,
                          help="Key generation (default: the newest the tenant accepts, else 1).")


def _secret(tenant: str, generation: int | None) -> tuple[str, str, int]:
    from services.core.config import Settings
    from services.core.tenancy import Registry
    from services.ingest.receiver import auth

    try:
        tenant = check_tenant_id(tenant)
        secrets = SecretSettings.from_env()
        if generation is None:
            settings = Settings.from_env()
            registry = Registry.load(settings.tenants_file)
            generation = auth.generations(registry.get(tenant))[0] if tenant in registry else 1
        return tenant, auth.signing_secret(secrets, tenant, generation), generation
    except (ConfigError, TenantError, auth.AuthConfigError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@app.command()
def show(tenant: str = TENANT, generation: int = GENERATION) -> None:
    """Print the signing secret (give it to the EHR's administrator; it never goes into a Subscription)."""
    tenant, secret, generation = _secret(tenant, generation)
    typer.echo(secret)
    typer.echo(f"tenant {tenant}, generation {generation}: HMAC-SHA256 of the raw body, hex, in "
               "X-Vigil-Signature: sha256=<hex> (or X-Signature: <hex>)", err=True)


@app.command()
def sandbox(tenant: str = TENANT, generation: int = GENERATION) -> None:
    """Configure the EHR sandbox (VIGIL_EHR_URL, VIGIL_EHR_ADMIN_SECRET) to sign with the secret."""
    from services.ehr.config import EhrSettings
    from services.ehr.provision import AdminClient

    tenant, secret, generation = _secret(tenant, generation)
    try:
        ehr = EhrSettings.from_env()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)

    async def run() -> dict:
        async with AdminClient(ehr.core.ehr_url, ehr.admin_secret) as admin:
            return await admin.set_notify_secret(tenant, secret)

    try:
        result = asyncio.run(run())
    except Exception as exc:  # a CLI reports and exits
        typer.echo(f"error: the EHR sandbox at {ehr.core.ehr_url} refused or is unreachable: "
                   f"{type(exc).__name__}", err=True)
        raise typer.Exit(1)
    typer.echo(f"the sandbox signs {tenant}'s notifications with generation {generation} "
               f"(fingerprint {result['fingerprint']})")
