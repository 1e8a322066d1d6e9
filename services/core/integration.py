"""A tenant's integration profile: what its EHR offers, and so what Vigil may use.

Hospitals run different EHRs. Epic and Oracle Health sites send notes as HL7v2 feeds, require a
patient in DocumentReference searches and take results through CDS Hooks or HL7v2 results rather
than FHIR Task writes; FHIR servers (HAPI FHIR, Smile CDR, Medplum) offer R4 criteria-based
rest-hook Subscriptions and accept writes. The profile is declared per tenant in the registry::

    [tenants.northvalley.integration]
    family = "fhir-server"               # informational: epic-like | oracle-like | fhir-server | hl7-only | custom
    triggers = ["backport-topic", "hl7v2-feed"]
    note_sources = ["ehr-fhir", "document-store"]
    results = ["fhir", "cds-hooks"]
    ehr_accepts = ["Device", "Observation", "DetectedIssue", "Task", "Provenance", "AuditEvent"]

    [tenants.northvalley.integration.hl7_out]   # only with results = [..., "hl7v2"]
    host = "engine.example.org"
    port = 6661
    tls = false
    message = "ORU^R01"                  # ORU^R01 | MDM^T02

A tenant without an ``[integration]`` table gets :data:`DEFAULT` (the FHIR-server behaviour Vigil
had before profiles existed). :func:`parse` checks a table and raises :class:`ProfileError` naming
the setting at fault, so a service refuses to start on a profile it cannot honour.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

FAMILIES = ("epic-like", "oracle-like", "fhir-server", "hl7-only", "custom")

#: How new notes and changes reach Vigil.
TRIGGERS = ("backport-topic", "r4-criteria", "hl7v2-feed", "patient-poll", "batch")
#: Where note text is read from: the EHR's FHIR API, or Vigil's own document store (HL7 and batch notes).
NOTE_SOURCES = ("ehr-fhir", "document-store")
#: How a result reaches the clinician.
RESULT_CHANNELS = ("fhir", "hl7v2", "cds-hooks")
#: The resource types writeback may write when ``results`` has ``fhir``.
WRITABLE_TYPES = ("Device", "Observation", "DetectedIssue", "Task", "Provenance", "AuditEvent", "Communication")
#: The types a FHIR results channel cannot do without: the Task in the inbox and its evidence.
FHIR_RESULT_REQUIRES = ("Task",)
HL7_OUT_MESSAGES = ("ORU^R01", "MDM^T02")

KEYS = {"family", "triggers", "note_sources", "results", "ehr_accepts", "hl7_out", "watch_list"}
HL7_OUT_KEYS = {"host", "port", "tls", "message", "receiving_application", "receiving_facility",
                "timeout_s", "ca_file"}


class ProfileError(ValueError):
    """The integration profile is invalid; the message names the setting."""


@dataclass(frozen=True)
class Hl7Out:
    host: str
    port: int
    tls: bool = False
    message: str = "ORU^R01"
    receiving_application: str = ""
    receiving_facility: str = ""
    timeout_s: float = 10.0
    ca_file: str = ""

    def to_table(self) -> dict[str, Any]:
        return {"host": self.host, "port": self.port, "tls": self.tls, "message": self.message,
                "receiving_application": self.receiving_application,
                "receiving_facility": self.receiving_facility, "timeout_s": self.timeout_s,
                "ca_file": self.ca_file}


@dataclass(frozen=True)
class IntegrationProfile:
    family: str = "fhir-server"
    triggers: tuple[str, ...] = ("backport-topic", "hl7v2-feed")
    note_sources: tuple[str, ...] = ("ehr-fhir", "document-store")
    results: tuple[str, ...] = ("fhir", "cds-hooks")
    ehr_accepts: tuple[str, ...] = WRITABLE_TYPES
    hl7_out: Hl7Out | None = None
    #: For ``patient-poll``: ``"checkpoint-inhibitors"`` (patients with an active ICI MedicationRequest)
    #: or ``"uploaded"`` (a list the tenant uploads).
    watch_list: str = ""
    declared: bool = field(default=False, compare=False)

    def has_trigger(self, trigger: str) -> bool:
        return trigger in self.triggers

    def delivers(self, channel: str) -> bool:
        return channel in self.results

    def accepts(self, resource_type: str) -> bool:
        """May Vigil write this resource type to the tenant's EHR?"""
        return "fhir" in self.results and resource_type in self.ehr_accepts

    def to_table(self) -> dict[str, Any]:
        table: dict[str, Any] = {"family": self.family, "triggers": list(self.triggers),
                                 "note_sources": list(self.note_sources), "results": list(self.results),
                                 "ehr_accepts": list(self.ehr_accepts)}
        if self.watch_list:
            table["watch_list"] = self.watch_list
        if self.hl7_out is not None:
            table["hl7_out"] = self.hl7_out.to_table()
        return table


DEFAULT = IntegrationProfile()


def _names(tenant: str, key: str, value: Any, allowed: tuple[str, ...], *, empty_ok: bool = False) -> tuple[str, ...]:
    where = f"tenant {tenant}: integration.{key}"
    if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) for v in value):
        raise ProfileError(f"{where} must be a list of strings, some of {', '.join(allowed)}")
    unknown = [v for v in value if v not in allowed]
    if unknown:
        raise ProfileError(f"{where} has {', '.join(map(repr, unknown))}: use some of {', '.join(allowed)}")
    if not value and not empty_ok:
        raise ProfileError(f"{where} is empty: name at least one of {', '.join(allowed)}")
    return tuple(dict.fromkeys(value))


def _hl7_out(tenant: str, table: Any) -> Hl7Out:
    where = f"tenant {tenant}: integration.hl7_out"
    if not isinstance(table, dict):
        raise ProfileError(f"{where} must be a table")
    unknown = set(table) - HL7_OUT_KEYS
    if unknown:
        raise ProfileError(f"{where} has unknown keys {sorted(unknown)}")
    host, port = table.get("host"), table.get("port")
    if not isinstance(host, str) or not host:
        raise ProfileError(f"{where}.host must name the interface engine's host")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 < port < 65536:
        raise ProfileError(f"{where}.port must be a TCP port (1-65535)")
    message = table.get("message", "ORU^R01")
    if message not in HL7_OUT_MESSAGES:
        raise ProfileError(f"{where}.message must be one of {', '.join(HL7_OUT_MESSAGES)}")
    tls = table.get("tls", False)
    if not isinstance(tls, bool):
        raise ProfileError(f"{where}.tls must be true or false")
    timeout = table.get("timeout_s", 10.0)
    if not isinstance(timeout, (int, float)) or isinstance(timeout, bool) or not 0 < timeout <= 300:
        raise ProfileError(f"{where}.timeout_s must be a number of seconds in (0, 300]")
    strings = {k: table.get(k, "") for k in ("receiving_application", "receiving_facility", "ca_file")}
    for key, value in strings.items():
        if not isinstance(value, str):
            raise ProfileError(f"{where}.{key} must be a string")
    return Hl7Out(host=host, port=port, tls=tls, message=message, timeout_s=float(timeout), **strings)


def parse(tenant: str, table: Any) -> IntegrationProfile:
    """The profile of a registry ``[integration]`` table (None or missing: :data:`DEFAULT`)."""
    if table is None:
        return DEFAULT
    if not isinstance(table, dict):
        raise ProfileError(f"tenant {tenant}: integration must be a table")
    unknown = set(table) - KEYS
    if unknown:
        raise ProfileError(f"tenant {tenant}: integration has unknown keys {sorted(unknown)}")
    family = table.get("family", DEFAULT.family)
    if family not in FAMILIES:
        raise ProfileError(f"tenant {tenant}: integration.family {family!r} is not one of {', '.join(FAMILIES)}")
    triggers = _names(tenant, "triggers", table.get("triggers", list(DEFAULT.triggers)), TRIGGERS)
    note_sources = _names(tenant, "note_sources", table.get("note_sources", list(DEFAULT.note_sources)),
                          NOTE_SOURCES)
    results = _names(tenant, "results", table.get("results", list(DEFAULT.results)), RESULT_CHANNELS)
    accepts = _names(tenant, "ehr_accepts", table.get("ehr_accepts", list(DEFAULT.ehr_accepts)), WRITABLE_TYPES,
                     empty_ok=True)
    hl7_out = _hl7_out(tenant, table["hl7_out"]) if "hl7_out" in table else None
    watch_list = table.get("watch_list", "")
    if "fhir" in results:
        missing = [t for t in FHIR_RESULT_REQUIRES if t not in accepts]
        if missing:
            raise ProfileError(f"tenant {tenant}: integration.results has 'fhir' but integration.ehr_accepts "
                               f"lacks {', '.join(missing)}: add it, or deliver through hl7v2 / cds-hooks")
    if "hl7v2" in results and hl7_out is None:
        raise ProfileError(f"tenant {tenant}: integration.results has 'hl7v2' but [integration.hl7_out] "
                           "(host, port) is missing")
    if "patient-poll" in triggers and watch_list not in ("checkpoint-inhibitors", "uploaded"):
        raise ProfileError(f"tenant {tenant}: integration.triggers has 'patient-poll': set integration.watch_list "
                           "to 'checkpoint-inhibitors' or 'uploaded'")
    if watch_list and watch_list not in ("checkpoint-inhibitors", "uploaded"):
        raise ProfileError(f"tenant {tenant}: integration.watch_list must be 'checkpoint-inhibitors' or 'uploaded'")
    if ("hl7v2-feed" in triggers or "batch" in triggers) and "document-store" not in note_sources:
        raise ProfileError(f"tenant {tenant}: integration.triggers has HL7v2 feed or batch notes, whose text "
                           "lives in Vigil's document store: add 'document-store' to integration.note_sources")
    fhir_triggers = {"backport-topic", "r4-criteria", "patient-poll"} & set(triggers)
    if fhir_triggers and "ehr-fhir" not in note_sources:
        raise ProfileError(f"tenant {tenant}: integration.triggers has {', '.join(sorted(fhir_triggers))}, whose "
                           "notes are read from the EHR: add 'ehr-fhir' to integration.note_sources")
    return IntegrationProfile(family=family, triggers=triggers, note_sources=note_sources, results=results,
                              ehr_accepts=accepts, hl7_out=hl7_out, watch_list=watch_list, declared=True)
