"""The chaos run: at least 2,000 registrations by clients that retry with their Idempotency-Key, while
the supervisor's processes are SIGKILLed (customer, customer360, gateway; restarted by the supervisor),
RabbitMQ "stops and starts" and PostgreSQL "restarts". Afterwards every accepted registration is in the
360 view exactly once and a rebuild changes nothing.

The outages are played by cutting every connection through this test's own TCP proxies (the platform's
AMQP_URI and POSTGRES_PORT point at them); the shared servers behind them are never touched. The
proxies run in plain-Python processes of their own, so forwarding the platform's whole traffic never
competes with this (eventlet) process and its load generator for a core.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from conftest import rabbit_vhost
from tests.support.clients import Outcome, RetryingClient
from tests.support.databases import query
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually
from tests.support.proxy import OutageProxyProcess

pytestmark = pytest.mark.chaos

CHAOS_PORT = int(os.environ.get("CRM_CHAOS_GATEWAY_PORT", "18300"))
MIN_REGISTRATIONS = 2000
MAX_REGISTRATIONS = 4000
RATE = 50  # registrations offered per second: the load spans every fault, then goes on to the minimum
CLIENTS = 16
KILLED = ("customer", "customer360", "gateway")


@pytest.fixture(scope="module")
def proxied_platform(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningPlatform, OutageProxyProcess, OutageProxyProcess]]:
    """customer, customer360 and the gateway under a supervisor that restarts them, reaching RabbitMQ
    and PostgreSQL only through the broker and database proxies yielded beside it."""
    broker_url = urlparse(infra.amqp_uri)
    with rabbit_vhost(infra, "crm_chaos") as vhost:
        broker = OutageProxyProcess(broker_url.hostname or "127.0.0.1", broker_url.port or 5672)
        database = OutageProxyProcess(infra.postgres["host"], int(infra.postgres["port"]))
        proxied_vhost = vhost.replace(broker_url.netloc.split("@")[-1], f"127.0.0.1:{broker.port}", 1)
        try:
            with platform_of_its_own(
                infra, Path(tmp_path_factory.mktemp("chaos")), label="chaos", amqp_uri=vhost,
                gateway_port=CHAOS_PORT, service_base_port=CHAOS_PORT + 1,
                settings={"CRM_SERVICES": ",".join(KILLED), "CRM_RESTART": "on"},
                platform_env={"AMQP_URI": proxied_vhost, "POSTGRES_HOST": "127.0.0.1",
                              "POSTGRES_PORT": str(database.port)},
            ) as running:
                yield running, broker, database
        finally:
            broker.close()
            database.close()


class Chaos:
    """The faults, one after another, each once the platform has recovered from the one before."""

    def __init__(self, running: RunningPlatform, broker: OutageProxyProcess, database: OutageProxyProcess) -> None:
        self.platform = running.platform
        self.broker, self.database = broker, database
        self.done = threading.Event()
        self.log: list[str] = []
        self.crashed_in_outages: dict[str, int] = {}
        self.started = time.monotonic()

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {what}")

    def run(self) -> None:
        try:
            for name in KILLED:
                time.sleep(3)
                before = self.platform.restarts(name)
                self.platform.signal(name, signal.SIGKILL)
                self.note(f"SIGKILL {name}")
                eventually(lambda name=name, before=before: self.platform.restarts(name) > before, timeout=30)
                self.platform.wait_ready(timeout=90)
                self.note(f"{name} restarted and ready")
            self.outage("RabbitMQ stopped", self.broker, seconds=3)
            self.outage("PostgreSQL restarted", self.database, seconds=1)
            time.sleep(3)
        finally:
            self.done.set()

    def outage(self, what: str, proxy: OutageProxyProcess, seconds: float) -> None:
        time.sleep(3)
        before = {name: self.platform.restarts(name) for name in self.platform.processes}
        proxy.cut()
        self.note(what)
        time.sleep(seconds)
        proxy.restore()
        self.platform.wait_ready(timeout=90)
        self.note(f"{what}: back, every process ready")
        for name, count in before.items():
            if self.platform.restarts(name) > count:
                self.crashed_in_outages[f"{name} ({what})"] = self.platform.restarts(name) - count


def stuck_sessions(running: RunningPlatform) -> list[tuple[Any, ...]]:
    """The platform's database sessions that hold a transaction open while idle, or wait on a lock: what
    a request or a consumer that never finishes is usually waiting for (printed when a check fails)."""
    return query(running.env, None, """
        SELECT pid, state, wait_event_type, wait_event, pg_blocking_pids(pid),
               round(extract(epoch FROM now() - xact_start)), left(query, 200)
          FROM pg_stat_activity
         WHERE datname = %s AND pid <> pg_backend_pid()
           AND (state LIKE 'idle in transaction%%' OR wait_event_type = 'Lock')""",
        (running.env["POSTGRES_DBNAME"],))


def load(client: RetryingClient, until: Callable[[], bool]) -> list[Outcome]:
    """Registrations at RATE per second by CLIENTS retrying clients, at least MIN_REGISTRATIONS and on
    until `until()` holds."""
    outcomes: list[Outcome] = []
    numbers = itertools.count()
    started = time.monotonic()

    def client_loop() -> None:
        while True:
            i = next(numbers)
            if i >= MAX_REGISTRATIONS or (i >= MIN_REGISTRATIONS and until()):
                return
            time.sleep(max(0.0, started + i / RATE - time.monotonic()))
            outcomes.append(client.register(name=f"Chaos {i}"))

    with ThreadPoolExecutor(CLIENTS) as pool:
        for running in [pool.submit(client_loop) for _ in range(CLIENTS)]:
            running.result()
    return outcomes


def test_registrations_survive_killed_processes_and_broker_and_database_outages(
    proxied_platform: tuple[RunningPlatform, OutageProxyProcess, OutageProxyProcess],
) -> None:
    running, broker, database = proxied_platform
    client = RetryingClient(running.gateways, running.token, deadline=150)
    chaos = Chaos(running, broker, database)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as background:
        faults = background.submit(chaos.run)
        outcomes = load(client, chaos.done.is_set)
        faults.result()
    accepted = {o.body["id"] for o in outcomes if o.accepted}
    print(f"{len(outcomes)} registrations in {time.monotonic() - started:.0f}s, {len(accepted)} accepted; "
          f"retries by cause {dict(client.retried)}; restarts "
          f"{ {name: running.platform.restarts(name) for name in running.platform.processes} }",
          *chaos.log, sep="\n  ")
    assert len(outcomes) >= MIN_REGISTRATIONS
    assert len(accepted) == sum(o.accepted for o in outcomes), "two keys were answered with one customer"

    def exactly_once() -> bool:
        viewed, stored = running.viewed_events(), running.stored_events()
        missing = accepted - set(viewed)
        assert not missing, (f"{len(missing)} accepted registrations not in the 360 view (yet); stuck "
                             f"sessions: {stuck_sessions(running)}")
        assert viewed == stored, "the 360 view's customers differ from the customer service's"
        assert set(viewed.values()) == {1}, "an event was applied more than once"
        return True

    eventually(exactly_once, timeout=120, interval=2)
    duplicates = query(running.env, "customer360", "SELECT customer_id, event_id FROM timeline "
                                                   "GROUP BY customer_id, event_id HAVING count(*) > 1")
    assert duplicates == [], "timeline entries applied twice"
    assert running.rebuild_changes_nothing() >= len(accepted)

    unanswered = [(o.key, o.status, o.body) for o in outcomes if not o.accepted]
    assert unanswered == [], (f"{len(unanswered)} registrations never answered 2xx: {unanswered[:5]}; "
                              f"stuck sessions: {stuck_sessions(running)}")
    assert len(running.stored_events()) == len(outcomes), "a retried registration registered twice"
    assert chaos.crashed_in_outages == {}, "a dependency's outage killed a process (the supervisor restarted it)"
