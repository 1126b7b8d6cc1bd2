"""Consumes a service's queue on `crm.events` in batches and hands them to its Inbox.

One consumer per queue reads in broker order (one ordered stream, unlike nameko's concurrent event
handlers), acks a batch only after the inbox committed it, and retries a failing batch with back-off.
What still fails after the retries is given to the inbox once more with `park=True`: an event that can
never apply is parked (the inbox moves tracking past it, so its origin flows on; see crm_runtime.inbox
for why this keeps exactly-once) and dead-lettered with its reason to `crm.dead-letter` (queue
`<name>.dead-letter`), where an operator sees it beside the log and the health report. A failure that
is transient (database or feed unavailable) is not the event's fault: it is neither parked nor
dead-lettered; tracking has not moved, so the event is pulled again from the origin's feed by the
next gap repair or catch-up.

When tracing is on, each envelope the inbox acts on is processed inside a CONSUMER span, child of the
relay's publish span (the message's `traceparent` header) or of the envelope's own (crm_runtime.tracing).

The connection heartbeats (AMQP_HEARTBEAT, default 60 s, like nameko's own connections), so a
half-open connection is noticed and replaced. Nothing but `stopping` ends `run`: a broker outage, a
database fault or a bug is logged and consumption resumes (under nameko a managed thread that raises
kills the whole service).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import amqp.exceptions
import kombu
import kombu.exceptions
import orjson
from marshmallow import ValidationError

from crm_contracts.envelope import DEAD_LETTER_EXCHANGE, EXCHANGE, EnvelopeSchema
from crm_runtime import config, tracing
from crm_runtime.inbox import Envelope, Inbox, Outcome

log = logging.getLogger(__name__)

_envelopes = EnvelopeSchema()
#: What an inbox needs of an envelope it only passes over (a policy with no reaction to its type): its
#: place in the origin's chain. Validating the rest would cost a consumer most of its time per event.
_chain_links = EnvelopeSchema(only=("type", "origin", "position", "previous"))


@dataclass
class ConsumerStats:
    """Counters exposed by health and metrics."""

    connected: bool = False
    connections: int = 0
    received: int = 0
    applied: int = 0
    duplicates: int = 0
    pulled: int = 0
    dead_lettered: int = 0
    #: Envelopes parked in the inbox now (an operator's to-do list), refreshed by the consumer.
    parked: int = 0
    last_error: str | None = None


#: Errors that mean "the broker connection is gone": reconnect quietly.
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    OSError, kombu.exceptions.KombuError, ConnectionError, amqp.exceptions.ConnectionError
)


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
        catch_up: Callable[[Inbox], Iterable[Outcome] | None] | None = None,
        catch_up_interval: float = 30.0,
        heartbeat: int | None = None,
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
        self.heartbeat = int(config.setting("AMQP_HEARTBEAT", "60")) if heartbeat is None else heartbeat
        self.stats = ConsumerStats()
        self._buffer: list[Any] = []
        self._caught_up_at = 0.0

    def run(self, stopping: threading.Event) -> None:
        """Consume until `stopping` is set, reconnecting after broker outages; never raises an Exception."""
        while not stopping.is_set():
            try:
                with kombu.Connection(self.amqp_uri, heartbeat=self.heartbeat) as connection:
                    channel = connection.channel()
                    queue = declare_queue(channel, self.queue_name, self.bindings, self.queue_type)
                    with kombu.Consumer(
                        channel, queues=[queue], callbacks=[self._buffer_message], prefetch_count=self.batch_size * 2
                    ):
                        self.stats.connected = True
                        self.stats.connections += 1
                        self._caught_up_at = 0.0  # back from an outage: pull what the queue may lack now
                        log.info("consuming %s", self.queue_name)
                        self._consume(connection, channel, stopping)
            except BROKER_ERRORS as exc:
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
            # Sends our heartbeat when due and raises when the broker's stopped coming, so a
            # half-open connection is noticed within two intervals. A batch being applied or retried
            # delays it by seconds, far below the 60 s default.
            connection.heartbeat_check()
            if time.monotonic() - self._caught_up_at >= self.catch_up_interval:
                self._housekeeping(channel)
                self._caught_up_at = time.monotonic()
            self._fill_buffer(connection, stopping)
            if self._buffer:
                batch, self._buffer = self._buffer, []
                self._process(batch, channel)
            else:
                self._flush_inbox()

    def _flush_inbox(self) -> None:
        """Idle: let the inbox record what it keeps in memory (a database fault only delays it)."""
        try:
            self.inbox.flush()
        except Exception as exc:  # noqa: BLE001 - retried at the next idle moment
            log.warning("%s could not record its position yet: %s", self.queue_name, exc)

    def _fill_buffer(self, connection: Any, stopping: threading.Event) -> None:
        """Drain deliveries until a batch is full, `batch_wait` after its first message, or an idle
        while without any. py-amqp's drain_events only times out after a whole `timeout` without a
        frame, and the broker's heartbeats are frames: waiting for less than half its interval (it
        sends one per half interval) is what lets the idle wait end and our heartbeat be sent."""
        idle_wait = min(1.0, self.heartbeat / 4) if self.heartbeat else 1.0
        until = time.monotonic() + idle_wait
        batch_until: float | None = None
        while len(self._buffer) < self.batch_size and not stopping.is_set():
            now = time.monotonic()
            if self._buffer and batch_until is None:
                batch_until = until = now + self.batch_wait
            if now >= until:
                return
            try:
                connection.drain_events(timeout=until - now)
            except TimeoutError:
                pass  # the loop decides whether the wait is over

    def _housekeeping(self, channel: Any) -> None:
        """Catch up every origin and refresh the parked count; a failure only delays them."""
        if self.catch_up:
            # Pull what the queue never received: events published before it was bound, or left
            # behind by a transient failure. Same thread as the inbox: no sharing.
            try:
                for outcome in self.catch_up(self.inbox) or ():
                    self._report_parked(channel, outcome.parked, {})
            except BROKER_ERRORS:
                raise  # dead-lettering needs the broker: reconnect
            except Exception as exc:  # noqa: BLE001 - a database or feed fault only delays catch-up
                self.stats.last_error = f"catch-up failed: {type(exc).__name__}: {exc}"
                log.warning("catch-up of %s failed: %s", self.queue_name, exc)
        self._refresh_parked()

    def _refresh_parked(self) -> None:
        try:
            self.stats.parked = self.inbox.parked_count()
        except Exception as exc:  # noqa: BLE001 - health shows the last known count until the database answers
            log.warning("could not count parked events: %s", exc)

    def _process(self, messages: list[Any], channel: Any) -> None:
        envelopes, malformed = [], []
        for message in messages:
            try:
                envelopes.append(self._decode(message))
            except (ValueError, ValidationError) as exc:
                malformed.append((message, f"malformed envelope: {exc}"))
        self.stats.received += len(messages)
        with tracing.processing(self.queue_name, envelopes, messages, self.inbox.acts_on) as deliveries:
            outcome = self._apply_with_retries(envelopes)
            for envelope, reason in outcome.parked:
                deliveries.failed(envelope.get("event_id"), f"parked: {reason}")
            for failure in outcome.failed:
                deliveries.failed(failure.envelope.get("event_id"), failure.reason)
        by_id = {m.properties.get("message_id"): m for m in messages}
        self._report_parked(channel, outcome.parked, by_id)
        for failure in outcome.failed:
            if failure.transient:
                # Not the event's fault: tracking has not moved, a gap pull or catch-up brings it back.
                self.stats.last_error = failure.reason
                log.warning("event %s of %s left for catch-up: %s", failure.envelope.get("position"),
                            failure.envelope.get("origin"), failure.reason, extra={"reason": failure.reason})
            else:
                self._dead_letter(channel, by_id.get(failure.envelope["event_id"]), failure.envelope, failure.reason)
        for message, reason in malformed:
            self._dead_letter(channel, message, None, reason)
        if messages:
            messages[-1].ack(multiple=True)  # one frame for the batch: deliveries on a channel come in order

    def _report_parked(self, channel: Any, parked: list[tuple[Envelope, str]], by_id: dict[Any, Any]) -> None:
        """Dead-letter each parked envelope with its reason (the inbox logged it) and recount."""
        for envelope, reason in parked:
            self._dead_letter(channel, by_id.get(envelope.get("event_id")), envelope, f"parked: {reason}")
        if parked:
            self._refresh_parked()

    def _apply_with_retries(self, envelopes: list[dict[str, Any]]) -> Outcome:
        outcome = self.inbox.receive(envelopes)
        for delay in self.retry_delays:
            if not outcome.failed:
                break
            time.sleep(delay)
            outcome = self.inbox.receive([failure.envelope for failure in outcome.failed]).add(outcome)
        if outcome.failed:
            # Last attempt: what fails for a reason of its own is parked, the rest of its origin applies.
            outcome = self.inbox.receive([failure.envelope for failure in outcome.failed], park=True).add(outcome)
        self.stats.applied += outcome.applied
        self.stats.duplicates += outcome.duplicates
        self.stats.pulled += outcome.pulled
        return outcome

    def _decode(self, message: Any) -> dict[str, Any]:
        raw = orjson.loads(message.body)
        if not isinstance(raw, dict):
            raise ValueError("an envelope is a JSON object")
        # Every field of what is applied is validated; the raw dict is what gets applied.
        (_envelopes if self.inbox.acts_on(raw) else _chain_links).load(raw)
        return raw

    def _dead_letter(self, channel: Any, message: Any, envelope: dict[str, Any] | None, reason: str) -> None:
        body = message.body if message is not None else json.dumps(envelope, default=str)
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
