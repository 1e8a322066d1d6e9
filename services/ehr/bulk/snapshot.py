"""What an export holds: each type's resources as they were at the job's ``transaction_time``.

The snapshot of a type is, per id, its last version written at or before ``transaction_time``
(``ehr_history``), unless that version is a deletion; ``_since`` keeps those whose version is
later than it. Patient- and Group-level exports keep the Patient compartment: Patients
themselves (the group's members for a Group) and resources of the types in
``search.PATIENT_PATHS`` whose patient reference names one of them (any patient for the
Patient level). Parts are runs of ``RESOURCES_PER_FILE`` resources in id order; a part is
named by its first id, so planning stores a few ids per type and serving a file is one
keyset-bounded query streamed through a cursor.
"""
from __future__ import annotations

import json
from typing import AsyncIterator

import asyncpg

from services.ehr.bulk.jobs import Job
from services.ehr.search import PATIENT_PATHS

#: Resources per output file (a few MB of notes; large exports become several files per type).
RESOURCES_PER_FILE = 1000
#: Rows fetched per cursor round trip while a file streams.
CURSOR_PREFETCH = 200
#: Types in the Patient compartment (besides Patient): the type -> path of its patient reference.
COMPARTMENT: dict[str, str] = dict(PATIENT_PATHS)


def compartment_types() -> list[str]:
    return sorted(["Patient", *COMPARTMENT])


def _snapshot(job: Job, rtype: str, args: list, bounds: tuple[str, str | None] | None = None) -> str:
    """SQL selecting (id, content) of ``rtype``'s snapshot for ``job``, optionally only ids in
    [bounds[0], bounds[1]) (served by the history's primary key); appends to ``args`` ($1 tenant)."""
    args += [rtype, job.transaction_time]
    inner = ""
    if bounds is not None:
        args.append(bounds[0])
        inner += f" AND id >= ${len(args)}"
        if bounds[1] is not None:
            args.append(bounds[1])
            inner += f" AND id < ${len(args)}"
    where = ["NOT s.deleted"]
    if job.since is not None:
        args.append(job.since)
        where.append(f"s.last_updated > ${len(args)}")
    if job.level != "system":
        if rtype == "Patient":
            if job.patients is not None:
                args.append(job.patients)
                where.append(f"s.id = ANY(${len(args)}::text[])")
        else:
            path = "$." + COMPARTMENT[rtype] + ".reference"
            args.append(path)
            refs = (f"(SELECT split_part(r #>> '{{}}', '/_history/', 1) AS ref "
                    f"FROM jsonb_path_query(s.content, ${len(args)}::jsonpath) r)")
            if job.patients is not None:
                args.append([f"Patient/{p}" for p in job.patients])
                where.append(f"EXISTS (SELECT 1 FROM {refs} x WHERE x.ref = ANY(${len(args)}::text[]))")
            else:
                where.append(f"EXISTS (SELECT 1 FROM {refs} x WHERE x.ref LIKE 'Patient/%')")
    return (f"SELECT s.id, s.content FROM (SELECT DISTINCT ON (id) id, version, last_updated, deleted, content "
            f"FROM ehr_history WHERE tenant=$1 AND type=$2 AND last_updated <= $3{inner} ORDER BY id, version DESC) s "
            f"WHERE {' AND '.join(where)}")


async def types_present(conn: asyncpg.Connection, tenant: str) -> list[str]:
    rows = await conn.fetch("SELECT DISTINCT type FROM ehr_history WHERE tenant=$1", tenant)
    return sorted(r["type"] for r in rows)


async def plan(conn: asyncpg.Connection, tenant: str, job: Job, rtype: str) -> dict | None:
    """The parts of one type: ``{"type", "starts", "counts"}``, or None when it has no resource."""
    args: list = [tenant]
    inner = _snapshot(job, rtype, args)
    rows = await conn.fetch(
        f"SELECT id, n, total FROM (SELECT q.id, row_number() OVER (ORDER BY q.id) AS n, count(*) OVER () AS total "
        f"FROM ({inner}) q) numbered WHERE n % {RESOURCES_PER_FILE} = 1 ORDER BY n", *args)
    if not rows:
        return None
    total = rows[0]["total"]
    counts = [min(RESOURCES_PER_FILE, total - (r["n"] - 1)) for r in rows]
    return {"type": rtype, "starts": [r["id"] for r in rows], "counts": counts}


async def stream(conn: asyncpg.Connection, tenant: str, job: Job, rtype: str, starts: list[str],
                 part: int) -> AsyncIterator[bytes]:
    """The NDJSON lines of one part, streamed (call inside a transaction: cursors need one)."""
    args: list = [tenant]
    bounds = (starts[part], starts[part + 1] if part + 1 < len(starts) else None)
    inner = _snapshot(job, rtype, args, bounds)
    async for row in conn.cursor(f"SELECT q.content FROM ({inner}) q ORDER BY q.id", *args,
                                 prefetch=CURSOR_PREFETCH):
        content = row["content"]
        if isinstance(content, str):
            content = json.loads(content)
        yield json.dumps(content, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"
