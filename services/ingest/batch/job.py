"""A batch run: a named, checkpointed job that reads a ``BatchSource`` into Vigil's document store
and publishes one event per stored note on the batch lane (``batch-events``).

Notes are taken in chunks of ``CHUNK`` (source order). Each chunk is one tenant transaction:

1. every note with text is sealed with the tenant key (purpose ``note-text``, as the hl7 stage
   seals HL7 notes) and stored (``documents.put``); a note without text is stored ``no-text``;
2. a stored version is claimed in the shared version ledger (``ledger.claim_version``, origin
   ``batch``) and gets a ``vigil.ehr.resource-changed`` event (``source: store``, ``run: NAME``)
   whose id is deterministic in (tenant, document id, version) - the id the real-time path gives
   the same version; a note of at most ``evidence.CARRIED_NOTE_MAX_CHARS`` rides along in it
   (``note``: the text sealed with the tenant key, purpose ``event-note``, and the fields
   ``tools.GetNote`` would read from the store), so the batch extraction does not read the store;
3. the chunk's events are published and acknowledged by the broker;
4. the job row takes the position of the chunk's last note and the counts; commit.

A crash at any point rolls back the open chunk: its notes are not stored and the position is the
one before it, so the resumed run (same name) stores and publishes them again - no gap, and no
duplicate in the store. Events of a chunk whose commit was lost may be on the topic twice with
the same id; every stage skips an event id it already processed (the runtime's ledger).

Deduplication against the real-time path: a note whose source identifier is already in the store
with the same text (an HL7 feed stored it first) is the same note: it is counted ``skipped`` and
not published again. Same identifier with other text is the next version, published.

Nothing here logs note text or patient identifiers; the job row holds the source's PHI-free name.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Callable, Iterable, Iterator

from services.core import contracts, evidence
from services.core.events import Event
from services.core.logging import get_logger
from services.core.tenancy import check_tenant_id
from services.ingest import events as ev
from services.ingest.batch.source import BatchNote, BatchSource, BatchSourceError
from services.ingest.store import documents, ledger
from services.ingest.store import patients as patient_index

log = get_logger("vigil.ingest.batch")

#: Notes per transaction: large enough that the commit and the broker round trip are amortised
#: (~1 ms each per note at 200), small enough that a crash redoes little and a transaction holds
#: its advisory locks briefly.
CHUNK = 200
BATCH_EVENTS = contracts.BATCH_EVENTS
ORIGIN = "batch"
FACILITY_PREFIX = "batch:"
STATES = ("running", "done", "failed")
#: How far back ``rate`` looks in the progress rows of a running job.
RATE_WINDOW_S = 60.0


class BatchJobError(ValueError):
    """The run cannot start or go on as asked (the message is PHI-free and says what to do)."""


@dataclass
class JobRow:
    name: str
    source_kind: str
    source_name: str
    position: str | None
    total: int | None
    seen: int
    stored: int
    published: int
    skipped: int
    no_text: int
    state: str
    error: str | None
    started_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    rate: float | None = None  # notes seen per second (recent window while running)

    def as_dict(self) -> dict:
        out = asdict(self)
        for key in ("started_at", "updated_at", "finished_at"):
            out[key] = out[key].isoformat() if out[key] else None
        return out


_COLUMNS = ("name, source_kind, source_name, position, total, seen, stored, published, skipped, no_text, state, "
            "error, started_at, updated_at, finished_at")


def _row(r) -> JobRow:
    return JobRow(**{k: r[k] for k in _COLUMNS.replace(" ", "").split(",")})


def chunks(notes: Iterable[BatchNote], size: int) -> Iterator[list[BatchNote]]:
    chunk: list[BatchNote] = []
    for note in notes:
        chunk.append(note)
        if len(chunk) >= size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def text_digest(note: BatchNote) -> str:
    """What makes two versions of one note the same content: the text (or, without text, its type)."""
    body = note.text if note.text is not None else f"no-text:{note.content_type}"
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def _aware(moment: datetime | None) -> datetime | None:
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


@dataclass
class ChunkCounts:
    seen: int = 0
    stored: int = 0
    published: int = 0
    skipped: int = 0
    no_text: int = 0


class BatchJob:
    """One run of one source for one tenant. ``pools``, ``keyring``, ``publishers`` and
    ``patient_keys`` are ingest's (``services.ingest.runtime``)."""

    def __init__(self, tenant: str, name: str, kind: str, source: BatchSource, *, pools, keyring, publishers,
                 patient_keys, chunk: int = CHUNK):
        self.tenant, self.name, self.kind, self.source = check_tenant_id(tenant), check_name(name), kind, source
        self.pools, self.keyring, self.publishers, self.keys = pools, keyring, publishers, patient_keys
        self.chunk = chunk
        self._patients: dict[str, str | None] = {}

    async def open(self) -> JobRow:
        """Create the job row, or find it to resume; refuse a name taken by another source."""
        total = getattr(self.source, "total", None)
        async with self.pools.tx(self.tenant) as conn:
            await conn.execute(
                "INSERT INTO ingest_batch_jobs (tenant, name, source_kind, source_name, total) "
                "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
                self.tenant, self.name, self.kind, self.source.name, total if isinstance(total, int) else None)
            row = _row(await conn.fetchrow(f"SELECT {_COLUMNS} FROM ingest_batch_jobs WHERE tenant = $1 AND name = $2",
                                           self.tenant, self.name))
            if (row.source_kind, row.source_name) != (self.kind, self.source.name):
                raise BatchJobError(f"run {self.name!r} already exists for {row.source_kind} source "
                                    f"{row.source_name!r}; choose another --name")
            if row.state == "failed":
                await conn.execute("UPDATE ingest_batch_jobs SET state = 'running', error = NULL, updated_at = now() "
                                   "WHERE tenant = $1 AND name = $2", self.tenant, self.name)
                row.state = "running"
        return row

    async def run(self, on_chunk: Callable[[JobRow, ChunkCounts], None] | None = None,
                  max_chunks: int | None = None) -> JobRow:
        """Store and publish from the checkpoint to the end of the source (or ``max_chunks`` chunks)."""
        row = await self.open()
        if row.state == "done":
            return row
        done_chunks = 0
        try:
            for chunk in chunks(self.source.notes(after=row.position), self.chunk):
                counts = await self._chunk(chunk, row)
                if on_chunk:
                    on_chunk(row, counts)
                done_chunks += 1
                if max_chunks is not None and done_chunks >= max_chunks:
                    return row
        except BatchSourceError as exc:
            await self._fail(str(exc))
            raise
        async with self.pools.tx(self.tenant) as conn:
            await conn.execute("UPDATE ingest_batch_jobs SET state = 'done', finished_at = now(), updated_at = now() "
                               "WHERE tenant = $1 AND name = $2", self.tenant, self.name)
        row.state = "done"
        log.info("batch.run_done", tenant=self.tenant, run=self.name, seen=row.seen, stored=row.stored,
                 published=row.published, skipped=row.skipped)
        return row

    async def _fail(self, message: str) -> None:
        async with self.pools.tx(self.tenant) as conn:
            await conn.execute("UPDATE ingest_batch_jobs SET state = 'failed', error = $3, updated_at = now() "
                               "WHERE tenant = $1 AND name = $2", self.tenant, self.name, message[:500])

    async def _patient(self, conn, key: str) -> str | None:
        """The EHR Patient id the patient index knows for ``key`` (cached for the run)."""
        if key not in self._patients:
            if len(self._patients) > 100_000:  # constant memory whatever the run's size
                self._patients.clear()
            self._patients[key] = await patient_index.patient_id(conn, self.tenant, key)
        return self._patients[key]

    async def _chunk(self, chunk: list[BatchNote], row: JobRow) -> ChunkCounts:
        sealed = [await self.keyring.encrypt(self.tenant, n.text.encode("utf-8"), documents.TEXT_PURPOSE)
                  if n.text is not None else None for n in chunk]
        counts = ChunkCounts(seen=len(chunk))
        routed: list[tuple[str, Event]] = []
        async with self.pools.tx(self.tenant) as conn:
            for note, blob in zip(chunk, sealed):
                event = await self._note(conn, note, blob, counts)
                if event is not None:
                    routed.append((BATCH_EVENTS, event))
            await self.publishers.publish(self.tenant, routed)
            counts.published = len(routed)
            moved = await conn.execute(
                "UPDATE ingest_batch_jobs SET position = $3, seen = seen + $4, stored = stored + $5, "
                "published = published + $6, skipped = skipped + $7, no_text = no_text + $8, updated_at = now() "
                "WHERE tenant = $1 AND name = $2 AND position IS NOT DISTINCT FROM $9", self.tenant, self.name,
                chunk[-1].position, counts.seen, counts.stored, counts.published, counts.skipped, counts.no_text,
                row.position)
            if moved.endswith(" 0"):  # the checkpoint moved under us: the same run is going on elsewhere
                raise BatchJobError(f"run {self.name!r} is being run by another process; stop one of them")
            await conn.execute("INSERT INTO ingest_batch_progress (tenant, name, seen) VALUES ($1, $2, $3)",
                               self.tenant, self.name, row.seen + counts.seen)
        row.position = chunk[-1].position
        row.seen += counts.seen
        row.stored += counts.stored
        row.published += counts.published
        row.skipped += counts.skipped
        row.no_text += counts.no_text
        return counts

    async def _note(self, conn, note: BatchNote, blob: bytes | None, counts: ChunkCounts) -> Event | None:
        doc_id = documents.document_id(self.tenant, note.identifier_system, note.identifier_value)
        if note.text is not None and await self._same_as_stored(conn, doc_id, note.text):
            counts.skipped += 1  # the real-time path (or an earlier note of this source) stored it
            return None
        key = self.keys.of_identifier(self.tenant, *note.patient_identifier) if note.patient_identifier else ""
        patient_id = note.patient_id or (await self._patient(conn, key) if key else None)
        stored = await documents.put(
            conn, self.tenant, system=note.identifier_system, value=note.identifier_value,
            facility=FACILITY_PREFIX + self.kind, control_id=self.name, patient_key=key, patient_id=patient_id,
            note_time=_aware(note.note_time), note_type=note.note_type, note_type_display=note.note_type_display,
            doc_status=None, status="text" if note.text is not None else "no-text",
            content_types=[note.content_type] if note.content_type else [], text_sealed=blob,
            body_sha256=text_digest(note))
        if not stored.created:
            counts.skipped += 1
            return None
        counts.stored += 1
        if note.text is None:
            counts.no_text += 1
            return None
        patient = patient_id or key or None
        if patient is None:  # stored, but no stage can attribute it: counted, never published
            counts.skipped += 1
            return None
        if not await ledger.claim_version(conn, self.tenant, "DocumentReference", stored.id, str(stored.version),
                                          ORIGIN):
            counts.skipped += 1
            return None
        when = _aware(note.note_time)
        ref = ev.Ref("DocumentReference", stored.id, str(stored.version),
                     when.isoformat() if when else ev.now_iso(), patient)
        event = ev.resource_changed(self.tenant, ref, action="create" if stored.version == 1 else "update",
                                    origin=ORIGIN)
        event.data["source"] = "store"
        event.data["run"] = self.name
        if len(note.text) <= evidence.CARRIED_NOTE_MAX_CHARS:
            # the note rides along, sealed: the batch extraction needs no read of the store
            event.data["note"] = {
                "textSealed": await evidence.seal_note(self.keyring, self.tenant, note.text),
                "time": when.astimezone(timezone.utc).isoformat() if when else "",
                "type": note.note_type or "", "typeDisplay": note.note_type_display or "",
                "identifier": {"system": note.identifier_system, "value": note.identifier_value}}
        return event

    async def _same_as_stored(self, conn, doc_id: str, text: str) -> bool:
        """The newest stored version of this document has exactly this text."""
        row = await conn.fetchrow("SELECT status, text_sealed FROM ingest_documents WHERE tenant = $1 AND id = $2 "
                                  "ORDER BY version DESC LIMIT 1", self.tenant, doc_id)
        if row is None or row["status"] != "text" or row["text_sealed"] is None:
            return False
        stored = await self.keyring.decrypt(self.tenant, bytes(row["text_sealed"]), documents.TEXT_PURPOSE)
        return stored == text.encode("utf-8")


NAME_CHARS = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.:-"


def check_name(name: str) -> str:
    """A run name travels on events (schema pattern ``^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$``)."""
    if not isinstance(name, str) or not 1 <= len(name) <= 64 or not name[0].isalnum() \
            or any(c not in NAME_CHARS for c in name):
        raise BatchJobError(f"run name {name!r}: use 1-64 of letters, digits, '_', '.', ':', '-', "
                            "starting with a letter or digit")
    return name


async def jobs(pools, tenant: str) -> list[JobRow]:
    """Every run of the tenant, newest first, with its rate."""
    async with pools.tx(check_tenant_id(tenant), readonly=True) as conn:
        rows = [_row(r) for r in await conn.fetch(
            f"SELECT {_COLUMNS} FROM ingest_batch_jobs WHERE tenant = $1 ORDER BY started_at DESC", tenant)]
        for row in rows:
            row.rate = await _rate(conn, tenant, row)
    return rows


async def get(pools, tenant: str, name: str) -> JobRow | None:
    async with pools.tx(check_tenant_id(tenant), readonly=True) as conn:
        r = await conn.fetchrow(f"SELECT {_COLUMNS} FROM ingest_batch_jobs WHERE tenant = $1 AND name = $2",
                                tenant, name)
        if r is None:
            return None
        row = _row(r)
        row.rate = await _rate(conn, tenant, row)
        return row


async def progress(pools, tenant: str, name: str) -> list[tuple[datetime, int]]:
    """(time, notes seen so far) per committed chunk of the run, oldest first."""
    async with pools.tx(check_tenant_id(tenant), readonly=True) as conn:
        return [(r["at"], r["seen"]) for r in await conn.fetch(
            "SELECT at, seen FROM ingest_batch_progress WHERE tenant = $1 AND name = $2 ORDER BY at", tenant, name)]


async def _rate(conn, tenant: str, row: JobRow) -> float | None:
    """Notes per second: over the last ``RATE_WINDOW_S`` of progress while running, else overall
    (first to last committed chunk)."""
    r = await conn.fetchrow(
        "SELECT min(at) AS t0, max(at) AS t1, min(seen) AS s0, max(seen) AS s1, count(*) AS n "
        "FROM ingest_batch_progress WHERE tenant = $1 AND name = $2 "
        "AND ($3::float8 IS NULL OR at >= now() - make_interval(secs => $3))", tenant, row.name,
        RATE_WINDOW_S if row.state == "running" else None)
    if r is None or r["n"] < 2 or r["t1"] <= r["t0"]:
        return None
    return (r["s1"] - r["s0"]) / (r["t1"] - r["t0"]).total_seconds()


@dataclass(frozen=True)
class RunDocument:
    id: str
    identifier_system: str
    identifier_value: str
    note_time: datetime | None
    status: str


async def documents_of(pools, tenant: str, name: str) -> list[RunDocument]:
    """The notes the run stored (first version of each stored by it), for reports."""
    async with pools.tx(check_tenant_id(tenant), readonly=True) as conn:
        rows = await conn.fetch(
            "SELECT id, identifier_system, identifier_value, note_time, status FROM ingest_documents "
            "WHERE tenant = $1 AND control_id = $2 AND facility LIKE 'batch:%' ORDER BY identifier_value",
            tenant, name)
    return [RunDocument(r["id"], r["identifier_system"], r["identifier_value"], r["note_time"], r["status"])
            for r in rows]
