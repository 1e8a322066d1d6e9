"""The tenant registry: which hospitals exist and their settings.

The registry is a TOML file (``tenants.toml`` by default, ``VIGIL_TENANTS_FILE`` to move it)::

    [tenants.northvalley]
    display_name = "North Valley Oncology"
    partitions = 4                      # partitions of each of the tenant's topics
    mode = "silent"                     # silent | pilot | active
    hl7_facilities = ["NORTHVALLEY"]    # MSH-4 / MSH-6 values routed to this tenant
    ehr_base_url = ""                   # empty: <VIGIL_EHR_URL>/fhir/<tenant>

    [tenants.northvalley.settings]      # free-form settings added by later features
    engine = "rules"

Tenant ids are lower-case DNS-label-like names; they appear in topic names, Redis key
prefixes, PostgreSQL roles and URLs, so they are checked strictly here.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable

from services.core import contracts
from services.core.integration import DEFAULT as DEFAULT_PROFILE, IntegrationProfile, ProfileError, parse as parse_profile

TENANT_ID = re.compile(r"^[a-z][a-z0-9-]{1,30}[a-z0-9]$")
MODES = ("silent", "pilot", "active")

#: Every stream a tenant has. Topic = vigil.<tenant>.<stream>.
#: ``batch-*`` are the batch lane's (``services.core.lanes``): backfill notes, their findings and decisions.
STREAMS = contracts.STREAMS


class TenantError(ValueError):
    """A tenant id or registry entry is invalid, or the tenant is unknown."""


def check_tenant_id(tenant: str) -> str:
    if not isinstance(tenant, str) or not TENANT_ID.match(tenant):
        raise TenantError(f"invalid tenant id {tenant!r}: use 3-32 of a-z, 0-9 and '-', starting with a letter")
    return tenant


def topic_name(tenant: str, stream: str) -> str:
    return f"vigil.{check_tenant_id(tenant)}.{stream}"


def topic_prefix(tenant: str) -> str:
    return f"vigil.{check_tenant_id(tenant)}."


def tenant_of_topic(topic: str) -> str:
    """The tenant a topic belongs to, from its name (never from a message body)."""
    parts = topic.split(".")
    if len(parts) < 3 or parts[0] != "vigil":
        raise TenantError(f"topic {topic!r} is not a tenant topic")
    return check_tenant_id(parts[1])


@dataclass(frozen=True)
class Tenant:
    id: str
    display_name: str = ""
    partitions: int = 4
    mode: str = "silent"
    hl7_facilities: tuple[str, ...] = ()
    ehr_base_url: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    #: What the tenant's EHR offers (services/core/integration.py); DEFAULT when the registry says nothing.
    integration: IntegrationProfile = DEFAULT_PROFILE

    def __post_init__(self) -> None:
        check_tenant_id(self.id)
        if self.mode not in MODES:
            raise TenantError(f"tenant {self.id}: mode {self.mode!r} is not one of {', '.join(MODES)}")
        if not isinstance(self.partitions, int) or self.partitions < 1:
            raise TenantError(f"tenant {self.id}: partitions must be a positive whole number")

    def topic(self, stream: str) -> str:
        return topic_name(self.id, stream)

    def fhir_base(self, ehr_url: str) -> str:
        return self.ehr_base_url or f"{ehr_url.rstrip('/')}/fhir/{self.id}"

    def setting(self, key: str, default: Any = None) -> Any:
        return self.settings.get(key, default)

    def to_table(self) -> dict[str, Any]:
        return {"display_name": self.display_name, "partitions": self.partitions, "mode": self.mode,
                "hl7_facilities": list(self.hl7_facilities), "ehr_base_url": self.ehr_base_url,
                "settings": dict(self.settings),
                **({"integration": self.integration.to_table()} if self.integration.declared else {})}


class Registry:
    """Tenants loaded from one TOML file; ``save`` writes it back."""

    def __init__(self, path: Path, tenants: Iterable[Tenant] = ()):
        self.path = path
        self._tenants = {t.id: t for t in tenants}

    @classmethod
    def load(cls, path: Path) -> "Registry":
        if not path.exists():
            return cls(path)
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise TenantError(f"{path}: not valid TOML ({exc})") from None
        tenants = []
        for tenant_id, table in (data.get("tenants") or {}).items():
            if not isinstance(table, dict):
                raise TenantError(f"{path}: [tenants.{tenant_id}] must be a table")
            unknown = set(table) - {"display_name", "partitions", "mode", "hl7_facilities", "ehr_base_url", "settings",
                                   "integration"}
            if unknown:
                raise TenantError(f"{path}: [tenants.{tenant_id}] has unknown keys {sorted(unknown)}")
            try:
                profile = parse_profile(tenant_id, table.get("integration"))
            except ProfileError as exc:
                raise TenantError(f"{path}: {exc}") from None
            tenants.append(Tenant(id=tenant_id, integration=profile, display_name=table.get("display_name", ""),
                                  partitions=table.get("partitions", 4), mode=table.get("mode", "silent"),
                                  hl7_facilities=tuple(table.get("hl7_facilities", ())),
                                  ehr_base_url=table.get("ehr_base_url", ""),
                                  settings=dict(table.get("settings", {}))))
        return cls(path, tenants)

    def __iter__(self):
        return iter(sorted(self._tenants.values(), key=lambda t: t.id))

    def __contains__(self, tenant_id: str) -> bool:
        return tenant_id in self._tenants

    def get(self, tenant_id: str) -> Tenant:
        try:
            return self._tenants[tenant_id]
        except KeyError:
            raise TenantError(f"unknown tenant {tenant_id!r}") from None

    def by_facility(self, facility: str) -> Tenant | None:
        for tenant in self:
            if facility in tenant.hl7_facilities:
                return tenant
        return None

    def put(self, tenant: Tenant) -> None:
        self._tenants[tenant.id] = tenant

    def update(self, tenant_id: str, **changes: Any) -> Tenant:
        tenant = replace(self.get(tenant_id), **changes)
        self._tenants[tenant_id] = tenant
        return tenant

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(dump_toml({"tenants": {t.id: t.to_table() for t in self}}), encoding="utf-8")
        tmp.replace(self.path)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for nested tables of scalars and lists."""
    scalars = [(k, v) for k, v in data.items() if not isinstance(v, dict)]
    tables = [(k, v) for k, v in data.items() if isinstance(v, dict)]
    lines = [f"{k} = {_toml_value(v)}" for k, v in scalars]
    out = "\n".join(lines) + ("\n" if lines else "")
    for key, table in tables:
        name = f"{prefix}.{key}" if prefix else key
        has_scalars = any(not isinstance(v, dict) for v in table.values())
        if has_scalars or not table:
            out += f"\n[{name}]\n"
        out += dump_toml(table, name)
    return out
