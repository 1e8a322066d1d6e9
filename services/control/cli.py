"""`vigil dlq ls | show | replay | purge | stats` and `vigil token issue | revoke`.

The dlq commands talk to the control service over gRPC (VIGIL_GRPC_CONTROL_ADDR) with an
operator credential: ``--token`` or VIGIL_OPERATOR_TOKEN. ``vigil token issue`` mints one from
the signing key of this environment (VIGIL_GRPC_TOKEN_KEY[_FILE] or the EdDSA private key):
only whoever holds that key - the platform admins - can issue tokens. It prints the token on
stdout and its id (``jti``) on stderr; ``vigil token revoke <jti>`` puts that id on the deny
list every gRPC server checks (platform DSN, VIGIL_POSTGRES_DSN).

Exit codes: 0 ok; 1 nothing matched, a partial result (entries held by the loop guard), or the
service is unreachable; 2 usage or authorization error (bad option, missing/invalid token,
permission denied). ``--json`` prints one JSON document (replay: one JSON line per progress step).
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import time
from datetime import datetime, timezone

import asyncpg
import jwt
import typer
from google.protobuf.json_format import MessageToDict
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from services.control.client import ControlClient
from services.core import audit, revocation
from services.core.audit import cli_actor
from services.core.config import ConfigError, Settings
from services.core.db import create_pool, ensure_schema
from services.core.errors import (PermissionDeniedError, RetryableError, UnauthenticatedError, ValidationError,
                                  VigilError)
from services.core.grpc.settings import GrpcSettings
from services.core.tenancy import TenantError
from services.core.tokens import ADMIN_ROLE, MAX_TTL_SECONDS, PLATFORM_TENANT, ROLES, TokenSettings, issue
from vigil.v1 import control_pb2 as pb

dlq_app = typer.Typer(help="Dead letters: list, inspect, replay, purge, stats.", no_args_is_help=True)
token_app = typer.Typer(help="Operator credentials for the control service.", no_args_is_help=True)

OK, NOTHING, USAGE = 0, 1, 2
UNREACHABLE = ("grpc_unavailable", "grpc_deadline_exceeded")
USAGE_ERRORS = (PermissionDeniedError, UnauthenticatedError, ValidationError, ConfigError, TenantError)
_DURATION = re.compile(r"^(\d+)([smhdw])$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
console = Console()


def duration_s(text: str) -> int:
    """``90s``, ``15m``, ``2h``, ``7d``, ``1w`` -> seconds."""
    match = _DURATION.match(text.strip())
    if not match:
        raise typer.BadParameter(f"{text!r}: expected a duration such as 30m, 2h, 7d")
    return int(match.group(1)) * _UNIT_S[match.group(2)]


def when_ms(text: str | None) -> int:
    """An ISO 8601 time, or a duration meaning that long ago."""
    if not text:
        return 0
    if _DURATION.match(text.strip()):
        return int((time.time() - duration_s(text)) * 1000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise typer.BadParameter(f"{text!r}: expected an ISO time or a duration such as 2h") from None
    return int((parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)).timestamp() * 1000)


def _fmt_ms(value: int) -> str:
    return datetime.fromtimestamp(value / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S") if value else "-"


def _fail(message: str, code: int) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def call_control(coro_fn, token: str | None):
    """Run ``coro_fn(client)`` against the control service (VIGIL_GRPC_CONTROL_ADDR); map errors to
    exit codes in one place (also used by `vigil mode` and `vigil kill`)."""
    token = token or os.environ.get("VIGIL_OPERATOR_TOKEN")
    if not token:
        raise _fail("an operator token is required (--token or VIGIL_OPERATOR_TOKEN)", USAGE)
    try:
        settings = GrpcSettings.from_env()
    except ConfigError as exc:
        raise _fail(str(exc), USAGE) from None

    async def main():
        async with ControlClient(settings, token) as client:
            return await coro_fn(client)
    try:
        return asyncio.run(main())
    except USAGE_ERRORS as exc:
        raise _fail(f"{type(exc).__name__}: {exc}", USAGE) from None
    except RetryableError as exc:
        if exc.code in UNREACHABLE:
            raise _fail(f"the control service at {settings.address('control')} is unreachable ({exc.code}); "
                        "is it running, and is VIGIL_GRPC_CONTROL_ADDR right?", NOTHING) from None
        raise _fail(f"{type(exc).__name__}: {exc}", NOTHING) from None
    except VigilError as exc:
        raise _fail(f"{type(exc).__name__}: {exc}", NOTHING) from None


def _filter(tenant, stage, error_class, fingerprint, event_type, patient_key, since, until, status, ids):
    return pb.DeadLetterFilter(tenant=tenant or "", stage=stage or "", error_class=error_class or "",
                               fingerprint=fingerprint or "", event_type=event_type or "",
                               patient_key=patient_key or "", since_ms=when_ms(since), until_ms=when_ms(until),
                               status=status or "", ids=list(ids or ()))


def _json(message) -> dict:
    return MessageToDict(message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True)


TOKEN = typer.Option(None, "--token", help="Operator token (default: VIGIL_OPERATOR_TOKEN).")
TENANT = typer.Option(None, "--tenant", "-t", help="Tenant (operators: their own; platform-admin: required).")
STAGE = typer.Option(None, "--stage")
ERROR_CLASS = typer.Option(None, "--error-class")
FINGERPRINT = typer.Option(None, "--fingerprint")
EVENT_TYPE = typer.Option(None, "--event-type")
PATIENT_KEY = typer.Option(None, "--patient-key", help="The record key (matched by hash).")
SINCE = typer.Option(None, "--since", help="ISO time or duration ago (2h, 7d).")
UNTIL = typer.Option(None, "--until")
AS_JSON = typer.Option(False, "--json")


@dlq_app.command("ls")
def ls(tenant: str = TENANT, stage: str = STAGE, error_class: str = ERROR_CLASS, fingerprint: str = FINGERPRINT,
       event_type: str = EVENT_TYPE, patient_key: str = PATIENT_KEY, since: str = SINCE, until: str = UNTIL,
       status: str = typer.Option("dead", "--status", help="dead | replayed | purged | any"),
       limit: int = typer.Option(50, "--limit", min=1, max=10_000), as_json: bool = AS_JSON,
       token: str = TOKEN) -> None:
    """List dead letters, newest failure first."""
    flt = _filter(tenant, stage, error_class, fingerprint, event_type, patient_key, since, until, status, ())

    async def go(client: ControlClient):
        items, page_token, total = [], "", 0
        while len(items) < limit:
            page = await client.call("ListDeadLetters", pb.ListDeadLettersRequest(
                filter=flt, tenant=tenant or "", page_size=min(500, limit - len(items)), page_token=page_token))
            items += list(page.items)
            total, page_token = page.total, page.next_page_token
            if not page_token:
                break
        return items, total
    items, total = call_control(go, token)
    if as_json:
        typer.echo(json.dumps({"total": total, "items": [_json(i) for i in items]}))
    else:
        table = Table(title=f"dead letters ({len(items)} of {total})")
        for col in ("id", "stage", "event type", "error", "code", "fingerprint", "attempts", "last failure", "status",
                    "replays"):
            table.add_column(col)
        for i in items:
            table.add_row(i.id[:13], i.stage, i.event_type, i.error_class, i.error_code, i.fingerprint,
                          str(i.attempts), _fmt_ms(i.last_failure_ms), i.status, str(i.replay_count))
        console.print(table)
    raise typer.Exit(OK if items else NOTHING)


@dlq_app.command("show")
def show(dlq_id: str = typer.Argument(..., help="The dead letter's id (dlq-id)."), tenant: str = TENANT,
         payload: bool = typer.Option(False, "--payload", help="Include the payload (operators of the tenant)."),
         as_json: bool = AS_JSON, token: str = TOKEN) -> None:
    """Headers, attempt history, the full error and (if permitted) the payload."""
    detail = call_control(lambda c: c.call("GetDeadLetter", pb.GetDeadLetterRequest(id=dlq_id, tenant=tenant or "",
                                                                             include_payload=payload)), token)
    if as_json:
        out = _json(detail)
        out["payload"] = detail.payload.decode("utf-8", "replace") if detail.payload_included else None
        typer.echo(json.dumps(out))
        raise typer.Exit(OK)
    e = detail.entry
    table = Table(title=f"dead letter {e.id}", show_header=False)
    for k, v in (("tenant", e.tenant), ("stage", e.stage), ("event", f"{e.event_type} {e.event_id}"),
                 ("origin", f"{e.original_topic}[{e.original_partition}]@{e.original_offset}"),
                 ("error", f"{e.error_class} ({e.error_code}) {e.message}"), ("fingerprint", e.fingerprint),
                 ("attempts", str(e.attempts)), ("first / last failure",
                                                 f"{_fmt_ms(e.first_failure_ms)} / {_fmt_ms(e.last_failure_ms)}"),
                 ("status", f"{e.status}, replayed {e.replay_count}x"), ("replayed from job", e.replayed_from_job)):
        table.add_row(k, v)
    console.print(table)
    headers = Table(title="headers")
    headers.add_column("key")
    headers.add_column("value")
    for h in detail.headers:
        headers.add_row(h.key, h.value)
    console.print(headers)
    console.print("[bold]attempt history[/bold]", detail.attempt_history_json)
    console.print("[bold]error[/bold]\n" + detail.stack, markup=False, highlight=False)
    if payload:
        console.print(detail.payload.decode("utf-8", "replace") if detail.payload_included else detail.payload_note,
                      markup=False, highlight=False)


@dlq_app.command("replay")
def replay(tenant: str = TENANT, stage: str = STAGE, error_class: str = ERROR_CLASS, fingerprint: str = FINGERPRINT,
           event_type: str = EVENT_TYPE, patient_key: str = PATIENT_KEY, since: str = SINCE, until: str = UNTIL,
           ids: list[str] = typer.Option(None, "--id", help="Replay exactly these ids (repeatable)."),
           dry_run: bool = typer.Option(False, "--dry-run", help="Count and show what would be sent; send nothing."),
           force: bool = typer.Option(False, "--force", help="Replay past the loop guard."),
           rate: float = typer.Option(0.0, "--rate", help="Messages per second (default 50)."),
           max_replays: int = typer.Option(0, "--max-replays", help="Loop guard N (default 3)."),
           resume: str = typer.Option(None, "--resume", help="Continue an interrupted replay job."),
           as_json: bool = AS_JSON, token: str = TOKEN) -> None:
    """Replay dead letters into their stage's input topic (dry run first)."""
    request = pb.ReplayRequest(filter=_filter(tenant, stage, error_class, fingerprint, event_type, patient_key, since,
                                              until, "dead", ids), tenant=tenant or "", dry_run=dry_run,
                               force=force, rate_per_second=rate, max_replays=max_replays, resume_job_id=resume or "")

    async def go(client: ControlClient):
        last = None
        if as_json or dry_run:
            async for step in client.stream("Replay", request):
                last = step
                if as_json:
                    typer.echo(json.dumps(_json(step)))
            return last
        with Progress(TextColumn("[bold]replay[/bold] {task.fields[job]}"), BarColumn(), MofNCompleteColumn(),
                      TextColumn("sent {task.fields[sent]} held {task.fields[held]}"), TimeElapsedColumn(),
                      console=console) as bar:
            task = bar.add_task("replay", total=None, job="", sent=0, held=0)
            async for step in client.stream("Replay", request):
                last = step
                bar.update(task, total=step.total, completed=step.checkpoint, job=step.job_id, sent=step.sent,
                           held=step.skipped_loop_guard)
        return last
    last = call_control(go, token)
    if last is None:
        raise _fail("the service ended the replay without a result", NOTHING)
    if not as_json:
        if dry_run:
            console.print(f"dry run: {last.total} matched, {last.to_send} would be sent, "
                          f"{last.skipped_loop_guard} held by the loop guard")
            for t in last.targets:
                console.print(f"  {t.count} -> {t.topic}")
            table = Table(title="sample")
            for col in ("dlq id", "event id", "event type", "target", "replays", "action"):
                table.add_column(col)
            for s in last.sample:
                table.add_row(s.dlq_id[:13], s.event_id, s.event_type, s.target_topic, str(s.replay_count), s.action)
            console.print(table)
        else:
            console.print(f"job {last.job_id}: {last.sent} sent, {last.skipped_loop_guard} skipped, "
                          f"{last.total} total ({last.status})")
    matched = last.to_send if dry_run else last.sent
    raise typer.Exit(OK if matched and not last.skipped_loop_guard else NOTHING)


@dlq_app.command("purge")
def purge(tenant: str = TENANT, stage: str = STAGE,
          older_than: str = typer.Option(None, "--older-than", help="Retention: last failure older than (7d, 30d)."),
          status: str = typer.Option("replayed", "--status", help="dead | replayed | any"),
          ids: list[str] = typer.Option(None, "--id"), dry_run: bool = typer.Option(False, "--dry-run"),
          as_json: bool = AS_JSON, token: str = TOKEN) -> None:
    """Erase old dead letters under the retention rules (payloads are removed, a tombstone stays)."""
    if not older_than and not ids:
        raise _fail("purge needs --older-than or --id", USAGE)
    request = pb.PurgeRequest(tenant=tenant or "", stage=stage or "", status=status, ids=list(ids or ()),
                              older_than_s=duration_s(older_than) if older_than else 0, dry_run=dry_run)
    result = call_control(lambda c: c.call("Purge", request), token)
    if as_json:
        typer.echo(json.dumps(_json(result)))
    else:
        console.print(f"{result.matched} matched, {result.purged} purged" + (" (dry run)" if dry_run else ""))
    raise typer.Exit(OK if result.matched else NOTHING)


@dlq_app.command("stats")
def stats(tenant: str = TENANT, window: str = typer.Option("24h", "--new-within", help="New-fingerprint window."),
          as_json: bool = AS_JSON, token: str = TOKEN) -> None:
    """DLQ depth and oldest age per tenant and stage; fingerprints first seen recently."""
    result = call_control(lambda c: c.call("Stats", pb.StatsRequest(tenant=tenant or "",
                                                            new_fingerprint_window_s=duration_s(window))), token)
    if as_json:
        typer.echo(json.dumps(_json(result)))
    else:
        table = Table(title="dead-letter queues")
        for col in ("tenant", "stage", "depth", "oldest age", "replayed", "new fingerprints"):
            table.add_column(col)
        for s in result.stages:
            table.add_row(s.tenant, s.stage, str(s.depth), f"{s.oldest_age_s:.0f}s" if s.depth else "-",
                          str(s.replayed), ", ".join(s.new_fingerprints))
        console.print(table)
    raise typer.Exit(OK)


@token_app.command("issue")
def token_issue(tenant: str = typer.Option(None, "--tenant", help="The operator's tenant."),
                role: str = typer.Option("operator", "--role", help=f"One of {', '.join(ROLES)}."),
                sub: str = typer.Option(None, "--sub", help="Who the token is for (default: $USER)."),
                ttl: str = typer.Option("1h", "--ttl", help="Lifetime (max 24h).")) -> None:
    """Mint a signed credential (needs this environment's signing key); its jti goes to stderr."""
    if role == ADMIN_ROLE:
        tenant = tenant or PLATFORM_TENANT
    if not tenant:
        raise _fail("--tenant is required for role " + role, USAGE)
    seconds = duration_s(ttl)
    if seconds > MAX_TTL_SECONDS:
        raise _fail("--ttl is at most 24h", USAGE)
    try:
        settings = TokenSettings.from_env()
        token = issue(settings, sub=sub or os.environ.get("USER") or "operator", tenant=tenant, role=role,
                      ttl_seconds=seconds)
    except (ConfigError, TenantError, ValueError) as exc:
        raise _fail(str(exc), USAGE) from None
    typer.echo(token)
    typer.echo(f"jti {jwt.decode(token, options={'verify_signature': False})['jti']} "
               f"(revoke with: vigil token revoke <jti>)", err=True)


@token_app.command("revoke")
def token_revoke(jti: str = typer.Argument(..., help="The token's id (printed by `vigil token issue`).")) -> None:
    """Refuse the token from its next call on, on every gRPC server (within VIGIL_TOKEN_REVOCATION_CACHE_S)."""
    try:
        jti = revocation.check_jti(jti)
        settings = Settings.from_env()
    except (ConfigError, ValueError) as exc:
        raise _fail(str(exc), USAGE) from None
    try:
        added = asyncio.run(_revoke(settings, jti, cli_actor()))
    except (OSError, asyncpg.PostgresError) as exc:
        raise _fail(f"cannot reach PostgreSQL ({type(exc).__name__})", NOTHING) from None
    typer.echo(f"revoked {jti}" if added else f"{jti} was already revoked")


async def _revoke(settings: Settings, jti: str, actor: str) -> bool:
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await ensure_schema(pool, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)
        await ensure_schema(pool, revocation.SCHEMA_MODULE, revocation.SCHEMA_STEPS)
        async with pool.acquire() as conn:
            return await revocation.revoke(conn, jti, actor)
    finally:
        await pool.close()
