"""The CDS Hooks 2.0 service (FastAPI).

    python -m services.cdshooks.app           # VIGIL_CDS_PORT (8085)

Routes (one table, ``ROUTES``); the tenant comes from the route and must be in the registry,
and every hook / feedback call must carry a JWT of *that* tenant's CDS client (``auth``):

- ``GET  /{tenant}/cds-services``: discovery (no PHI; no token needed); empty for a tenant whose
  integration profile does not deliver ``cds-hooks`` (its hooks and feedback are then 404)
- ``POST /{tenant}/cds-services/irae-patient-view``: ``patient-view`` -> cards for the
  patient's open AI findings (``cards``: per open Task, or per open episode for a tenant whose
  EHR takes no FHIR results)
- ``POST /{tenant}/cds-services/irae-patient-view/feedback``: accepted / overridden (with an
  override reason and comment) -> one ``vigil.cdshooks.feedback`` event per card on the tenant's
  ``feedback`` stream (the comment sealed with the tenant key), answered once the broker has it;
  the monitor turns it into labels, triage into the decision ledger's clinician action.
- ``GET  /healthz``: 200 while the read model's stages run, else 503

The cards come from cdshooks' own read model, ``cdshooks_findings`` (``projection``), which this
process alone migrates and writes: two stages (``specs``) run in it for every tenant of the
registry, ``cdshooks-actions`` on ``actions`` (decisions) and ``cdshooks-feedback`` on
``feedback`` (task-written, task-updated, card feedback), each with its own consumer group
(``vigil.<tenant>.cdshooks-*``). It never reads triage's decision ledger.

Errors are JSON ``{"error": code, "message": ...}``: 400 malformed request, 401 token refused,
404 unknown tenant / service / card. Messages never echo request content.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
from datetime import datetime, timezone
from typing import Mapping

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from services.cdshooks import auth, cards, projection
from services.cdshooks.config import CdsClient, CdsSettings
from services.core import contracts, httperrors, httpserver, kv, serving
from services.core.config import ConfigError, Settings
from services.core.crypto import Keyring
from services.core import evidence
from services.core.bus import Publisher, StageSpec
from services.core.bus.service import StageHost
from services.core.db import create_pool
from services.core.errors import NotFoundError, PermissionDeniedError, ValidationError, VigilError, classify
from services.core.events import Event, deterministic_id
from services.core.logging import configure, get_logger
from services.core.routes import Route
from services.core.secrets import SecretSettings
from services.core.tenancy import TenantError, check_tenant_id
from services.core.tenantdb import TenantPools
from services.core.tenantcache import TenantCache
from services.core.tenantdir import TenantDirectory

log = get_logger("vigil.cdshooks")
OUTCOMES = ("accepted", "overridden")
#: The results channel this service serves (``IntegrationProfile.results``): a tenant whose profile
#: lacks it has no CDS service (discovery lists none, hooks and feedback are 404).
CHANNEL = "cds-hooks"
#: A tenant that also takes FHIR results has Tasks: its cards are per Task, with an inbox link.
FHIR_CHANNEL = "fhir"
MAX_FEEDBACK_ITEMS = 50
#: A clinician's comment is kept to 500 characters (the label store's limit).
MAX_COMMENT = 500
FEEDBACK_STREAM = contracts.FEEDBACK
FEEDBACK_TYPE = contracts.CDS_FEEDBACK
#: The read model's stages (consumer groups ``vigil.<tenant>.<stage>``).
ACTIONS_STAGE = "cdshooks-actions"
FEEDBACK_STAGE = "cdshooks-feedback"


class BadRequest(ValidationError):
    code = "bad_request"


class NotFound(NotFoundError):
    code = "not_found"


class State:
    def __init__(self, settings: Settings, cds: CdsSettings, secrets: SecretSettings | None = None,
                 pools: TenantPools | None = None):
        self.settings, self.cds = settings, cds
        self.secrets = secrets or SecretSettings.from_env()
        self._own_pools = pools is None
        self.pools = pools or TenantPools(settings, self.secrets)
        self.keyring = Keyring(self.pools, self.secrets)
        self.directory = TenantDirectory(settings.tenants_file)
        self.redis = kv.TenantClients(settings, self.secrets)
        self._publishers: TenantCache[Publisher] = TenantCache(close=lambda pub: pub.stop(), name="publisher")
        self.stages: tuple[StageHost, asyncio.Task] | None = None
        self._stop_stages: asyncio.Event | None = None

    async def publisher(self, tenant: str) -> Publisher:
        """The tenant's producer (its own Kafka user), started on first use."""
        async def make() -> Publisher:
            pub = Publisher(self.settings, tenant)
            await pub.start()
            return pub

        return await self._publishers.get(tenant, make)

    def tenant(self, raw: str):
        try:
            return self.directory.get(check_tenant_id(raw))
        except (TenantError, PermissionDeniedError):
            raise NotFound("unknown tenant") from None

    def stages_live(self) -> bool:
        host, task = self.stages
        return not task.done() and host.health()["live"]

    async def start_stages(self, specs: list[StageSpec]) -> None:
        """The read model's stages for every tenant of the registry (added / removed tenants follow)."""
        host = StageHost(self.settings, specs, port=None)
        await host.start()
        stop = asyncio.Event()
        self.stages = (host, asyncio.create_task(host.run(stop)))
        self._stop_stages = stop

    async def stop_stages(self) -> None:
        if self.stages is None:
            return
        host, task = self.stages
        self._stop_stages.set()
        with contextlib.suppress(Exception):
            await task
        await host.stop()
        self.stages = None

    async def close(self) -> None:
        await self.stop_stages()
        await self._publishers.close()
        await self.redis.close()
        if self._own_pools:
            await self.pools.close()


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": code, "message": message}, status_code=status)


def _audience(state: State, request: Request, tenant: str, service_id: str) -> list[str]:
    """The service endpoint (as discovery names it); a feedback call may also name its own URL."""
    base = state.cds.public_url or str(request.base_url).rstrip("/")
    endpoint = f"{base}/{tenant}/cds-services/{service_id}"
    return [endpoint, f"{endpoint}/feedback"] if request.url.path.endswith("/feedback") else [endpoint]


async def _authorize(state: State, request: Request, tenant: str, service_id: str) -> dict:
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header[:7].lower() == "bearer " else None
    try:
        client = CdsClient.of(state.tenant(tenant))
    except ConfigError:
        client = None
    return await auth.verify(token, client, _audience(state, request, tenant, service_id), state.redis(tenant), tenant)


async def _json(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        raise BadRequest("the body is not JSON") from None
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object")
    return body


# --- handlers ---------------------------------------------------------------------------------

def _offered(state: State, tenant: str) -> bool:
    """Does the tenant's integration profile take results as CDS Hooks cards?"""
    return state.tenant(tenant).integration.delivers(CHANNEL)


async def discovery(request: Request, tenant: str):
    return {"services": [cards.SERVICE] if _offered(request.app.state.vigil, tenant) else []}


async def hook(request: Request, tenant: str, service_id: str):
    state: State = request.app.state.vigil
    if service_id != cards.SERVICE_ID or not _offered(state, tenant):
        raise NotFound("no such CDS service")
    await _authorize(state, request, tenant, service_id)
    body = await _json(request)
    if body.get("hook") != "patient-view":
        raise BadRequest("this service answers the patient-view hook")
    context = body.get("context")
    patient = context.get("patientId") if isinstance(context, dict) else None
    if not isinstance(patient, str) or not patient or len(patient) > 64:
        raise BadRequest("context.patientId is required")
    user = context.get("userId") if isinstance(context.get("userId"), str) else None
    out = []
    tasks = state.tenant(tenant).integration.delivers(FHIR_CHANNEL)
    for finding in await cards.open_findings(state.pools, state.keyring, tenant, patient, tasks=tasks):
        c = cards.card(tenant, finding, state.cds.inbox_url)
        await cards.remember(state.redis(tenant), tenant, c, finding, patient, user)
        out.append(c)
    log.info("cds.patient_view", tenant=tenant, cards=len(out))
    return {"cards": out}


def _parse_feedback(body: dict) -> list[dict]:
    items = body.get("feedback")
    if not isinstance(items, list) or not items or len(items) > MAX_FEEDBACK_ITEMS:
        raise BadRequest(f"feedback must be a list of 1-{MAX_FEEDBACK_ITEMS} items")
    out = []
    for i, item in enumerate(items):
        if not isinstance(item, dict) or not isinstance(item.get("card"), str) or item.get("outcome") not in OUTCOMES:
            raise BadRequest(f"feedback[{i}] needs card and outcome (accepted | overridden)")
        reason = item.get("overrideReason") or {}
        if not isinstance(reason, dict):
            raise BadRequest(f"feedback[{i}].overrideReason must be an object")
        code = (reason.get("reason") or {}).get("code") if isinstance(reason.get("reason"), dict) else None
        comment = reason.get("userComment") if isinstance(reason.get("userComment"), str) else None
        try:
            when = datetime.fromisoformat(str(item.get("outcomeTimestamp")).replace("Z", "+00:00"))
            when = when if when.tzinfo else when.replace(tzinfo=timezone.utc)
        except ValueError:
            raise BadRequest(f"feedback[{i}].outcomeTimestamp must be an ISO 8601 instant") from None
        out.append({"card": item["card"], "outcome": item["outcome"], "reason": code, "comment": comment,
                    "time": when})
    return out


async def feedback(request: Request, tenant: str, service_id: str):
    state: State = request.app.state.vigil
    if service_id != cards.SERVICE_ID or not _offered(state, tenant):
        raise NotFound("no such CDS service")
    await _authorize(state, request, tenant, service_id)
    items = _parse_feedback(await _json(request))
    redis = state.redis(tenant)
    known = []
    for item in items:
        issued = await cards.recall(redis, tenant, item["card"])
        if issued is None:
            raise NotFound("unknown card")
        known.append((item, issued))
    events = [await _feedback_event(state, tenant, item, issued) for item, issued in known]
    try:
        publisher = await state.publisher(tenant)
        await publisher.publish_many(FEEDBACK_STREAM, events)
    except VigilError:
        raise
    except Exception as exc:  # the broker: a 503 the EHR may retry (the same event ids)
        raise classify(exc) from None
    log.info("cds.feedback", tenant=tenant, items=len(items), decisions=sum(len(e.data["decisions"]) for e in events))
    return {}


def _short(value, limit: int) -> str | None:
    return value if isinstance(value, str) and 0 < len(value) <= limit else None


async def _feedback_event(state: State, tenant: str, item: dict, issued: dict) -> Event:
    """One card's answer as a ``vigil.cdshooks.feedback`` event; its id is deterministic in (card,
    time), so a resent answer is one event to its consumers."""
    stamp = item["time"].isoformat()
    data = {"card": item["card"][:64], "patient": issued["patient"], "outcome": item["outcome"],
            "reason": item["reason"][:64] if isinstance(item["reason"], str) else None,
            "task": issued["task"], "decisions": issued["decisions"], "clinician": _short(issued.get("user"), 256),
            "category": issued.get("category"), "grade": issued.get("grade"),
            "modelVersion": issued.get("engine_version"),
            "time": item["time"].astimezone(timezone.utc).isoformat()}
    if item["comment"]:
        data["commentSealed"] = await evidence.seal_text(state.keyring, tenant, item["comment"][:MAX_COMMENT])
    return Event.new(FEEDBACK_TYPE, source=f"/cdshooks/{tenant}", tenant=tenant, key=issued["patient"], data=data,
                     id=deterministic_id(tenant, FEEDBACK_TYPE, item["card"], stamp))


async def healthz(request: Request):
    state: State = request.app.state.vigil
    if state.stages is not None and not state.stages_live():
        return JSONResponse({"status": "unhealthy", "stages": "a read-model stage stopped"}, status_code=503)
    return {"status": "ok"}


#: The one route table.
ROUTES = [
    Route("/healthz", ("GET",), healthz),
    Route("/{tenant}/cds-services", ("GET",), discovery),
    Route("/{tenant}/cds-services/{service_id}", ("POST",), hook),
    Route("/{tenant}/cds-services/{service_id}/feedback", ("POST",), feedback),
]


def specs(pools: TenantPools, keyring: Keyring, **kw) -> list[StageSpec]:
    """The read model's stages (``kw``: retry / tuning overrides, for tests)."""
    return [StageSpec(name=ACTIONS_STAGE, input_stream=contracts.ACTIONS,
                      handler=projection.Actions(pools, keyring),
                      types=projection.Actions.TYPES, **kw),
            StageSpec(name=FEEDBACK_STAGE, input_stream=contracts.FEEDBACK,
                      handler=projection.Feedback(pools),
                      types=projection.Feedback.TYPES, **kw)]


async def migrate(settings: Settings) -> None:
    """Create the read model's table (admin DSN; idempotent, safe with concurrent start-ups)."""
    pool = await create_pool(settings, min_size=1, max_size=1)
    try:
        await projection.ensure_schema(pool)
    finally:
        await pool.close()


def create_app(settings: Settings, cds: CdsSettings, *, secrets: SecretSettings | None = None,
               pools: TenantPools | None = None) -> FastAPI:
    """The HTTP app; its lifespan runs the read model's stages (``specs``) next to the routes."""
    state = State(settings, cds, secrets, pools)

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        await state.start_stages(specs(state.pools, state.keyring))
        try:
            yield
        finally:
            await state.close()

    app = FastAPI(title="Vigil CDS Hooks", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.vigil = state
    for path, methods, handler in ROUTES:
        app.add_api_route(path, handler, methods=list(methods))

    httperrors.install(app, _render_failure, log_event="cds.request_failed")
    return app


def _render_failure(_request: Request, failure: httperrors.Failure) -> JSONResponse:
    """A failed request as ``{"error", "message"}``; only our own 400/404 messages are echoed."""
    if failure.status == 401:
        return _error(401, "unauthorized", "the request's token was refused")
    if failure.status in (400, 404):
        return _error(failure.status, failure.error.code, str(failure.error))
    if failure.error.retryable:
        return _error(503, "unavailable", "the request could not be served; try again")
    return _error(failure.status, failure.error.code, "the request could not be served")


async def serve(env: Mapping[str, str] | None = None) -> None:
    """Serve until SIGINT/SIGTERM (``vigil serve cdshooks``); ConfigError on bad settings."""
    source = os.environ if env is None else env
    settings = Settings.from_env(source)
    cds = CdsSettings.from_env(source, settings.ehr_url)
    configure(settings.log_level)
    await migrate(settings)
    await httpserver.serve("cdshooks", create_app(settings, cds), cds.host, cds.port, lifespan="on")


def main() -> None:
    serving.main(serve)


if __name__ == "__main__":
    main()
