"""The contract every batch source meets: a resumable, constant-memory stream of notes.

A source reads one input (an OMOP NOTE table, FHIR Bulk Data NDJSON files, an ``$export`` run)
and yields :class:`BatchNote` in a fixed order. Each note carries ``position``, an opaque text
from which ``notes(after=position)`` continues with the next note, so a job that checkpoints the
position of the last note it stored resumes after a crash with no duplicate and no gap.

Sources never hold a whole file in memory and never log note text or patient identifiers.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, Iterator, Protocol


class BatchSourceError(ValueError):
    """The input cannot be read as this source's format; the message names the file, line and field."""


#: Rejected records kept (with their messages) per source; the rest are only counted.
MAX_KEPT_ERRORS = 100


class Rejections:
    """Bad records are reported and skipped, never silently: counted in ``rejected``, the first
    ``MAX_KEPT_ERRORS`` kept in ``errors``, each passed to ``on_reject``; with ``strict`` the first
    one stops the read instead. Readers call ``_report`` with an error that names where, never what."""

    def _init_rejections(self, strict: bool, on_reject: Callable[[BatchSourceError], None] | None) -> None:
        self.strict, self.on_reject = strict, on_reject
        self.rejected = 0
        self.errors: list[BatchSourceError] = []

    def _report(self, error: BatchSourceError) -> None:
        if self.strict:
            raise error
        self.rejected += 1
        if len(self.errors) < MAX_KEPT_ERRORS:
            self.errors.append(error)
        if self.on_reject is not None:
            self.on_reject(error)


@dataclass(frozen=True)
class BatchNote:
    #: Which kind of source produced the note: ``omop`` | ``bulk-ndjson`` | ``bulk-export``.
    source: str
    #: The note's identifier in the source system (OMOP ``note_id``, DocumentReference id or identifier).
    identifier_system: str
    identifier_value: str
    #: The patient as the source names it: (system, value) of a patient identifier (OMOP ``person_id``
    #: mapped to an MRN, or Patient.identifier), and the FHIR Patient id when the source gives one.
    patient_identifier: tuple[str, str] | None
    patient_id: str | None
    note_time: datetime | None
    #: Note type code and display (LOINC for FHIR sources; the OMOP concept id as text for OMOP).
    note_type: str
    note_type_display: str
    title: str
    #: The readable text, or None when the note has none (a PDF, an image, an unresolvable reference).
    text: str | None
    content_type: str
    #: Resume point: ``notes(after=position)`` yields the notes after this one.
    position: str


class BatchSource(Protocol):
    #: A short, PHI-free description for progress output and job records (e.g. ``omop:notes.csv``).
    name: str

    def notes(self, after: str | None = None) -> Iterator[BatchNote]:
        """The notes in source order, starting after ``after`` (None: from the beginning)."""
        ...
