"""The seven ways to tamper with the audit log, each detected by `verify` with the latest checkpoint.

Each test runs on a private copy of the audit table (its own PostgreSQL schema, so even TRUNCATE
is real and the shared table is untouched). The attacker has superuser access to the database,
skips the append-only triggers and recomputes every unkeyed hash it likes; it does not have the
master secret, so it cannot produce record signatures.
"""
from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode, urlsplit, urlunsplit

import asyncpg
import pytest

from services.core import audit, audit_checkpoints
from services.core.db import ensure_schema

REPO = Path(__file__).resolve().parents[3]


@dataclass
class Chain:
    pool: asyncpg.Pool
    dsn: str
    tenant: str
    directory: Path

    async def append(self, n: int) -> None:
        for i in range(n):
            async with self.pool.acquire() as conn, conn.transaction():
                await audit.append(conn, self.tenant, "extraction", "phi.read",
                                   [f"DocumentReference/doc-{i}/_history/1"], {"purpose": "irae-extraction", "i": i})

    async def checkpoint(self) -> Path:
        async with self.pool.acquire() as conn:
            return await audit_checkpoints.export(conn, self.directory)

    async def verify(self) -> audit.VerifyResult:
        latest = audit_checkpoints.latest(self.directory)
        async with self.pool.acquire() as conn:
            return await audit.verify(conn, self.tenant, checkpoint=latest.chains if latest else None)

    async def rows(self) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return await conn.fetch("SELECT * FROM vigil_audit_log WHERE tenant = $1 ORDER BY chain_seq", self.tenant)

    async def attack(self, *statements: tuple) -> None:
        """Run SQL as the superuser with the append-only triggers skipped."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            for sql, *args in statements:
                await conn.execute(sql, *args)


def _with_search_path(dsn: str, schema: str) -> str:
    parts = urlsplit(dsn)
    query = "&".join(q for q in (parts.query, urlencode({"search_path": schema})) if q)
    return urlunsplit(parts._replace(query=query))


@pytest.fixture
async def chain(stack, admin_pool, tmp_path):
    schema = f"audit_tamper_{uuid.uuid4().hex[:10]}"
    async with admin_pool.acquire() as conn:
        await conn.execute(f"CREATE SCHEMA {schema}")
    dsn = _with_search_path(stack.postgres_dsn, schema)
    pool = await asyncpg.create_pool(dsn, min_size=1, max_size=2)
    try:
        await ensure_schema(pool, audit.SCHEMA_MODULE, audit.SCHEMA_STEPS)
        made = Chain(pool, dsn, "t" + uuid.uuid4().hex[:12], tmp_path / "checkpoints")
        await made.append(5)
        await made.checkpoint()
        assert (await made.verify()).ok
        yield made
    finally:
        await pool.close()
        async with admin_pool.acquire() as conn:
            await conn.execute(f"DROP SCHEMA {schema} CASCADE")


def _rehash(rows: list[dict]) -> list[dict]:
    """What an attacker without the key can do: recompute every unkeyed hash in order."""
    prev = audit.GENESIS
    for row in rows:
        row["prev_hash"] = prev
        row["hash"] = audit.record_hash(**{k: row[k] for k in ("chain_seq", "time", "tenant", "actor", "action",
                                                                "resources", "details", "prev_hash")})
        prev = row["hash"]
    return rows


async def _rewrite_all(chain: Chain, rows: list[dict]) -> None:
    await chain.attack(("DELETE FROM vigil_audit_log WHERE tenant = $1", chain.tenant),
                       *[("INSERT INTO vigil_audit_log (seq, chain_seq, time, tenant, actor, action, resources, details, "
                          "prev_hash, hash, mac) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                          r["seq"], r["chain_seq"], r["time"], r["tenant"], r["actor"], r["action"], r["resources"],
                          r["details"], r["prev_hash"], r["hash"], r["mac"]) for r in rows])


async def test_rewrite_a_record_and_rehash_the_rest(chain):
    rows = [dict(r) for r in await chain.rows()]
    rows[1]["details"] = json.dumps({"purpose": "nothing to see"})
    await _rewrite_all(chain, _rehash(rows))
    result = await chain.verify()
    assert not result.ok and result.first_bad["chain_seq"] == 2
    assert "signature does not match" in result.first_bad["problem"]


async def test_delete_the_newest_record(chain):
    rows = await chain.rows()
    await chain.attack(("DELETE FROM vigil_audit_log WHERE seq = $1", rows[-1]["seq"]))
    result = await chain.verify()
    assert not result.ok and "records removed" in result.first_bad["problem"]
    assert result.first_bad["chain_seq"] == 5


async def test_delete_a_middle_record(chain):
    rows = await chain.rows()
    await chain.attack(("DELETE FROM vigil_audit_log WHERE seq = $1", rows[2]["seq"]))
    result = await chain.verify()
    assert not result.ok and result.first_bad["chain_seq"] == 4 and "missing" in result.first_bad["problem"]


async def test_swap_seq_values(chain):
    rows = await chain.rows()
    a, b = rows[1]["seq"], rows[3]["seq"]
    await chain.attack(("UPDATE vigil_audit_log SET seq = -1 WHERE seq = $1", a),
                       ("UPDATE vigil_audit_log SET seq = $1 WHERE seq = $2", a, b),
                       ("UPDATE vigil_audit_log SET seq = $1 WHERE seq = -1", b))
    result = await chain.verify()
    assert not result.ok and result.first_bad["chain_seq"] == 2
    assert "signature does not match" in result.first_bad["problem"]


@pytest.mark.parametrize("mac", [None, "0" * 64], ids=["unsigned", "made-up-signature"])
async def test_append_a_forged_record(chain, mac):
    last = (await chain.rows())[-1]
    forged = dict(last)
    forged.update(seq=last["seq"] + 1000, chain_seq=last["chain_seq"] + 1, actor="control", action="mode.set",
                  prev_hash=last["hash"], mac=mac)
    forged["hash"] = audit.record_hash(**{k: forged[k] for k in ("chain_seq", "time", "tenant", "actor", "action",
                                                                  "resources", "details", "prev_hash")})
    await chain.attack(("INSERT INTO vigil_audit_log (seq, chain_seq, time, tenant, actor, action, resources, "
                        "details, prev_hash, hash, mac) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                        *[forged[k] for k in ("seq", "chain_seq", "time", "tenant", "actor", "action", "resources",
                                              "details", "prev_hash", "hash", "mac")]))
    result = await chain.verify()
    assert not result.ok and result.first_bad["chain_seq"] == 6
    assert ("not signed" if mac is None else "signature does not match") in result.first_bad["problem"]


async def test_truncate_the_table(chain):
    await chain.attack(("TRUNCATE vigil_audit_log",))
    result = await chain.verify()
    assert not result.ok and result.first_bad["chain_seq"] == 1
    assert "ends at chain_seq 0" in result.first_bad["problem"]


async def test_edit_a_record_without_rehashing(chain):
    rows = await chain.rows()
    await chain.attack(("UPDATE vigil_audit_log SET actor = 'someone-else' WHERE seq = $1", rows[2]["seq"]))
    result = await chain.verify()
    assert not result.ok and result.first_bad["chain_seq"] == 3
    assert result.first_bad["problem"] == "hash does not match the record's contents"


async def test_an_altered_checkpoint_is_refused(chain):
    path = audit_checkpoints.latest(chain.directory).path
    document = json.loads(path.read_text())
    document["chains"][chain.tenant]["chain_seq"] = 4
    path.write_text(json.dumps(document))
    with pytest.raises(audit.AuditError, match="signature does not match"):
        audit_checkpoints.latest(chain.directory)


def _vigil(chain: Chain, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "VIGIL_POSTGRES_DSN": chain.dsn, "VIGIL_AUDIT_CHECKPOINT_DIR": str(chain.directory)}
    return subprocess.run([sys.executable, "-m", "services.cli", "audit", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)


async def test_cli_checkpoint_and_verify(chain):
    await chain.append(2)
    made = await asyncio.to_thread(_vigil, chain, "checkpoint")
    assert made.returncode == 0, made.stderr
    written = Path(made.stdout.split()[-1])
    assert written.parent == chain.directory and written == audit_checkpoints.latest(chain.directory).path
    assert not list(chain.directory.glob(".audit-checkpoint-*"))  # no temporary file left behind
    good = await asyncio.to_thread(_vigil, chain, "verify", "--tenant", chain.tenant)
    assert good.returncode == 0, good.stderr
    assert "signature ok" in good.stdout and "ok: 7 records in 1 chain(s)" in good.stdout

    rows = await chain.rows()
    await chain.attack(("DELETE FROM vigil_audit_log WHERE seq = $1", rows[-1]["seq"]))
    bad = await asyncio.to_thread(_vigil, chain, "verify", "--tenant", chain.tenant)
    assert bad.returncode == 1 and "TAMPERED" in bad.stderr and "records removed" in bad.stderr
    refused = await asyncio.to_thread(_vigil, chain, "checkpoint")
    assert refused.returncode == 1 and "not exporting a checkpoint" in refused.stderr


async def test_checkpoints_are_exported_on_a_schedule(chain):
    before = set(chain.directory.glob("audit-checkpoint-*.json"))
    stop = asyncio.Event()
    settings = audit_checkpoints.CheckpointSettings(chain.directory, interval_s=1)
    task = asyncio.create_task(audit_checkpoints.run_schedule(chain.pool, settings, stop))
    await asyncio.sleep(1.5)
    stop.set()
    await asyncio.wait_for(task, 10)
    made = set(chain.directory.glob("audit-checkpoint-*.json")) - before
    assert len(made) == 2
    assert audit_checkpoints.latest(chain.directory).chains[chain.tenant].chain_seq == 5


async def test_records_from_before_signing_are_accepted_only_as_a_chain_prefix(chain):
    legacy = Chain(chain.pool, chain.dsn, "t" + uuid.uuid4().hex[:12], chain.directory)
    row = dict((await chain.rows())[0])
    async with chain.pool.acquire() as conn:
        seq = await conn.fetchval("SELECT nextval(pg_get_serial_sequence('vigil_audit_log', 'seq'))")
    row.update(tenant=legacy.tenant, seq=seq, mac=None, prev_hash=audit.GENESIS)
    _rehash([row])
    await chain.attack(("INSERT INTO vigil_audit_log (seq, chain_seq, time, tenant, actor, action, resources, "
                        "details, prev_hash, hash, mac) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11)",
                        *[row[k] for k in ("seq", "chain_seq", "time", "tenant", "actor", "action", "resources",
                                           "details", "prev_hash", "hash", "mac")]))
    await legacy.append(2)
    result = await legacy.verify()
    assert result.ok and result.records == 3 and result.unsigned == 1
