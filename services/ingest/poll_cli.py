"""`vigil poll status --tenant T` and `vigil poll watchlist upload --tenant T FILE`.

status: the watch list's size, the last round (when, how long, requests, notes, errors), the last
watch-list refresh or upload, and the watched patients most behind first (Patient id, cursor, time
since the last successful poll, last error code). Patient ids are the EHR's logical ids; nothing
else about a patient is stored or shown.

upload: parse the file (malformed lines: exit 2, nothing stored), resolve each entry in the EHR at
the tenant's polling rate, store the resolved patients as the tenant's uploaded list (replacing
the previous one unless --append). Entries that match no patient, or several, are reported by
line number; the resolved ones are stored and the exit code is 1 so a script notices.
"""
from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from services.core.config import ConfigError, Settings
from services.core.errors import VigilError
from services.core.tenancy import Registry, TenantError

app = typer.Typer(help="Per-patient polling (EHRs without subscriptions): status and the watch list.",
                  no_args_is_help=True)
watchlist_app = typer.Typer(help="The tenant's polling watch list.", no_args_is_help=True)
app.add_typer(watchlist_app, name="watchlist")
console = Console()
err = Console(stderr=True)


def _fail(message: str, code: int = 1):
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _load(tenant: str):
    try:
        settings = Settings.from_env()
        return settings, Registry.load(settings.tenants_file).get(tenant)
    except (ConfigError, TenantError) as exc:
        _fail(str(exc), 2)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _seconds(delta) -> float | None:
    return round(delta.total_seconds(), 3) if delta is not None else None


async def poll_status(settings: Settings, tenant: str, limit: int) -> dict:
    from services.core.secrets import SecretSettings
    from services.core.tenantdb import TenantPools
    from services.ingest.store import polling

    pools = TenantPools(settings, SecretSettings.from_env())
    try:
        async with pools.tx(tenant, readonly=True) as conn:
            found = await polling.status(conn, tenant, limit)
    finally:
        await pools.close()
    row, counts = found["tenant"], found["counts"]
    last_round = None
    if row is not None and row["round_started"] is not None:
        finished = row["round_finished"]
        last_round = {"started": _iso(row["round_started"]), "finished": _iso(finished),
                      "seconds": _seconds(finished - row["round_started"]) if finished
                      and finished >= row["round_started"] else None,
                      "patients": row["round_patients"], "requests": row["round_requests"],
                      "notes": row["round_notes"], "errors": row["round_errors"], "rounds": row["rounds"]}
    return {
        "tenant": tenant, "watched": counts["watched"], "failing": counts["failing"],
        "maxLagSeconds": _seconds(counts["max_lag"]), "lastRound": last_round,
        "watchRefreshed": _iso(row["watch_refreshed"]) if row else None,
        "watchRefreshError": row["watch_refresh_error"] if row else None,
        "upload": ({"at": _iso(row["upload_at"]), "entries": row["upload_entries"],
                    "unresolved": row["upload_unresolved"]} if row and row["upload_at"] else None),
        "patients": [{"patient": p["patient_id"], "source": p["source"], "cursor": _iso(p["cursor_updated"]),
                      "lastOk": _iso(p["last_ok"]),
                      "lagSeconds": _seconds(p["now"] - (p["last_ok"] or p["added_at"])),
                      "cursorLagSeconds": _seconds(p["now"] - p["cursor_updated"]) if p["cursor_updated"] else None,
                      "lastError": p["last_error"], "consecutiveErrors": p["consecutive_errors"],
                      "polls": p["polls"], "notes": p["notes"]} for p in found["patients"]],
    }


@app.command()
def status(tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
           limit: int = typer.Option(50, "--limit", min=1, max=100000, help="Watched patients to list."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Watched patients, the last round, and how far behind each patient's view is."""
    settings, cfg = _load(tenant)
    try:
        report = asyncio.run(poll_status(settings, cfg.id, limit))
    except OSError as exc:
        _fail(f"the database is not reachable ({type(exc).__name__})")
    if as_json:
        typer.echo(json.dumps(report))
        return
    trigger = "on" if cfg.integration.has_trigger("patient-poll") else "NOT in the profile's triggers"
    console.print(f"{cfg.id}: patient-poll {trigger}; watch list {cfg.integration.watch_list or '-'}: "
                  f"{report['watched']} patients watched, {report['failing']} failing, "
                  f"max lag {report['maxLagSeconds'] if report['maxLagSeconds'] is not None else '-'} s")
    last = report["lastRound"]
    if last:
        console.print(f"last round: started {last['started']}, {last['seconds'] if last['seconds'] is not None else '-'}"
                      f" s, {last['patients']} patients, {last['requests']} requests, {last['notes']} notes, "
                      f"{last['errors']} errors ({last['rounds']} rounds)")
    else:
        console.print("no round yet")
    if report["watchRefreshed"] or report["watchRefreshError"]:
        console.print(f"watch list refreshed {report['watchRefreshed'] or '-'}"
                      + (f" (last refresh failed: {report['watchRefreshError']})" if report["watchRefreshError"] else ""))
    if report["upload"]:
        up = report["upload"]
        console.print(f"last upload {up['at']}: {up['entries']} entries, {up['unresolved']} unresolved")
    if report["patients"]:
        table = Table("patient", "source", "cursor", "last ok", "lag s", "error", "polls", "notes",
                      title="watched patients (most behind first)")
        for p in report["patients"]:
            table.add_row(p["patient"], p["source"], p["cursor"] or "-", p["lastOk"] or "-", str(p["lagSeconds"]),
                          (f"{p['lastError']} x{p['consecutiveErrors']}" if p["lastError"] else ""),
                          str(p["polls"]), str(p["notes"]))
        console.print(table)


async def upload_list(settings: Settings, cfg, entries, append: bool) -> dict:
    from services.core.secrets import SecretSettings
    from services.core.tenantdb import TenantPools
    from services.ingest.directory import EhrDirectory
    from services.ingest.poll.bucket import TokenBucket
    from services.ingest.poll.settings import PollSettings
    from services.ingest.poll.watchlist import resolve
    from services.ingest.store import polling

    poll = PollSettings.from_tenant(cfg)
    directory = EhrDirectory(settings, Registry(settings.tenants_file, [cfg]))
    try:
        ehr = await directory(cfg.id)
        resolved = await resolve(ehr, TokenBucket(poll.rate_per_s, poll.burst), entries, poll.concurrency)
    finally:
        await directory.close()
    pools = TenantPools(settings, SecretSettings.from_env())
    try:
        async with pools.tx(cfg.id) as conn:
            counts = await polling.replace_uploaded(conn, cfg.id, resolved.patient_ids, append=append)
            await polling.uploaded(conn, cfg.id, entries=len(entries), unresolved=len(resolved.unresolved))
    finally:
        await pools.close()
    return {"tenant": cfg.id, "entries": len(entries), "patients": len(resolved.patient_ids), **counts,
            "unresolved": [{"line": line, "reason": reason} for line, reason in resolved.unresolved]}


@watchlist_app.command("upload")
def upload(file: Path = typer.Argument(..., help="CSV / text lines (Patient id, system|value, system,value) "
                                                  "or JSON lines ({\"patient\"} / {\"identifier\"} / {\"system\", \"value\"})."),
           tenant: str = typer.Option(..., "--tenant", help="Tenant id."),
           append: bool = typer.Option(False, "--append", help="Add to the uploaded list instead of replacing it."),
           as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Upload the tenant's watch list: identifiers are resolved to Patient ids in its EHR."""
    from services.ingest.poll.watchlist import UploadError, parse_upload

    settings, cfg = _load(tenant)
    if cfg.integration.watch_list != "uploaded":
        _fail(f"tenant {cfg.id}: integration.watch_list is {cfg.integration.watch_list or 'not set'!r}, not "
              "'uploaded': an uploaded list would not be polled (set it in the tenant's [integration] table)", 2)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        _fail(f"{file}: cannot read ({getattr(exc, 'strerror', None) or type(exc).__name__})", 2)
    try:
        entries = parse_upload(text)
    except UploadError as exc:
        _fail(f"{file}: {exc}; nothing was stored", 2)
    try:
        report = asyncio.run(upload_list(settings, cfg, entries, append))
    except ConfigError as exc:
        _fail(str(exc), 2)
    except (VigilError, OSError) as exc:
        _fail(f"EHR or database of tenant {cfg.id}: {exc}; nothing was stored")
    if as_json:
        typer.echo(json.dumps(report))
    else:
        console.print(f"{cfg.id}: {report['entries']} entries, {report['patients']} patients watched from this list "
                      f"({report['added']} new, {report['kept']} already watched, {report['dropped']} no longer "
                      "watched)")
    if report["unresolved"]:
        shown = ", ".join(f"line {u['line']} ({u['reason']})" for u in report["unresolved"][:20])
        more = f" and {len(report['unresolved']) - 20} more" if len(report["unresolved"]) > 20 else ""
        err.print(f"[yellow]warning:[/] {len(report['unresolved'])} of {report['entries']} entries matched no single "
                  f"patient in the EHR and are not watched: {shown}{more}")
        raise typer.Exit(1)
