"""The inbox and its queue consumer on real PostgreSQL and RabbitMQ: exactly-once effect, in order,
gaps pulled from the origin's feed, failures dead-lettered with their reason and never acked away."""

from __future__ import annotations

import json
import uuid

import kombu
import pytest

from crm_contracts.envelope import DEAD_LETTER_EXCHANGE, EXCHANGE
from crm_customer360 import readmodel
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.inbox import Inbox
from tests.support.databases import dsn, query
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


@pytest.fixture
def feed_of(customers):
    from crm_customer.publishing import translator
    from crm_runtime.feed import EventFeed

    feed = EventFeed(customers, translator)
    calls = []

    def fetch(origin, position, limit):
        calls.append((origin, position))
        return feed.events_since(position, limit)

    fetch.calls = calls
    fetch.feed = feed
    return fetch


def view_rows(test_database, schema):
    return query(test_database, schema, "SELECT customer_id::text, doc FROM customer_view ORDER BY customer_id")


def timeline_count(test_database, schema):
    return query(test_database, schema, "SELECT count(*) FROM timeline")[0][0]


def test_duplicates_change_nothing(customers, feed_of, read_schema, test_database):
    customers.register("Li Na", "li.na@example.com")
    envelopes = feed_of.feed.events_since(0, 100)
    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, feed_of)
    first = inbox.receive(envelopes)
    before = view_rows(test_database, read_schema)
    again = inbox.receive(envelopes + envelopes)
    assert (first.applied, again.applied, again.duplicates) == (1, 0, 2)
    assert view_rows(test_database, read_schema) == before
    assert timeline_count(test_database, read_schema) == 1


def test_a_gap_is_pulled_from_the_origin_feed(customers, feed_of, read_schema, test_database):
    for i in range(4):
        customers.register(f"Customer {i}", f"c{i}@example.com")
    envelopes = feed_of.feed.events_since(0, 100)
    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, feed_of)
    outcome = inbox.receive([envelopes[3]])  # the first three were lost on the way
    assert (outcome.applied, outcome.pulled, outcome.duplicates) == (4, 4, 1)  # the pull overlaps it
    assert feed_of.calls == [("customer", 0)]
    assert inbox.positions() == {"customer": envelopes[3]["position"]}
    assert len(view_rows(test_database, read_schema)) == 4


def test_out_of_order_delivery_is_applied_in_order(customers, feed_of, read_schema, test_database):
    customer = customers.register("Li Na", "li.na@example.com")
    customers.change_profile(customer.id, None, {"name": "Li Na (Acme)"})
    registered, renamed = feed_of.feed.events_since(0, 100)
    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    outcome = inbox.receive([renamed, registered])
    assert outcome.applied == 2
    (row,) = view_rows(test_database, read_schema)
    assert row[1]["profile"]["name"] == "Li Na (Acme)"


def test_an_unreachable_feed_defers_the_gap_and_applies_nothing_out_of_order(customers, read_schema, test_database):
    from crm_customer.publishing import translator
    from crm_runtime.feed import EventFeed

    for i in range(2):
        customers.register(f"Customer {i}", f"c{i}@example.com")
    envelopes = EventFeed(customers, translator).events_since(0, 100)

    def broken_fetch(origin, position, limit):
        raise ConnectionError("customer service is down")

    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, broken_fetch)
    outcome = inbox.receive([envelopes[1]])
    assert (outcome.applied, outcome.deferred) == (0, 1)
    assert view_rows(test_database, read_schema) == []


def test_a_failing_handler_reports_the_events_and_other_origins_still_apply(
    customers, feed_of, read_schema, test_database
):
    customers.register("Li Na", "li.na@example.com")
    good = feed_of.feed.events_since(0, 100)
    poison = {**good[0], "origin": "order", "type": "order_paid", "position": 1, "previous": 0,
              "event_id": str(uuid.uuid4()), "occurred_at": "not a time"}

    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, feed_of)
    outcome = inbox.receive(good + [poison])
    assert outcome.applied == 1
    assert [failure.envelope["origin"] for failure in outcome.failed] == ["order"]
    assert "order" not in inbox.positions() or inbox.positions()["order"] == 0


def test_the_consumer_acks_after_commit_and_dead_letters_poison_with_its_reason(
    customers, relay, read_schema, test_database, amqp_vhost, running
):
    queue = f"test-360-{uuid.uuid4().hex[:6]}"
    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    consumer = EnvelopeConsumer(inbox, amqp_vhost, queue, ["customer.#", "order.#"], retry_delays=(0.05,))
    running(consumer)
    eventually(lambda: consumer.stats.connected)
    running(relay)
    for i in range(20):
        customers.register(f"Customer {i}", f"c{i}@example.com")
    eventually(lambda: len(view_rows(test_database, read_schema)) == 20)

    with kombu.Connection(amqp_vhost) as connection:
        producer = connection.Producer(exchange=kombu.Exchange(EXCHANGE, "topic", durable=True))
        producer.publish(json.dumps({"origin": "order", "type": "order_paid"}), routing_key="order.order_paid",
                         content_type="application/json")
        dead = kombu.Queue(f"{queue}.dead-letter", kombu.Exchange(DEAD_LETTER_EXCHANGE, "topic"), routing_key=queue)
        message = eventually(lambda: dead(connection.channel()).get(no_ack=True))
        assert "malformed envelope" in message.headers["x-reason"]
        assert json.loads(message.body)["type"] == "order_paid"
        main = kombu.Queue(queue)(connection.channel())
        assert main.queue_declare(passive=True).message_count == 0  # all acked, none lost in flight
        main.delete()
        dead(connection.channel()).delete()
    assert consumer.stats.dead_lettered == 1 and consumer.stats.applied == 20
