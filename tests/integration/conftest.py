"""Integration level: real PostgreSQL and RabbitMQ, the runtime's pieces wired by hand in this process.

Real: the customer application on PostgreSQL (a fresh schema per test), the relay publishing to a
RabbitMQ virtual host of this session's, the inbox writing a real read model. Replaced: nothing but
the nameko process around them (the end-to-end tests cover that).
"""

from __future__ import annotations

import json
import threading
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
