"""`python -m bench [--quick] [--only baselines|costs|platform]`: measure, print the tables, write the JSON.

Three parts, in this order: the raw baselines of the machine; the costs of two features measured against
the same application without them (bench.analytics: refreshing the analytics of a generated base and
reading a 360 view with them; bench.erasure: registrations with personal data sealed, as issue 11 runs
them, against the same without encryption); then the whole platform, phase by phase."""

from __future__ import annotations

import argparse
import os
import platform as host_platform
import signal
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
import psycopg2

from bench import journey, reads, report, workload
from bench.analytics import analytics_phase
from bench.baselines import run_baselines
from bench.common import Settings, log
from bench.erasure import erasure_baselines
from bench.platform_run import BenchPlatform, MemorySampler, infrastructure_rss

RESULTS = Path(__file__).resolve().parent / "results"


def parse(argv: list[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke test, not a measurement")
    parser.add_argument("--only", choices=["baselines", "costs", "platform"], help="measure only one part")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where to write the JSON (default bench/results)")
    parser.add_argument("--dbname", default=os.environ.get("BENCH_DBNAME", "crm_bench"),
                        help="the bench's own database, dropped and recreated (default crm_bench)")
    parser.add_argument("--vhost", default=os.environ.get("BENCH_VHOST", "crm_bench"),
                        help="the bench's own RabbitMQ vhost, deleted and recreated (default crm_bench)")
    parser.add_argument("--clients", type=int, help="concurrent registration clients (16; quick 8)")
    parser.add_argument("--registrations", type=int, help="registrations in the throughput phase (3000; quick 200)")
    parser.add_argument("--lag-rate", type=float, help="paced commands/s in the lag phase (200; quick 50)")
    parser.add_argument("--lag-seconds", type=float, help="length of the lag phase (20; quick 4)")
    parser.add_argument("--rebuild-events", type=int, help="events seeded for the rebuild (100000; quick 2000)")
    parser.add_argument("--journeys", type=int, help="customers walked through the whole lifecycle (100; quick 10)")
    parser.add_argument("--journey-clients", type=int, help="concurrent journey clients (8; quick 4)")
    parser.add_argument("--read-customers", type=int, help="customers in the view for reads (100000; quick 3000)")
    parser.add_argument("--read-seconds", type=float, help="seconds of each read load (15; quick 3)")
    parser.add_argument("--analytics-customers", type=int,
                        help="customers of the generated base whose analytics are refreshed (10000; quick 300)")
    args = parser.parse_args(argv)
    defaults = ({"clients": 8, "registrations": 200, "lag_rate": 50.0, "lag_seconds": 4.0, "rebuild_events": 2000,
                 "journeys": 10, "journey_clients": 4, "read_customers": 3000, "read_seconds": 3.0,
                 "analytics_customers": 300}
                if args.quick else
                {"clients": 16, "registrations": 3000, "lag_rate": 200.0, "lag_seconds": 20.0,
                 "rebuild_events": 100_000, "journeys": 100, "journey_clients": 8, "read_customers": 100_000,
                 "read_seconds": 15.0, "analytics_customers": 10_000})
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds (user + system) used so far by this process, each platform process, and the shared
    PostgreSQL and RabbitMQ (all their sessions, not only the bench's)."""
    seen = {"bench (load generator)": os.getpid(), **pids}
    out: dict[str, float] = {}
    for name, pid in seen.items():
        try:
            times = psutil.Process(pid).cpu_times()
            out[name] = times.user + times.system
        except psutil.Error:
            continue
    out["postgresql"] = out["rabbitmq"] = 0.0
    for proc in psutil.process_iter(["name", "cpu_times"]):
        name, times = proc.info.get("name") or "", proc.info.get("cpu_times")
        if times is None:
            continue
        if name.startswith("postgres"):
            out["postgresql"] += times.user + times.system
        elif name.startswith("beam.smp"):
            out["rabbitmq"] += times.user + times.system
    return out


def measured(bench: BenchPlatform, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run one phase and add the CPU each process used during it (as a share of one core)."""
    before, machine_before, started = cpu_seconds(bench.pids()), psutil.cpu_times(), time.perf_counter()
    outcome = action()
    after, machine_after, wall = cpu_seconds(bench.pids()), psutil.cpu_times(), time.perf_counter() - started
    if wall <= 0:
        return outcome
    used = {name: round((after[name] - before[name]) / wall, 2) for name in after if name in before}
    busy = sum(machine_after) - machine_after.idle - machine_after.iowait
    busy -= sum(machine_before) - machine_before.idle - machine_before.iowait
    used["everything else"] = round(max(0.0, busy / wall - sum(used.values())), 2)
    used["whole machine"] = round(busy / wall, 2)
    outcome["cpu_cores_used"] = used
    return outcome


class Progress:
    """Samples the customer relay's published count (its health report) and the events customer360 applied
    from the customer origin (its tracking table: live, pulled and caught-up events alike)."""

    def __init__(self, bench: BenchPlatform, interval: float = 0.5) -> None:
        self.bench = bench
        self.interval = interval
        self.samples: list[tuple[float, int | None, int | None]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="progress", daemon=True)

    def __enter__(self) -> Progress:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def _run(self) -> None:
        while True:
            try:
                published = _find(self.bench.health("customer"), "published")
            except (OSError, ValueError):
                published = None
            try:
                applied = workload.view_applied(self.bench.settings)
            except psycopg2.Error:
                applied = None
            self.samples.append((time.perf_counter(), published, applied))
            if self._stop.wait(self.interval):
                break

    def rate(self, column: int) -> float | None:
        """Events/s of one counter between its last sample before it moved and the first at its final value."""
        points = [(sample[0], sample[column]) for sample in self.samples if sample[column] is not None]
        if len(points) < 2:
            return None
        final = points[-1][1]
        start = next((i for i in range(1, len(points)) if points[i][1] > points[0][1]), None)
        if start is None:
            return None
        end = next(i for i in range(len(points)) if points[i][1] >= final)
        t0, v0 = points[start - 1]
        t1 = points[end][0]
        return round((final - v0) / (t1 - t0), 1) if t1 > t0 else None


def _find(tree: Any, key: str) -> int | None:
    """The first integer under `key` anywhere in a health report."""
    if isinstance(tree, dict):
        if isinstance(tree.get(key), int):
            return int(tree[key])
        for value in tree.values():
            found = _find(value, key)
            if found is not None:
                return found
    return None


def run_costs(settings: Settings, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """The cost of the analytics and of sealing personal data, each beside the same work without it (a
    failed phase is recorded, the other still runs). Neither needs the platform running."""
    out: dict[str, Any] = {}
    results["costs"] = out
    for name, action in (("analytics", lambda: analytics_phase(settings, args.analytics_customers)),
                         ("erasure", lambda: erasure_baselines(settings))):
        log(f"costs: {name}")
        try:
            out[name] = action()
        except Exception as exc:  # noqa: BLE001 - one failed phase is reported, the other still runs
            log(f"cost phase {name} failed: {type(exc).__name__}: {exc}")
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}


def run_platform(settings: Settings, args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Start the platform, measure it phase by phase (a failed phase is recorded, the rest still run)."""
    out: dict[str, Any] = {}
    results["platform"] = out

    def phase(name: str, action: Callable[[], dict[str, Any]]) -> None:
        log(f"platform: {name}")
        try:
            out[name] = action()
        except Exception as exc:  # noqa: BLE001 - one failed phase is reported, the others still run
            log(f"platform phase {name} failed: {type(exc).__name__}: {exc}")
            out[name] = {"error": f"{type(exc).__name__}: {exc}"}

    bench = BenchPlatform(settings)
    try:
        bench.start()
        out["processes"] = {name: bench.platform.processes[name].port for name in bench.names}
        with MemorySampler(bench) as memory:
            if bench.has_gateway and bench.gateway_error is None:
                token = bench.token()
                address = ("127.0.0.1", bench.gateway_port)
                phase("registrations", lambda: measured(bench, lambda: workload.registrations(
                    address, token, args.registrations, args.clients)))
                phase("registrations_keyed", lambda: measured(bench, lambda: workload.registrations(
                    address, token, args.registrations, args.clients, keyed=True)))
                phase("profile_changes", lambda: measured(bench, lambda: workload.profile_changes(
                    address, token, args.registrations, args.clients)))
                phase("lag", lambda: measured(bench, lambda: workload.projection_lag(
                    address, token, args.lag_rate, args.lag_seconds)))
                phase("journeys", lambda: measured(bench, lambda: journeys(
                    bench, memory, address, token, args.journeys, args.journey_clients)))
            else:
                why = bench.gateway_error or "not installed (no `gateway` entry point in crm.services)"
                out["gateway"] = {"error": why}
                results["notes"].append(f"The gateway did not run ({why}): registrations, projection lag and the "
                                        "journeys were not measured.")
            phase("pipeline", lambda: measured(bench, lambda: pipeline(
                settings, bench, args.rebuild_events, quick=settings.quick)))
            if bench.has_gateway and bench.gateway_error is None:
                # The view grown to --read-customers, then 360 reads, search and the apply capacity (bench.reads).
                seeded = (out.get("pipeline") or {}).get("seeded") or {}
                after = max(0, int(seeded.get("head", 0) - 1.2 * seeded.get("events", 0)))
                phase("reads", lambda: measured(bench, lambda: reads.phase(
                    settings, bench, token, args.read_customers, 16, args.read_seconds, after,
                    min(25_000, max(2_000, int(seeded.get("events", 0)))))))
            phase("rebuild", lambda: measured(bench, lambda: workload.rebuild(
                settings, timeout=120 if settings.quick else 900)))
            memory.sample()
            out["memory"] = {"peak_mib": {k: round(v, 1) for k, v in memory.peak.items()},
                             "peak_total_mib": round(memory.peak_total, 1),
                             "end_mib": {k: round(v, 1) for k, v in memory.last.items()},
                             "end_total_mib": round(sum(memory.last.values()), 1),
                             "shared_infrastructure_mib": infrastructure_rss()}
    finally:
        workload.STOP.set()
        bench.stop()


def journeys(bench: BenchPlatform, memory: MemorySampler, address: tuple[str, int], token: str, count: int,
             clients: int) -> dict[str, Any]:
    """The customer journey under load (bench.journey), then the resident memory of every platform process."""
    missing = [name for name in journey.SERVICES if not bench.platform.services(name)]
    if missing:
        raise RuntimeError(f"the journey needs {', '.join(missing)}: not registered (run `make install`)")
    outcome = journey.journeys(address, token, count, clients)
    now = memory.sample()
    outcome["memory_after"] = {"processes": len(now), "names": sorted(now),
                               "total_mib": round(sum(now.values()), 1),
                               "per_process_mib": {k: round(v, 1) for k, v in now.items()}}
    return outcome


def pipeline(settings: Settings, bench: BenchPlatform, events: int, quick: bool) -> dict[str, Any]:
    """Seed `events` into the customer store and follow them through relay and 360 view until caught up."""
    with Progress(bench) as progress:
        seeded = workload.seed_events(events)
        log(f"  seeded {seeded['events']:,} events at {seeded['per_second']:,.0f}/s; waiting for the 360 view")
        caught = workload.wait_caught_up(settings, seeded["head"], timeout=120 if quick else 900)
        time.sleep(progress.interval * 2)  # one more sample at the final counts
    total = seeded["seconds"] + (caught["view_done_after_s"] or 0.0)
    return {"seeded": seeded, **caught,
            "relay_per_second": progress.rate(1), "view_per_second": progress.rate(2),
            "end_to_end_per_second": round(seeded["events"] / total, 1) if caught["caught_up"] and total else None,
            "relay_finished_after_seed_s": caught["relay_done_after_s"]}


def main(argv: list[str] | None = None) -> int:
    """Run the bench; returns the exit status (1 when a phase failed)."""
    args = parse(argv)
    settings = Settings.make(args.quick, args.dbname, args.vhost)

    def terminate(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, terminate)
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    results: dict[str, Any] = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "host": {"cpus": os.cpu_count(), "python": sys.version.split()[0], "system": host_platform.platform(),
                 "load_average_at_start": [round(x, 2) for x in os.getloadavg()]},
        "settings": {"quick": settings.quick, "runs": settings.runs, "seconds_per_run": settings.seconds,
                     "max_ops_per_run": settings.max_ops, "database": settings.dbname, "vhost": settings.vhost,
                     "clients": args.clients, "registrations": args.registrations, "lag_rate": args.lag_rate,
                     "lag_seconds": args.lag_seconds, "rebuild_events": args.rebuild_events,
                     "journeys": args.journeys, "journey_clients": args.journey_clients,
                     "read_customers": args.read_customers, "read_seconds": args.read_seconds,
                     "analytics_customers": args.analytics_customers},
        "notes": [report.NOTE_LOAD],
    }
    status = 0
    try:
        if args.only in (None, "baselines"):
            results["baselines"] = run_baselines(settings)
        if args.only in (None, "costs"):
            run_costs(settings, args, results)
        if args.only in (None, "platform"):
            run_platform(settings, args, results)
    except KeyboardInterrupt:
        results["interrupted"] = True
        results["notes"].append("Interrupted: partial results.")
        status = 130
    except Exception as exc:  # noqa: BLE001 - still write what was measured
        results["error"] = f"{type(exc).__name__}: {exc}"
        results["notes"].append(f"Failed: {results['error']}")
        log(results["error"])
        status = 1
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    _add_notes(results)
    path = report.write(results, args.out)
    print(report.render(results))
    print(f"\nresults: {path} (and {args.out / 'latest.json'})")
    if status == 0 and _any_error(results):
        status = 1
    return status


def _add_notes(results: dict[str, Any]) -> None:
    """Say how each ratio is meant, and what the figures include."""
    notes = results["notes"]
    plat = results.get("platform") or {}
    if plat:
        notes.append("Ratios: registrations/s vs eventsourcing 1-aggregate saves/s (each registration is one such "
                     "save of two aggregates); latencies and lag vs one nameko RPC round trip; relay publish vs "
                     "py-amqp batch-confirm publish; live 360 apply and rebuild vs psycopg2 inserts of 100 rows "
                     "per transaction (the read model's write path).")
        notes.append("Projection lag is measured from the 201 to the first 200 of GET /v1/customers/{id}/360 for every "
                     "5th registration; one sampler polls the pending ids in turn (one GET in flight, 10 ms pause per "
                     "round), so each lag may be over-stated by up to one round (lag.round_ms in the JSON).")
        jour = plat.get("journeys") or {}
        if "completed" in jour:
            notes.append(f"Journeys: each of {jour['journeys']} customers walks lead capture, qualify, convert -> "
                         "(policies: customer, opportunity) -> stages, quote, accept, win -> (policy: order) -> "
                         "shipping address, confirm, ship, deliver, pay -> (policy: points), over HTTP through the "
                         f"gateway from {jour['clients']} clients, each on its own campaign planned before the clock "
                         "starts, after one untimed warm-up journey. Journeys/s = completed journeys / wall time. "
                         "'Converted -> points' runs from the 200 of POST /v1/leads/{id}/convert to the first "
                         f"GET /v1/loyalty-accounts/{{customer}} showing the points (polled every "
                         f"{jour['poll_interval_ms']:.0f} ms, as are the opportunity and the order): it includes the "
                         "client's own commands between the hand-offs; the hand-off rows are the policies alone. "
                         "The baseline of journeys/s is eventsourcing single saves/s divided by the commands a "
                         "journey sends. Every balance and hand-off is checked again after the run.")
        if plat.get("reads") and "error" not in plat["reads"]:
            notes.append(reads.NOTE)
        notes.append("Rebuild events are seeded straight into the customer event store (a registration and four "
                     "consents per customer, in batched transactions) and published by the running relay.")
        notes.append("Resident memory counts the platform's own processes (what `make run` starts); RabbitMQ and "
                     "PostgreSQL are shared with the rest of the machine and shown in the JSON for context only.")
        pipe = plat.get("pipeline") or {}
        if pipe.get("relay_finished_after_seed_s") is not None and pipe["relay_finished_after_seed_s"] <= 1.5:
            notes.append("The relay kept up with seeding (done within 1.5 s of the last seed batch): its publish rate "
                         "is bounded by the seed rate, not its own.")
    if results.get("costs"):
        notes.append(report.NOTE_COSTS)
    base = results.get("baselines") or {}
    locked = (base.get("eventsourcing_save_1") or {}).get("rate")
    unlocked = (base.get("eventsourcing_save_1_db_functions") or {}).get("rate")
    if locked and unlocked:
        cost = 100 * (1 - locked / unlocked)
        notes.append(f"Event-store insert path: the locking insert crm_runtime uses saves {locked:,.0f}/s, "
                     f"eventsourcing's insert function {unlocked:,.0f}/s (locking costs {cost:.0f}% of lone saves; "
                     "the platform's group commit shares one locked insert among concurrent saves). The function "
                     "takes no table lock, so two writers commit notification ids out of order and the relay would "
                     "skip events; it also drops tracking records.")
    if results["settings"]["quick"]:
        notes.append("--quick: small counts, a smoke test of the harness; the figures are not measurements.")


def _any_error(results: dict[str, Any]) -> bool:
    """Whether any baseline or platform phase failed."""
    parts = [*(results.get("baselines") or {}).values(), *(results.get("costs") or {}).values(),
             *(results.get("platform") or {}).values()]
    return "error" in results or any(isinstance(p, dict) and "error" in p for p in parts)
