"""The Control gRPC servicer: one method per RPC (this class is the service's routing table).

Every method: the caller from the verified credential (``current_caller``), the tenant it may
act on (``Authz.tenant_for``: operators only their own, denials audited), the work through the
tenant's own pool (RLS), then one audit record of what was done (who, what, filter, counts).
"""
from __future__ import annotations

import json
import time

from services.control import convert, store
from services.control.authz import Authz
from services.control.indexer import PURPOSE, DlqIndexer
from services.control.modes import ModeAdmin
from services.control.replay import DEFAULT_MAX_REPLAYS, Replayer, check_rate
from services.core.crypto import Keyring
from services.core.errors import NotFoundError, ValidationError
from services.core.grpc.auth import current_caller
from services.core.tenantdb import TenantPools
from vigil.v1 import control_pb2 as pb
from vigil.v1 import control_pb2_grpc

DEFAULT_FINGERPRINT_WINDOW_S = 86400
MAX_PURGE_IDS = 10_000


class ControlServicer(control_pb2_grpc.ControlServicer):
    def __init__(self, pools: TenantPools, admin, keyring: Keyring, indexer: DlqIndexer, replayer: Replayer,
                 modes: ModeAdmin, authz: Authz):
        self.pools, self.admin, self.keyring, self.indexer = pools, admin, keyring, indexer
        self.replayer, self.modes, self.authz = replayer, modes, authz

    async def _tenant(self, method: str, *named: str, required: bool = True):
        claims = current_caller()
        return claims, await self.authz.tenant_for(claims, method, *named, required=required)

    # -- dead letters ------------------------------------------------------------------------
    async def ListDeadLetters(self, request, context):
        claims, tenant = await self._tenant("ListDeadLetters", request.tenant, request.filter.tenant)
        await self.indexer.sync([tenant])
        flt = convert.filter_from(request.filter, tenant)
        async with self.pools.tx(tenant, readonly=True) as conn:
            rows, token, total = await store.list_entries(conn, flt, request.page_size, request.page_token)
            counts = await store.replay_counts(conn, tenant, [(r["stage"], r["event_id"] or r["id"]) for r in rows])
        await self.authz.record(tenant, claims, "dlq.list", [], {"filter": flt.as_dict(), "returned": len(rows),
                                                                 "total": total})
        return pb.ListDeadLettersResponse(
            items=[convert.entry(r, counts.get((r["stage"], r["event_id"] or r["id"]), 0)) for r in rows],
            next_page_token=token, total=total)

    async def GetDeadLetter(self, request, context):
        claims, tenant = await self._tenant("GetDeadLetter", request.tenant)
        if not request.id:
            raise ValidationError("id is required", code="id_required")
        await self.indexer.sync([tenant])
        async with self.pools.tx(tenant, readonly=True) as conn:
            row = await store.get_entry(conn, tenant, request.id)
            if row is None:
                raise NotFoundError(f"dead letter {request.id} not found", code="dead_letter_not_found")
            counts = await store.replay_counts(conn, tenant, [(row["stage"], row["event_id"] or row["id"])])
        out = pb.DeadLetterDetail(
            entry=convert.entry(row, counts.get((row["stage"], row["event_id"] or row["id"]), 0)),
            headers=[pb.Header(key=k, value=v) for k, v in json.loads(row["headers"])],
            attempt_history_json=row["history"] if isinstance(row["history"], str) else json.dumps(row["history"]),
            dlq_partition=row["dlq_partition"], dlq_offset=row["dlq_offset"])
        if row["stack_enc"] is not None:
            out.stack = (await self.keyring.decrypt(tenant, row["stack_enc"], PURPOSE)).decode("utf-8", "replace")
        if request.include_payload:
            if not self.authz.may_read_payload(claims, tenant):
                out.payload_note = "payload withheld: only the tenant's operators may read it"
            elif row["payload_enc"] is None:
                out.payload_note = "payload erased by a purge"
            else:
                out.payload = await self.keyring.decrypt(tenant, row["payload_enc"], PURPOSE)
                out.payload_included = True
        await self.authz.record(tenant, claims, "dlq.read-payload" if out.payload_included else "dlq.read",
                                [f"vigil:dlq/{request.id}"], {"payload_read": out.payload_included})
        return out

    async def Replay(self, request, context):
        claims, tenant = await self._tenant("Replay", request.tenant, request.filter.tenant)
        await self.indexer.sync([tenant])
        max_replays = request.max_replays or DEFAULT_MAX_REPLAYS
        if max_replays < 1:
            raise ValidationError("max_replays must be >= 1", code="bad_max_replays")
        if request.resume_job_id:
            job_id = request.resume_job_id
            async with self.pools.tx(tenant, readonly=True) as conn:
                job = await store.get_job(conn, tenant, job_id)
            if job is None:
                raise NotFoundError(f"replay job {job_id} not found", code="job_not_found")
            await self.authz.record(tenant, claims, "dlq.replay.resume", [f"vigil:replay-job/{job_id}"],
                                    {"checkpoint": job["checkpoint"], "total": len(json.loads(job["entries"]))})
        else:
            flt = convert.filter_from(request.filter, tenant)
            if request.dry_run:
                plan = await self.replayer.dry_run(flt, force=request.force, max_replays=max_replays,
                                                   sample_size=request.sample_size)
                await self.authz.record(tenant, claims, "dlq.replay.dry-run", [], {
                    "filter": flt.as_dict(), "total": plan.total, "to_send": plan.to_send,
                    "skipped_loop_guard": plan.skipped_loop_guard, "force": request.force})
                yield convert.progress(plan)
                return
            rate = check_rate(request.rate_per_second)
            job_id = await self.replayer.create(flt, force=request.force, max_replays=max_replays, rate=rate,
                                                actor=claims.sub)
            await self.authz.record(tenant, claims, "dlq.replay.start", [f"vigil:replay-job/{job_id}"], {
                "filter": flt.as_dict(), "force": request.force, "max_replays": max_replays, "rate": rate})
        last = None
        async for step in self.replayer.run(tenant, job_id):
            last = step
            yield convert.progress(step)
        if last is not None:
            await self.authz.record(tenant, claims, "dlq.replay.done", [f"vigil:replay-job/{job_id}"], {
                "total": last.total, "sent": last.sent, "skipped": last.skipped_loop_guard})

    async def Purge(self, request, context):
        claims, tenant = await self._tenant("Purge", request.tenant)
        if not request.ids and request.older_than_s <= 0:
            raise ValidationError("purge needs older_than_s > 0 or explicit ids (retention rule)",
                                  code="retention_rule_required")
        if len(request.ids) > MAX_PURGE_IDS:
            raise ValidationError(f"at most {MAX_PURGE_IDS} ids per purge", code="too_many_ids")
        await self.indexer.sync([tenant])
        flt = store.Filter(tenant=tenant, stage=request.stage, status=request.status or "replayed",
                           ids=tuple(request.ids))
        async with self.pools.tx(tenant) as conn:
            matched, purged = await store.purge(conn, flt, request.older_than_s, request.dry_run)
        await self.authz.record(tenant, claims, "dlq.purge", [], {
            "filter": flt.as_dict(), "older_than_s": request.older_than_s, "dry_run": request.dry_run,
            "matched": matched, "purged": purged})
        return pb.PurgeResponse(matched=matched, purged=purged, dry_run=request.dry_run)

    async def Stats(self, request, context):
        claims, tenant = await self._tenant("Stats", request.tenant, required=False)
        window = request.new_fingerprint_window_s or DEFAULT_FINGERPRINT_WINDOW_S
        if window < 0:
            raise ValidationError("new_fingerprint_window_s must be >= 0", code="bad_window")
        await self.indexer.sync([tenant] if tenant else None)
        if tenant is None:  # platform-admin, every tenant: the platform connection
            async with self.admin.acquire() as conn:
                rows = await store.stats(conn, None, window)
        else:
            async with self.pools.tx(tenant, readonly=True) as conn:
                rows = await store.stats(conn, tenant, window)
        now = time.time()
        out = pb.StatsResponse(stages=[pb.StageStats(
            tenant=r["tenant"], stage=r["stage"], depth=r["depth"], replayed=r["replayed"],
            oldest_age_s=max(0.0, now - r["oldest"].timestamp()) if r["oldest"] else 0.0,
            new_fingerprints=list(r["new_fingerprints"])) for r in rows])
        if tenant is None:
            await self.authz.record_platform(claims, "dlq.stats", {"stages": len(rows), "all_tenants": True,
                                                                   "tenants": len({r["tenant"] for r in rows})})
        else:
            await self.authz.record(tenant, claims, "dlq.stats", [], {"stages": len(rows)})
        return out

    # -- modes and kill switches -------------------------------------------------------------
    async def GetMode(self, request, context):
        claims, tenant = await self._tenant("GetMode", request.tenant)
        state = await self.modes.state(tenant, request.agent or None, fresh=True)
        await self.authz.record(tenant, claims, "mode.get", [f"vigil:mode/{state.agent}"], {"agent": state.agent})
        return convert.mode_state(state)

    async def SetMode(self, request, context):
        claims, tenant = await self._tenant("SetMode", request.tenant)
        state = await self.modes.set_mode(tenant, request.mode, agent=request.agent or None,
                                          actor=f"{claims.role}:{claims.sub}", reason=request.reason,
                                          force=request.force,
                                          pilot_practitioners=list(request.pilot_practitioners) or None)
        return convert.mode_state(state)  # ModeAdmin appends the audit record in its own transaction

    async def Kill(self, request, context):
        claims, tenant = await self._tenant("Kill", request.tenant)
        state = await self.modes.kill(tenant, request.agent or None, request.on, actor=f"{claims.role}:{claims.sub}",
                                      reason=request.reason)
        return convert.mode_state(state)

    async def SetPilot(self, request, context):
        claims, tenant = await self._tenant("SetPilot", request.tenant)
        state = await self.modes.set_pilot(tenant, list(request.practitioners), agent=request.agent or None,
                                           actor=f"{claims.role}:{claims.sub}", reason=request.reason)
        return convert.mode_state(state)
