"""Signed audit checkpoints kept outside the database.

A checkpoint records, for every audit chain, the position and hash of its newest record::

    {"version": 1, "time": "...Z", "chains": {"<tenant>": {"chain_seq": n, "seq": s, "head": "<hash>"}},
     "signature": HMAC-SHA256(K, canonical_json({version, time, chains}))}

with ``K = SecretSettings.derive("vigil/audit-checkpoint/v1")``. ``export`` first verifies the
chains (against the previous checkpoint, so a tampered chain is never blessed) and then writes
``audit-checkpoint-<UTC time>.json`` into the checkpoint directory atomically (a temporary
file in the same directory, fsync, rename, fsync of the directory). ``latest`` reads the newest
one and refuses it if its signature is wrong. With the latest checkpoint, ``audit.verify``
detects what the chain alone cannot show: removed newest records and an emptied table.

Settings: ``VIGIL_AUDIT_CHECKPOINT_DIR`` (a directory outside the database host's reach: a
separate volume, or one synchronised to write-once object storage) and
``VIGIL_AUDIT_CHECKPOINT_INTERVAL_S`` (default 300; the control service exports on that
schedule when the directory is set; ``vigil audit checkpoint`` exports on demand).
"""
from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping

import asyncpg

from services.core import audit
from services.core.config import ConfigError
from services.core.logging import get_logger
from services.core.secrets import SecretSettings

log = get_logger("vigil.audit.checkpoints")
CHECKPOINT_LABEL = "vigil/audit-checkpoint/v1"
VERSION = 1
DEFAULT_INTERVAL_S = 300
_NAME = re.compile(r"^audit-checkpoint-(\d{8}T\d{6}\.\d{6}Z)\.json$")


@dataclass(frozen=True)
class CheckpointSettings:
    directory: Path | None
    interval_s: float = DEFAULT_INTERVAL_S

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "CheckpointSettings":
        source = os.environ if env is None else env
        raw_dir = source.get("VIGIL_AUDIT_CHECKPOINT_DIR") or ""
        raw_interval = source.get("VIGIL_AUDIT_CHECKPOINT_INTERVAL_S") or str(DEFAULT_INTERVAL_S)
        try:
            interval = float(raw_interval)
        except ValueError:
            interval = -1.0
        if not 1 <= interval <= 86400:
            raise ConfigError(f"VIGIL_AUDIT_CHECKPOINT_INTERVAL_S={raw_interval!r}: expected seconds between 1 and 86400")
        return cls(Path(raw_dir).expanduser() if raw_dir else None, interval)


@dataclass(frozen=True)
class Checkpoint:
    time: str
    chains: dict[str, audit.Head]
    path: Path | None = None


def _key(secrets: SecretSettings | None) -> bytes:
    return audit.signing_key(secrets, CHECKPOINT_LABEL)


def _body(time_text: str, chains: dict[str, audit.Head]) -> dict:
    return {"version": VERSION, "time": time_text,
            "chains": {t: {"chain_seq": h.chain_seq, "seq": h.seq, "head": h.hash} for t, h in sorted(chains.items())}}


def sign(body: dict, key: bytes) -> str:
    return hmac.new(key, audit.canonical(body).encode(), hashlib.sha256).hexdigest()


def write(directory: Path, chains: dict[str, audit.Head], *, secrets: SecretSettings | None = None,
          now: datetime | None = None) -> Path:
    """Write one signed checkpoint atomically; returns its path."""
    when = (now or datetime.now(timezone.utc)).astimezone(timezone.utc)
    stamp = when.strftime("%Y%m%dT%H%M%S.%fZ")
    body = _body(when.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), chains)
    document = {**body, "signature": sign(body, _key(secrets))}
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / f"audit-checkpoint-{stamp}.json"
    fd, tmp = tempfile.mkstemp(prefix=".audit-checkpoint-", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(json.dumps(document, indent=1, sort_keys=True) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def read(path: Path, *, secrets: SecretSettings | None = None) -> Checkpoint:
    """Load one checkpoint; AuditError if it is malformed or its signature is wrong."""
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
        signature = document.pop("signature")
        chains = {str(t): audit.Head(int(c["chain_seq"]), int(c["seq"]), str(c["head"]))
                  for t, c in document["chains"].items()}
        time_text = str(document["time"])
        if document.get("version") != VERSION:
            raise ValueError("unknown version")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise audit.AuditError(f"checkpoint {path.name} is unreadable ({type(exc).__name__})") from None
    if not isinstance(signature, str) or not hmac.compare_digest(sign(_body(time_text, chains), _key(secrets)),
                                                                 signature):
        raise audit.AuditError(f"checkpoint {path.name}: signature does not match (altered or not ours)")
    return Checkpoint(time_text, chains, path)


def latest(directory: Path, *, secrets: SecretSettings | None = None) -> Checkpoint | None:
    """The newest checkpoint in ``directory`` (signature checked), or None when there is none."""
    if not directory.is_dir():
        return None
    names = sorted(p.name for p in directory.iterdir() if _NAME.match(p.name))
    return read(directory / names[-1], secrets=secrets) if names else None


async def export(conn: asyncpg.Connection, directory: Path, *, secrets: SecretSettings | None = None) -> Path:
    """Verify every chain against the previous checkpoint, then write a new one (admin connection)."""
    previous = latest(directory, secrets=secrets)
    result = await audit.verify(conn, checkpoint=previous.chains if previous else None,
                                key=audit.signing_key(secrets))
    if not result.ok:
        bad = result.first_bad
        raise audit.AuditError(f"not exporting a checkpoint: chain {bad['tenant']} fails at chain_seq "
                               f"{bad['chain_seq']}: {bad['problem']}")
    chains = {t: audit.Head(last, result.heads[t], head) for t, (last, head) in result.chains.items()}
    if previous:  # a chain the previous checkpoint named and the table no longer holds was caught above
        chains = {**previous.chains, **chains}
    return write(directory, chains, secrets=secrets)


async def run_schedule(pool: asyncpg.Pool, settings: CheckpointSettings, stop: asyncio.Event,
                       secrets: SecretSettings | None = None) -> None:
    """Export a checkpoint every ``interval_s`` until ``stop`` is set (failures are logged, never PHI)."""
    assert settings.directory is not None
    while not stop.is_set():
        try:
            async with pool.acquire() as conn:
                path = await export(conn, settings.directory, secrets=secrets)
            log.info("audit.checkpoint_exported", file=path.name)
        except audit.AuditError as exc:
            log.error("audit.checkpoint_refused", error=str(exc))
        except (OSError, asyncpg.PostgresError) as exc:
            log.error("audit.checkpoint_failed", error_type=type(exc).__name__)
        try:
            await asyncio.wait_for(stop.wait(), settings.interval_s)
        except asyncio.TimeoutError:
            pass
