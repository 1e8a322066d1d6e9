"""Check a mapped resource against the FHIR R4 (R4B) models before it leaves the process."""
from __future__ import annotations

from importlib import import_module

from services.ingest.hl7.errors import DATA_TYPE_ERROR, error
from services.ingest.hl7.mapping.common import MappedResource

MODULES = {"Patient": "patient", "DocumentReference": "documentreference", "Encounter": "encounter",
           "Appointment": "appointment"}


def _model(resource_type: str):
    module = import_module(f"fhir.resources.R4B.{MODULES[resource_type]}")
    return getattr(module, resource_type)


def check_resource(resource: MappedResource) -> None:
    """Raise AE naming the failing element paths (never their values)."""
    try:
        _model(resource.resource_type).model_validate(resource.body)
    except Exception as exc:  # pydantic ValidationError or fhir_core errors: report where, not what
        paths = []
        for item in getattr(exc, "errors", lambda: [])()[:3]:
            paths.append(".".join(str(p) for p in item.get("loc", ()) if not isinstance(p, int)) or "?")
        where = ", ".join(paths) or type(exc).__name__
        raise error(DATA_TYPE_ERROR, f"mapped {resource.resource_type} is not valid FHIR R4 ({where})") from None
