"""Poison in the outbox: an event that can never be translated, or that the broker keeps refusing,
is parked where an operator sees it, and the events behind it flow on."""

from __future__ import annotations

import kombu
import pytest

from crm_contracts.envelope import EXCHANGE
from crm_customer.publishing import translator
from crm_runtime.feed import EventFeed
from tests.integration.test_outbox_relay import cursor_of, publish_all, register
from tests.support.databases import query
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


class RaisingTranslator:
    """The customer service's publishing.py, broken for one customer's events (a bug in a translation)."""

    def __init__(self, poisoned_name: str) -> None:
        self.origin = translator.origin
        self.poisoned_name = poisoned_name

    def translate(self, domain_event):
        if getattr(domain_event, "name", None) == self.poisoned_name:
            raise ValueError("cannot translate this one")
        return translator.translate(domain_event)


def parked_rows(database, schema):
    """What an operator sees: the relay's parked events."""
    return query(database, schema, f'SELECT position, topic, reason FROM "{schema}".outbox_parked ORDER BY position')  # noqa: S608


def position_of(customers, customer_id, version=1):
    """The notification id of one of a customer's events."""
    for notification in customers.recorder.select_notifications(start=1, limit=10_000):
        if notification.originator_id == customer_id and notification.originator_version == version:
            return notification.id
    raise AssertionError(f"no event {customer_id} v{version}")


@pytest.mark.parametrize("poison", ["translator raises", "state cannot be decoded"])
def test_an_untranslatable_event_is_parked_and_skipped_by_relay_and_feed_alike(
    customers, relay, probe, test_database, postgres_schema, poison
):
    before = register(customers, 2, "before")
    bad = customers.register("Poison Pill", "poison@example.com")
    after = register(customers, 2, "after")
    bad_position = position_of(customers, bad.id)
    if poison == "translator raises":
        relay.feed = EventFeed(customers, RaisingTranslator("Poison Pill"))
    else:
        query(test_database, postgres_schema,
              f'UPDATE "{postgres_schema}".{customers.recorder.events_table_name} '  # noqa: S608 - test's own schema
              "SET state = 'not json at all' WHERE notification_id = %s", (bad_position,))

    publish_all(relay)

    received = probe.drain()
    assert [e["customer_id"] for e in received] == [str(c.id) for c in [*before, *after]]
    positions = [e["position"] for e in received]
    assert [e["previous"] for e in received] == [0, *positions[:-1]], "the chain goes around the poison"
    assert relay.feed.events_since(0, 100) == received, "the feed serves consumers exactly what was published"
    assert cursor_of(relay) == (customers.recorder.max_notification_id(), positions[-1])
    [(position, topic, reason)] = parked_rows(test_database, postgres_schema)
    assert position == bad_position and topic.endswith("Customer.Registered") and reason
    assert relay.stats.parked == 1 and relay.stats.published == 4


class RejectingQueue:
    """A queue that takes no message (max length 0, reject-publish): the broker nacks what it routes there."""

    def __init__(self, amqp_uri: str, routing_key: str) -> None:
        self.connection = kombu.Connection(amqp_uri)
        self.queue = kombu.Queue(
            "rejecting", kombu.Exchange(EXCHANGE, "topic", durable=True), routing_key=routing_key,
            queue_arguments={"x-max-length": 0, "x-overflow": "reject-publish"},
        )(self.connection.channel())
        self.queue.declare()

    def close(self) -> None:
        self.queue.delete()
        self.connection.close()


def test_a_message_the_broker_keeps_refusing_is_parked_and_consumers_repair_the_gap(
    customers, relay, probe, running, amqp_vhost, test_database, postgres_schema
):
    rejecting = RejectingQueue(amqp_vhost, "customer.customer_profile_changed")
    try:
        first = customers.register("First", "first@example.com")
        customers.change_profile(first.id, None, {"name": "First Renamed"})  # the broker will nack this one
        second = customers.register("Second", "second@example.com")
        refused_position = position_of(customers, first.id, version=2)
        running(relay)
        eventually(lambda: cursor_of(relay)[0] == customers.recorder.max_notification_id())
    finally:
        rejecting.close()

    [(position, topic, reason)] = parked_rows(test_database, postgres_schema)
    assert position == refused_position and topic == "customer_profile_changed" and "nack" in reason
    assert relay.stats.parked == 1 and relay.stats.errors >= 2  # refused in batch twice, then one by one
    received = {e["event_id"]: e for e in probe.drain()}  # the batch retries delivered duplicates
    last = next(e for e in received.values() if e["customer_id"] == str(second.id))
    assert last["previous"] == refused_position, "the refused event stays in the chain ..."
    repaired = relay.feed.events_since(position_of(customers, first.id), 10)
    assert [e["position"] for e in repaired] == [refused_position, last["position"]], "... so gap repair pulls it"
    assert repaired[1] == last
