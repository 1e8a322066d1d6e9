"""Which tenants the monitor watches, re-read while it runs: tenants come and go without a restart.

``TenantSet.poll()`` re-reads the registry file when its modification time or size changed and
answers the tenants added and removed since the last poll. With ``VIGIL_MONITOR_TENANTS`` set the
list is fixed (those tenants, from the registry when they are there). A registry that cannot be
read (a half-written file, bad TOML) keeps the current set and is read again at the next poll.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from services.core.logging import get_logger
from services.core.tenancy import Registry, Tenant, TenantError

log = get_logger("vigil.monitor")


@dataclass(frozen=True)
class Change:
    added: tuple[Tenant, ...] = ()
    removed: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.added or self.removed)


class TenantSet:
    def __init__(self, path: Path, fixed: tuple[str, ...] = (), default_partitions: int = 1):
        self.path, self.fixed, self.default_partitions = path, fixed, default_partitions
        self.current: dict[str, Tenant] = {}
        self._stamp: tuple[float, int] | None = None

    def _read(self) -> list[Tenant]:
        registry = Registry.load(self.path)
        if self.fixed:
            return [registry.get(t) if t in registry else Tenant(id=t, partitions=self.default_partitions)
                    for t in self.fixed]
        return list(registry)

    def _file_stamp(self) -> tuple[float, int] | None:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return None
        return st.st_mtime, st.st_size

    def load(self) -> list[Tenant]:
        """The first read (start-up): errors propagate so a bad registry stops the start."""
        self._stamp = self._file_stamp()
        tenants = self._read()
        self.current = {t.id: t for t in tenants}
        return tenants

    def poll(self) -> Change:
        stamp = self._file_stamp()
        if stamp == self._stamp:
            return Change()
        try:
            tenants = {t.id: t for t in self._read()}
        except TenantError as exc:
            log.warning("monitor.registry_unreadable", error=str(exc)[:200])
            return Change()
        self._stamp = stamp
        added = tuple(t for tid, t in tenants.items() if tid not in self.current)
        removed = tuple(tid for tid in self.current if tid not in tenants)
        self.current = tenants
        return Change(added, removed)

    @property
    def ids(self) -> set[str]:
        return set(self.current)
