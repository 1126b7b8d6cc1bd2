"""Consumes a service's queue on `crm.events` in batches and hands them to its Inbox.

One consumer per queue reads in broker order (one ordered stream, unlike nameko's concurrent event
handlers), acks a batch only after the inbox committed it, retries a failing batch with back-off, and
then dead-letters what still fails, with the reason, to `crm.dead-letter` (queue `<name>.dead-letter`).
Dead-lettered events are not lost: the inbox's tracking has not moved past them, so they are pulled
again from the origin's feed once the cause is fixed.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import kombu
from marshmallow import ValidationError

from crm_contracts.envelope import DEAD_LETTER_EXCHANGE, EXCHANGE, EnvelopeSchema
from crm_runtime.inbox import Inbox, Outcome

log = logging.getLogger(__name__)

_envelopes = EnvelopeSchema()


@dataclass
class ConsumerStats:
    """Counters exposed by health and metrics."""

    connected: bool = False
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    pulled: int = 0
    dead_lettered: int = 0
    last_error: str | None = None


def declare_queue(channel: Any, name: str, bindings: list[str], queue_type: str) -> kombu.Queue:
    """Declare the exchanges, the consumer's durable queue with its bindings, and its dead-letter queue."""
    events = kombu.Exchange(EXCHANGE, "topic", durable=True)
    dead = kombu.Exchange(DEAD_LETTER_EXCHANGE, "topic", durable=True)
    arguments = {"x-queue-type": queue_type}
    queue = kombu.Queue(
        name,
        bindings=[kombu.binding(events, routing_key=key) for key in bindings],
        durable=True,
        queue_arguments=arguments,
    )
    queue(channel).declare()
    kombu.Queue(f"{name}.dead-letter", dead, routing_key=name, durable=True, queue_arguments=arguments)(
        channel
    ).declare()
    return queue


class EnvelopeConsumer:
    """Reads envelopes from one queue and applies them through an Inbox, batch by batch."""

    def __init__(
        self,
        inbox: Inbox,
        amqp_uri: str,
        queue: str,
        bindings: list[str],
        *,
        queue_type: str = "classic",
        batch_size: int = 500,
        batch_wait: float = 0.02,
        retry_delays: tuple[float, ...] = (0.2, 1.0, 5.0),
        catch_up: Callable[[Inbox], None] | None = None,
        catch_up_interval: float = 30.0,
    ) -> None:
        self.inbox = inbox
        self.amqp_uri = amqp_uri
        self.queue_name = queue
        self.bindings = bindings
        self.queue_type = queue_type
        self.batch_size = batch_size
        self.batch_wait = batch_wait
        self.retry_delays = retry_delays
        self.catch_up = catch_up
        self.catch_up_interval = catch_up_interval
        self.stats = ConsumerStats()
        self._buffer: list[Any] = []
        self._caught_up_at = 0.0

    def run(self, stopping: threading.Event) -> None:
        """Consume until `stopping` is set, reconnecting after broker outages."""
        while not stopping.is_set():
            try:
                with kombu.Connection(self.amqp_uri, heartbeat=0) as connection:
                    channel = connection.channel()
                    queue = declare_queue(channel, self.queue_name, self.bindings, self.queue_type)
                    with kombu.Consumer(
                        channel, queues=[queue], callbacks=[self._buffer_message], prefetch_count=self.batch_size * 2
                    ):
                        self.stats.connected = True
                        log.info("consuming %s", self.queue_name)
                        self._consume(connection, channel, stopping)
            except (OSError, kombu.exceptions.KombuError, ConnectionError) as exc:
                self.stats.last_error = str(exc)
                log.warning("consumer of %s lost the broker, reconnecting: %s", self.queue_name, exc)
                stopping.wait(1.0)
            except Exception as exc:  # noqa: BLE001 - a bug must not end consumption for good
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.exception("consumer of %s failed; reconnecting (unacked messages return)", self.queue_name)
                stopping.wait(5.0)
            finally:
                self.stats.connected = False
                self._buffer.clear()  # unacked messages come back from the broker

    def _buffer_message(self, body: Any, message: Any) -> None:
        self._buffer.append(message)

    def _consume(self, connection: Any, channel: Any, stopping: threading.Event) -> None:
        while not stopping.is_set():
            if self.catch_up and time.monotonic() - self._caught_up_at >= self.catch_up_interval:
                # Pull what the queue never received: events published before it was bound, or
                # left behind by a dead-lettered batch. Same thread as the inbox: no sharing.
                self.catch_up(self.inbox)
                self._caught_up_at = time.monotonic()
            deadline = time.monotonic() + self.batch_wait
            while len(self._buffer) < self.batch_size:
                timeout = deadline - time.monotonic() if self._buffer else 1.0
                if timeout <= 0:
                    break
                try:
                    connection.drain_events(timeout=timeout)
                except TimeoutError:
                    if not self._buffer or stopping.is_set():
                        break
            if self._buffer:
                batch, self._buffer = self._buffer, []
                self._process(batch, channel)

    def _process(self, messages: list[Any], channel: Any) -> None:
        envelopes, malformed = [], []
        for message in messages:
            try:
                envelopes.append(self._decode(message))
            except (ValueError, ValidationError) as exc:
                malformed.append((message, f"malformed envelope: {exc}"))
        self.stats.received += len(messages)
        outcome = self._apply_with_retries(envelopes)
        by_id = {m.properties.get("message_id"): m for m in messages}
        for envelope, reason in outcome.failed:
            self._dead_letter(channel, by_id.get(envelope["event_id"]), envelope, reason)
        for message, reason in malformed:
            self._dead_letter(channel, message, None, reason)
        for message in messages:
            message.ack()

    def _apply_with_retries(self, envelopes: list[dict[str, Any]]) -> Outcome:
        outcome = self.inbox.receive(envelopes)
        for delay in self.retry_delays:
            if not outcome.failed:
                break
            time.sleep(delay)
            retry = self.inbox.receive([envelope for envelope, _ in outcome.failed])
            retry.applied += outcome.applied
            retry.duplicates += outcome.duplicates
            retry.pulled += outcome.pulled
            outcome = retry
        self.stats.applied += outcome.applied
        self.stats.duplicates += outcome.duplicates
        self.stats.pulled += outcome.pulled
        return outcome

    @staticmethod
    def _decode(message: Any) -> dict[str, Any]:
        raw = json.loads(message.body)
        _envelopes.load(raw)  # validates every envelope field; the raw dict is what gets applied
        return raw

    def _dead_letter(self, channel: Any, message: Any, envelope: dict[str, Any] | None, reason: str) -> None:
        body = message.body if message is not None else json.dumps(envelope)
        dead_letters = kombu.Exchange(DEAD_LETTER_EXCHANGE, "topic", durable=True)
        kombu.Producer(channel, exchange=dead_letters).publish(
            body,
            routing_key=self.queue_name,
            content_type="application/json",
            delivery_mode=2,
            headers={"x-reason": reason[:1000], "x-queue": self.queue_name},
        )
        self.stats.dead_lettered += 1
        log.error("dead-lettered an event: %s", reason, extra={"reason": reason})
