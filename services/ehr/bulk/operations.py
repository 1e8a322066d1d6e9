"""FHIR Bulk Data Access (v2) ``$export``: kick-off, status, files and cancellation, and the route
table the app inserts ahead of the generic FHIR routes.

- Kick-off: ``GET [base]/$export`` (system), ``[base]/Patient/$export``, ``[base]/Group/<id>/$export``
  with ``Prefer: respond-async`` (required) and ``_type``, ``_since``, ``_outputFormat``
  (``application/fhir+ndjson``, ``application/ndjson`` or ``ndjson``). Answer: 202 with
  ``Content-Location`` (the status URL). Other parameters (``_typeFilter``, ``_elements``,
  ``patient``, ``includeAssociatedData``) are refused with 400 unless ``Prefer`` carries
  ``handling=lenient``, when they are ignored. The client needs read scope on every type it
  names; without ``_type`` it gets the types it may read (system level: those the tenant holds;
  Patient and Group level: the Patient compartment). At most ``MAX_ACTIVE_JOBS`` jobs of a
  tenant run at once (429 with Retry-After beyond).
- Status: ``GET [base]/$export-status/<job>``: 202 with ``X-Progress`` and ``Retry-After`` while
  the job runs (and, under the ``export_delay_s`` fault, until that long after the kick-off);
  200 with the manifest (``transactionTime``, ``request``, ``requiresAccessToken``,
  ``output[{type, url, count}]``, ``error[]``) when done; 500 with an OperationOutcome if it failed.
  ``DELETE`` on it cancels (202); the job is then unknown (404).
- Files: ``GET [base]/$export-file/<job>/<Type>.<n>.ndjson`` (``application/fhir+ndjson``), with
  the bearer token of the client that started the export.

Jobs are planned by a task in the server (``run``); a job whose planner stopped (a restart) is
taken over by the next status request.
"""
from __future__ import annotations

import asyncio
import math
import re
import uuid
from datetime import datetime, timedelta, timezone

from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse

from services.core.routes import Route
from services.core.logging import get_logger
from services.ehr.bulk import jobs, snapshot
from services.ehr.http import Ctx, context
from services.ehr.outcome import FhirError, bad_request, fhir_response, issue, not_found, operation_outcome
from services.ehr.validation import check_id, check_type, resource_types
from services.ehr.values import date_range

log = get_logger("ehr.bulk")

NDJSON = "application/fhir+ndjson"
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
KICKOFF_PARAMS = ("_type", "_since", "_outputFormat")
IGNORABLE_PARAMS = ("_typeFilter", "_elements", "patient", "includeAssociatedData", "_format", "_pretty")
#: Jobs of one tenant in progress at once; a further kick-off is 429 with Retry-After.
MAX_ACTIVE_JOBS = 5
#: Retry-After while a job runs: the planner needs about a second per few hundred thousand rows;
#: under the export_delay_s fault, the time left, capped at MAX_RETRY_AFTER_S.
RETRY_AFTER_S = 1
MAX_RETRY_AFTER_S = 10
#: A planner that has not beaten for this long is presumed dead (server restart) and replaced.
STALE_PLANNER_S = 30
_FILE = re.compile(r"^([A-Z][A-Za-z]+)\.([0-9]{1,6})\.ndjson$")
#: Planner tasks, held so they are not collected while they run.
_TASKS: set[asyncio.Task] = set()


def _prefer(request: Request) -> set[str]:
    return {p.strip().replace(" ", "") for p in request.headers.get("prefer", "").split(",") for p in p.split(";")}


def _types(raw: str) -> list[str]:
    names = [t.strip() for t in raw.split(",") if t.strip()]
    if not names:
        raise bad_request("_type names no resource type")
    known = resource_types()
    unknown = [t for t in names if t not in known]
    if unknown:
        raise bad_request(f"_type names types this server does not hold: {', '.join(u[:40] for u in unknown[:5])}",
                          "not-supported")
    return sorted(set(names))


def _since(raw: str) -> datetime:
    if raw[:1].isalpha():
        raise bad_request("_since is an instant (e.g. 2024-01-31T08:00:00Z), without a search prefix")
    _, low, _ = date_range(raw)
    return low


async def _kickoff(request: Request, level: str, group_id: str | None = None) -> Response:
    ctx = await context(request)
    prefer = _prefer(request)
    if "respond-async" not in prefer:
        raise bad_request("$export runs asynchronously: send Prefer: respond-async")
    accept = request.headers.get("accept", "")
    if accept and not any(m in accept for m in ("application/fhir+json", "application/json", "*/*")):
        raise FhirError(406, "$export answers with application/fhir+json (OperationOutcome) only", "not-supported")
    lenient = "handling=lenient" in prefer
    types, since = None, None
    for name, value in request.query_params.multi_items():
        if name == "_type":
            types = sorted(set(types or []) | set(_types(value)))
        elif name == "_since":
            since = _since(value)
        elif name == "_outputFormat":
            if value not in OUTPUT_FORMATS:
                raise bad_request(f"_outputFormat must be one of {', '.join(OUTPUT_FORMATS)}", "not-supported")
        elif name in IGNORABLE_PARAMS and (lenient or name in ("_format", "_pretty")):
            continue
        else:
            raise bad_request(f"$export does not support the parameter '{name[:40]}' (send Prefer: handling=lenient "
                              "to have supported-elsewhere parameters ignored)", "not-supported")
    explicit = types is not None
    compartment = snapshot.compartment_types()
    if explicit:
        if level != "system":
            outside = [t for t in types if t not in compartment]
            if outside:
                raise bad_request(f"{', '.join(outside[:5])} is not in the Patient compartment "
                                  f"(a {level}-level export holds only that)", "not-supported")
        for rtype in types:
            ctx.require(rtype, "r")
    patients = None
    async with ctx.store.transaction(ctx.tenant.id) as tx:
        if group_id is not None:
            ctx.require("Group", "r")
            group = (await tx.read("Group", group_id)).content
            patients = sorted({m["entity"]["reference"].split("/_history/")[0].rsplit("Patient/", 1)[1]
                               for m in group.get("member") or []
                               if isinstance(m, dict) and not m.get("inactive")
                               and isinstance((m.get("entity") or {}).get("reference"), str)
                               and "Patient/" in m["entity"]["reference"]})
        if not explicit:
            present = await snapshot.types_present(tx.conn, ctx.tenant.id) if level == "system" else compartment
            types = [t for t in present if ctx.principal.allows(t, "r")]
            if present and not types:
                raise FhirError(403, "The granted scopes allow reading none of the types this export would hold",
                                "forbidden")
        if await jobs.active_count(tx.conn, ctx.tenant.id) >= MAX_ACTIVE_JOBS:
            raise FhirError(429, f"{MAX_ACTIVE_JOBS} exports are already running; retry later", "throttled",
                            headers={"Retry-After": str(MAX_RETRY_AFTER_S)})
        now = datetime.now(timezone.utc)
        job = jobs.Job(id=uuid.uuid4().hex, client_id=ctx.principal.client_id, level=level, group_id=group_id,
                       patients=patients, types=types, explicit_types=explicit, since=since,
                       request=_request_url(ctx, request),
                       transaction_time=now,
                       ready_at=now + timedelta(seconds=ctx.tenant.faults.export_delay_s),
                       status="in-progress", progress="accepted", files=[], error=None, heartbeat=now)
        await tx.begin()
        await jobs.insert(tx.conn, ctx.tenant.id, job)
    _start(ctx, job)
    status_url = f"{ctx.base}/$export-status/{job.id}"
    body = operation_outcome([issue("informational", "The export was accepted; poll the Content-Location URL",
                                    "information")])
    return fhir_response(body, 202, {"Content-Location": status_url})


def _request_url(ctx: Ctx, request: Request) -> str:
    """The kick-off URL as the client sent it to the public base (behind a proxy too)."""
    path = request.url.path.split(f"/fhir/{ctx.tenant.id}", 1)[-1]
    return ctx.base + path + (f"?{request.url.query}" if request.url.query else "")


def _start(ctx: Ctx, job: jobs.Job) -> None:
    task = asyncio.get_running_loop().create_task(run(ctx.store, ctx.tenant.id, job))
    _TASKS.add(task)
    task.add_done_callback(_TASKS.discard)


async def run(store, tenant: str, job: jobs.Job) -> None:
    """Plan every type of the job (one query each), recording progress; then mark it complete."""
    files: list[dict] = []
    try:
        for n, rtype in enumerate(job.types, start=1):
            async with store.connection(tenant) as conn:
                planned = await snapshot.plan(conn, tenant, job, rtype)
                if planned is not None:
                    files.append(planned)
                if not await jobs.record_progress(conn, tenant, job.id, files, f"{n}/{len(job.types)} types"):
                    return  # cancelled
        async with store.connection(tenant) as conn:
            await jobs.finish(conn, tenant, job.id, "complete")
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the job fails, visibly, on its status URL
        log.error("ehr.export.failed", tenant=tenant, job=job.id, error=type(exc).__name__)
        async with store.connection(tenant) as conn:
            await jobs.finish(conn, tenant, job.id, "error", f"The export failed ({type(exc).__name__})")


async def system_export(request: Request) -> Response:
    return await _kickoff(request, "system")


async def patient_export(request: Request) -> Response:
    return await _kickoff(request, "patient")


async def group_export(request: Request) -> Response:
    return await _kickoff(request, "group", check_id(request.path_params["rid"]))


async def _own_job(ctx: Ctx, job_id: str) -> jobs.Job:
    """The job, when it exists, is not cancelled and belongs to the calling client (else 404)."""
    if not re.fullmatch(r"[0-9a-f]{32}", job_id):
        raise not_found("No such export")
    async with ctx.store.connection(ctx.tenant.id) as conn:
        job = await jobs.get(conn, ctx.tenant.id, job_id)
    if job is None or job.status == "cancelled" or job.client_id != ctx.principal.client_id:
        raise not_found("No such export (unknown, cancelled, or started by another client)")
    return job


def _manifest(ctx: Ctx, job: jobs.Job) -> dict:
    output = []
    for planned in job.files:
        for part, count in enumerate(planned["counts"], start=1):
            output.append({"type": planned["type"], "count": count,
                           "url": f"{ctx.base}/$export-file/{job.id}/{planned['type']}.{part}.ndjson"})
    return {"transactionTime": job.transaction_time.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "request": job.request, "requiresAccessToken": True, "output": output, "error": []}


async def status(request: Request) -> Response:
    ctx = await context(request)
    job = await _own_job(ctx, request.path_params["job"])
    now = datetime.now(timezone.utc)
    if job.status == "in-progress" and (now - job.heartbeat).total_seconds() > STALE_PLANNER_S:
        async with ctx.store.connection(ctx.tenant.id) as conn:
            if await jobs.claim_stale(conn, ctx.tenant.id, job.id, STALE_PLANNER_S):
                _start(ctx, job)
    if job.status == "error":
        raise FhirError(500, job.error or "The export failed", "exception")
    waiting = (job.ready_at - now).total_seconds()
    if job.status == "in-progress" or waiting > 0:
        progress = job.progress if job.status == "in-progress" else "writing files"
        retry = RETRY_AFTER_S if waiting <= 0 else min(MAX_RETRY_AFTER_S, max(RETRY_AFTER_S, math.ceil(waiting)))
        return Response(status_code=202, headers={"X-Progress": progress, "Retry-After": str(retry)})
    return JSONResponse(_manifest(ctx, job), headers={"Cache-Control": "no-store"})


async def cancel(request: Request) -> Response:
    ctx = await context(request)
    job = await _own_job(ctx, request.path_params["job"])
    async with ctx.store.connection(ctx.tenant.id) as conn:
        await jobs.cancel(conn, ctx.tenant.id, job.id)
    return fhir_response(operation_outcome([issue("informational", "The export was cancelled", "information")]), 202)


async def download(request: Request) -> Response:
    ctx = await context(request)
    job = await _own_job(ctx, request.path_params["job"])
    m = _FILE.match(request.path_params["name"])
    planned = next((f for f in job.files if m and f["type"] == m.group(1)), None) if job.status == "complete" else None
    part = int(m.group(2)) - 1 if m else -1
    if planned is None or not 0 <= part < len(planned["starts"]):
        raise not_found("No such file in this export")
    check_type(planned["type"])

    async def lines():
        async with ctx.store.connection(ctx.tenant.id) as conn:
            async with conn.transaction(readonly=True):
                async for line in snapshot.stream(conn, ctx.tenant.id, job, planned["type"], planned["starts"], part):
                    yield line

    return StreamingResponse(lines(), media_type=NDJSON, headers={"Cache-Control": "no-store"})


def _f(path: str) -> str:
    return "/fhir/{tenant}" + path


#: Inserted before the generic /{rtype}/{rid} routes (first match wins).
ROUTES: list[Route] = [
    Route(_f("/$export"), ["GET"], system_export),
    Route(_f("/Patient/$export"), ["GET"], patient_export),
    Route(_f("/Group/{rid}/$export"), ["GET"], group_export),
    Route(_f("/$export-status/{job}"), ["GET"], status),
    Route(_f("/$export-status/{job}"), ["DELETE"], cancel),
    Route(_f("/$export-file/{job}/{name}"), ["GET"], download),
]
