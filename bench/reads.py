"""The read side under load: the 360 view and search through the gateway, the read model's apply
capacity, and how read latency holds as the stores grow.

- `seed_customers` writes registrations (one event per customer, names and emails drawn from small
  word lists so that searches match realistic shares) straight into the customer event store; the
  running relay publishes them and customer360 folds them, as the pipeline phase does.
- `read_load` drives GET requests from `clients` keep-alive client threads for a fixed time and reports
  requests/s and latency percentiles of the 200s (360 views of customers drawn from the view; searches
  of 4 to 6 characters cut from the start of a first name, a last name or an email).
- `http_ceiling` is the same load against a bare nameko `@http` endpoint in a child process
  (bench.http_echo): the same-run baseline of a read.
- `apply_capacity` replays envelopes of the customer feed through customer360's Inbox and fold into a
  scratch schema, decoding and validating each as the consumer does: what customer360 applies per
  second when its queue is full, whatever the relay's pace.
"""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import sys
import threading
import time
from typing import Any
from urllib.parse import quote

import psycopg2

from bench.common import Settings, log, percentile
from bench.names import FIRST_NAMES, LAST_NAMES, customer_name
from bench.workload import STOP, Client, Tally

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))




def seed_customers(count: int, batch: int = 500) -> dict[str, Any]:
    """Register `count` customers straight into the customer event store (one event each, with the email
    claims), in batches of one transaction; the running relay publishes them. The log position to wait for."""
    from crm_customer.application import Customers
    from crm_customer.domain import Customer, EmailClaim

    app = Customers(create_table=False)
    start = random.randrange(10**8)  # a fresh run of numbers: emails never collide with an earlier seed
    written = 0
    started = time.perf_counter()
    try:
        for first in range(0, count, batch):
            claims, customers = [], []
            for number in range(start + first, start + min(count, first + batch)):
                name, email = customer_name(number)
                customer = Customer.register(name, email, None, "Bench Ltd", "import")
                claims.append(EmailClaim.create(app.claim_id(EmailClaim, email), customer.id))
                customers.append(customer)
            app.save(*claims, *customers)  # customers last: the log ends on a published event
            written += len(customers)
        head = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    elapsed = time.perf_counter() - started
    return {
        "customers": written,
        "seconds": round(elapsed, 2),
        "per_second": round(written / elapsed, 1) if elapsed else 0.0,
        "head": head,
    }


def view_customers(settings: Settings) -> int:
    """How many customers the 360 view holds."""
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM customer360.customer_view")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def sample_ids(settings: Settings, count: int) -> list[str]:
    """`count` customer ids drawn at random from the 360 view (whatever folded them: journeys, seeds)."""
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT customer_id::text FROM customer360.customer_view TABLESAMPLE SYSTEM (50) LIMIT %s", (count,)
            )
            found = [row[0] for row in cur.fetchall()]
            if len(found) < count:
                cur.execute(
                    "SELECT customer_id::text FROM customer360.customer_view ORDER BY random() LIMIT %s", (count,)
                )
                found = [row[0] for row in cur.fetchall()]
            random.shuffle(found)
            return found
    finally:
        conn.close()


def search_terms(count: int, seed: int = 8) -> list[str]:
    """`count` queries of 4 to 6 characters: the start of a first name, of a last name (a word in the
    name), or of an email (its local part starts with the first name), in a fixed random order."""
    rng = random.Random(seed)
    terms = []
    for _ in range(count):
        kind = rng.choice(("first", "last", "email"))
        if kind == "first":
            word = rng.choice([n for n in FIRST_NAMES if len(n) >= 4])
        elif kind == "last":
            word = rng.choice([n for n in LAST_NAMES if len(n) >= 4])
        else:
            first = rng.choice(FIRST_NAMES)
            word = f"{first.lower()}.{rng.choice(LAST_NAMES).lower()}"
        terms.append(word[: rng.randint(4, min(6, len(word)))].lower())
    return terms


def read_load(
    address: tuple[str, int], token: str, paths: list[str], clients: int, seconds: float, warmup: float = 2.0
) -> dict[str, Any]:
    """GET `paths` (in turn, each client from its own offset) from `clients` threads for `seconds` after a
    `warmup`; requests/s and latency percentiles of the 200s, and every status seen."""
    tally = Tally()
    latencies: list[list[float]] = [[] for _ in range(clients)]
    measuring = threading.Event()
    done = threading.Event()

    def worker(slot: int) -> None:
        client = Client(*address, token)
        mine = latencies[slot]
        index = slot * max(1, len(paths) // clients)
        while not STOP.is_set() and not done.is_set():
            path = paths[index % len(paths)]
            index += 1
            sent = time.perf_counter()
            try:
                status, _ = client.request("GET", path)
            except (http.client.HTTPException, OSError) as exc:
                if measuring.is_set():
                    tally.error(f"{type(exc).__name__}: {exc}")
                continue
            if measuring.is_set() and not done.is_set():
                tally.count(status)
                if status == 200:
                    mine.append(time.perf_counter() - sent)
        client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    for thread in threads:
        thread.start()
    time.sleep(warmup)
    measuring.set()
    started = time.perf_counter()
    time.sleep(seconds)
    done.set()
    elapsed = time.perf_counter() - started
    for thread in threads:
        thread.join(timeout=60)
    ms = [x * 1000 for slot in latencies for x in slot]
    return {
        "clients": clients,
        "seconds": round(elapsed, 2),
        "ok": len(ms),
        "per_second": round(len(ms) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": _ms(percentile(ms, 50)),
        "p99_ms": _ms(percentile(ms, 99)),
        "max_ms": _ms(max(ms) if ms else None),
        "statuses": tally.statuses,
        "errors": tally.errors,
    }


def reads_360(address: tuple[str, int], token: str, settings: Settings, clients: int, seconds: float) -> dict[str, Any]:
    """GET /v1/customers/{id}/360 of customers drawn from the view."""
    ids = sample_ids(settings, 5000)
    if not ids:
        raise RuntimeError("the 360 view is empty: nothing to read")
    outcome = read_load(address, token, [f"/v1/customers/{cid}/360" for cid in ids], clients, seconds)
    outcome["distinct_customers"] = len(ids)
    return outcome


def searches(
    address: tuple[str, int], token: str, settings: Settings, clients: int, seconds: float, page_size: int = 20
) -> dict[str, Any]:
    """GET /v1/customers?q=... with prefixes of names, words and emails; one page of `page_size`."""
    terms = search_terms(2000)
    paths = [f"/v1/customers?q={quote(term)}&page_size={page_size}" for term in terms]
    outcome = read_load(address, token, paths, clients, seconds)
    outcome.update(customers=view_customers(settings), page_size=page_size, distinct_queries=len(set(terms)))
    return outcome


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def run_child(module: str, *args: str, timeout: float = 120.0) -> dict[str, Any]:
    """Run `python -m module args` (its own process: nameko needs eventlet) and read its last JSON line."""
    done = subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT
    )
    if done.returncode != 0:
        raise RuntimeError(f"{module} failed: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------ the apply capacity


def feed_envelopes(url: str, after: int, count: int, page: int = 5000) -> list[dict[str, Any]]:
    """`count` envelopes of a service's feed after position `after`, over its HTTP RPC (events_since)."""
    from crm_runtime.nameko.client import HttpTransport

    transport = HttpTransport("feed", [url])
    found: list[dict[str, Any]] = []
    try:
        while len(found) < count:
            got = transport.call("events_since", (after, min(page, count - len(found))), {}, {}, timeout=120.0)
            if not got:
                break
            found.extend(got)
            after = got[-1]["position"]
    finally:
        transport.close()
    return found


def apply_capacity(settings: Settings, envelopes: list[dict[str, Any]], batch: int = 500) -> dict[str, Any]:
    """Apply `envelopes` through customer360's Inbox and fold into a scratch schema, `batch` at a time, each
    decoded from its JSON text and validated as the consumer does: events/s (the CPU of this process and
    of PostgreSQL, no broker)."""
    from types import SimpleNamespace

    from crm_customer360 import readmodel
    from crm_runtime.consumer import EnvelopeConsumer
    from crm_runtime.inbox import Inbox

    schema = "bench_apply_capacity"
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                f"DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET LOCAL search_path TO {schema}"
            )
            readmodel.create_tables(cur)
            if envelopes:  # the slice starts where the feed was read from: tracked as applied up to there
                cur.execute(
                    "INSERT INTO inbox_tracking (origin, position) VALUES (%s, %s)",
                    (envelopes[0]["origin"], envelopes[0]["previous"]),
                )
    finally:
        conn.close()
    messages = [SimpleNamespace(body=json.dumps(envelope).encode()) for envelope in envelopes]
    inbox = Inbox(settings.dsn(schema=schema), readmodel.apply_batch, fetch=None)
    decode = EnvelopeConsumer(inbox, settings.amqp_uri, "bench.apply-capacity", [])._decode  # never consumes
    applied = 0
    try:
        started = time.perf_counter()
        for first in range(0, len(messages), batch):
            decoded = [decode(message) for message in messages[first : first + batch]]  # as the consumer does
            outcome = inbox.receive(decoded)
            if outcome.failed or outcome.deferred or outcome.applied != len(decoded):
                raise RuntimeError(f"apply capacity: {outcome.failed[:1] or 'a gap'} (a correctness error)")
            applied += outcome.applied
        elapsed = time.perf_counter() - started
    finally:
        inbox.close()
        from bench.common import drop_schema

        drop_schema(settings, schema)
    types: dict[str, int] = {}
    for envelope in envelopes:
        types[envelope["type"]] = types.get(envelope["type"], 0) + 1
    return {
        "events": applied,
        "batch": batch,
        "seconds": round(elapsed, 2),
        "per_second": round(applied / elapsed, 1) if elapsed else None,
        "types": types,
    }


# ---------------------------------------------------------------------------------- the bench phase


NOTE = (
    "Reads (bench.reads): the view grown to --read-customers customers with seeded registrations; then, each for "
    "--read-seconds after a 2 s warm-up, from 16 keep-alive clients: a bare nameko @http endpoint answering a "
    "document of a 360 answer's size (the baseline: one hop, no work), GET /v1/customers/{id}/360 of 5,000 "
    "customers drawn from the view, and GET /v1/customers?q=...&page_size=20 with 2,000 queries of 4 to 6 "
    "characters cut from the start of a first name, a last name or an email (search matches the start of a "
    "name, a word of it or an email; `total` is exact up to 100, then 100 with `total_capped: true`). The apply "
    "capacity replays 25,000 envelopes of the customer feed (the pipeline's registrations and consents) through "
    "customer360's consumer decoding, Inbox and fold into a scratch schema, in batches of 500, in this process."
)


def phase(
    settings: Settings,
    bench: Any,
    token: str,
    customers: int,
    clients: int,
    seconds: float,
    capacity_after: int,
    capacity_events: int,
) -> dict[str, Any]:
    """The reads phase of `make bench`: the view grown to `customers` customers (registrations seeded and
    folded live, the view following the seeding: how far behind it finished), the HTTP baseline, 360
    reads, searches, and the apply capacity on `capacity_events` customer envelopes after `capacity_after`."""
    from bench import workload

    out: dict[str, Any] = {}
    missing = max(0, customers - view_customers(settings))
    if missing:
        seeded = seed_customers(missing)
        log(f"  seeded {seeded['customers']:,} customers at {seeded['per_second']:,.0f}/s; waiting for the 360 view")
        caught = workload.wait_caught_up(settings, seeded["head"], timeout=900)
        out["seed"] = {**seeded, **caught}
        if not caught["caught_up"]:
            raise RuntimeError("the 360 view did not catch up with the seeded customers")
    address = ("127.0.0.1", bench.gateway_port)
    log("  HTTP baseline (bare nameko @http)")
    out["http_baseline"] = run_child("bench.http_echo", str(_free_port()), str(seconds), str(clients))
    log("  360 reads")
    out["view_360"] = reads_360(address, token, settings, clients, seconds)
    log("  searches")
    out["search"] = searches(address, token, settings, clients, seconds)
    log("  apply capacity")
    url = f"http://127.0.0.1:{bench.platform.processes['customer'].port}"
    out["apply_capacity"] = apply_capacity(settings, feed_envelopes(url, capacity_after, capacity_events))
    for name in ("view_360", "search"):
        statuses = out[name]["statuses"]
        if set(statuses) - {200}:
            raise RuntimeError(f"{name}: answers other than 200: {statuses} {out[name]['errors']}")
    return out


def _free_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def summary_rows(reads: dict[str, Any], row: Any) -> None:
    """The reads phase's rows of the platform table (report.summary's `row`)."""
    base = reads.get("http_baseline") or {}
    view, search, capacity, seed = (reads.get(k) or {} for k in ("view_360", "search", "apply_capacity", "seed"))
    bare = f"bare nameko @http, {base.get('clients', '?')} clients"
    row(
        f"360 reads/s via gateway ({view.get('clients', '?')} clients, {view.get('distinct_customers', 0):,} ids)",
        view.get("per_second"),
        "/s",
        bare,
        base.get("per_second"),
        "read_360_per_second",
    )
    row("360 read latency p99", view.get("p99_ms"), "ms", f"{bare}, p99", base.get("p99_ms"), "read_360_p99_ms")
    row(
        f"searches/s ({search.get('customers', 0):,} customers, page {search.get('page_size', '?')})",
        search.get("per_second"),
        "/s",
        bare,
        base.get("per_second"),
        "search_per_second",
    )
    row("search latency p99", search.get("p99_ms"), "ms", f"{bare}, p99", base.get("p99_ms"), "search_p99_ms")
    if seed:
        row(
            f"360 view behind {seed.get('customers', 0):,} seeded registrations ({seed.get('per_second', 0):,.0f}/s)",
            seed.get("view_done_after_s"),
            "s",
            "",
            None,
        )
    row(
        f"360 apply capacity events/s (in-process, {capacity.get('events', 0):,} customer events)",
        capacity.get("per_second"),
        "/s",
        "",
        None,
        "apply_per_second",
    )


# --------------------------------------------------------------------------- make bench-scale

#: Events per seeded customer in the scale run: a registration, then consent changes (the view and the
#: timeline grow by one row per event; fewer customers to register keeps seeding time down).
SCALE_EVENTS_PER_CUSTOMER = 20


def seed_history(events: int, batch: int = 100) -> dict[str, Any]:
    """Write `events` published customer events (SCALE_EVENTS_PER_CUSTOMER per customer) straight into the
    customer event store, a batch of customers per transaction; the log position to wait for."""
    from datetime import UTC, datetime

    from crm_customer.application import Customers
    from crm_customer.domain import Customer, EmailClaim

    channels = ("email", "phone", "sms", "post")
    app = Customers(create_table=False)
    start = random.randrange(10**8)
    customers = max(1, events // SCALE_EVENTS_PER_CUSTOMER)
    started = time.perf_counter()
    try:
        for first in range(0, customers, batch):
            claims, seeded = [], []
            for number in range(start + first, start + min(customers, first + batch)):
                name, email = customer_name(number)
                customer = Customer.register(name, email, None, "Bench Ltd", "import")
                for change in range(SCALE_EVENTS_PER_CUSTOMER - 1):
                    customer.record_consent(channels[change % 4], change % 2 == 0, "bench", datetime.now(UTC))
                claims.append(EmailClaim.create(app.claim_id(EmailClaim, email), customer.id))
                seeded.append(customer)
            app.save(*claims, *seeded)
        head = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    elapsed = time.perf_counter() - started
    return {"events": customers * SCALE_EVENTS_PER_CUSTOMER, "seconds": round(elapsed, 1), "head": head}


def store_sizes(settings: Settings) -> dict[str, Any]:
    """Rows and size of the stores the reads touch (and of the customer event store)."""
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            sizes = {}
            for table in (
                "customer.customers_events",
                "customer360.customer_view",
                "customer360.timeline",
                "customer360.customer_search",
            ):
                cur.execute(f"SELECT count(*), pg_total_relation_size('{table}') FROM {table}")
                rows, size = cur.fetchone()
                sizes[table] = {"rows": rows, "mib": round(size / 2**20, 1)}
            return sizes
    finally:
        conn.close()


def settle(settings: Settings, timeout: float = 600.0) -> None:
    """Before measuring reads: customer360's queue drained (events the view already pulled from the feed
    arrive again as duplicates) and the read model vacuumed and analysed, as autovacuum leaves it in time."""
    import urllib.parse
    import urllib.request

    from bench.common import _basic_auth

    vhost = urllib.parse.quote(settings.vhost, safe="")
    url = f"{settings.management_url.rstrip('/')}/queues/{vhost}/customer360.events"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        request = urllib.request.Request(url, headers={"authorization": _basic_auth(settings)})
        with urllib.request.urlopen(request, timeout=30) as response:
            queue = json.loads(response.read())
        if not queue.get("messages"):
            break
        time.sleep(1.0)
    conn = psycopg2.connect(settings.dsn())
    conn.autocommit = True  # VACUUM runs outside a transaction
    try:
        with conn.cursor() as cur:
            cur.execute("VACUUM (ANALYZE) customer360.customer_view, customer360.timeline, customer360.customer_search")
    finally:
        conn.close()


def scale(argv: list[str] | None = None) -> int:
    """`make bench-scale`: 360 read and search latency with `--small` events in the stores, then with
    `--large`, on a platform of its own (customer, customer360, gateway; own database, vhost and ports)."""
    import argparse
    import os

    from bench import platform_run, workload
    from bench.platform_run import BenchPlatform

    parser = argparse.ArgumentParser(prog="python -m bench.reads", description=scale.__doc__)
    parser.add_argument("--small", type=int, default=10_000, help="events in the stores first (10000)")
    parser.add_argument("--large", type=int, default=1_000_000, help="events in the stores then (1000000)")
    parser.add_argument("--seconds", type=float, default=15.0, help="seconds of each read load (15)")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--out", default=os.path.join(ROOT, "bench", "results", "scale-latest.json"))
    args = parser.parse_args(argv)
    os.environ.setdefault("BENCH_GATEWAY_PORT", "8650")
    os.environ.setdefault("BENCH_SERVICE_BASE_PORT", "8651")
    settings = Settings.make(
        False, os.environ.get("BENCH_DBNAME", "crm_bench_scale"), os.environ.get("BENCH_VHOST", "crm_bench_scale")
    )
    # The reads need these three; the other services' policy queues would only add load while seeding.
    platform_run.ALL_SERVICES_ONCE = {"CRM_SERVICES": "customer,customer360,gateway", "CRM_REPLICAS": ""}
    platform_run.RUN_DIR = platform_run.ROOT / "run" / "bench-scale"
    bench = BenchPlatform(settings)
    results: dict[str, Any] = {"settings": vars(args)}
    try:
        bench.start()
        token = bench.token()
        address = ("127.0.0.1", bench.gateway_port)
        for label, target in (("small", args.small), ("large", args.large)):
            have = workload.view_applied(settings)
            while have < target:
                chunk = min(100_000, target - have)
                seeded = seed_history(chunk)
                log(f"{label}: seeded {seeded['events']:,} events in {seeded['seconds']}s; waiting for the 360 view")
                caught = workload.wait_caught_up(settings, seeded["head"], timeout=3600)
                if not caught["caught_up"]:
                    raise RuntimeError("the 360 view did not catch up")
                have = workload.view_applied(settings)
            settle(settings)
            log(f"{label}: {have:,} events in the view; reading")
            results[label] = {
                "events": have,
                "sizes": store_sizes(settings),
                "view_360": reads_360(address, token, settings, args.clients, args.seconds),
                "search": searches(address, token, settings, args.clients, args.seconds),
            }
    finally:
        bench.stop()
    lines = [f"{'':<28}{'small':>14}{'large':>14}{'ratio':>8}"]
    small, large = results.get("small") or {}, results.get("large") or {}
    lines.append(f"{'events in the view':<28}{small.get('events', 0):>14,}{large.get('events', 0):>14,}")
    for name in ("view_360", "search"):
        for figure in ("per_second", "p50_ms", "p99_ms"):
            a, b = (small.get(name) or {}).get(figure), (large.get(name) or {}).get(figure)
            ratio = f"{b / a:.2f}x" if a and b else ""
            lines.append(f"{name + ' ' + figure:<28}{a or 0:>14,.1f}{b or 0:>14,.1f}{ratio:>8}")
    p99 = [(results.get(k) or {}).get("view_360", {}).get("p99_ms") for k in ("small", "large")]
    met = bool(p99[0] and p99[1] and p99[1] <= 1.2 * p99[0])
    lines.append(f"360 read p99 with {args.large:,} events within 20% of {args.small:,}: {'met' if met else 'NOT met'}")
    print("\n".join(lines))
    os.makedirs(os.path.dirname(args.out), exist_ok=True)
    with open(args.out, "w") as out:
        json.dump(results, out, indent=2, default=str)
    print(f"results: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(scale())
