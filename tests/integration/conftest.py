"""Integration level: real PostgreSQL and RabbitMQ, the runtime's pieces wired by hand in this process.

Real: the customer application on PostgreSQL (a fresh schema per test), the relay publishing to a
RabbitMQ virtual host of this session's, the inbox writing a real read model. Replaced: nothing but
the nameko process around them (the end-to-end tests cover that).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import kombu
import psycopg2
import pytest

from crm_contracts.envelope import EXCHANGE
from crm_customer.application import Customers
from crm_customer.publishing import translator
from crm_customer360 import readmodel
from crm_runtime.feed import EventFeed
from crm_runtime.relay import OutboxRelay, create_cursor_table
from tests.support.databases import dsn

pytestmark = pytest.mark.integration


@pytest.fixture
def customers(test_database: dict[str, str], postgres_schema: str) -> Iterator[Customers]:
    """The customer application on its own fresh PostgreSQL schema, with the relay's cursor table."""
    app = Customers(env={**test_database, "POSTGRES_SCHEMA": postgres_schema, "CREATE_TABLE": "true"})
    conn = psycopg2.connect(dsn(test_database))
    with conn:
        create_cursor_table(conn, postgres_schema)
    conn.close()
    yield app
    app.close()


@pytest.fixture
def relay(customers: Customers, test_database: dict[str, str], postgres_schema: str, amqp_vhost: str) -> OutboxRelay:
    """An outbox relay for `customers`, publishing to this session's virtual host."""
    return OutboxRelay(
        EventFeed(customers, translator), dsn(test_database), postgres_schema, amqp_vhost, batch_size=50,
        poll_interval=0.2,
    )


class Probe:
    """A queue bound to every routing key of crm.events: what the broker really delivered."""

    def __init__(self, amqp_uri: str) -> None:
        self.connection = kombu.Connection(amqp_uri)
        self.channel = self.connection.channel()
        self.queue = kombu.Queue(
            f"probe-{uuid.uuid4().hex[:8]}", kombu.Exchange(EXCHANGE, "topic", durable=True), routing_key="#",
            auto_delete=False,
        )(self.channel)
        self.queue.declare()

    def drain(self) -> list[dict[str, Any]]:
        received = []
        while (message := self.queue.get(no_ack=True)) is not None:
            received.append(json.loads(message.body))
        return received

    def close(self) -> None:
        self.queue.delete()
        self.connection.close()


@pytest.fixture
def probe(amqp_vhost: str) -> Iterator[Probe]:
    found = Probe(amqp_vhost)
    yield found
    found.close()


@pytest.fixture
def running(request: pytest.FixtureRequest) -> Iterator[Any]:
    """Start `target.run(stopping)` in a background thread; stopped at teardown."""
    started: list[tuple[threading.Event, threading.Thread]] = []

    def start(target: Any) -> threading.Event:
        stopping = threading.Event()
        thread = threading.Thread(target=target.run, args=(stopping,), daemon=True)
        thread.start()
        started.append((stopping, thread))
        return stopping

    yield start
    for stopping, thread in started:
        stopping.set()
        thread.join(timeout=10)


@pytest.fixture
def read_schema(test_database):
    """A fresh schema holding the 360 read model and its tracking table."""
    schema = f"rm_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(dsn(test_database))
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"SET LOCAL search_path TO {schema}")
        readmodel.create_tables(cur)
    yield schema
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


class EnvelopeFactory:
    """Envelopes written by hand, each origin's positions and `previous` chained as a relay would."""

    def __init__(self) -> None:
        self.positions: dict[str, int] = {}

    def next(self, origin: str, type: str, customer_id: str | None, payload: dict[str, Any],
             occurred_at: str = "2026-01-05T10:00:00+00:00") -> dict[str, Any]:
        previous = self.positions.get(origin, 0)
        self.positions[origin] = previous + 1
        return {
            "event_id": str(uuid.uuid4()), "type": type, "version": 1, "origin": origin,
            "position": previous + 1, "previous": previous, "occurred_at": occurred_at,
            "customer_id": customer_id, "correlation_id": None, "causation_id": None, "payload": payload,
        }

    def registered(self, customer_id: str, name: str = "Li Na") -> dict[str, Any]:
        return self.next("customer", "customer_registered", customer_id, {
            "name": name, "email": "li.na@example.com", "phone": None, "company": None, "source_channel": "web"})

    def renamed(self, customer_id: str, name: str) -> dict[str, Any]:
        return self.next("customer", "customer_profile_changed", customer_id, {"changes": {"name": name}})

    def order_paid(self, customer_id: str) -> dict[str, Any]:
        return self.next("order", "order_paid", customer_id, {"order_id": str(uuid.uuid4())})


@pytest.fixture
def envelopes() -> EnvelopeFactory:
    """A factory of hand-written envelopes (no origin service needed)."""
    return EnvelopeFactory()


@pytest.fixture
def disposable_read_schema(test_database: dict[str, str]) -> Iterator[str]:
    """Like `read_schema`, but holding no connection open during the test: for tests that terminate
    every backend of the test database (a database restart as a client sees it)."""
    schema = f"rm_{uuid.uuid4().hex[:10]}"
    conn = psycopg2.connect(dsn(test_database))
    with conn, conn.cursor() as cur:
        cur.execute(f"CREATE SCHEMA {schema}")
        cur.execute(f"SET LOCAL search_path TO {schema}")
        readmodel.create_tables(cur)
    conn.close()
    yield schema
    conn = psycopg2.connect(dsn(test_database))
    with conn, conn.cursor() as cur:
        cur.execute(f"DROP SCHEMA {schema} CASCADE")
    conn.close()


def terminate_other_backends(env: dict[str, str]) -> int:
    """Cut every other connection to the test database, as a PostgreSQL restart would, and wait until
    they are gone; returns how many were cut."""
    conn = psycopg2.connect(dsn(env))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()")
            cut = int(cur.fetchone()[0])
            for _ in range(100):  # pg_terminate_backend only signals; the backends exit soon after
                cur.execute("SELECT count(*) FROM pg_stat_activity "
                            "WHERE datname = current_database() AND pid <> pg_backend_pid()")
                if cur.fetchone()[0] == 0:
                    break
                time.sleep(0.05)
        return cut
    finally:
        conn.close()
