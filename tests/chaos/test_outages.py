"""A broker or database outage delays events but loses none, and applies none twice."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import uuid
from urllib.parse import urlparse

import kombu
import pytest

from crm_customer.application import Customers
from crm_customer360 import readmodel
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.inbox import Inbox
from crm_runtime.relay import OutboxRelay
from tests.support.databases import dsn, query
from tests.support.polling import eventually
from tests.support.proxy import OutageProxy, OutageProxyProcess

pytestmark = pytest.mark.chaos


@pytest.fixture
def broker_proxy(amqp_vhost):
    url = urlparse(amqp_vhost)
    proxy = OutageProxy(url.hostname, url.port or 5672)
    yield proxy, amqp_vhost.replace(f"{url.hostname}:{url.port or 5672}", f"127.0.0.1:{proxy.port}")
    proxy.close()


@pytest.fixture
def database_proxy(test_database):
    proxy = OutageProxy(test_database["POSTGRES_HOST"], int(test_database["POSTGRES_PORT"]))
    yield proxy, {**test_database, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(proxy.port)}
    proxy.close()


def register(customers, n):
    return [customers.register(f"C {i}", f"{uuid.uuid4().hex}@example.com").id for i in range(n)]


def test_a_broker_outage_delays_publishing_and_loses_nothing(
    customers, relay, probe, broker_proxy, test_database, postgres_schema, running
):
    proxy, proxied_uri = broker_proxy
    relay = OutboxRelay(relay.feed, relay.dsn, postgres_schema, proxied_uri, batch_size=20, poll_interval=0.2)
    running(relay)
    first = register(customers, 10)
    eventually(lambda: relay.stats.published == 10)
    proxy.cut()
    during = register(customers, 30)
    eventually(lambda: relay.stats.last_error is not None, timeout=30)
    time.sleep(1)
    proxy.restore()
    eventually(lambda: relay.stats.published >= 40, timeout=30)
    received = probe.drain()
    ids = {e["customer_id"] for e in received}
    assert ids == {str(i) for i in first + during}  # at least once: nothing lost
    positions = sorted({e["position"] for e in received})
    assert [e["previous"] for e in sorted({e["position"]: e for e in received}.values(),
                                          key=lambda e: e["position"])] == [0, *positions[:-1]]


def test_a_database_outage_under_the_consumer_delays_the_view_and_applies_each_event_once(
    customers, relay, database_proxy, amqp_vhost, test_database, read_schema, running
):
    proxy, proxied_env = database_proxy
    schema = read_schema
    queue = f"chaos-360-{uuid.uuid4().hex[:6]}"
    inbox = Inbox(dsn(proxied_env, schema), readmodel.apply_batch, fetch=None)
    consumer = EnvelopeConsumer(inbox, amqp_vhost, queue, ["customer.#"], retry_delays=(0.2, 0.5, 1.0, 2.0, 4.0))
    running(consumer)
    eventually(lambda: consumer.stats.connected)
    running(relay)
    register(customers, 10)
    eventually(lambda: consumer.stats.applied == 10)
    proxy.cut()
    register(customers, 25)
    time.sleep(1.5)
    proxy.restore()

    def converged():
        rows = query(test_database, schema, "SELECT (doc->'events'->>'customer')::int FROM customer_view")
        assert len(rows) == 35 and {r[0] for r in rows} == {1}
        return True

    eventually(converged, timeout=60)
    with kombu.Connection(amqp_vhost) as connection:
        for name in (queue, f"{queue}.dead-letter"):
            kombu.Queue(name)(connection.channel()).delete()



def test_after_a_database_outage_the_next_command_gets_a_connection(test_database, postgres_schema):
    """Every pooled connection of the event store dies in the outage; the next command after it must
    get a live one (the pool's check drops the dead ones). It once got none, ever again: the check
    refused them but left them open, so the pool kept handing them back. (The proxy runs in a process
    of its own, as in the platform's chaos run: psycopg 3 may block this process while it connects.)"""
    proxy = OutageProxyProcess(test_database["POSTGRES_HOST"], int(test_database["POSTGRES_PORT"]))
    app = Customers(env={**test_database, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(proxy.port),
                         "POSTGRES_SCHEMA": postgres_schema, "CREATE_TABLE": "true", "POSTGRES_POOL_SIZE": "2",
                         "POSTGRES_MAX_OVERFLOW": "0", "POSTGRES_CONNECT_TIMEOUT": "5"})
    try:
        pool = app.recorder.datastore.pool
        with pool.connection(), pool.connection():  # both connections open, then idle in the pool
            pass
        register(app, 2)
        proxy.cut()
        time.sleep(0.5)
        proxy.restore()
        with pool.connection(timeout=5) as conn:  # (it raised PoolTimeout here)
            assert conn.execute("SELECT 1").fetchone() is not None
        registered = register(app, 1)
        assert app.repository.get(registered[0]).version == 1
    finally:
        app.close()
        proxy.close()


#: A client that opens a transaction through the proxy, takes a lock in it, says so, and waits.
LOCKING_CLIENT = """
import sys, time, psycopg2
conn = psycopg2.connect(sys.argv[1])
cur = conn.cursor()
cur.execute("SELECT pg_backend_pid()")
print(cur.fetchone()[0], flush=True)
cur.execute("SELECT pg_advisory_xact_lock(%s)", (int(sys.argv[2]),))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_client_killed_behind_the_proxy_ends_its_database_session_and_its_locks(test_database):
    """A SIGKILLed process's connections end, and PostgreSQL rolls back what it left open; through
    the proxy too. (The proxy once kept the server side of such a connection open: the session stayed
    "idle in transaction" with its row locks for good, and one Idempotency-Key of the chaos run
    never got an answer.)"""
    proxy = OutageProxyProcess(test_database["POSTGRES_HOST"], int(test_database["POSTGRES_PORT"]))
    lock = uuid.uuid4().int % 2**62
    proxied = dsn({**test_database, "POSTGRES_HOST": "127.0.0.1", "POSTGRES_PORT": str(proxy.port)})
    client = subprocess.Popen([sys.executable, "-c", LOCKING_CLIENT, proxied, str(lock)],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert client.stdout is not None
        backend = int(client.stdout.readline())
        assert client.stdout.readline().strip() == "locked"
        client.send_signal(signal.SIGKILL)
        client.wait()

        def session_ended() -> bool:
            assert query(test_database, None, "SELECT state FROM pg_stat_activity WHERE pid = %s",
                         (backend,)) == []
            return True

        eventually(session_ended, timeout=20)
        assert query(test_database, None, "SELECT pg_try_advisory_lock(%s), pg_advisory_unlock(%s)",
                     (lock, lock)) == [(True, True)]
    finally:
        if client.poll() is None:
            client.kill()
            client.wait()
        proxy.close()
