"""Who may do what on the control service, and the audit trail of every decision.

Roles (from the signed credential, ``services.core.tokens``):
- ``operator``: every control action on the credential's own tenant, including reading a
  dead letter's payload (PHI, decrypted for the request and audited).
- ``platform-admin``: every control action on every tenant, but never the payload (minimum
  necessary: the platform team sees what failed and why; a tenant operator sees the data).

A request that names another tenant (top-level ``tenant`` or the nested ``filter.tenant``) from
an operator credential is refused with PERMISSION_DENIED and recorded in the platform audit
chain (``control.denied``, with the caller's and the named tenant, the method and the role).
Allowed actions are recorded in the target tenant's chain inside a ``TenantPools`` transaction.
"""
from __future__ import annotations

from typing import Any

import asyncpg

from services.core import audit
from services.core.errors import PermissionDeniedError, ValidationError
from services.core.logging import get_logger
from services.core.tenancy import TenantError, check_tenant_id
from services.core.tenantdb import TenantPools
from services.core.tokens import ADMIN_ROLE, Claims

log = get_logger("vigil.control.authz")
OPERATOR_ROLE = "operator"
CONTROL_ROLES = (OPERATOR_ROLE, ADMIN_ROLE)


def actor(claims: Claims) -> str:
    return f"{claims.role}:{claims.sub}@{claims.tenant}"


class Authz:
    def __init__(self, pools: TenantPools, admin: asyncpg.Pool):
        self.pools, self.admin = pools, admin

    async def denied(self, claims: Claims, method: str, named: str, why: str) -> None:
        """Record a refused attempt in the platform chain (also called by the gRPC denial hook)."""
        async with self.admin.acquire() as conn, conn.transaction():
            await audit.append(conn, audit.PLATFORM, actor(claims), "control.denied", [f"vigil:tenant/{named}"],
                               {"caller_tenant": claims.tenant, "named_tenant": named, "method": method,
                                "role": claims.role, "reason": why})
        log.warning("control.denied", method=method, caller_tenant=claims.tenant, named_tenant=named,
                    role=claims.role, reason=why)

    async def on_grpc_denied(self, method: str, claims: Claims, request, exc) -> None:
        named = getattr(request, "tenant", "") or ""
        await self.denied(claims, method, named or "-", getattr(exc, "code", "denied"))

    async def tenant_for(self, claims: Claims, method: str, *named: str, required: bool = True) -> str | None:
        """The tenant the call acts on. Operators: their own (naming another is denied, audited).
        Platform-admin: the one named (``required``), or None for all tenants."""
        names = {n for n in named if n}
        for n in names:
            try:
                check_tenant_id(n)
            except TenantError as exc:
                raise ValidationError(str(exc), code="bad_tenant") from None
        if len(names) > 1:
            await self.denied(claims, method, ",".join(sorted(names)), "conflicting_tenants")
            raise PermissionDeniedError("the request names more than one tenant", code="tenant_mismatch")
        if claims.role == ADMIN_ROLE:
            if names:
                return names.pop()
            if required:
                raise ValidationError("a platform-admin call must name the tenant", code="tenant_required")
            return None
        if claims.role != OPERATOR_ROLE:
            await self.denied(claims, method, names.pop() if names else claims.tenant, "role_denied")
            raise PermissionDeniedError("role not allowed on the control service", code="role_denied")
        if names and names != {claims.tenant}:
            await self.denied(claims, method, names.pop(), "tenant_mismatch")
            raise PermissionDeniedError("the request names a tenant other than the credential's",
                                        code="tenant_mismatch")
        return claims.tenant

    @staticmethod
    def may_read_payload(claims: Claims, tenant: str) -> bool:
        return claims.role == OPERATOR_ROLE and claims.tenant == tenant

    async def record(self, tenant: str, claims: Claims, action: str, resources: list[str],
                     details: dict[str, Any]) -> None:
        async with self.pools.tx(tenant) as conn:
            await audit.append(conn, tenant, actor(claims), action, resources, details)

    async def record_platform(self, claims: Claims, action: str, details: dict[str, Any]) -> None:
        """An action over every tenant (platform-admin): the platform chain."""
        async with self.admin.acquire() as conn, conn.transaction():
            await audit.append(conn, audit.PLATFORM, actor(claims), action, [], details)
