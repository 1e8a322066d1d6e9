"""The audit log: append-only, hash-chained records of PHI access and control actions.

Each tenant has its own chain (platform actions use the chain ``PLATFORM``). A record holds
``seq`` (global order), ``chain_seq`` (1, 2, 3, ... within its chain), ``time``, ``tenant``,
``actor``, ``action``, ``resources`` (JSON list of references such as
``"DocumentReference/123/_history/2"``), ``details`` (JSON object, never PHI: keys that name
clinical content are refused), ``prev_hash`` and ``hash``::

    hash = sha256(canonical_json({chain_seq, time, tenant, actor, action, resources, details})
                  + prev_hash)

where ``resources`` and ``details`` enter as the exact stored JSON text, so a change of any
byte of a stored record breaks its hash. The first record's ``prev_hash`` is 64 zeros.

Every record is also signed: ``mac = HMAC-SHA256(K, canonical_json({seq, tenant, chain_seq,
hash}))`` where ``K = SecretSettings.derive("vigil/audit-record-mac/v1")`` comes from the
platform master secret, which the database does not hold. Whoever can write the table but not
read the master secret cannot re-hash a rewritten chain, forge an appended record or move a
record to another ``seq`` without ``verify`` noticing. Records written before signing existed
(``mac`` NULL) are accepted only as the start of a chain, before its first signed record.

Append-only: the application role is granted only SELECT and INSERT, a trigger refuses
UPDATE, DELETE and TRUNCATE for everyone, and RLS confines a tenant's appends to its own
chain. Appends to one chain are serialized by a transaction advisory lock and a unique
(tenant, chain_seq), so the chain stays linear under concurrency. Append inside the same
``tenant_tx`` as the write it records, so both commit or neither does.

``verify`` (admin connection) walks every chain, or one, and reports the first bad record.
Removing the newest records of a chain, or all of them, cannot be seen from the chain alone:
``services.core.audit_checkpoints`` exports signed chain heads outside the database and
``verify`` checks the chains against the latest of them.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import asyncpg

from services.core.logging import PHI_FIELDS
from services.core.secrets import SecretSettings
from services.core.tenancy import check_tenant_id
from services.core.tenantdb import tenant_rls_sql

PLATFORM = "_platform"
GENESIS = "0" * 64
MAX_DETAILS_BYTES = 8192
RECORD_MAC_LABEL = "vigil/audit-record-mac/v1"

SCHEMA_MODULE = "audit"
SCHEMA_STEPS = [
    """
CREATE TABLE IF NOT EXISTS vigil_audit_log (
    seq bigserial PRIMARY KEY,
    chain_seq bigint NOT NULL,
    time timestamptz NOT NULL,
    tenant text NOT NULL,
    actor text NOT NULL,
    action text NOT NULL,
    resources text NOT NULL,
    details text NOT NULL,
    prev_hash text NOT NULL,
    hash text NOT NULL,
    UNIQUE (tenant, chain_seq)
);
CREATE OR REPLACE FUNCTION vigil_audit_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'vigil_audit_log is append-only (% refused)', TG_OP USING ERRCODE = 'insufficient_privilege';
END $$;
DROP TRIGGER IF EXISTS vigil_audit_no_update ON vigil_audit_log;
CREATE TRIGGER vigil_audit_no_update BEFORE UPDATE OR DELETE ON vigil_audit_log
    FOR EACH ROW EXECUTE FUNCTION vigil_audit_refuse_change();
DROP TRIGGER IF EXISTS vigil_audit_no_truncate ON vigil_audit_log;
CREATE TRIGGER vigil_audit_no_truncate BEFORE TRUNCATE ON vigil_audit_log
    FOR EACH STATEMENT EXECUTE FUNCTION vigil_audit_refuse_change();
""",
    tenant_rls_sql("vigil_audit_log", ("SELECT", "INSERT"))
    + "GRANT USAGE ON SEQUENCE vigil_audit_log_seq_seq TO vigil_app;\n",
    "ALTER TABLE vigil_audit_log ADD COLUMN IF NOT EXISTS mac text;\n",
]


class AuditError(ValueError):
    """A record that may not be written (PHI-like detail keys, oversize details)."""


@dataclass(frozen=True)
class AuditRecord:
    seq: int
    chain_seq: int
    time: datetime
    tenant: str
    actor: str
    action: str
    resources: str
    details: str
    prev_hash: str
    hash: str
    mac: str | None = None


@dataclass
class VerifyResult:
    ok: bool
    records: int = 0
    chains: dict[str, tuple[int, str]] = field(default_factory=dict)  # tenant -> (last chain_seq, head hash)
    heads: dict[str, int] = field(default_factory=dict)               # tenant -> seq of the head record
    unsigned: int = 0                                                 # records written before signing
    first_bad: dict[str, Any] | None = None


@functools.lru_cache(maxsize=4)
def _derived(master_key: bytes, label: str) -> bytes:
    return SecretSettings(master_key, "cache").derive(label)


def signing_key(secrets: SecretSettings | None = None, label: str = RECORD_MAC_LABEL) -> bytes:
    """The audit key for ``label``, derived from the master secret (of the process by default)."""
    return _derived((secrets or SecretSettings.from_env()).master_key, label)


def record_mac(key: bytes, *, seq: int, tenant: str, chain_seq: int, hash: str) -> str:
    body = canonical({"seq": seq, "tenant": tenant, "chain_seq": chain_seq, "hash": hash})
    return hmac.new(key, body.encode(), hashlib.sha256).hexdigest()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _time_text(when: datetime) -> str:
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(*, chain_seq: int, time: datetime, tenant: str, actor: str, action: str, resources: str,
                details: str, prev_hash: str) -> str:
    body = canonical({"chain_seq": chain_seq, "time": _time_text(time), "tenant": tenant, "actor": actor,
                      "action": action, "resources": resources, "details": details})
    return hashlib.sha256((body + prev_hash).encode()).hexdigest()


def _check_details(details: dict[str, Any] | None) -> str:
    details = details or {}
    if not isinstance(details, dict):
        raise AuditError("details must be a JSON object")

    def walk(value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                if str(k).lower() in PHI_FIELDS:
                    raise AuditError(f"details key {k!r} may hold PHI; record references, not content")
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)

    walk(details)
    text = canonical(details)
    if len(text.encode()) > MAX_DETAILS_BYTES:
        raise AuditError(f"details exceed {MAX_DETAILS_BYTES} bytes")
    return text


def cli_actor() -> str:
    """The actor name of a command-line action: ``cli:<os user>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except Exception:  # no passwd entry (some containers)
        return "cli:unknown"


def _chain(tenant: str) -> str:
    return tenant if tenant == PLATFORM else check_tenant_id(tenant)


async def append(conn: asyncpg.Connection, tenant: str, actor: str, action: str,
                 resources: Iterable[str] = (), details: dict[str, Any] | None = None,
                 *, key: bytes | None = None) -> AuditRecord:
    """Append one record to ``tenant``'s chain inside the caller's transaction.

    ``conn`` is a ``tenant_tx`` connection for ``tenant`` (or an admin connection in a
    transaction, for the ``PLATFORM`` chain). ``key``: the record signing key (default: derived
    from the process's master secret)."""
    key = key or signing_key()
    tenant = _chain(tenant)
    if not actor or not action:
        raise AuditError("actor and action are required")
    if not conn.is_in_transaction():
        raise AuditError("append inside a transaction (tenant_tx), so the lock and the insert are atomic")
    resources_text = canonical([str(r) for r in resources])
    details_text = _check_details(details)
    await conn.execute("SELECT pg_advisory_xact_lock(hashtext('vigil_audit_log:' || $1))", tenant)
    last = await conn.fetchrow("SELECT chain_seq, hash FROM vigil_audit_log WHERE tenant = $1 "
                               "ORDER BY chain_seq DESC LIMIT 1", tenant)
    chain_seq, prev_hash = (last["chain_seq"] + 1, last["hash"]) if last else (1, GENESIS)
    # the global seq is taken under the chain's lock, so it grows with chain_seq and can be signed
    seq = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('vigil_audit_log', 'seq'))")
    now = datetime.now(timezone.utc)
    digest = record_hash(chain_seq=chain_seq, time=now, tenant=tenant, actor=actor, action=action,
                         resources=resources_text, details=details_text, prev_hash=prev_hash)
    mac = record_mac(key, seq=seq, tenant=tenant, chain_seq=chain_seq, hash=digest)
    row = await conn.fetchrow(
        "INSERT INTO vigil_audit_log (seq, chain_seq, time, tenant, actor, action, resources, details, prev_hash, "
        "hash, mac) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING *",
        seq, chain_seq, now, tenant, actor, action, resources_text, details_text, prev_hash, digest, mac)
    return AuditRecord(**dict(row))


@dataclass(frozen=True)
class Head:
    """A chain head recorded outside the database (a checkpoint): its last record's position and hash."""
    chain_seq: int
    seq: int
    hash: str


def _problem(row, last_seq: int, last_hash: str, last_global: int, signed_before: bool, key: bytes) -> str | None:
    if row["chain_seq"] != last_seq + 1:
        return f"chain_seq {row['chain_seq']} follows {last_seq} (a record is missing or inserted)"
    if row["prev_hash"] != last_hash:
        return "prev_hash does not match the previous record's hash"
    if record_hash(**{k: row[k] for k in ("chain_seq", "time", "tenant", "actor", "action", "resources",
                                           "details", "prev_hash")}) != row["hash"]:
        return "hash does not match the record's contents"
    if row["seq"] <= last_global:
        return f"seq {row['seq']} does not follow the previous record's seq {last_global}"
    if row["mac"] is None:
        return "record is not signed, after signed records" if signed_before else None
    expected = record_mac(key, seq=row["seq"], tenant=row["tenant"], chain_seq=row["chain_seq"], hash=row["hash"])
    if not hmac.compare_digest(expected, row["mac"]):
        return "signature does not match (record rewritten, forged or moved to another seq)"
    return None


async def verify(conn: asyncpg.Connection, tenant: str | None = None, *,
                 checkpoint: dict[str, Head] | None = None, key: bytes | None = None) -> VerifyResult:
    """Walk the chain(s) and stop at the first record whose link, hash, seq or signature is wrong.

    With ``checkpoint`` (tenant -> ``Head``), every chain it names must still reach its head
    with the same record (same seq and hash), and records after the head must be signed."""
    key = key or signing_key()
    result = VerifyResult(ok=True)
    query = "SELECT * FROM vigil_audit_log {} ORDER BY tenant, chain_seq"
    args: list = []
    if tenant is not None:
        query, args = query.format("WHERE tenant = $1"), [_chain(tenant)]
    else:
        query = query.format("")
    heads = {t: h for t, h in (checkpoint or {}).items() if tenant is None or t == _chain(tenant)}

    def bad(chain: str, seq: int | None, chain_seq: int, problem: str) -> VerifyResult:
        result.ok = False
        result.first_bad = {"seq": seq, "tenant": chain, "chain_seq": chain_seq, "problem": problem}
        return result

    async with conn.transaction(readonly=True, isolation="repeatable_read"):
        expected: dict[str, tuple[int, str]] = {}
        globals_: dict[str, int] = {}
        signed: set[str] = set()
        async for row in conn.cursor(query, *args, prefetch=500):
            chain = row["tenant"]
            last_seq, last_hash = expected.get(chain, (0, GENESIS))
            after_head = chain in heads and row["chain_seq"] > heads[chain].chain_seq
            problem = _problem(row, last_seq, last_hash, globals_.get(chain, 0),
                               chain in signed or after_head, key)
            if problem is None and chain in heads and row["chain_seq"] == heads[chain].chain_seq and (
                    row["hash"] != heads[chain].hash or row["seq"] != heads[chain].seq):
                problem = "record differs from the checkpoint's head (the chain was rewritten)"
            if problem:
                return bad(chain, row["seq"], row["chain_seq"], problem)
            if row["mac"] is None:
                result.unsigned += 1
            else:
                signed.add(chain)
            expected[chain] = (row["chain_seq"], row["hash"])
            globals_[chain] = row["seq"]
            result.records += 1
        for chain, head in sorted(heads.items()):
            last = expected.get(chain, (0, GENESIS))[0]
            if last < head.chain_seq:
                return bad(chain, None, last + 1, f"the chain ends at chain_seq {last} but the checkpoint "
                                                  f"records {head.chain_seq} (records removed)")
        result.chains = expected
        result.heads = globals_
    return result


async def tail(conn: asyncpg.Connection, tenant: str | None = None, limit: int = 20) -> list[AuditRecord]:
    """The newest ``limit`` records (all chains or one), oldest first."""
    if tenant is None:
        rows = await conn.fetch("SELECT * FROM vigil_audit_log ORDER BY seq DESC LIMIT $1", limit)
    else:
        rows = await conn.fetch("SELECT * FROM vigil_audit_log WHERE tenant = $1 ORDER BY seq DESC LIMIT $2",
                                _chain(tenant), limit)
    return [AuditRecord(**dict(r)) for r in reversed(rows)]
