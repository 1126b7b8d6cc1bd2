"""ConfirmingPublisher alone: a batch succeeds only when each of its own messages was acked.

The broker is replaced by a script of confirms fed to the publisher's handlers, in the orders RabbitMQ
may really send them (out of order, `multiple`, a nack after later acks).
"""

from __future__ import annotations

import time

import pytest

from crm_runtime.relay import ConfirmingPublisher, PublishError


class ScriptedBroker:
    """Stands in for the connection and channel: takes publishes, and on each read delivers the next
    scripted confirm (("ack" | "nack" | "return", tag, multiple)) to the publisher's handlers."""

    def __init__(self, publisher: ConfirmingPublisher, script: list[tuple[str, int, bool]]) -> None:
        self.publisher = publisher
        self.script = list(script)
        self.published: list[str] = []

    def basic_publish(self, message, exchange, routing_key, mandatory):
        self.published.append(routing_key)

    def drain_events(self, timeout=None):
        if not self.script:
            time.sleep(min(timeout or 0.01, 0.01))
            raise TimeoutError()
        kind, tag, multiple = self.script.pop(0)
        if kind == "ack":
            self.publisher._on_ack(tag, multiple)
        elif kind == "nack":
            self.publisher._on_nack(tag, multiple)
        else:
            self.publisher._on_return(None, "crm.events", "customer.customer_registered", None)

    def close(self):
        pass

    def collect(self):
        pass


def envelopes(count):
    return [{"event_id": f"e{i}", "origin": "customer", "type": "customer_registered", "correlation_id": None,
             "position": i} for i in range(1, count + 1)]


def publish(script, count=3, already_sent=0):
    """Publish `count` envelopes against `script`; the publisher had sent `already_sent` before."""
    publisher = ConfirmingPublisher("amqp://unused", confirm_timeout=0.2, heartbeat=0)
    broker = ScriptedBroker(publisher, script)
    publisher.connection = publisher.channel = broker
    publisher._next_tag = already_sent
    publisher.publish(envelopes(count))
    return publisher


@pytest.mark.parametrize("script", [
    [("ack", 3, False), ("ack", 1, False), ("ack", 2, False)],
    [("ack", 3, True)],
    [("ack", 1, False), ("ack", 3, True)],
    [("ack", 2, True), ("ack", 3, False)],
], ids=["out-of-order", "one-multiple-ack", "single-then-multiple", "multiple-then-single"])
def test_a_batch_whose_every_message_was_acked_succeeds(script):
    publisher = publish(script)
    assert not publisher._outstanding


@pytest.mark.parametrize("script", [
    [("ack", 1, False), ("ack", 3, False)],  # the highest tag is no proof that tag 2 was confirmed
    [("ack", 2, False)],
], ids=["gap-below-the-highest-tag", "only-the-middle"])
def test_a_batch_with_an_unconfirmed_message_fails(script):
    with pytest.raises(PublishError) as failed:
        publish(script)
    assert not failed.value.refused  # unconfirmed, not refused: the connection is suspect


@pytest.mark.parametrize("script", [
    [("ack", 1, False), ("ack", 3, False), ("nack", 2, False)],  # a nack after later acks
    [("nack", 2, True), ("ack", 3, False)],  # a nack covering tags 1 and 2
    [("nack", 1, False), ("ack", 3, True)],
], ids=["late-nack", "multiple-nack", "nack-then-multiple-ack"])
def test_a_batch_with_a_nacked_message_fails_as_refused(script):
    with pytest.raises(PublishError) as failed:
        publish(script)
    assert failed.value.refused


def test_confirms_of_an_earlier_batch_do_not_confirm_this_one():
    # Tags 1-2 belonged to the previous batch; this batch is tags 3-5. A stray ack of 2 covers nothing.
    with pytest.raises(PublishError):
        publish([("ack", 2, True), ("ack", 3, False), ("ack", 5, False)], already_sent=2)
    publisher = publish([("ack", 2, True), ("ack", 5, True)], already_sent=2)
    assert not publisher._outstanding


def test_a_returned_message_is_counted_not_failed():
    publisher = publish([("return", 0, False), ("ack", 1, False), ("ack", 2, True)], count=2)
    assert publisher.returned == ["customer.customer_registered"]
