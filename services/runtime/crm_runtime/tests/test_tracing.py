"""Traces (crm_runtime.tracing), piece by piece on the in-memory store with OpenTelemetry's in-memory
exporter: a command's `traceparent` is stored with its events and served in the envelope, always the
same bytes; the relay publishes under a child span whose context rides in a message header; a consumer
processes under a child of that; a policy's reaction saves its events under the consumer's span. Off,
nothing changes: no key in the envelope, no header, no span. (tests/e2e/test_traces.py follows one
registration through real processes.)"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from crm_contracts.envelope import EnvelopeSchema
from crm_contracts.integration import IntegrationEvent, Translator
from crm_runtime import tracing
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.eventstore import ServiceApplication, command_metadata
from crm_runtime.feed import EventFeed
from crm_runtime.inbox import Outcome
from crm_runtime.policy import Policies, PolicyInbox
from crm_runtime.relay import ConfirmingPublisher
from crm_runtime.tests.tracing_support import spans_in_memory


class Note(Aggregate):
    @event("Written")
    def __init__(self, text: str) -> None:
        self.text = text


class Notes(ServiceApplication):
    service = "notes"

    def write(self, text: str) -> uuid.UUID:
        note = Note(text)
        self.save(note)
        return note.id


translator = Translator(origin="notes")


@translator.translates(Note.Written)  # type: ignore[attr-defined]
def note_written(domain_event: Any) -> IntegrationEvent:
    return IntegrationEvent("note_written", 1, {"text": domain_event.text}, None)


@pytest.fixture
def notes() -> Iterator[Notes]:
    app = Notes(env={"PERSISTENCE_MODULE": "eventsourcing.popo", "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    """Tracing on for one test, every finished span kept in memory."""
    with spans_in_memory() as exporter:
        yield exporter


def ids(span: ReadableSpan) -> tuple[int, int]:
    return span.context.trace_id, span.context.span_id


def attributes(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def parent_of(span: ReadableSpan) -> tuple[int, int] | None:
    return (span.parent.trace_id, span.parent.span_id) if span.parent is not None else None


def traceparent_ids(traceparent: str) -> tuple[int, int]:
    version, trace_id, span_id, flags = traceparent.split("-")
    return int(trace_id, 16), int(span_id, 16)


def test_tracing_is_off_unless_a_collector_is_configured() -> None:
    assert not tracing.enabled()
    assert not tracing.exporter_configured({})
    assert tracing.exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:4318"})
    assert tracing.exporter_configured({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://127.0.0.1:4318/v1/traces"})
    assert not tracing.exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_SDK_DISABLED": "true"})
    assert not tracing.exporter_configured({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://x", "OTEL_TRACES_EXPORTER": "none"})


def test_off_an_envelope_has_no_traceparent_and_a_message_no_header(notes: Notes) -> None:
    with command_metadata("corr-1"):
        notes.write("hello")
    (envelope,) = EventFeed(notes, translator).events_since(0, 10)
    assert "traceparent" not in envelope  # the envelope of an untraced event is as it always was
    assert list(envelope) == ["event_id", "type", "version", "origin", "position", "previous", "occurred_at",
                              "customer_id", "correlation_id", "causation_id", "payload"]
    assert "traceparent" not in ConfirmingPublisher._message(envelope).application_headers
    assert tracing.current_traceparent() is None


def test_a_command_s_traceparent_is_stored_with_its_events_and_served_the_same_every_time(
        notes: Notes, spans: InMemorySpanExporter) -> None:
    command = tracing.start_span("notes.write", "SERVER", None)
    token = tracing.attach(command)
    try:
        with command_metadata("corr-1"):
            notes.write("hello")
    finally:
        tracing.detach(token)
        tracing.end_span(command)
    notes.write("untraced")  # outside any span: no traceparent
    feed = EventFeed(notes, translator)
    first, second = feed.events_since(0, 10)
    assert first["traceparent"] == tracing.traceparent_of(command) and "traceparent" not in second
    assert json.dumps(feed.events_since(0, 10)) == json.dumps([first, second])  # re-read: byte-identical
    loaded = EnvelopeSchema().load(first)
    assert loaded["traceparent"] == first["traceparent"]
    assert EnvelopeSchema().load(second).get("traceparent") is None  # old events have none: still valid


class Broker:
    """Stands in for the relay's connection and channel; acks each publish at once."""

    def __init__(self, publisher: ConfirmingPublisher) -> None:
        self.publisher = publisher
        self.messages: list[Any] = []

    def basic_publish(self, message: Any, exchange: str, routing_key: str, mandatory: bool) -> None:
        self.messages.append(message)

    def drain_events(self, timeout: float | None = None) -> None:
        for tag in sorted(self.publisher._outstanding):
            self.publisher._on_ack(tag, False)


def test_the_relay_publishes_under_a_child_span_whose_context_is_a_header_not_part_of_the_envelope(
        notes: Notes, spans: InMemorySpanExporter) -> None:
    command = tracing.start_span("notes.write", "SERVER", None)
    token = tracing.attach(command)
    notes.write("hello")
    tracing.detach(token)
    tracing.end_span(command)
    notes.write("untraced")
    envelopes = EventFeed(notes, translator).events_since(0, 10)
    publisher = ConfirmingPublisher("amqp://unused", heartbeat=0)
    broker = Broker(publisher)
    publisher.connection = publisher.channel = broker  # type: ignore[assignment]
    publisher.publish(envelopes)

    traced, untraced = broker.messages
    assert json.loads(traced.body) == envelopes[0]  # the stored envelope, untouched
    (publish,) = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert publish.name == "publish notes.note_written"
    assert parent_of(publish) == ids(spans.get_finished_spans()[0])  # the command's span
    assert traceparent_ids(traced.application_headers["traceparent"]) == ids(publish)
    assert "traceparent" not in untraced.application_headers


class Message:
    def __init__(self, envelope: dict[str, Any], headers: dict[str, Any]) -> None:
        self.body = json.dumps(envelope).encode()
        self.properties = {"message_id": envelope["event_id"]}
        self.headers = headers
        self.acked = False

    def ack(self, multiple: bool = False) -> None:
        self.acked = True


class RecordingInbox:
    """Applies every batch; parks the envelopes it is told to."""

    def __init__(self, failing: set[str]) -> None:
        self.failing = failing

    def acts_on(self, envelope: dict[str, Any]) -> bool:
        return envelope["type"] != "ignored"

    def receive(self, envelopes: list[dict[str, Any]], park: bool = False) -> Outcome:
        outcome = Outcome(applied=len(envelopes))
        outcome.parked = [(e, "it cannot apply") for e in envelopes if e["event_id"] in self.failing]
        return outcome

    def parked_count(self) -> int:
        return 0


def an_envelope(position: int, type_: str = "thing_sold", traceparent: str | None = None) -> dict[str, Any]:
    envelope = {"event_id": str(uuid.uuid4()), "type": type_, "version": 1, "origin": "shop", "position": position,
                "previous": position - 1, "occurred_at": "2026-01-01T00:00:00+00:00", "customer_id": None,
                "correlation_id": None, "causation_id": None, "payload": {"thing": "t"}}
    if traceparent:
        envelope["traceparent"] = traceparent
    return envelope


def test_a_consumer_processes_each_envelope_it_acts_on_under_a_child_of_its_message_or_envelope(
        spans: InMemorySpanExporter) -> None:
    published = tracing.start_span("publish shop.thing_sold", "PRODUCER", None)
    stored = tracing.start_span("shop.sell", "SERVER", None)
    header, in_envelope = tracing.traceparent_of(published), tracing.traceparent_of(stored)
    assert header and in_envelope
    delivered = an_envelope(1, traceparent=in_envelope)     # relayed: the header is the parent
    pulled = an_envelope(2, traceparent=in_envelope)        # no header (e.g. dead-lettered body re-sent)
    parked = an_envelope(3, traceparent=in_envelope)
    ignored = an_envelope(4, type_="ignored", traceparent=in_envelope)
    untraced = an_envelope(5)
    consumer = EnvelopeConsumer(RecordingInbox({parked["event_id"]}), "amqp://unused", "shop-watch", [],  # type: ignore[arg-type]
                                retry_delays=())
    messages = [Message(delivered, {"traceparent": header}), Message(pulled, {}), Message(parked, {}),
                Message(ignored, {}), Message(untraced, {})]
    consumer._dead_letter = lambda *args: None  # type: ignore[method-assign]
    consumer._process(messages, channel=None)

    processed = {attributes(s)["crm.position"]: s for s in spans.get_finished_spans() if s.kind is SpanKind.CONSUMER}
    assert sorted(processed) == [1, 2, 3]  # not the ignored one, not the one without context
    assert parent_of(processed[1]) == ids_of(published)
    assert parent_of(processed[2]) == ids_of(stored)
    assert processed[1].name == "process shop.thing_sold"
    assert processed[1].status.status_code is StatusCode.UNSET
    assert processed[3].status.status_code is StatusCode.ERROR  # parked: an error, with its reason
    assert "it cannot apply" in (processed[3].status.description or "")


def ids_of(span: Any) -> tuple[int, int]:
    return span.get_span_context().trace_id, span.get_span_context().span_id


policies = Policies("notes")


@policies.reacts_to("shop", "thing_sold")
def write_a_note(app: Notes, envelope: dict[str, Any]) -> None:
    app.write(envelope["payload"]["thing"])


def test_a_policy_s_reaction_saves_under_the_consumer_s_span_so_the_trace_goes_on(
        notes: Notes, spans: InMemorySpanExporter) -> None:
    upstream = tracing.start_span("shop.sell", "SERVER", None)
    sold = an_envelope(1, traceparent=tracing.traceparent_of(upstream))
    inbox = PolicyInbox(notes, policies, fetch=None)
    with tracing.processing("notes.events", [sold], [Message(sold, {})], inbox.acts_on) as deliveries:
        consumed = deliveries.spans[sold["event_id"]]
        inbox.receive([sold])
    (envelope,) = EventFeed(notes, translator).events_since(0, 10)
    assert envelope["traceparent"] == tracing.traceparent_of(consumed)
    # pulled from a feed (no consumer span): the reaction gets a span of its own, child of the envelope's
    later = an_envelope(2, traceparent=tracing.traceparent_of(upstream))
    inbox.receive([later])
    (own,) = [s for s in spans.get_finished_spans() if attributes(s).get("crm.position") == 2]
    assert parent_of(own) == ids_of(upstream)
    assert EventFeed(notes, translator).events_since(1, 10)[0]["traceparent"] == tracing.traceparent_of(own)


def test_spans_are_per_green_thread(spans: InMemorySpanExporter) -> None:
    """The worker's span is current in its own thread only (contextvars): another thread saving at the
    same moment stamps nothing of it."""
    span = tracing.start_span("notes.write", "SERVER", None)
    token = tracing.attach(span)
    seen: list[str | None] = []
    other = threading.Thread(target=lambda: seen.append(tracing.current_traceparent()))
    other.start()
    other.join()
    tracing.detach(token)
    assert seen == [None]


MALFORMED_TRACEPARENTS: list[Any] = ["garbage", "00-" + "0" * 32 + "-" + "0" * 16 + "-01", "ff-zz-yy-xx", b"\xff\x00",
                                     42, {"nested": "table"}, ["a", "list"], "00-" + "a" * 200]


@pytest.mark.parametrize("on", [False, True], ids=["off", "on"])
def test_a_malformed_traceparent_in_a_header_or_an_envelope_neither_stops_nor_skips_an_event(
        on: bool, request: pytest.FixtureRequest) -> None:
    if on:
        request.getfixturevalue("spans")
    applied: list[str] = []

    class Applying(RecordingInbox):
        def receive(self, envelopes: list[dict[str, Any]], park: bool = False) -> Outcome:
            applied.extend(e["event_id"] for e in envelopes)
            return super().receive(envelopes, park)

    consumer = EnvelopeConsumer(Applying(set()), "amqp://unused", "shop-watch", [],  # type: ignore[arg-type]
                                retry_delays=())
    dead: list[Any] = []
    consumer._dead_letter = lambda *args: dead.append(args)  # type: ignore[method-assign]
    envelopes = [an_envelope(n + 1, traceparent=bad if isinstance(bad, str) else None)
                 for n, bad in enumerate(MALFORMED_TRACEPARENTS)]
    messages = [Message(envelope, {"traceparent": bad}) for envelope, bad in zip(envelopes, MALFORMED_TRACEPARENTS,
                                                                                  strict=True)]
    consumer._process(messages, channel=None)

    assert applied == [e["event_id"] for e in envelopes] and dead == [] and messages[-1].acked
