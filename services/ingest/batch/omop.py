"""The OMOP CDM v5.4 NOTE table as a batch source: CSV (stdlib ``csv``) or Parquet (``pyarrow``).

Columns (OMOP CDM v5.4 NOTE): ``note_id``, ``person_id``, ``note_date``, ``note_datetime``,
``note_type_concept_id``, ``note_class_concept_id``, ``note_title``, ``note_text``,
``encoding_concept_id``, ``language_concept_id``, ``provider_id``, ``visit_occurrence_id``,
``visit_detail_id``, ``note_source_value``, ``note_event_id``, ``note_event_field_concept_id``.
Required: ``note_id``, ``person_id``, ``note_date``, ``note_text``; the others are optional and
extra columns are ignored. ``note_datetime`` wins over ``note_date`` when both are set; OMOP
times carry no offset, so they are read in ``tz`` (UTC unless told).

The patient: OMOP names a ``person_id``; the EHR knows an MRN. ``PersonMap`` reads the mapping
(CSV ``person_id,identifier_system,identifier_value``), or ``identifier_column`` names a column
of the note table holding the MRN (its system given as ``identifier_system``). Without either the
person id itself is the identifier, under ``PERSON_SYSTEM``. The mapping is held in memory: one
entry per person, never per note.

Bad rows (no ``note_id`` or ``person_id``, a date that is not a date, a person missing from the
mapping) are reported and skipped: each is counted in ``rejected``, the first
``MAX_KEPT_ERRORS`` are kept in ``errors`` and each is passed to ``on_reject``. With
``strict=True`` the first bad row stops the run instead. Errors name the file, the line (CSV)
or row group and row (Parquet) and the column, never the value (it may be PHI). A file that is
not this format at all (missing required columns, bytes that are not UTF-8, a broken quote, not
Parquet) always raises ``BatchSourceError``.

Positions: CSV ``omop-csv:1:<fingerprint>:<byte offset of the next record>:<record>:<line>``;
Parquet ``omop-parquet:1:<fingerprint>:<row group>:<next row in it>``. ``notes(after=...)``
seeks straight there (CSV: ``seek``; Parquet: reads from that row group on). The fingerprint
(the first 64 KiB of a CSV, the schema and row groups of a Parquet file) refuses a position
taken from another file; a CSV that only grew at its end keeps its positions.
"""
from __future__ import annotations

import csv
import hashlib
from datetime import date, datetime, time, timezone, tzinfo
from pathlib import Path
from typing import Callable, Iterable, Iterator

from services.ingest.batch.source import BatchNote, BatchSourceError, Rejections

SOURCE = "omop"
#: The identifier system of OMOP note ids and, without a mapping, of person ids.
NOTE_SYSTEM = "urn:vigil:omop:note_id"
PERSON_SYSTEM = "urn:vigil:omop:person_id"
REQUIRED = ("note_id", "person_id", "note_date", "note_text")
COLUMNS = ("note_id", "person_id", "note_date", "note_datetime", "note_type_concept_id", "note_class_concept_id",
           "note_title", "note_text", "encoding_concept_id", "language_concept_id", "provider_id",
           "visit_occurrence_id", "visit_detail_id", "note_source_value", "note_event_id",
           "note_event_field_concept_id")
MAPPING_COLUMNS = ("person_id", "identifier_system", "identifier_value")
CONTENT_TYPE = "text/plain; charset=utf-8"
#: The largest field a CSV record may hold (a note's text): 16 MiB of characters.
MAX_FIELD_CHARS = 16 * 1024 * 1024
#: Rejected rows kept with their message (all are counted).
#: Bytes of a CSV hashed into its fingerprint.
FINGERPRINT_BYTES = 64 * 1024
#: Parquet rows decoded at a time (a few hundred notes of a few KB each).
PARQUET_BATCH_ROWS = 256
#: Parquet read buffer: the file is streamed in chunks of this size, never loaded whole.
PARQUET_BUFFER_BYTES = 1024 * 1024
_MAX_ID_CHARS = 64


class PersonMap:
    """OMOP ``person_id`` -> (identifier system, value), read once from a CSV mapping file.
    Memory is one small entry per person."""

    def __init__(self, entries: dict[str, tuple[str, str]], name: str = "mapping"):
        self.entries = entries
        self.name = name

    def __len__(self) -> int:
        return len(self.entries)

    def get(self, person_id: str) -> tuple[str, str] | None:
        return self.entries.get(person_id)

    @classmethod
    def from_csv(cls, path: str | Path) -> "PersonMap":
        path = Path(path)
        entries: dict[str, tuple[str, str]] = {}
        try:
            with path.open(newline="", encoding="utf-8-sig") as f:
                reader = csv.DictReader(f)
                missing = [c for c in MAPPING_COLUMNS if c not in (reader.fieldnames or ())]
                if missing:
                    raise BatchSourceError(f"{path.name} line 1: the person mapping needs the columns "
                                           f"{', '.join(MAPPING_COLUMNS)}; missing {', '.join(missing)}")
                for row in reader:
                    where = f"{path.name} line {reader.line_num}"
                    for column in MAPPING_COLUMNS:
                        if not (row.get(column) or "").strip():
                            raise BatchSourceError(f"{where}, column {column}: empty")
                    person = row["person_id"].strip()
                    if person in entries:
                        raise BatchSourceError(f"{where}, column person_id: the person is mapped twice")
                    entries[person] = (row["identifier_system"].strip(), row["identifier_value"].strip())
        except UnicodeDecodeError:
            raise BatchSourceError(f"{path.name}: not UTF-8 text") from None
        except csv.Error as exc:
            raise BatchSourceError(f"{path.name}: not a readable CSV ({exc})") from None
        except OSError as exc:
            raise BatchSourceError(f"{path.name}: cannot read ({exc.strerror or type(exc).__name__})") from None
        return cls(entries, path.name)


class _Rejected(Exception):
    """One bad row (becomes a BatchSourceError with the row's location)."""

    def __init__(self, column: str, problem: str):
        super().__init__(column)
        self.column, self.problem = column, problem


def _text(value) -> str:
    if value is None:
        return ""
    return value.strip() if isinstance(value, str) else str(value)


def _when(row: dict, tz: tzinfo) -> datetime:
    """note_datetime when set, else note_date at midnight; both read in ``tz`` unless they carry an offset."""
    for column in ("note_datetime", "note_date"):
        value = row.get(column)
        if value is None or value == "":
            continue
        try:
            if isinstance(value, datetime):
                moment = value
            elif isinstance(value, date):
                moment = datetime.combine(value, time())
            elif column == "note_date":
                moment = datetime.combine(date.fromisoformat(value.strip()), time())
            else:
                moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            expected = "YYYY-MM-DD" if column == "note_date" else "YYYY-MM-DD HH:MM:SS"
            raise _Rejected(column, f"not a date ({expected} expected)") from None
        return moment if moment.tzinfo else moment.replace(tzinfo=tz)
    raise _Rejected("note_date", "empty (note_date is required)")


class OmopNoteSource(Rejections):
    """The notes of one OMOP NOTE file (``.csv`` or ``.parquet``), in file order."""

    def __init__(self, path: str | Path, *, persons: PersonMap | None = None, identifier_column: str | None = None,
                 identifier_system: str | None = None, note_system: str = NOTE_SYSTEM,
                 person_system: str = PERSON_SYSTEM, tz: tzinfo = timezone.utc, strict: bool = False,
                 on_reject: Callable[[BatchSourceError], None] | None = None, fmt: str | None = None):
        self.path = Path(path)
        self.format = fmt or ("parquet" if self.path.suffix.lower() in (".parquet", ".pq") else "csv")
        if self.format not in ("csv", "parquet"):
            raise ValueError("fmt must be csv or parquet")
        if identifier_column and not identifier_system:
            raise ValueError("identifier_column needs identifier_system (the system of the MRNs it holds)")
        if identifier_column and persons is not None:
            raise ValueError("give a person mapping or an identifier column, not both")
        self.name = f"omop:{self.path.name}"
        self.persons, self.identifier_system = persons, identifier_system
        self.identifier_column = identifier_column.strip().lower() if identifier_column else None
        self.note_system, self.person_system, self.tz = note_system, person_system, tz
        self._init_rejections(strict, on_reject)

    # --- rows -> notes ----------------------------------------------------------------

    def _patient(self, row: dict, person: str) -> tuple[str, str]:
        if self.identifier_column:
            value = _text(row.get(self.identifier_column))
            if not value:
                raise _Rejected(self.identifier_column, "empty (the patient identifier column)")
            return self.identifier_system, value
        if self.persons is not None:
            found = self.persons.get(person)
            if found is None:
                raise _Rejected("person_id", f"the person is not in {self.persons.name}")
            return found
        return self.person_system, person

    def _note(self, row: dict, position: str) -> BatchNote:
        note_id = _text(row.get("note_id"))
        if not note_id:
            raise _Rejected("note_id", "empty (note_id is required)")
        if len(note_id) > _MAX_ID_CHARS or any(c.isspace() for c in note_id):
            raise _Rejected("note_id", f"not an identifier (at most {_MAX_ID_CHARS} characters, no spaces)")
        person = _text(row.get("person_id"))
        if not person:
            raise _Rejected("person_id", "empty (person_id is required)")
        when = _when(row, self.tz)
        text = row.get("note_text")
        concept = _text(row.get("note_type_concept_id"))
        return BatchNote(source=SOURCE, identifier_system=self.note_system, identifier_value=note_id,
                         patient_identifier=self._patient(row, person), patient_id=None, note_time=when,
                         note_type=concept, note_type_display=f"OMOP concept {concept}" if concept else "",
                         title=_text(row.get("note_title")), text=text if isinstance(text, str) and text else None,
                         content_type=CONTENT_TYPE, position=position)

    def _reject(self, where: str, problem: _Rejected) -> None:
        self._report(BatchSourceError(f"{where}, column {problem.column}: {problem.problem}"))

    def _check_columns(self, names: Iterable[str], where: str) -> None:
        names = set(names)
        missing = [c for c in REQUIRED if c not in names]
        if self.identifier_column and self.identifier_column not in names:
            missing.append(self.identifier_column)
        if missing:
            raise BatchSourceError(f"{where}: the NOTE table needs the columns {', '.join(missing)}")

    def notes(self, after: str | None = None) -> Iterator[BatchNote]:
        if self.format == "csv":
            return self._csv_notes(after)
        return self._parquet_notes(after)

    # --- CSV --------------------------------------------------------------------------

    def _csv_fingerprint(self, f) -> str:
        f.seek(0)
        return hashlib.sha256(f.read(FINGERPRINT_BYTES)).hexdigest()[:16]

    def _csv_notes(self, after: str | None) -> Iterator[BatchNote]:
        if csv.field_size_limit() < MAX_FIELD_CHARS:
            csv.field_size_limit(MAX_FIELD_CHARS)
        name = self.path.name
        try:
            f = self.path.open("rb")
        except OSError as exc:
            raise BatchSourceError(f"{name}: cannot read ({exc.strerror or type(exc).__name__})") from None
        with f:
            fingerprint = self._csv_fingerprint(f)
            # consumed: bytes read so far; base: lines before the reader's first line. csv.reader
            # pulls lines only until a record is complete, so after each record ``consumed`` is
            # the offset of the next one.
            state = {"consumed": 0, "base": 0}

            def lines() -> Iterator[str]:
                for raw in f:
                    state["consumed"] += len(raw)
                    try:
                        yield raw.decode("utf-8")
                    except UnicodeDecodeError:
                        raise BatchSourceError(f"{name} line {state['base'] + reader.line_num + 1}: "
                                               "not UTF-8 text") from None

            f.seek(0)
            reader = csv.reader(lines())
            header = self._csv_record(reader, name, 0)
            if header is None:
                raise BatchSourceError(f"{name}: empty file (no header)")
            if header and header[0].startswith("\ufeff"):
                header[0] = header[0][1:]
            header = [h.strip().lower() for h in header]
            self._check_columns(header, f"{name} line 1")
            record = 0
            if after is not None:
                offset, record, line = self._csv_position(after, fingerprint)
                f.seek(offset)
                state["consumed"], state["base"] = offset, line
                reader = csv.reader(lines())
            width = len(header)
            while True:
                start_line = state["base"] + reader.line_num + 1
                values = self._csv_record(reader, name, state["base"])
                if values is None:
                    return
                record += 1
                if not values:
                    continue  # a blank line
                where = f"{name} line {start_line}"
                if len(values) != width:
                    self._reject(where, _Rejected(header[min(len(values), width) - 1],
                                                  f"the record has {len(values)} fields, the header {width}"))
                    continue
                position = f"omop-csv:1:{fingerprint}:{state['consumed']}:{record}:{state['base'] + reader.line_num}"
                try:
                    note = self._note(dict(zip(header, values)), position)
                except _Rejected as problem:
                    self._reject(where, problem)
                    continue
                yield note

    @staticmethod
    def _csv_record(reader, name: str, base: int) -> list[str] | None:
        try:
            return next(reader)
        except StopIteration:
            return None
        except csv.Error as exc:
            at = f" line {base + reader.line_num}" if reader.line_num else ""
            raise BatchSourceError(f"{name}{at}: not a readable CSV record ({exc})") from None

    @staticmethod
    def _csv_position(after: str, fingerprint: str) -> tuple[int, int, int]:
        parts = after.split(":")
        if len(parts) != 6 or parts[:2] != ["omop-csv", "1"] or not all(p.isdigit() for p in parts[3:]):
            raise BatchSourceError("the position is not an OMOP CSV position")
        if parts[2] != fingerprint:
            raise BatchSourceError("the position belongs to another file (its fingerprint differs)")
        return int(parts[3]), int(parts[4]), int(parts[5])

    # --- Parquet ----------------------------------------------------------------------

    def _parquet_notes(self, after: str | None) -> Iterator[BatchNote]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        name = self.path.name
        try:
            pf = pq.ParquetFile(self.path, buffer_size=PARQUET_BUFFER_BYTES, pre_buffer=False)
        except (OSError, pa.ArrowException) as exc:
            raise BatchSourceError(f"{name}: not a readable Parquet file ({type(exc).__name__})") from None
        with pf:
            schema_names = [n.lower() for n in pf.schema_arrow.names]
            self._check_columns(schema_names, name)
            meta = pf.metadata
            fingerprint = hashlib.sha256(
                f"{pf.schema_arrow}|{meta.num_row_groups}|"
                f"{[meta.row_group(i).num_rows for i in range(meta.num_row_groups)]}".encode()).hexdigest()[:16]
            group, skip = 0, 0
            if after is not None:
                parts = after.split(":")
                if len(parts) != 5 or parts[:2] != ["omop-parquet", "1"] or not all(p.isdigit() for p in parts[3:]):
                    raise BatchSourceError("the position is not an OMOP Parquet position")
                if parts[2] != fingerprint:
                    raise BatchSourceError("the position belongs to another file (its fingerprint differs)")
                group, skip = int(parts[3]), int(parts[4])
            wanted = [c for c in pf.schema_arrow.names
                      if c.lower() in COLUMNS or (self.identifier_column and c.lower() == self.identifier_column)]
            for g in range(group, meta.num_row_groups):
                rows_in_group = meta.row_group(g).num_rows
                row = 0
                try:
                    batches = pf.iter_batches(batch_size=PARQUET_BATCH_ROWS, row_groups=[g], columns=wanted)
                    for batch in batches:
                        records = batch.to_pylist()
                        for values in records:
                            row += 1
                            if g == group and row <= skip:
                                continue
                            values = {k.lower(): v for k, v in values.items()}
                            nxt = (g, row) if row < rows_in_group else (g + 1, 0)
                            position = f"omop-parquet:1:{fingerprint}:{nxt[0]}:{nxt[1]}"
                            try:
                                note = self._note(values, position)
                            except _Rejected as problem:
                                self._reject(f"{name} row group {g} row {row}", problem)
                                continue
                            yield note
                except pa.ArrowException as exc:
                    raise BatchSourceError(f"{name} row group {g}: cannot be read ({type(exc).__name__})") from None


__all__ = ["OmopNoteSource", "PersonMap", "NOTE_SYSTEM", "PERSON_SYSTEM", "COLUMNS", "REQUIRED"]


def open_source(path: Path, *, mapping: str | None = None, identifier_column: str | None = None,
                identifier_system: str | None = None, tz: str = "UTC", strict: str = "false") -> OmopNoteSource:
    """The reader `vigil backfill run --source omop PATH` builds; its ``--option`` pairs: ``mapping=``
    a person mapping CSV, or ``identifier_column=`` + ``identifier_system=``; ``tz=`` the zone of
    OMOP's offset-less times; ``strict=true`` to stop at the first bad row."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        zone = ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise BatchSourceError(f"--option tz={tz!r} is not an IANA time zone") from None
    persons = PersonMap.from_csv(mapping) if mapping else None
    return OmopNoteSource(path, persons=persons, identifier_column=identifier_column,
                          identifier_system=identifier_system, tz=zone, strict=strict.lower() in ("1", "true", "yes"))
