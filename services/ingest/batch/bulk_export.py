"""The FHIR Bulk Data ``$export`` client: kick-off, polling, download, resume.

``export(client, directory, request)`` runs one export into ``directory`` with the tenant's
SMART client (``services.core.fhir.FhirClient``: it holds and renews the access token):

1. kick-off (``[base]/$export``, ``Patient/$export`` or ``Group/<id>/$export``) with
   ``Prefer: respond-async``, ``_type``, ``_since`` and ``_outputFormat=application/fhir+ndjson``;
   the status URL (``Content-Location``) is saved at once;
2. polling: each 202 is followed by a wait of its ``Retry-After`` (seconds or an HTTP date), or
   without one an exponential backoff (``POLL_FIRST_S`` doubling to ``POLL_MAX_S``), never longer
   than ``POLL_MAX_S``; 429/5xx answers wait the same way, ``MAX_POLL_ERRORS`` in a row fail;
   the whole wait is bounded by ``max_wait_s``. The manifest is saved when it arrives;
3. download of every output file (with the bearer token when ``requiresAccessToken``) to
   ``<Type>.<n>.ndjson.part``, checked against the manifest's ``count``, then renamed to
   ``<Type>.<n>.ndjson``; each finished file is recorded;
4. Binary references of the notes that the export does not hold (a Patient- or Group-level export
   has no Binary) are read one by one and written to ``Binary.fetched.ndjson``.

State: ``export-state.json`` in ``directory``, replaced atomically (write, fsync, rename) after
every step. A client killed at any point, run again with the same directory, re-polls the saved
status URL, skips finished files and downloads unfinished ones from the start (a ``.part`` is
never trusted). A file is renamed into place only when complete, so a reader of the directory
(``BulkNdjsonSource.from_directory``) never sees a partial one. A kill between the kick-off and
the first save leaves an orphan job on the server (it expires there); the rerun starts another.
Nothing here logs or prints resource content.
"""
from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Awaitable, Callable

from services.core.errors import FatalError, NotFoundError, RetryableError, parse_retry_after
from services.core.fhir import FhirClient
from services.ingest.batch.bulk_ndjson import BulkNdjsonSource

STATE_FILE = "export-state.json"
FETCHED_BINARIES = "Binary.fetched.ndjson"
NDJSON = "application/fhir+ndjson"
#: Polling without Retry-After: 1 s, doubling, at most 60 s between polls; a server's Retry-After
#: is honoured up to the same cap (a server asking for an hour is asked again after a minute).
POLL_FIRST_S = 1.0
POLL_MAX_S = 60.0
#: Consecutive failed polls (429/5xx/transport) before the export is given up: about 10 minutes at the cap.
MAX_POLL_ERRORS = 10
#: Whole-file download attempts (a broken transfer or a short file) before giving up.
MAX_DOWNLOAD_ATTEMPTS = 5
#: The longest an export may stay in progress on the server.
MAX_WAIT_S = 6 * 3600
CHUNK_BYTES = 1 << 20
_BINARY_REF = re.compile(r"(?:^|/)Binary/([A-Za-z0-9\-.]{1,64})$")

Sleep = Callable[[float], Awaitable[None]]


class ExportError(FatalError):
    """The export cannot go on (refused kick-off, failed job, a server that forgot it); the message
    says what to do."""

    code = "export"


@dataclass(frozen=True)
class ExportRequest:
    level: str = "system"  # system | patient | group
    group_id: str | None = None
    types: tuple[str, ...] = ()
    since: datetime | None = None

    def __post_init__(self) -> None:
        if self.level not in ("system", "patient", "group"):
            raise ValueError("level must be system, patient or group")
        if (self.level == "group") != bool(self.group_id):
            raise ValueError("a group-level export needs group_id (and only it does)")

    @property
    def path(self) -> str:
        return {"system": "$export", "patient": "Patient/$export"}.get(self.level) or f"Group/{self.group_id}/$export"

    def params(self) -> list[tuple[str, str]]:
        params = [("_outputFormat", NDJSON)]
        if self.types:
            params.append(("_type", ",".join(self.types)))
        if self.since is not None:
            since = self.since if self.since.tzinfo else self.since.replace(tzinfo=timezone.utc)
            params.append(("_since", since.isoformat(timespec="seconds").replace("+00:00", "Z")))
        return params

    def key(self) -> dict:
        return {"path": self.path, "params": self.params()}


@dataclass
class ExportResult:
    directory: Path
    transaction_time: str
    files: list[str]
    resources: dict[str, int]
    downloaded: int  # files downloaded by this run (the others were already complete)
    binaries_fetched: int
    polls: int
    resumed: bool

    def source(self, **kwargs) -> BulkNdjsonSource:
        return BulkNdjsonSource.from_directory(self.directory, **kwargs)


@dataclass
class _State:
    path: Path
    data: dict = field(default_factory=dict)

    @classmethod
    def load(cls, directory: Path) -> "_State":
        path = directory / STATE_FILE
        if not path.exists():
            return cls(path, {})
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ExportError(f"{STATE_FILE} in {directory.name} cannot be read ({type(exc).__name__}); remove the "
                              "directory's files to start the export again") from None
        return cls(path, data if isinstance(data, dict) else {})

    def save(self) -> None:
        tmp = self.path.with_suffix(".json.tmp")
        with tmp.open("w", encoding="utf-8") as f:
            json.dump(self.data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def next_wait(retry_after: float | None, backoff: float) -> float:
    """The wait before the next poll: the server's Retry-After (capped), else the backoff."""
    return min(POLL_MAX_S, retry_after if retry_after is not None else backoff)


def _file_names(output: list[dict]) -> list[tuple[str, dict]]:
    """Local names ``<Type>.<n>.ndjson`` in manifest order (n counts per type from 1)."""
    seen: dict[str, int] = {}
    named = []
    for entry in output:
        rtype = str(entry.get("type") or "")
        if not re.fullmatch(r"[A-Z][A-Za-z]{0,63}", rtype) or not isinstance(entry.get("url"), str):
            raise ExportError("the manifest has an output entry without a resource type or url")
        seen[rtype] = seen.get(rtype, 0) + 1
        named.append((f"{rtype}.{seen[rtype]}.ndjson", entry))
    return named


class _Exporter:
    def __init__(self, client: FhirClient, directory: Path, request: ExportRequest, *, sleep: Sleep,
                 max_wait_s: float, on_event: Callable[[str, dict], None] | None):
        self.client, self.directory, self.request = client, directory, request
        self.sleep, self.max_wait_s = sleep, max_wait_s
        self.on_event = on_event or (lambda kind, info: None)
        self.polls = 0

    async def kickoff(self, state: _State) -> None:
        """Start the export. A 429 (too many exports) or 5xx is tried again after its Retry-After
        (or the backoff), ``MAX_POLL_ERRORS`` times at most."""
        backoff = POLL_FIRST_S
        for attempt in range(1, MAX_POLL_ERRORS + 1):
            try:
                response = await self.client.request("GET", self.request.path, params=self.request.params(),
                                                     headers={"Prefer": "respond-async",
                                                              "Accept": "application/fhir+json"})
                break
            except RetryableError as exc:
                if attempt == MAX_POLL_ERRORS:
                    raise ExportError(f"the kick-off failed {attempt} times ({exc}); run again later") from None
                await self.sleep(next_wait(exc.retry_after, backoff))
                backoff = min(POLL_MAX_S, backoff * 2)
            except FatalError as exc:
                raise ExportError(f"the EHR refused the export ({exc})") from None
        location = response.headers.get("content-location")
        if response.status_code != 202 or not location:
            raise ExportError(f"the kick-off answered {response.status_code} without a status URL "
                              "(the server does not run $export asynchronously)")
        state.data.update(request=self.request.key(), status_url=location, manifest=None, files={},
                          kicked_off_at=datetime.now(timezone.utc).isoformat())
        state.save()
        self.on_event("kicked-off", {})

    async def poll(self, state: _State) -> dict | None:
        """The manifest, or None when the server no longer knows the job (404) before any file was kept."""
        backoff, errors = POLL_FIRST_S, 0
        deadline = time.monotonic() + self.max_wait_s
        while True:
            self.polls += 1
            try:
                response = await self.client.request("GET", state.data["status_url"],
                                                     headers={"Accept": "application/json"})
            except NotFoundError:
                return None
            except RetryableError as exc:
                errors += 1
                if errors >= MAX_POLL_ERRORS:
                    raise ExportError(f"the status URL failed {errors} times in a row ({exc}); run again to "
                                      "resume polling") from None
                wait = next_wait(exc.retry_after, backoff)
            except FatalError as exc:
                raise ExportError(f"the export failed on the server ({exc})") from None
            else:
                errors = 0
                if response.status_code == 200:
                    try:
                        manifest = response.json()
                    except ValueError:
                        raise ExportError("the status URL answered 200 without a JSON manifest") from None
                    if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                        raise ExportError("the manifest has no output list")
                    return manifest
                wait = next_wait(parse_retry_after(response.headers.get("retry-after")), backoff)
                self.on_event("in-progress", {"progress": response.headers.get("x-progress", ""), "wait_s": wait})
            if time.monotonic() + wait > deadline:
                raise ExportError(f"the export was still in progress after {self.max_wait_s:.0f} s; run again to "
                                  "resume polling")
            await self.sleep(wait)
            backoff = min(POLL_MAX_S, backoff * 2)

    async def download(self, name: str, entry: dict, token: bool) -> None:
        final, part = self.directory / name, self.directory / (name + ".part")
        expected = entry.get("count")
        for attempt in range(1, MAX_DOWNLOAD_ATTEMPTS + 1):
            lines = 0
            try:
                async with self.client.stream(entry["url"], headers={"Accept": NDJSON}, auth=token) as response:
                    with part.open("wb") as f:
                        async for chunk in response.aiter_bytes(CHUNK_BYTES):
                            f.write(chunk)
                            lines += chunk.count(b"\n")
                        f.flush()
                        os.fsync(f.fileno())
                if isinstance(expected, int) and lines != expected:
                    raise RetryableError(f"{name}: {lines} lines, the manifest says {expected}", code="short_file")
            except NotFoundError:
                raise ExportError(f"{name} is no longer on the server (the export expired); remove the directory's "
                                  "files to start the export again") from None
            except RetryableError as exc:
                if attempt == MAX_DOWNLOAD_ATTEMPTS:
                    raise ExportError(f"{name} could not be downloaded in {attempt} attempts ({exc})") from None
                await self.sleep(next_wait(exc.retry_after, POLL_FIRST_S * 2 ** (attempt - 1)))
                continue
            os.replace(part, final)
            _fsync_dir(self.directory)
            return

    async def fetch_binaries(self, names: list[str]) -> int:
        """Write the Binaries the notes reference and the export does not hold; returns how many."""
        held = set()
        for name in names:
            if name.startswith("Binary."):
                with (self.directory / name).open("rb") as f:
                    for raw in f:
                        if raw.strip():
                            held.add(json.loads(raw).get("id"))
        wanted: list[str] = []
        seen = set()
        for name in names:
            if not name.startswith("DocumentReference."):
                continue
            with (self.directory / name).open("rb") as f:
                for raw in f:
                    if not raw.strip():
                        continue
                    for content in json.loads(raw).get("content") or []:
                        url = ((content or {}).get("attachment") or {}).get("url")
                        m = _BINARY_REF.search(url) if isinstance(url, str) else None
                        if m and m.group(1) not in held and m.group(1) not in seen:
                            seen.add(m.group(1))
                            wanted.append(m.group(1))
        part = self.directory / (FETCHED_BINARIES + ".part")
        with part.open("w", encoding="utf-8") as f:
            for rid in wanted:
                try:
                    binary = await self.client.read("Binary", rid)
                except NotFoundError:
                    continue  # the note comes without text; the reader reports it as such
                if binary.get("data") is not None:
                    base64.b64decode(binary["data"], validate=True)
                f.write(json.dumps(binary, separators=(",", ":")) + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(part, self.directory / FETCHED_BINARIES)
        _fsync_dir(self.directory)
        return len(wanted)


async def export(client: FhirClient, directory: str | Path, request: ExportRequest, *,
                 sleep: Sleep = asyncio.sleep, max_wait_s: float = MAX_WAIT_S,
                 on_event: Callable[[str, dict], None] | None = None) -> ExportResult:
    """Run (or resume) one export into ``directory``; see the module docstring."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = _State.load(directory)
    if state.data and state.data.get("request") != json.loads(json.dumps(request.key())):
        raise ExportError(f"{directory.name} holds another export (different level, types or since); use a "
                          "new directory")
    resumed = bool(state.data)
    job = _Exporter(client, directory, request, sleep=sleep, max_wait_s=max_wait_s, on_event=on_event)
    if not state.data.get("status_url"):
        await job.kickoff(state)
    if not state.data.get("manifest"):
        manifest = await job.poll(state)
        if manifest is None:  # the server forgot the job before we kept anything: start it again
            await job.kickoff(state)
            manifest = await job.poll(state)
            if manifest is None:
                raise ExportError("the server does not know the export it just accepted")
        state.data["manifest"] = manifest
        state.save()
    manifest = state.data["manifest"]
    token = bool(manifest.get("requiresAccessToken", True))
    named = _file_names(manifest.get("output") or [])
    files: dict = state.data.setdefault("files", {})
    downloaded = 0
    for name, entry in named:
        if files.get(name) == "done" and (directory / name).exists():
            continue
        await job.download(name, entry, token)
        files[name] = "done"
        state.save()
        downloaded += 1
        job.on_event("downloaded", {"file": name, "count": entry.get("count")})
    names = [name for name, _ in named]
    fetched = state.data.get("binaries_fetched")
    if fetched is None or not (directory / FETCHED_BINARIES).exists():
        fetched = await job.fetch_binaries(names)
        state.data["binaries_fetched"] = fetched
        state.save()
    resources: dict[str, int] = {}
    for _, entry in named:
        resources[entry["type"]] = resources.get(entry["type"], 0) + int(entry.get("count") or 0)
    return ExportResult(directory, str(manifest.get("transactionTime", "")), names, resources, downloaded, fetched,
                        job.polls, resumed)


__all__ = ["export", "ExportRequest", "ExportResult", "ExportError", "next_wait", "STATE_FILE"]


def open_source(path: Path, **options: str) -> BulkNdjsonSource:
    """`vigil backfill run --source bulk-export DIR`: the files a finished `vigil backfill export`
    downloaded to DIR (its state file says it completed); read as Bulk NDJSON."""
    from services.ingest.batch import bulk_ndjson
    from services.ingest.batch.source import BatchSourceError

    state = Path(path) / STATE_FILE
    if not state.exists():
        raise BatchSourceError(f"{Path(path).name}: no {STATE_FILE} here: run `vigil backfill export --dir` first")
    data = json.loads(state.read_text(encoding="utf-8"))
    files = data.get("files") or {}
    named = [name for name, _ in _file_names((data.get("manifest") or {}).get("output") or [])]
    if "manifest" not in data or "binaries_fetched" not in data or any(files.get(n) != "done" for n in named):
        raise BatchSourceError(f"{Path(path).name}: the export there has not finished: run `vigil backfill export` "
                               "again with the same --dir to resume it")
    return bulk_ndjson.open_source(Path(path), **options)
