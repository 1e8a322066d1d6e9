"""Control-plane forgeries without a running server: request bodies naming another tenant (top-level
and nested in the DLQ filter), a service credential on the control role check, and the audit record
each denial leaves. (The same attempts against the running control service, the `vigil dlq` CLI and
the console are in tests/integration/control/test_cross_tenant.py and count into the same collector.)"""
from __future__ import annotations

import json
import uuid

from services.control.authz import Authz
from services.core import audit
from services.core.errors import PermissionDeniedError
from services.core.grpc.auth import check_request_tenant
from services.core.tokens import Claims
from vigil.v1 import control_pb2 as pb

A, B = "tctl" + uuid.uuid4().hex[:10], "tctl" + uuid.uuid4().hex[:10]  # fresh per run: audit rows are ours


def test_control_request_bodies_naming_another_tenant_are_refused(adversary):
    operator = Claims(sub="ops", tenant=A, role="operator", exp=4_000_000_000)
    for name, request in (
            ("grpc-body: control.ListDeadLetters naming another tenant", pb.ListDeadLettersRequest(tenant=B)),
            ("grpc-body: control.GetDeadLetter naming another tenant", pb.GetDeadLetterRequest(id="x", tenant=B)),
            ("grpc-body: control.Replay naming another tenant", pb.ReplayRequest(tenant=B)),
            ("grpc-body: control.Purge naming another tenant", pb.PurgeRequest(tenant=B, older_than_s=1)),
            ("grpc-body: control.Kill naming another tenant", pb.KillRequest(tenant=B, on=True))):
        with adversary.attempt(name, PermissionDeniedError):
            check_request_tenant(request, operator)


async def test_nested_filter_tenant_and_service_role_are_denied_and_audited(admin_pool, adversary):
    authz = Authz(pools=None, admin=admin_pool)
    operator = Claims(sub="ops", tenant=A, role="operator", exp=4_000_000_000)
    service = Claims(sub="extraction", tenant=A, role="service", exp=4_000_000_000)
    assert await authz.tenant_for(operator, "ListDeadLetters", "", A) == A
    with adversary.attempt("control authz: DLQ filter naming another tenant", PermissionDeniedError):
        await authz.tenant_for(operator, "ListDeadLetters", "", B)
    with adversary.attempt("control authz: two different tenants in one request", PermissionDeniedError):
        await authz.tenant_for(operator, "Replay", A, B)
    with adversary.attempt("control authz: a service credential", PermissionDeniedError):
        await authz.tenant_for(service, "Replay", "")
    rows = await admin_pool.fetch("SELECT actor, details FROM vigil_audit_log WHERE tenant = $1 AND action = "
                                  "'control.denied' AND details LIKE $2", audit.PLATFORM, f"%{A}%")
    reasons = {(json.loads(r["details"])["method"], json.loads(r["details"])["reason"]) for r in rows
               if json.loads(r["details"])["caller_tenant"] == A}
    assert {("ListDeadLetters", "tenant_mismatch"), ("Replay", "conflicting_tenants"), ("Replay", "role_denied")} \
        <= reasons
