"""The load the bench puts on the platform: registrations through the gateway, paced commands with
projection-lag sampling, seeding events for a rebuild, and the rebuild itself.

Plain threads with one keep-alive http.client connection each: the lightest client in the standard
library, because on this 2-core machine the load generator competes with the platform for CPU.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import psycopg2

from bench.common import Settings, log, percentile
from bench.names import customer_name

#: Set when the bench is interrupted: every client thread stops at its next request.
STOP = threading.Event()


class Client:
    """One keep-alive HTTP connection to the gateway (reconnects after an error)."""

    def __init__(self, host: str, port: int, token: str) -> None:
        self.host, self.port = host, port
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json",
                        "Accept": "application/json"}
        self.conn: http.client.HTTPConnection | None = None

    def request(self, method: str, path: str, body: Any = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """Send one request (with extra `headers`); (status, body). A broken connection is re-opened once."""
        payload = None if body is None else json.dumps(body)
        sent = {**self.headers, **headers} if headers else self.headers
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection(self.host, self.port, timeout=30)
            try:
                self.conn.request(method, path, body=payload, headers=sent)
                response = self.conn.getresponse()
                return response.status, response.read()
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def registration(run: str, number: int) -> dict[str, str]:
    """The body of one registration: a name as a real customer base has them (bench.names: they repeat
    now and then), a unique email. Names all alike ("Bench Customer 1", "… 2") would make every
    registration's duplicate check find every customer before it."""
    name, _ = customer_name(number)
    return {"name": name, "email": f"bench-{run}-{number}@example.com", "company": "Bench Ltd",
            "source_channel": "web"}


@dataclass
class Tally:
    """Statuses and errors seen by a group of client threads."""

    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, status: int) -> None:
        with self.lock:
            self.statuses[status] = self.statuses.get(status, 0) + 1

    def error(self, message: str) -> None:
        with self.lock:
            self.statuses[-1] = self.statuses.get(-1, 0) + 1
            if len(self.errors) < 5:
                self.errors.append(message)


#: One timed command of a client: (client, its slot, the command's number) -> HTTP status.
Step = Callable[["Client", int, int], int]


def drive(base: tuple[str, int], token: str, count: int, clients: int, step: Step) -> dict[str, Any]:
    """`count` commands from `clients` concurrent threads (one keep-alive connection each), as fast as
    the gateway answers; latencies of the 2xx answers."""
    numbers = itertools.count()
    tally = Tally()
    latencies: list[list[float]] = [[] for _ in range(clients)]

    def worker(slot: int) -> None:
        client = Client(*base, token)
        mine = latencies[slot]
        while not STOP.is_set():
            number = next(numbers)
            if number >= count:
                break
            sent = time.perf_counter()
            try:
                status = step(client, slot, number)
            except (http.client.HTTPException, OSError) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                continue
            if 200 <= status < 300:
                mine.append(time.perf_counter() - sent)
            tally.count(status)
        client.close()

    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    elapsed = time.perf_counter() - started
    done = [x * 1000 for slot in latencies for x in slot]
    return {"count": count, "clients": clients, "accepted": len(done), "seconds": round(elapsed, 2),
            "per_second": round(len(done) / elapsed, 1) if elapsed else 0.0,
            "p50_ms": _ms(percentile(done, 50)), "p99_ms": _ms(percentile(done, 99)),
            "max_ms": _ms(max(done) if done else None), "statuses": tally.statuses, "errors": tally.errors}


def registrations(base: tuple[str, int], token: str, count: int, clients: int, keyed: bool = False) -> dict[str, Any]:
    """`count` registrations from `clients` threads; with `keyed`, each carries an Idempotency-Key (the
    gateway then stores its answer: two more commits per command)."""
    run = uuid.uuid4().hex[:8]
    warmup = Client(*base, token)
    for n in range(min(2 * clients, max(1, count // 10))):
        status, _ = warmup.request("POST", "/v1/customers", registration(run + "w", n))
        if status != 201:
            raise RuntimeError(f"warm-up registration answered {status}")
    warmup.close()

    def register(client: Client, slot: int, number: int) -> int:
        headers = {"Idempotency-Key": f"{run}-{number}"} if keyed else None
        return client.request("POST", "/v1/customers", registration(run, number), headers)[0]

    return {**drive(base, token, count, clients, register), "idempotency_key": keyed}


def profile_changes(base: tuple[str, int], token: str, count: int, clients: int) -> dict[str, Any]:
    """`count` profile changes with If-Match from `clients` threads, each changing a customer of its own
    (so none is refused as stale: the figure is the command path, not conflicts)."""
    run = uuid.uuid4().hex[:8]
    setup = Client(*base, token)
    versions: list[tuple[str, int]] = []
    for slot in range(clients):
        status, body = setup.request("POST", "/v1/customers", registration(run, slot))
        if status != 201:
            raise RuntimeError(f"registering the customers to change answered {status}")
        answer = json.loads(body)
        versions.append((answer["id"], int(answer["version"])))
    setup.close()

    def change(client: Client, slot: int, number: int) -> int:
        customer_id, version = versions[slot]
        status, body = client.request("PATCH", f"/v1/customers/{customer_id}", {"company": f"Company {number}"},
                                      {"If-Match": f'"{version}"'})
        if status == 200:
            versions[slot] = (customer_id, int(json.loads(body)["version"]))
        return status

    return drive(base, token, count, clients, change)


def projection_lag(base: tuple[str, int], token: str, rate: float, seconds: float, every: int = 5,
                   senders: int = 64, give_up: float = 30.0) -> dict[str, Any]:
    """Registrations paced at `rate`/s for `seconds`; every `every`-th accepted id is polled in the 360 view
    until visible. Lag = first 200 from GET /v1/customers/{id}/360 minus the 201 of its POST.

    One sampler thread polls every pending id in turn, then pauses 10 ms: at most one GET in flight, so
    sampling adds little load; the resolution is one round (reported as round_ms)."""
    run = uuid.uuid4().hex[:8]
    total = int(rate * seconds)
    numbers = itertools.count()
    tally = Tally()
    post_ms: list[float] = []
    lags: list[float] = []
    lost: list[str] = []
    rounds: list[float] = []
    pending: list[tuple[str, float]] = []
    lock = threading.Lock()
    sending_done = threading.Event()
    started = time.perf_counter() + 0.2

    def sender() -> None:
        client = Client(*base, token)
        while not STOP.is_set():
            number = next(numbers)
            if number >= total:
                break
            due = started + number / rate
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            sent = time.perf_counter()
            try:
                status, body = client.request("POST", "/v1/customers", registration(run, number))
            except (http.client.HTTPException, OSError) as exc:
                tally.error(f"{type(exc).__name__}: {exc}")
                continue
            accepted = time.perf_counter()
            tally.count(status)
            if status != 201:
                continue
            with lock:
                post_ms.append((accepted - sent) * 1000)
                if number % every == 0:
                    pending.append((json.loads(body)["id"], accepted))
        client.close()

    def sampler() -> None:
        client = Client(*base, token)
        while not STOP.is_set():
            with lock:
                batch = list(pending)
            if not batch:
                if sending_done.is_set():
                    break
                time.sleep(0.01)
                continue
            round_started = time.perf_counter()
            for customer_id, accepted in batch:
                try:
                    status, _ = client.request("GET", f"/v1/customers/{customer_id}/360")
                except (http.client.HTTPException, OSError):
                    status = -1
                now = time.perf_counter()
                if status == 200 or now > accepted + give_up:
                    with lock:
                        pending.remove((customer_id, accepted))
                        if status == 200:
                            lags.append((now - accepted) * 1000)
                        else:
                            lost.append(customer_id)
            rounds.append((time.perf_counter() - round_started) * 1000)
            time.sleep(0.01)
        client.close()

    send_threads = [threading.Thread(target=sender, daemon=True) for _ in range(senders)]
    sample_thread = threading.Thread(target=sampler, daemon=True)
    for thread in [*send_threads, sample_thread]:
        thread.start()
    for thread in send_threads:
        thread.join(timeout=seconds + 120)
    sent_for = time.perf_counter() - started
    sending_done.set()
    sample_thread.join(timeout=give_up + 30)
    return {"target_rate": rate, "commands": total, "accepted": len(post_ms),
            "achieved_rate": round(len(post_ms) / sent_for, 1) if sent_for else 0.0,
            "post_p50_ms": _ms(percentile(post_ms, 50)), "post_p99_ms": _ms(percentile(post_ms, 99)),
            "sampled": len(lags) + len(lost), "lag_p50_ms": _ms(percentile(lags, 50)),
            "lag_p99_ms": _ms(percentile(lags, 99)), "lag_max_ms": _ms(max(lags) if lags else None),
            "round_ms": {"p50": _ms(percentile(rounds, 50)), "p99": _ms(percentile(rounds, 99)), "rounds": len(rounds)},
            "not_visible_within_s": {"seconds": give_up, "count": len(lost)},
            "statuses": tally.statuses, "errors": tally.errors}


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


# ------------------------------------------------------------------------------------- seeding


CONSENT_CHANNELS = ("email", "phone", "sms", "post")


def seed_events(events: int, batch_customers: int = 200) -> dict[str, Any]:
    """Write `events` published customer events straight into the customer service's event store
    (a registration and four consents per customer, with the email claims), in batches of one
    transaction; the running relay publishes them. Returns the log position to wait for."""
    from crm_customer.application import Customers
    from crm_customer.domain import Customer, EmailClaim

    per_customer = 1 + len(CONSENT_CHANNELS)
    customers = max(1, events // per_customer)
    app = Customers(create_table=False)
    run = uuid.uuid4().hex[:8]
    written = 0
    started = time.perf_counter()
    try:
        for first in range(0, customers, batch_customers):
            claims, batch = [], []
            for number in range(first, min(customers, first + batch_customers)):
                email = f"seed-{run}-{number}@example.com"
                customer = Customer.register(f"Seed Customer {number}", email, None, "Seed Ltd", "import")
                at = datetime.now(UTC)
                for channel in CONSENT_CHANNELS:
                    customer.record_consent(channel, number % 2 == 0, "bench", at)
                claims.append(EmailClaim.create(app.claim_id(EmailClaim, email), customer.id))
                batch.append(customer)
            app.save(*claims, *batch)  # customers last: the log ends on a published event
            written += len(batch) * per_customer
        head = app.recorder.max_notification_id() or 0
    finally:
        app.close()
    elapsed = time.perf_counter() - started
    return {"customers": customers, "events": written, "seconds": round(elapsed, 2),
            "per_second": round(written / elapsed, 1) if elapsed else 0.0, "head": head}


def positions(settings: Settings) -> tuple[int, int]:
    """(the customer relay's last published position, customer360's applied position for customer)."""
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(last_published), 0) FROM customer.outbox_cursor")
            relay = int(cur.fetchone()[0])
            cur.execute("SELECT coalesce(max(position), 0) FROM customer360.inbox_tracking WHERE origin = 'customer'")
            view = int(cur.fetchone()[0])
            return relay, view
    finally:
        conn.close()


def view_applied(settings: Settings) -> int:
    """How many customer events customer360 has applied (its inbox tracking counts them all)."""
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT coalesce(max(applied), 0) FROM customer360.inbox_tracking WHERE origin = 'customer'")
            return int(cur.fetchone()[0])
    finally:
        conn.close()


def wait_caught_up(settings: Settings, head: int, timeout: float) -> dict[str, Any]:
    """Wait until the relay has published and customer360 applied the customer log up to `head` (the view
    may get there first: it pulls what it misses from the feed); when each got there."""
    started = time.perf_counter()
    relay_done = view_done = None
    last_report = started
    while True:
        relay, view = positions(settings)
        now = time.perf_counter()
        if relay_done is None and relay >= head:
            relay_done = now - started
        if view_done is None and view >= head:
            view_done = now - started
        if relay_done is not None and view_done is not None:
            break
        if now - started > timeout:
            break
        if now - last_report > 10:
            log(f"  waiting for the 360 view: relay at {relay}, view at {view}, head {head}")
            last_report = now
        time.sleep(0.25)
    return {"relay_done_after_s": _round(relay_done), "view_done_after_s": _round(view_done),
            "caught_up": view_done is not None}


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def rebuild(settings: Settings, timeout: float) -> dict[str, Any]:
    """Ask customer360 to rebuild its view from every origin's feed; its own report."""
    warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")
    from nameko.standalone.rpc import ClusterRpcProxy

    import crm_runtime.nameko.rpc  # noqa: F401 - rebuilds ServiceError on this side

    with ClusterRpcProxy({"AMQP_URI": settings.amqp_uri, "serializer": "json"}, timeout=timeout) as proxy:
        started = time.perf_counter()
        report = proxy.customer360.rebuild()
        report["wall_seconds"] = round(time.perf_counter() - started, 2)
    return report
