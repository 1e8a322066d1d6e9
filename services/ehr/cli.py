"""`vigil ehr serve | seed | client add | client list | client revoke | family set | family show |
inbox-link`: the EHR sandbox, its SMART clients, the EHR family each tenant plays and inbox sign-in
links (through the admin API at VIGIL_EHR_URL, with VIGIL_EHR_ADMIN_SECRET) and its dev-stack
component.

Exit codes of `client`, `family` and `inbox-link`: 0 ok; 1 no such tenant, client or practitioner,
or the sandbox is unreachable; 2 usage or a refused admin secret."""
from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import typer

from services.core import devstack, probes
from services.core.config import ConfigError, Settings
from services.ehr.config import EhrSettings

app = typer.Typer(help="The EHR sandbox: a multi-tenant FHIR R4 server.", no_args_is_help=True)
client_app = typer.Typer(help="SMART Backend Services clients of a tenant's EHR: add, list, revoke.",
                         no_args_is_help=True)
app.add_typer(client_app, name="client")
family_app = typer.Typer(help="Which EHR family a tenant's sandbox plays: epic-like or fhir-server.",
                         no_args_is_help=True)
app.add_typer(family_app, name="family")
TENANT = typer.Option(..., "--tenant", help="The tenant whose EHR holds the client.")


def _settings() -> EhrSettings:
    try:
        return EhrSettings.from_env()
    except ConfigError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@app.command()
def serve(host: str = typer.Option(None, help="Bind address (default: from VIGIL_EHR_URL)."),
          port: int = typer.Option(None, help="Port (default: from VIGIL_EHR_URL).")) -> None:
    """Serve the sandbox at /fhir/<tenant>/ (admin API at /admin, health at /healthz)."""
    from services.core import httpserver, serving
    from services.core.logging import configure
    from services.ehr.app import create_app

    settings = _settings()
    configure(settings.core.log_level)
    default_host, default_port = settings.core.ehr_host_port
    sandbox = create_app(settings)
    serving.main(lambda: httpserver.serve("ehr.server", sandbox, host or default_host, port or default_port,
                                          lifespan="on"))


@app.command()
def seed(tenant: str = typer.Option(..., "--tenant", help="Tenant id; its EHR is created if missing."),
         synthea: bool = typer.Option(True, help="Load the Synthea sample patient."),
         oncology: bool = typer.Option(True, help="Load the synthetic oncology panel."),
         notes: int = typer.Option(6, min=0, help="Clinical notes to add.")) -> None:
    """Create the tenant's EHR (if needed) and load seed data through the FHIR API."""
    from services.core.fhir import FhirClient
    from services.core.tenancy import TenantError, check_tenant_id
    from services.ehr.provision import AdminClient
    from services.ehr.seed import seed_tenant

    settings = _settings()
    try:
        check_tenant_id(tenant)
    except TenantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)

    async def run() -> dict:
        url = settings.core.ehr_url
        async with AdminClient(url, settings.admin_secret) as admin:
            await admin.create_tenant(tenant)
            creds = await admin.new_client(tenant, "vigil-seed", ["system/*.cruds"])
        async with FhirClient(f"{url}/fhir/{tenant}", credentials=creds) as client:
            return await seed_tenant(client, synthea=synthea, oncology=oncology, notes=notes)

    try:
        summary = asyncio.run(run())
    except Exception as exc:  # a CLI reports and exits; no traceback for an unreachable server
        typer.echo(f"error: seeding failed: {type(exc).__name__}: {exc}", err=True)
        raise typer.Exit(1)
    print(json.dumps(summary, indent=2))


def _admin_call(settings: EhrSettings, call, missing: str = "tenant or client"):
    """Run ``await call(admin)`` against the sandbox's admin API; report errors and exit."""
    import httpx

    from services.core.errors import NotFoundError, UnauthenticatedError, ValidationError, VigilError
    from services.ehr.provision import AdminClient

    async def run():
        async with AdminClient(settings.core.ehr_url, settings.admin_secret) as admin:
            return await call(admin)

    try:
        return asyncio.run(run())
    except NotFoundError:
        typer.echo(f"error: no such {missing} on the EHR sandbox", err=True)
        raise typer.Exit(1)
    except (UnauthenticatedError, ValidationError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)
    except VigilError as exc:
        if exc.code == "http_400":  # the request was refused as malformed (bad client id, scope, keys)
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2)
        typer.echo(f"error: the EHR sandbox at {settings.core.ehr_url} failed: {exc.code}", err=True)
        raise typer.Exit(1)
    except (OSError, httpx.HTTPError) as exc:
        typer.echo(f"error: the EHR sandbox at {settings.core.ehr_url} is unreachable: {type(exc).__name__}", err=True)
        raise typer.Exit(1)


def _check_tenant(tenant: str) -> str:
    from services.core.tenancy import TenantError, check_tenant_id

    try:
        return check_tenant_id(tenant)
    except TenantError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2)


@client_app.command("add")
def client_add(client_id: str = typer.Argument(..., help="The client's id (1-128 of A-Z a-z 0-9 . _ : -)."),
               tenant: str = TENANT,
               scope: list[str] = typer.Option(["system/*.rs"], "--scope", help="A granted scope (repeatable)."),
               jwks: Path = typer.Option(None, "--jwks", help="The client's public JWKS (JSON file)."),
               key_out: Path = typer.Option(None, "--key-out",
                                            help="Make a new RS384 key pair; write the private key here (0600).")) -> None:
    """Register (or reinstate) a SMART client with its public keys and scopes."""
    from services.core.fhir import new_client_key

    settings, tenant = _settings(), _check_tenant(tenant)
    if (jwks is None) == (key_out is None):
        typer.echo("error: give exactly one of --jwks FILE (the client's public keys) or --key-out FILE "
                   "(make a key pair)", err=True)
        raise typer.Exit(2)
    if jwks is not None:
        try:
            keys = json.loads(jwks.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            typer.echo(f"error: --jwks {jwks}: {type(exc).__name__}", err=True)
            raise typer.Exit(2)
    else:
        if key_out.exists():
            typer.echo(f"error: --key-out {key_out} exists; not overwriting a key", err=True)
            raise typer.Exit(2)
        pem, jwk = new_client_key("RS384")
        keys = {"keys": [jwk]}
    result = _admin_call(settings, lambda admin: admin.register_client(tenant, client_id, keys, list(scope)))
    if key_out is not None:
        fd = os.open(key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(pem)
        result["kid"], result["private_key_file"] = keys["keys"][0]["kid"], str(key_out)
    typer.echo(json.dumps(result, indent=2))


@client_app.command("list")
def client_list(tenant: str = TENANT, as_json: bool = typer.Option(False, "--json")) -> None:
    """The tenant's SMART clients, revoked ones included."""
    settings, tenant = _settings(), _check_tenant(tenant)
    clients = _admin_call(settings, lambda admin: admin.list_clients(tenant))
    if as_json:
        typer.echo(json.dumps(clients))
        return
    for c in clients:
        state = f"revoked {c['revoked_at']}" if c["revoked_at"] else "active"
        typer.echo(f"{c['client_id']}\t{state}\t{' '.join(c['scopes'])}\tkids={','.join(c['kids'])}\t"
                   f"added {c['created_at']}")
    if not clients:
        typer.echo(f"no clients for tenant {tenant}", err=True)


@client_app.command("revoke")
def client_revoke(client_id: str = typer.Argument(...), tenant: str = TENANT) -> None:
    """Revoke a client now: its next token request and its issued access tokens are refused."""
    settings, tenant = _settings(), _check_tenant(tenant)
    result = _admin_call(settings, lambda admin: admin.revoke_client(tenant, client_id))
    typer.echo(f"revoked {client_id} (tenant {tenant}) at {result['revoked_at']}")


@family_app.command("set")
def family_set(family: str = typer.Argument(..., help="epic-like | fhir-server"), tenant: str = TENANT) -> None:
    """epic-like: no Subscriptions, DocumentReference search needs a patient, no Task / Observation /
    DetectedIssue / Provenance / Device / AuditEvent writes. fhir-server: both subscription styles, all writes."""
    from services.ehr.families import FAMILIES

    settings, tenant = _settings(), _check_tenant(tenant)
    if family not in FAMILIES:
        typer.echo(f"error: family must be one of {', '.join(FAMILIES)}", err=True)
        raise typer.Exit(2)
    result = _admin_call(settings, lambda admin: admin.set_family(tenant, family))
    typer.echo(f"tenant {result['tenant']} plays {result['family']}")


@family_app.command("show")
def family_show(tenant: str = TENANT) -> None:
    """The EHR family the tenant's sandbox plays."""
    settings, tenant = _settings(), _check_tenant(tenant)
    typer.echo(_admin_call(settings, lambda admin: admin.get_family(tenant))["family"])


@app.command("inbox-link")
def inbox_link(tenant: str = TENANT,
               practitioner: str = typer.Option(..., "--practitioner", help="The Practitioner's id in the EHR."),
               lifetime: int = typer.Option(None, "--lifetime", min=1, max=3600,
                                            help="Seconds the link stays valid (default 900)."),
               as_json: bool = typer.Option(False, "--json")) -> None:
    """A sign-in link of the tenant's inbox for one practitioner: signed, single use, 15 minutes."""
    from services.ehr.validation import ID_RE

    settings, tenant = _settings(), _check_tenant(tenant)
    if not ID_RE.match(practitioner):
        typer.echo("error: --practitioner must be a FHIR id (1-64 of A-Z a-z 0-9 - .)", err=True)
        raise typer.Exit(2)
    result = _admin_call(settings, lambda admin: admin.inbox_link(tenant, practitioner, lifetime),
                         missing="tenant or practitioner")
    if as_json:
        typer.echo(json.dumps(result))
        return
    typer.echo(result["url"])
    typer.echo(f"for Practitioner/{practitioner} of {tenant}; one use, valid until {result['expires_at']}", err=True)


def _start_ehr(settings: Settings, workdir: Path, host: str, port: int) -> None:
    devstack._spawn([sys.executable, "-m", "services.cli", "ehr", "serve", "--host", host, "--port", str(port)],
                    workdir)


#: The dev-stack entry: `vigil dev up` starts the sandbox, `vigil dev status` probes /healthz.
DEVSTACK_COMPONENT = devstack.Component("ehr", "HTTP (FHIR)", lambda s: s.ehr_host_port, probes.probe_http,
                                        _start_ehr)
