"""A broker or database outage delays events but loses none, and applies none twice."""

from __future__ import annotations

import time
import uuid
from urllib.parse import urlparse

import kombu
import pytest

from crm_customer360 import readmodel
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.inbox import Inbox
from crm_runtime.relay import OutboxRelay
from tests.support.databases import dsn, query
from tests.support.polling import eventually
from tests.support.proxy import OutageProxy

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

