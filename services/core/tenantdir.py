"""The tenant registry as servers see it: reloaded when the file changes, unknown tenants refused.

A gRPC server resolves the tenant of a verified credential here. A tenant that is not (or no
longer) in the registry is refused with PermissionDeniedError, so removing a tenant from the
registry cuts its access without restarting services.
"""
from __future__ import annotations

from pathlib import Path

from services.core.errors import PermissionDeniedError
from services.core.tenancy import Registry, Tenant


class TenantDirectory:
    def __init__(self, path: Path):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._registry = Registry(path)

    def registry(self) -> Registry:
        """The registry as the file now says (parsed again only when its mtime or size changed)."""
        return self._current()

    def _current(self) -> Registry:
        try:
            stat = self.path.stat()
            stamp = (stat.st_mtime_ns, stat.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp != self._stamp:
            self._registry = Registry.load(self.path) if stamp else Registry(self.path)
            self._stamp = stamp
        return self._registry

    def get(self, tenant_id: str) -> Tenant:
        registry = self._current()
        if tenant_id not in registry:
            raise PermissionDeniedError("tenant is not registered", code="unknown_tenant")
        return registry.get(tenant_id)
