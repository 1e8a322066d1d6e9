"""FHIR Bulk Data NDJSON files (an ``$export`` output, or files a hospital hands over) as a batch source.

Input: DocumentReference files (one resource per line), the Patient files of the same export,
and optionally Binary files. ``BulkNdjsonSource.from_directory`` sorts a directory's
``*.ndjson`` files by the type in their name (``DocumentReference.ndjson``,
``DocumentReference.2.ndjson``, ...) or, failing that, by the first line's ``resourceType``.

A note's text is the first ``text/*`` attachment (``text/plain`` preferred): its inline ``data``
(base64), or its ``url`` naming a ``Binary`` that is looked up in the export's Binary files or,
when it is not there, asked of ``fetcher`` (a callable ``url -> (content type, bytes) | None``,
e.g. a FHIR read). A note without readable text is still yielded, with ``text`` None.

Memory: the notes are streamed line by line. Two indexes are held: Patient id -> identifier
(one small entry per patient, built by one pass over the Patient files) and, when Binary files
are given, Binary id -> (file, byte offset) (one entry per Binary, never its content). Neither
grows with the size of the notes.

The note's identifier is its first ``identifier`` (or the one whose system is ``note_system``);
without one it is the resource id under ``FHIR_ID_SYSTEM``. The patient identifier is the
Patient's identifier whose system is ``patient_system`` when given, else its MRN (type ``MR``),
else its first one.

Bad lines (not JSON, not a DocumentReference, a Binary reference that cannot be resolved is
*not* bad: the note comes without text) are reported and skipped like OMOP rows: counted in
``rejected``, the first ``MAX_KEPT_ERRORS`` kept in ``errors``, each passed to ``on_reject``;
``strict=True`` stops at the first. Notes with status ``entered-in-error`` are skipped and
counted in ``withdrawn``.

Position: ``bulk-ndjson:1:<file name>:<byte offset of the next line>:<line number>``.
"""
from __future__ import annotations

import base64
import binascii
import json
import re
from datetime import datetime
from pathlib import Path
from typing import Callable, Iterator

from services.ingest.batch.source import BatchNote, BatchSourceError, Rejections

SOURCE = "bulk-ndjson"
FHIR_ID_SYSTEM = "urn:vigil:fhir:DocumentReference"
LOINC = "http://loinc.org"
_BINARY_REF = re.compile(r"(?:^|/)Binary/([A-Za-z0-9\-.]{1,64})$")
_TYPE_IN_NAME = re.compile(r"^([A-Z][A-Za-z]+)(?:[.\-_]\d+)?\.ndjson$")

Fetcher = Callable[[str], "tuple[str, bytes] | None"]


class _Bad(Exception):
    def __init__(self, field: str, problem: str):
        super().__init__(field)
        self.field, self.problem = field, problem


def resource_type_of(path: Path) -> str | None:
    """The resource type a Bulk Data file holds: from its name, else from its first line."""
    m = _TYPE_IN_NAME.match(path.name)
    if m:
        return m.group(1)
    try:
        with path.open("rb") as f:
            first = f.readline()
        return json.loads(first).get("resourceType") if first.strip() else None
    except (OSError, ValueError, AttributeError):
        return None


def _charset(content_type: str) -> str:
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset" and value.strip():
            return value.strip().strip('"')
    return "utf-8"


def _decode(content_type: str, data: bytes) -> str | None:
    try:
        return data.decode(_charset(content_type))
    except (LookupError, UnicodeDecodeError):
        return None


def _time(resource: dict) -> datetime | None:
    candidates = [resource.get("date"), (resource.get("context") or {}).get("period", {}).get("start")]
    candidates += [(c.get("attachment") or {}).get("creation") for c in resource.get("content") or []
                   if isinstance(c, dict)]
    for value in candidates:
        if isinstance(value, str) and value:
            try:
                moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
            except ValueError:
                raise _Bad("date", "not a FHIR instant") from None
            return moment
    return None


def _type(resource: dict) -> tuple[str, str]:
    concept = resource.get("type") or {}
    codings = [c for c in concept.get("coding") or [] if isinstance(c, dict)]
    chosen = next((c for c in codings if c.get("system") == LOINC), codings[0] if codings else {})
    return str(chosen.get("code") or ""), str(chosen.get("display") or concept.get("text") or "")


def _identifier(identifiers, system: str | None) -> tuple[str, str] | None:
    found = [i for i in identifiers or [] if isinstance(i, dict) and i.get("value")]
    if system is not None:
        found = [i for i in found if i.get("system") == system]
    else:
        mrn = [i for i in found if any(c.get("code") == "MR" for c in (i.get("type") or {}).get("coding") or []
                                       if isinstance(c, dict))]
        found = mrn or found
    if not found:
        return None
    return str(found[0].get("system") or ""), str(found[0]["value"])


class BulkNdjsonSource(Rejections):
    def __init__(self, documents: list[str | Path], patients: list[str | Path] = (),
                 binaries: list[str | Path] = (), *, fetcher: Fetcher | None = None,
                 patient_system: str | None = None, note_system: str | None = None, strict: bool = False,
                 on_reject: Callable[[BatchSourceError], None] | None = None, name: str | None = None):
        self.documents = [Path(p) for p in documents]
        self.patients = [Path(p) for p in patients]
        self.binaries = [Path(p) for p in binaries]
        names = [p.name for p in self.documents]
        if len(set(names)) != len(names):
            raise ValueError("DocumentReference files must have distinct names (positions name the file)")
        self.name = name or f"bulk-ndjson:{self.documents[0].parent.name if self.documents else '-'}"
        self.fetcher, self.patient_system, self.note_system = fetcher, patient_system, note_system
        self._init_rejections(strict, on_reject)
        self.withdrawn = 0
        self._patient_index: dict[str, tuple[str, str] | None] | None = None
        self._binary_index: dict[str, tuple[int, int]] | None = None

    @classmethod
    def from_directory(cls, directory: str | Path, **kwargs) -> "BulkNdjsonSource":
        directory = Path(directory)
        if not directory.is_dir():
            raise BatchSourceError(f"{directory.name}: not a directory")
        groups: dict[str, list[Path]] = {"DocumentReference": [], "Patient": [], "Binary": []}
        for path in sorted(directory.glob("*.ndjson")):
            rtype = resource_type_of(path)
            if rtype in groups:
                groups[rtype].append(path)
        kwargs.setdefault("name", f"bulk-ndjson:{directory.name}")
        return cls(groups["DocumentReference"], groups["Patient"], groups["Binary"], **kwargs)

    # --- indexes ----------------------------------------------------------------------

    def _lines(self, path: Path, offset: int = 0, line: int = 0) -> Iterator[tuple[int, int, int, bytes]]:
        """(line number, start offset, next offset, raw line) from ``offset`` on."""
        try:
            f = path.open("rb")
        except OSError as exc:
            raise BatchSourceError(f"{path.name}: cannot read ({exc.strerror or type(exc).__name__})") from None
        with f:
            f.seek(offset)
            for raw in f:
                line += 1
                yield line, offset, offset + len(raw), raw
                offset += len(raw)

    def _parse(self, path: Path, line: int, raw: bytes, rtype: str) -> dict | None:
        try:
            resource = json.loads(raw)
        except ValueError:
            self._reject(path, line, _Bad("(line)", "not JSON"))
            return None
        if not isinstance(resource, dict) or resource.get("resourceType") != rtype:
            self._reject(path, line, _Bad("resourceType", f"not a {rtype}"))
            return None
        return resource

    def patient_index(self) -> dict[str, tuple[str, str] | None]:
        if self._patient_index is None:
            index: dict[str, tuple[str, str] | None] = {}
            for path in self.patients:
                for line, _, _, raw in self._lines(path):
                    if not raw.strip():
                        continue
                    patient = self._parse(path, line, raw, "Patient")
                    if patient is not None and isinstance(patient.get("id"), str):
                        index[patient["id"]] = _identifier(patient.get("identifier"), self.patient_system)
            self._patient_index = index
        return self._patient_index

    def _binaries(self) -> dict[str, tuple[int, int]]:
        if self._binary_index is None:
            index: dict[str, tuple[int, int]] = {}
            for n, path in enumerate(self.binaries):
                for line, start, _, raw in self._lines(path):
                    if not raw.strip():
                        continue
                    binary = self._parse(path, line, raw, "Binary")
                    if binary is not None and isinstance(binary.get("id"), str):
                        index[binary["id"]] = (n, start)
            self._binary_index = index
        return self._binary_index

    def _binary(self, url: str) -> tuple[str, bytes] | None:
        m = _BINARY_REF.search(url)
        if m and self.binaries:
            found = self._binaries().get(m.group(1))
            if found is not None:
                with self.binaries[found[0]].open("rb") as f:
                    f.seek(found[1])
                    binary = json.loads(f.readline())
                try:
                    return str(binary.get("contentType") or ""), base64.b64decode(binary.get("data") or "",
                                                                                  validate=True)
                except (binascii.Error, ValueError):
                    return None
        return self.fetcher(url) if self.fetcher is not None else None

    # --- notes ------------------------------------------------------------------------

    def _reject(self, path: Path, line: int, bad: _Bad) -> None:
        self._report(BatchSourceError(f"{path.name} line {line}, field {bad.field}: {bad.problem}"))

    def _text(self, resource: dict) -> tuple[str | None, str]:
        attachments = [c.get("attachment") for c in resource.get("content") or []
                       if isinstance(c, dict) and isinstance(c.get("attachment"), dict)]
        if not attachments:
            raise _Bad("content", "no attachment")
        ranked = sorted(attachments, key=lambda a: (not str(a.get("contentType", "")).startswith("text/plain"),
                                                    not str(a.get("contentType", "")).startswith("text/")))
        first_type = str(ranked[0].get("contentType") or "")
        for attachment in ranked:
            ctype = str(attachment.get("contentType") or "")
            if not ctype.startswith("text/"):
                break
            if attachment.get("data"):
                try:
                    data = base64.b64decode(attachment["data"], validate=True)
                except (binascii.Error, ValueError, TypeError):
                    raise _Bad("content.attachment.data", "not base64") from None
                text = _decode(ctype, data)
                if text is not None:
                    return text, ctype
            elif isinstance(attachment.get("url"), str):
                found = self._binary(attachment["url"])
                if found is not None:
                    text = _decode(found[0] or ctype, found[1])
                    if text is not None:
                        return text, ctype
        return None, first_type

    def _note(self, resource: dict, position: str) -> BatchNote:
        rid = resource.get("id")
        ident = _identifier(resource.get("identifier"), self.note_system)
        if ident is None:
            if not isinstance(rid, str) or not rid:
                raise _Bad("id", "no identifier and no id")
            ident = (FHIR_ID_SYSTEM, rid)
        ref = (resource.get("subject") or {}).get("reference")
        patient_id = None
        patient_identifier = None
        if isinstance(ref, str) and "Patient/" in ref:
            patient_id = ref.split("Patient/", 1)[1].split("/")[0]
            patient_identifier = self.patient_index().get(patient_id)
        if patient_identifier is None:
            patient_identifier = _identifier([(resource.get("subject") or {}).get("identifier")], None)
        text, ctype = self._text(resource)
        code, display = _type(resource)
        attachment = next((c.get("attachment") for c in resource.get("content") or [] if isinstance(c, dict)), {})
        title = str(resource.get("description") or (attachment or {}).get("title") or "")
        return BatchNote(source=SOURCE, identifier_system=ident[0], identifier_value=ident[1],
                         patient_identifier=patient_identifier, patient_id=patient_id, note_time=_time(resource),
                         note_type=code, note_type_display=display, title=title, text=text, content_type=ctype,
                         position=position)

    def _start(self, after: str | None) -> tuple[int, int, int]:
        if after is None:
            return 0, 0, 0
        parts = after.rsplit(":", 2)
        head = parts[0].split(":", 2) if parts else []
        if len(parts) != 3 or len(head) != 3 or head[:2] != ["bulk-ndjson", "1"] \
                or not parts[1].isdigit() or not parts[2].isdigit():
            raise BatchSourceError("the position is not a Bulk NDJSON position")
        names = [p.name for p in self.documents]
        if head[2] not in names:
            raise BatchSourceError("the position names a file that is not among this source's files")
        return names.index(head[2]), int(parts[1]), int(parts[2])

    def notes(self, after: str | None = None) -> Iterator[BatchNote]:
        first, offset, line = self._start(after)
        self.patient_index()
        for n in range(first, len(self.documents)):
            path = self.documents[n]
            for number, _, nxt, raw in self._lines(path, offset if n == first else 0, line if n == first else 0):
                if not raw.strip():
                    continue
                resource = self._parse(path, number, raw, "DocumentReference")
                if resource is None:
                    continue
                if resource.get("status") == "entered-in-error":
                    self.withdrawn += 1
                    continue
                try:
                    note = self._note(resource, f"bulk-ndjson:1:{path.name}:{nxt}:{number}")
                except _Bad as bad:
                    self._reject(path, number, bad)
                    continue
                yield note


__all__ = ["BulkNdjsonSource", "resource_type_of", "FHIR_ID_SYSTEM"]


def open_source(path: Path, *, patient_system: str | None = None, strict: str = "false") -> BulkNdjsonSource:
    """The reader `vigil backfill run --source bulk-ndjson DIR` builds: every ``*.ndjson`` of an export
    directory (``--option patient_system=`` picks the Patient identifier used; ``strict=true`` stops
    at the first bad line)."""
    return BulkNdjsonSource.from_directory(path, patient_system=patient_system,
                                           strict=strict.lower() in ("1", "true", "yes"))
