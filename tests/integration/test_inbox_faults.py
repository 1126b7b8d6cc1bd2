"""Faults in a dependency degrade the 360 side, never kill it: a PostgreSQL restart (every backend
terminated) under the inbox and the read pool, and a broker connection kept honest by heartbeats."""

from __future__ import annotations

import sys
import uuid
from typing import Any

import kombu
import pytest

from crm_customer360 import readmodel
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.inbox import Inbox
from crm_runtime.nameko.dependencies import PostgresCursor
from tests.integration.conftest import terminate_other_backends
from tests.support.databases import dsn, query
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def test_the_inbox_reconnects_after_a_database_restart(disposable_read_schema, test_database, envelopes):
    schema = disposable_read_schema
    customer_id = str(uuid.uuid4())
    inbox = Inbox(dsn(test_database, schema), readmodel.apply_batch, fetch=None)
    assert inbox.receive([envelopes.registered(customer_id)]).applied == 1

    assert terminate_other_backends(test_database) >= 1  # the inbox's connection among them
    outcome = inbox.receive([envelopes.renamed(customer_id, "Li Na (Acme)")])

    assert (outcome.applied, outcome.failed) == (1, [])  # the very next use, not a retry later
    assert query(test_database, schema, "SELECT name FROM customer_view") == [("Li Na (Acme)",)]
    inbox.close()


@pytest.fixture
def read_pool(disposable_read_schema, test_database, monkeypatch) -> Any:
    """customer360's PostgresCursor provider, set up on the test database as nameko would."""
    for key, value in test_database.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("READ_POOL_SIZE", "2")
    provider = PostgresCursor(disposable_read_schema)
    provider.setup()
    yield provider
    provider.stop()


def run_worker(provider: PostgresCursor, work: Any) -> Any:
    """What nameko does around one worker: inject, run, report the result (which must never raise)."""
    worker_ctx = object()
    cursor = provider.get_dependency(worker_ctx)
    try:
        result = work(cursor)
    except Exception:  # noqa: BLE001 - handed to worker_result as nameko does
        provider.worker_result(worker_ctx, None, sys.exc_info())
        raise
    provider.worker_result(worker_ctx, result, None)
    return result


def search(cursor: Any) -> Any:
    return readmodel.search(cursor, "", 1, 10)["total"]


def test_the_read_pool_discards_connections_a_database_restart_closed(read_pool, test_database):
    assert [run_worker(read_pool, search) for _ in range(3)] == [0, 0, 0]
    terminate_other_backends(test_database)

    assert run_worker(read_pool, search) == 0  # the stale pooled connection was never handed out
    assert read_pool.health_check()["ok"] is True


def test_a_connection_lost_in_the_middle_of_a_worker_does_not_escape_it(read_pool, test_database):
    def cut_then_query(cursor: Any) -> Any:
        search(cursor)
        terminate_other_backends(test_database)
        return search(cursor)

    with pytest.raises(Exception, match="terminat|closed"):  # the call fails: the caller sees an error
        run_worker(read_pool, cut_then_query)

    def committed_after_a_cut(cursor: Any) -> Any:
        search(cursor)
        terminate_other_backends(test_database)  # the commit in worker_result meets a dead connection

    for _ in range(3):  # more workers than slots: every slot came back
        run_worker(read_pool, committed_after_a_cut)
    assert read_pool._available._value == 2
    assert run_worker(read_pool, search) == 0


def test_the_inbox_consumer_heartbeats_its_broker_connection(read_schema, test_database, amqp_vhost, running,
                                                             monkeypatch):
    negotiated: list[int] = []
    check = kombu.Connection.heartbeat_check

    def spy(self: kombu.Connection, rate: int = 2) -> Any:
        negotiated.append(self.connection.heartbeat)
        return check(self, rate)

    monkeypatch.setattr(kombu.Connection, "heartbeat_check", spy)
    monkeypatch.setenv("AMQP_HEARTBEAT", "1")
    queue = f"test-heartbeat-{uuid.uuid4().hex[:6]}"
    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    consumer = EnvelopeConsumer(inbox, amqp_vhost, queue, ["customer.#"])
    running(consumer)
    eventually(lambda: consumer.stats.connected)
    eventually(lambda: len(negotiated) >= 3, timeout=10)

    assert set(negotiated) == {1}  # the broker agreed to a 1 s heartbeat, and it is checked
    # Idle for several heartbeat intervals (checked every 0.25 s): a silent connection would be closed.
    eventually(lambda: len(negotiated) >= 20, timeout=15)
    assert consumer.stats.connected and consumer.stats.connections == 1
    with kombu.Connection(amqp_vhost) as connection:
        for name in (queue, f"{queue}.dead-letter"):
            kombu.Queue(name)(connection.channel()).delete()
