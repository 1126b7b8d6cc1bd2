"""The outbox relay against real PostgreSQL and RabbitMQ: at least once, in order, same ids."""

from __future__ import annotations

import psycopg2
import pytest

from crm_runtime.relay import ConfirmingPublisher, OutboxRelay
from tests.support.databases import dsn
from tests.support.infrastructure import rabbit_vhost
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


def register(customers, n, prefix="c"):
    return [customers.register(f"Customer {i}", f"{prefix}{i}@example.com") for i in range(n)]


def cursor_of(relay):
    conn = psycopg2.connect(relay.dsn)
    conn.autocommit = True
    try:
        return relay._cursor(conn)
    finally:
        conn.close()


def publish_all(relay):
    conn = psycopg2.connect(relay.dsn)
    conn.autocommit = True
    try:
        while relay.publish_pending(conn):
            pass
    finally:
        conn.close()


def test_every_event_is_published_once_in_log_order_with_a_previous_chain(customers, relay, probe):
    register(customers, 120)
    publish_all(relay)
    received = probe.drain()
    assert [e["type"] for e in received] == ["customer_registered"] * 120
    positions = [e["position"] for e in received]
    assert positions == sorted(positions)
    assert [e["previous"] for e in received] == [0, *positions[:-1]]
    assert cursor_of(relay) == (customers.recorder.max_notification_id(), positions[-1])
    assert relay.stats.batches == 3  # 120 envelopes (240 log entries) in batches of 50 envelopes


def test_a_relay_that_died_before_moving_its_cursor_republishes_the_same_envelopes(customers, relay, probe):
    register(customers, 5)
    page = relay.feed.read(0, 50)
    relay.publisher.publish(page.envelopes)  # published and confirmed, then "killed": cursor unmoved
    publish_all(relay)  # the restarted relay
    received = probe.drain()
    assert len(received) == 10
    assert received[:5] == received[5:]  # byte-for-byte the same envelopes, same event ids


def test_only_one_relay_per_service_is_leader(customers, relay, test_database, postgres_schema, amqp_vhost, running):
    rival = OutboxRelay(relay.feed, dsn(test_database), postgres_schema, amqp_vhost, poll_interval=0.2)
    running(relay)
    eventually(lambda: relay.stats.is_leader)
    running(rival)
    register(customers, 3)
    eventually(lambda: relay.stats.published == 3)
    assert not rival.stats.is_leader and rival.stats.published == 0


def test_the_relay_wakes_on_commit_not_on_its_poll(customers, relay, probe, running):
    relay.poll_interval = 60.0  # only the event store's NOTIFY can wake it in time
    running(relay)
    eventually(lambda: relay.stats.is_leader)
    customer = customers.register("Li Na", "li.na@example.com")
    received = eventually(probe.drain, timeout=10)
    assert received[0]["customer_id"] == str(customer.id)


def test_events_nobody_subscribes_to_are_counted_as_unroutable(customers, relay, infra):
    with rabbit_vhost(infra, "crm_empty") as empty_broker:  # no queue bound to anything
        relay.publisher = ConfirmingPublisher(empty_broker)
        register(customers, 2)
        publish_all(relay)
        relay.publisher.close()
    assert relay.stats.unroutable == 2 and relay.stats.published == 2
