"""Write one decision into the EHR exactly once, and prove it by reading it back.

    outcome = await Writer(client).write(decision, guard)      # guard(): raises when writes must stop

1. One search of the episode's Tasks (``Task?identifier=<EPISODE_SYSTEM>|<episode key>&patient=``)
   answers both questions. Already applied? A Task carrying the decision id means the transaction
   committed (it is atomic), so nothing is written again; the Task, its evidence and Provenance
   are read back and reported (``outcome.action == "none"``).
2. Otherwise the open Task of the episode (open status) is updated (``resources.update_bundle``,
   If-Match its version), or a new Task is created (``resources.create_bundle``, conditional
   creates on the decision id).
3. ``guard()`` runs right before the transaction (the kill switch).
4. After a timeout or a 5xx the write may have happened: step 1 is repeated before the error
   goes back to the stage runtime (which retries).
5. Every location in the transaction response is read back (vread of that exact version, in one
   ``batch`` Bundle, else all at once) and its key fields checked; anything missing (the sandbox's dropped-write mode, a lossy proxy)
   raises ``RetryableError(code="write_not_verified")`` - never a reported success. After the
   stage's retries the decision is dead-lettered.

EHR round trips for a new decision: 3 with ``batch`` (search, transaction, read-back), 1 + 1 +
one per written resource without it.
"""
from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Awaitable, Callable

from services.core.errors import ConflictError, NotFoundError, RetryableError, VigilError
from services.core.fhir import FhirClient
from services.core.fhirbatch import batch_get, entry_resource, supports_batch
from services.writeback import resources as R

Guard = Callable[[], Awaitable[None]]
#: HTTP statuses of a failed If-Match (someone changed the Task between our read and write).
PRECONDITION_STATUSES = (409, 412)


class NotVerified(RetryableError):
    code = "write_not_verified"


@dataclass
class WriteOutcome:
    action: str                       # created | updated | none (already applied earlier)
    task: dict
    refs: list[str] = field(default_factory=list)   # Type/id/_history/version, read back

    @property
    def task_ref(self) -> str:
        return f"Task/{self.task['id']}/_history/{self.task['meta']['versionId']}"


def _ai_labelled(resource: dict) -> bool:
    return any(s.get("system") == R.AIAST["system"] and s.get("code") == "AIAST"
               for s in (resource.get("meta") or {}).get("security", []))


def _all(_rtype: str) -> bool:
    return True


class Writer:
    def __init__(self, client: FhirClient, accepts: Callable[[str], bool] = _all):
        """``accepts(type)``: may this resource type be written to the tenant's EHR (its profile)?"""
        self.client, self.accepts = client, accepts

    @property
    def batches(self) -> bool:
        return supports_batch(self.client.capabilities)

    @staticmethod
    def _applied_query(decision: dict) -> dict:
        return {"identifier": f"{R.DECISION_SYSTEM}|{decision['decisionId']}"}

    @staticmethod
    def _episode_query(decision: dict) -> dict:
        return {"identifier": f"{R.EPISODE_SYSTEM}|{decision['episodeKey']}",
                "patient": f"Patient/{decision['patient']}"}

    @staticmethod
    def _open(found: list[dict]) -> dict | None:
        open_ = [t for t in found if t.get("status") in R.OPEN_STATUSES]
        open_.sort(key=lambda t: (t.get("meta") or {}).get("lastUpdated", ""), reverse=True)
        return open_[0] if open_ else None

    async def applied(self, decision: dict) -> dict | None:
        found = await self.client.search("Task", self._applied_query(decision))
        return found[0] if found else None

    async def _lookups(self, decision: dict) -> tuple[dict | None, dict | None]:
        """(the Task that already carries the decision, the episode's open Task): one search of the
        episode's Tasks. A Task written for a decision carries the decision's episode identifier
        too (``create_bundle`` sets both; ``update_bundle`` adds the decision to the episode's Task)."""
        found = await self.client.search("Task", self._episode_query(decision))
        done = next((t for t in found if R.has_identifier(t, R.DECISION_SYSTEM, decision["decisionId"])), None)
        return done, self._open(found)

    async def write(self, decision: dict, guard: Guard) -> WriteOutcome:
        done, current = await self._lookups(decision)
        if done is not None:
            return await self.read_back_existing(decision, done)
        bundle = R.only_accepted(R.update_bundle(decision, current) if current else R.create_bundle(decision),
                                 self.accepts)
        await guard()
        try:
            response = await self.client.transaction(bundle)
        except VigilError as exc:
            if getattr(exc, "status", None) in PRECONDITION_STATUSES or isinstance(exc, ConflictError):
                raise RetryableError("the episode Task changed while writing; re-read and retry",
                                     code="task_changed") from None
            if exc.retryable:  # a timeout or 5xx: the transaction may have committed anyway
                done = await self.applied(decision)
                if done is not None:
                    found = await self.read_back_existing(decision, done)
                    found.action = "updated" if current else "created"
                    return found
            raise
        locations = [(e.get("response") or {}).get("location") for e in response.get("entry", [])]
        if len(locations) != len(bundle["entry"]) or not all(locations):
            raise NotVerified("the transaction response does not name every written resource")
        read = await self.verify(decision, bundle, locations)
        task = next(resource for ref, resource in read.items() if ref.startswith("Task/"))
        return WriteOutcome("updated" if current else "created", task, list(read))

    async def _vread(self, ref: str) -> dict:
        parts = ref.split("/")
        if len(parts) != 4 or parts[2] != "_history":
            raise NotVerified("a response location is not Type/id/_history/version")
        try:
            return await self.client.vread(parts[0], parts[1], parts[3])
        except NotFoundError:
            raise NotVerified("a written resource does not read back") from None

    async def _vread_batch(self, refs: list[str]) -> list[dict]:
        """Every ref read back in one batch Bundle (a vread entry each)."""
        entries = await batch_get(self.client, refs)
        if entries is None:
            raise NotVerified("the read-back batch does not answer every written resource")
        out = [entry_resource(entry) for entry in entries]
        if any(resource is None for resource in out):
            raise NotVerified("a written resource does not read back")
        return out

    async def verify(self, decision: dict, bundle: dict, locations: list[str]) -> dict[str, dict]:
        """vread every written version (concurrently) and check its key fields; ref -> resource, in bundle order."""
        refs = ["/".join(location.split("://")[-1].split("/")[-4:]) for location in locations]
        for ref in refs:
            parts = ref.split("/")
            if len(parts) != 4 or parts[2] != "_history":
                raise NotVerified("a response location is not Type/id/_history/version")
        read = await (self._vread_batch(refs) if self.batches else
                      asyncio.gather(*(self._vread(ref) for ref in refs)))
        for entry, ref, got in zip(bundle["entry"], refs, read):
            sent = entry["resource"]
            if got.get("resourceType") != sent["resourceType"]:
                raise NotVerified("a written resource reads back as another type")
            rtype = sent["resourceType"]
            if rtype in ("Task", "Observation", "DetectedIssue") and not R.has_identifier(
                    got, R.DECISION_SYSTEM, decision["decisionId"]):
                raise NotVerified(f"the {rtype} read back does not carry the decision id")
            if rtype in ("Task", "Observation", "DetectedIssue", "Provenance") and not _ai_labelled(got):
                raise NotVerified(f"the {rtype} read back has no AIAST label")
            if rtype == "Task" and (got.get("for") or {}).get("reference") != f"Patient/{decision['patient']}":
                raise NotVerified("the Task read back is for another patient")
            if rtype == "Provenance" and not any(t.get("reference", "").startswith("Task/")
                                                 for t in got.get("target", [])):
                raise NotVerified("the Provenance read back does not target the Task")
        return dict(zip(refs, read))

    async def read_back_existing(self, decision: dict, task: dict) -> WriteOutcome:
        """The decision was written before: report the Task, evidence, Provenance and Device as they are."""
        rtype = "DetectedIssue" if decision["kind"] == "urgent-task" else "Observation"
        ident = f"{R.DECISION_SYSTEM}|{decision['decisionId']}"
        refs = [f"Task/{task['id']}/_history/{task['meta']['versionId']}"]
        target = f"Task/{task['id']}"
        if self.accepts(rtype):
            evidence = await self.client.search(rtype, {"identifier": ident})
            if not evidence:
                raise NotVerified(f"the Task of the decision exists but its {rtype} does not read back")
            ev = evidence[0]
            refs.append(f"{rtype}/{ev['id']}/_history/{ev['meta']['versionId']}")
            target = f"{rtype}/{ev['id']}"
        if self.accepts("Provenance"):
            for prov in await self.client.search("Provenance", {"target": target}):
                refs.append(f"Provenance/{prov['id']}/_history/{prov['meta']['versionId']}")
        if self.accepts("Device"):
            devices = await self.client.search("Device", {
                "identifier": f"{R.DEVICE_SYSTEM}|{R.device_key(decision['engineVersion'])}"})
            refs += [f"Device/{d['id']}/_history/{d['meta']['versionId']}" for d in devices[:1]]
        return WriteOutcome("none", task, refs)
