"""Benchmark: EHR round trips and CPU per note on the whole path (note -> Subscription -> ingest ->
extraction + tools -> triage -> writeback -> Task), counted where the EHR sees them; and the raw
baseline (note create, Task create, Task read) in the same run.

Every service process of the pipeline (``vigil demo``'s, rules engine) gets its own
``VIGIL_EHR_URL``: a counting reverse proxy in this process in front of the shared EHR sandbox
(test-only; the proxy forwards the ``Host`` header, so the sandbox's token audience and
``fullUrl``s name the proxy the client used). Each proxy counts every request its process makes,
per tenant and kind: ``token`` (SMART token grant), ``discovery`` (``.well-known`` / ``metadata``)
and ``fhir`` (everything else under ``/fhir/<tenant>/``). The Subscription endpoint is a proxy too,
in front of ingest: EHR -> ingest notifications and heartbeats are counted there, separately.
The note writer (the "EHR user") and the baseline use their own proxies, reported apart.

Per-process CPU is user + system time of each service's process group (/proc), read before and
after the measured step; per note = delta / notes. Background work (heartbeats, token refresh,
pollers) during the step is included in both counts.

    python -m bench.roundtrips [--notes 30] [--rate 2]
Writes artifacts/bench/roundtrips.json.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from aiohttp import ClientError, ClientSession, ClientTimeout, web

from bench import e2e
from services.commands.demo.pipeline import Pipeline
from services.commands.demo.plan import DemoPlan, ServiceDef
from services.core.fhir import FhirClient
from services.core.logging import configure

BENCH_PORT_BASE = 18500
TENANT = e2e.DemoTenant("bench-rt", "Benchmark Round Trips", "active", {"engine": "rules"})
OUT_DIR = Path("artifacts/bench")
#: Hop-by-hop and length headers the proxy does not copy (aiohttp sets its own).
SETTLE_S = 2.0
#: Labels that are not Vigil processes: the note writer, the EHR -> ingest notifications, the baseline.
OUTSIDE = ("driver", "notify", "baseline")
DROP = {"host", "connection", "keep-alive", "transfer-encoding", "content-length", "content-encoding",
        "accept-encoding", "upgrade", "proxy-connection", "te", "trailer"}


def what_of(method: str, path: str, query: str) -> str:
    """The interaction, without ids: ``GET Patient/{id}``, ``GET Task?`` (a search), ``POST /`` (a Bundle)."""
    parts = path.split("/")[3:] if path.startswith("/fhir/") else path.split("/")[1:2]
    shape = "/".join(p if i % 2 == 0 or p.startswith("_") else "{id}" for i, p in enumerate(parts))
    return f"{method} {shape or '/'}{'?' if query else ''}"


def kind_of(path: str, body: bytes) -> tuple[str | None, str]:
    """(tenant, kind) of one request path: token | discovery | fhir | heartbeat | notification | other."""
    parts = path.split("/")
    if len(parts) > 2 and parts[1] == "notify":
        return parts[2], "heartbeat" if b'"heartbeat"' in body else "notification"
    if len(parts) > 2 and parts[1] == "fhir":
        tenant, rest = parts[2], "/".join(parts[3:])
        if rest.startswith("auth/"):
            return tenant, "token"
        if rest.startswith(".well-known/") or rest == "metadata":
            return tenant, "discovery"
        return tenant, "fhir"
    return None, "other"


@dataclass
class CountingProxies:
    """One listening port per label, each forwarding to its upstream and counting (label, tenant, kind)."""

    counts: Counter = field(default_factory=Counter)    # (label, tenant, kind) -> requests
    details: Counter = field(default_factory=Counter)   # (label, tenant, interaction) -> requests
    _loop: asyncio.AbstractEventLoop | None = None
    _runners: list = field(default_factory=list)
    _session: ClientSession | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        threading.Thread(target=self._loop.run_forever, name="counting-proxy", daemon=True).start()

    def _run(self, coro):
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def add(self, label: str, upstream: str) -> str:
        """A new proxy port for ``label``; returns its base URL."""
        return self._run(self._add(label, upstream.rstrip("/")))

    async def _add(self, label: str, upstream: str) -> str:
        if self._session is None:
            self._session = ClientSession(timeout=ClientTimeout(total=120), auto_decompress=True)

        async def handle(request: web.Request) -> web.StreamResponse:
            body = await request.read()
            tenant, kind = kind_of(request.path, body)
            what = what_of(request.method, request.path, request.query_string)
            with self._lock:
                self.counts[(label, tenant, kind)] += 1
                self.details[(label, tenant, what)] += 1
            headers = {k: v for k, v in request.headers.items() if k.lower() not in DROP}
            headers["Host"] = request.host
            try:
                async with self._session.request(request.method, upstream + str(request.rel_url), headers=headers,
                                                 data=body or None, allow_redirects=False) as reply:
                    data = await reply.read()
                    out = {k: v for k, v in reply.headers.items() if k.lower() not in DROP}
                    return web.Response(status=reply.status, body=data, headers=out)
            except ClientError:  # e.g. a notification while the pipeline stops: the EHR retries it
                return web.Response(status=502, text="upstream unreachable")

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        await web.SockSite(runner, sock).start()
        self._runners.append(runner)
        return f"http://127.0.0.1:{sock.getsockname()[1]}"

    def snapshot(self) -> Counter:
        with self._lock:
            return Counter(self.counts)

    def detail_snapshot(self) -> Counter:
        with self._lock:
            return Counter(self.details)

    def stop(self) -> None:
        async def close():
            for runner in self._runners:
                await runner.cleanup()
            if self._session is not None:
                await self._session.close()
        self._run(close())
        self._loop.call_soon_threadsafe(self._loop.stop)


@dataclass(frozen=True)
class CountingPlan(DemoPlan):
    """A plan whose service processes reach the EHR, and the EHR reaches ingest, through the proxies."""

    ehr_urls: dict = field(default_factory=dict)     # service name -> its proxy base URL
    notify_url: str = ""

    @property
    def ingest_url(self) -> str:  # the Subscription endpoint the EHR notifies
        return self.notify_url or f"http://127.0.0.1:{self.port('ingest-http')}"

    def service_env(self, service: ServiceDef) -> dict[str, str]:
        env = super().service_env(service)
        if service.name in self.ehr_urls:
            env["VIGIL_EHR_URL"] = self.ehr_urls[service.name]
        return env


class CountingPipeline(Pipeline):
    driver_url: str = ""

    def client(self, tenant: str) -> FhirClient:
        base = self.driver_url or self.plan.settings.ehr_url
        return FhirClient(f"{base}/fhir/{tenant}", credentials=self.driver_credentials[tenant])


def group_cpu(pgid: int) -> float:
    """User + system seconds of every live process in process group ``pgid``."""
    tick, total = os.sysconf("SC_CLK_TCK"), 0.0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = open(f"/proc/{entry}/stat").read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid:  # fields[0] is state; pgrp is the 5th field of stat
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def cpu_by_service(pipe: Pipeline) -> dict[str, float]:
    return {name: group_cpu(entry.proc.pid) for name, entry in pipe.supervisor.running.items()}


def per_note(before: Counter, after: Counter, tenant: str, notes: int) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for (label, t, kind), n in (after - before).items():
        if t == tenant:
            out.setdefault(label, {})[kind] = round(n / notes, 2)
    return out


async def baseline(pipe: CountingPipeline, base_url: str, notes: int, rate: float, tag: str) -> None:
    saved, pipe.driver_url = pipe.driver_url, base_url
    try:
        await e2e.baseline_step(pipe, rate, notes / rate, tag)
    finally:
        pipe.driver_url = saved


async def measure(pipe: CountingPipeline, proxies: CountingProxies, base_url: str, notes: int, rate: float) -> dict:
    tag = datetime.now(timezone.utc).strftime("%H%M%S")
    await e2e.pipeline_step(pipe, 1.0, e2e.WARM_UP_NOTES, f"{tag}-warm")
    await asyncio.sleep(SETTLE_S)  # let the warm-up's tail (acks, commits) settle before counting

    before, details0, cpu0, t0 = proxies.snapshot(), proxies.detail_snapshot(), cpu_by_service(pipe), time.monotonic()
    step = await e2e.pipeline_step(pipe, rate, notes / rate, f"{tag}-rt")
    await asyncio.sleep(SETTLE_S)
    after, details1, cpu1, seconds = proxies.snapshot(), proxies.detail_snapshot(), cpu_by_service(pipe), \
        time.monotonic() - t0
    n = step["notes"]
    trips = per_note(before, after, TENANT.id, n)
    interactions: dict[str, dict[str, float]] = {}
    for (label, t, what), k in (details1 - details0).items():
        if t == TENANT.id:
            interactions.setdefault(label, {})[what] = round(k / n, 2)

    # The same time with no notes: what each process spends anyway (polling, heartbeats, metrics).
    idle0, idetails0, icpu0 = proxies.snapshot(), proxies.detail_snapshot(), cpu_by_service(pipe)
    await asyncio.sleep(seconds)
    idle = per_note(idle0, proxies.snapshot(), TENANT.id, n)
    icpu1 = cpu_by_service(pipe)
    idle_interactions = {f"{label} {what}": k for (label, t, what), k in (proxies.detail_snapshot() - idetails0).items()
                         if t == TENANT.id}

    b_before = proxies.snapshot()
    await baseline(pipe, base_url, notes, rate, f"{tag}-base")
    base = per_note(b_before, proxies.snapshot(), TENANT.id, notes).get("baseline", {})

    services = {k: v for k, v in trips.items() if k not in OUTSIDE}
    vigil_total = sum(sum(kinds.values()) for kinds in services.values())
    cpu = {s: round(1000 * (cpu1.get(s, 0) - cpu0.get(s, 0)) / n, 2) for s in cpu1}
    idle_cpu = {s: round(1000 * (icpu1.get(s, 0) - icpu0.get(s, 0)) / n, 2) for s in icpu1}
    whole_run = {}
    for (label, t, kind), k in proxies.snapshot().items():
        if t == TENANT.id and label not in OUTSIDE:
            whole_run.setdefault(label, {})[kind] = k
    return {"notes": n, "tasks_seen": step["tasks_seen"], "rate": rate, "seconds": round(seconds, 1),
            "latency_s": step["latency_s"], "round_trips_per_note": trips, "interactions_per_note": interactions,
            "vigil_total_per_note": round(vigil_total, 2),
            "vigil_fhir_per_note": round(sum(k.get("fhir", 0) for k in services.values()), 2),
            "cpu_ms_per_note": cpu, "idle_cpu_ms_per_note_equivalent": idle_cpu,
            "idle_round_trips_per_note_equivalent": idle, "idle_requests": idle_interactions,
            "whole_run_requests": whole_run,
            "baseline_per_note": base, "baseline_total_per_note": round(sum(base.values()), 2)}


def report(r: dict) -> str:
    kinds = ("fhir", "token", "discovery")
    lines = [f"{r['notes']} notes at {r['rate']:g}/s, {r['tasks_seen']} Tasks seen, step {r['seconds']} s "
             f"(host load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)",
             f"{'process':12s} {'fhir':>6s} {'token':>6s} {'disc.':>6s} {'total':>6s} {'CPU ms/note':>12s} "
             f"{'idle CPU':>9s} {'net CPU':>8s}"]
    for s in sorted(set(r["round_trips_per_note"]) | set(r["cpu_ms_per_note"])):
        if s in OUTSIDE:
            continue
        k = r["round_trips_per_note"].get(s, {})
        c, i = r["cpu_ms_per_note"].get(s, 0), r["idle_cpu_ms_per_note_equivalent"].get(s, 0)
        lines.append(f"{s:12s} " + " ".join(f"{k.get(x, 0):6.2f}" for x in kinds) +
                     f" {sum(k.values()):6.2f} {c:12.2f} {i:9.2f} {c - i:8.2f}")
    lines.append(f"{'VIGIL TOTAL':12s} {r['vigil_fhir_per_note']:6.2f} {'':6s} {'':6s} {r['vigil_total_per_note']:6.2f}")
    notify = r["round_trips_per_note"].get("notify", {})
    lines.append(f"EHR -> ingest per note: notifications {notify.get('notification', 0):.2f}, "
                 f"heartbeats {notify.get('heartbeat', 0):.2f}")
    for label, rows in sorted(r["interactions_per_note"].items()):
        if label not in OUTSIDE:
            lines.append(f"  {label}: " + ", ".join(f"{w} x{k:g}" for w, k in sorted(rows.items())))
    lines.append(f"requests over the same time with no notes (per-note equivalent): "
                 f"{r['idle_round_trips_per_note_equivalent']}; requests: {r['idle_requests']}")
    lines.append(f"whole run incl. start-up and warm-up: {r['whole_run_requests']}")
    lines.append(f"note writer per note: {r['round_trips_per_note'].get('driver', {})}")
    lines.append(f"raw baseline (note create + Task create + Task read) per note: {r['baseline_per_note']} "
                 f"= {r['baseline_total_per_note']:.2f}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--notes", type=int, default=30)
    parser.add_argument("--rate", type=float, default=2.0)
    args = parser.parse_args()
    configure("warning")
    e2e.TENANT = TENANT  # its steps run for this benchmark's own tenant
    proxies = CountingProxies()
    proxies.start()
    plain = DemoPlan.create("bench-rt", port_base=BENCH_PORT_BASE)
    ehr = plain.settings.ehr_url
    from services.commands.demo.plan import SERVICES

    urls = {s.name: proxies.add(s.name, ehr) for s in SERVICES}
    notify = proxies.add("notify", f"http://127.0.0.1:{plain.port('ingest-http')}")
    plan = CountingPlan(plain.name, plain.settings, plain.port_base, plain.extra_env, urls, notify)
    pipe = CountingPipeline(plan, (TENANT,), log=print, optional=False)
    try:
        pipe.up()
        pipe.driver_url = proxies.add("driver", ehr)
        results = asyncio.run(measure(pipe, proxies, proxies.add("baseline", ehr), args.notes, args.rate))
    finally:
        pipe.down()
        proxies.stop()
    results["measured_at"] = datetime.now(timezone.utc).isoformat(timespec="seconds")
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    (OUT_DIR / "roundtrips.json").write_text(json.dumps(results, indent=2, default=str))
    print(report(results))


if __name__ == "__main__":
    main()
