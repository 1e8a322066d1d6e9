"""The batch source kinds `vigil backfill run --source KIND PATH` knows: one explicit table.

Each entry names the module and the factory that builds the reader: ``factory(path: Path,
**options) -> BatchSource`` (options are the command's ``--option key=value`` pairs, e.g. the
OMOP person -> patient identifier mapping). Readers are imported only when their kind is used,
so a kind whose module is not part of this build is a clear error, not an import failure at
start-up.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from services.ingest.batch.source import BatchSource


@dataclass(frozen=True)
class Kind:
    module: str
    factory: str
    description: str


#: kind -> where its reader lives.
SOURCES: dict[str, Kind] = {
    "omop": Kind("services.ingest.batch.omop", "open_source", "OMOP CDM NOTE table (CSV or Parquet)"),
    "bulk-ndjson": Kind("services.ingest.batch.bulk_ndjson", "open_source",
                        "FHIR Bulk Data NDJSON files (Patient, DocumentReference)"),
    "bulk-export": Kind("services.ingest.batch.bulk_export", "open_source", "a FHIR Bulk Data $export run"),
}


class UnknownSource(ValueError):
    pass


def open_source(kind: str, path: Path, options: dict[str, str] | None = None,
                table: dict[str, Kind] | None = None) -> BatchSource:
    table = SOURCES if table is None else table
    entry = table.get(kind)
    if entry is None:
        raise UnknownSource(f"unknown source kind {kind!r}: expected one of {', '.join(sorted(table))}")
    try:
        module = importlib.import_module(entry.module)
    except ModuleNotFoundError as exc:
        if exc.name and entry.module.startswith(exc.name):
            raise UnknownSource(f"source kind {kind!r} ({entry.description}) has no reader in this build "
                                f"({entry.module} is missing)") from None
        raise
    factory = getattr(module, entry.factory, None)
    if factory is None:
        raise UnknownSource(f"source kind {kind!r}: {entry.module} has no {entry.factory}()")
    return factory(Path(path), **(options or {}))
