"""Traces (OpenTelemetry): one trace per command, from the gateway to every consumer of its events.

Off by default. A process traces when a collector is configured the standard way
(`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`; OTLP over HTTP/protobuf, the
other `OTEL_*` settings as the SDK reads them; `OTEL_SDK_DISABLED=true` or `OTEL_TRACES_EXPORTER=none`
turn it off again). Off, nothing here imports OpenTelemetry: each hook is one check of a module
global, and a service only copies an incoming `traceparent` header into its worker's context.

The spans of one registration, each the parent of the next:

1. the gateway's request (`POST /v1/customers`, SERVER), opened by crm_runtime.nameko.tracing;
2. the service's command (`customer.register`, SERVER): the W3C `traceparent` of the span that calls
   travels beside `correlation_id`, as an HTTP header or a nameko RPC context value
   (crm_runtime.nameko.client and .rpc);
3. the relay's publish (`publish customer.customer_registered`, PRODUCER): the command's
   `traceparent` is stored with its events (crm_runtime.eventstore, beside the correlation id) and
   served in the envelope by the feed, so the envelope is the same bytes whenever it is published or
   pulled again; the publish span's own context rides in the AMQP message's `traceparent` header,
   which is not part of the envelope;
4. each consumer's processing (`process customer.customer_registered`, CONSUMER), a child of the
   message's header (or, for an envelope pulled from a feed, of the envelope's `traceparent`); a
   policy's reaction runs inside it, so the events the reaction saves carry it on (crm_runtime.policy).

An envelope without `traceparent` (stored before tracing, or by a process not tracing) starts no span
at its consumers.
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # never imported at run time unless tracing is on
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.trace import Span, SpanKind, Tracer

log = logging.getLogger(__name__)

#: The W3C trace-context header and the key it is kept under (RPC context, stored metadata, envelope).
TRACEPARENT = "traceparent"

_tracer: Tracer | None = None
_provider: TracerProvider | None = None
_configure_lock = threading.Lock()


def enabled() -> bool:
    """Whether this process records spans."""
    return _tracer is not None


def exporter_configured(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces: a collector endpoint, and not switched off."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    if environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() == "none":
        return False
    return bool(environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT"))


def configure(service: str) -> bool:
    """Start tracing for this process when a collector is configured (see the module docstring);
    `service` names it (`crm-<service>`) unless OTEL_SERVICE_NAME does. Once per process."""
    if _tracer is not None or not exporter_configured():
        return enabled()
    with _configure_lock:
        if _tracer is not None:
            return True
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        name = os.environ.get("OTEL_SERVICE_NAME") or f"crm-{service}"
        provider = TracerProvider(resource=Resource.create({"service.name": name}))
        provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
        install(provider)
    log.info("tracing on: spans of %s exported over OTLP", name)
    return True


def install(provider: TracerProvider | None) -> None:
    """Record spans with `provider` (tests give one with an in-memory exporter); None turns tracing off."""
    global _tracer, _provider
    _provider = provider
    _tracer = provider.get_tracer("crm_runtime") if provider is not None else None


def flush(timeout_millis: int = 5000) -> None:
    """Export the spans still buffered (a process about to stop)."""
    if _provider is not None:
        _provider.force_flush(timeout_millis)


# -- trace context ---------------------------------------------------------------------------------


def traceparent_of(span: Span | ReadableSpan | None) -> str | None:
    """The W3C `traceparent` of `span` (None for no span, or one that is not valid)."""
    if span is None:
        return None
    context = span.get_span_context()
    if context is None or not context.is_valid:
        return None
    return f"00-{context.trace_id:032x}-{context.span_id:016x}-{int(context.trace_flags):02x}"


def current_traceparent() -> str | None:
    """The `traceparent` of the span this (green) thread is in; None when tracing is off or outside one."""
    if _tracer is None:
        return None
    from opentelemetry import trace

    return traceparent_of(trace.get_current_span())


def _parent(traceparent: Any) -> Any:
    """The OpenTelemetry context whose span is the remote `traceparent` (None: a new trace). An invalid
    header is ignored, as W3C trace context says."""
    if not isinstance(traceparent, str) or not traceparent:
        return None
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract({TRACEPARENT: traceparent})


def _kind(name: str) -> SpanKind:
    from opentelemetry.trace import SpanKind

    return SpanKind[name]


def start_span(name: str, kind: str, parent: str | None, attributes: Mapping[str, Any] | None = None) -> Span | None:
    """A started span, child of the remote `parent` traceparent (or a new trace); None when off.
    `kind`: SERVER, CLIENT, PRODUCER, CONSUMER or INTERNAL."""
    if _tracer is None:
        return None
    return _tracer.start_span(name, context=_parent(parent), kind=_kind(kind),
                              attributes={k: v for k, v in (attributes or {}).items() if v is not None})


def end_span(span: Span | None, error: BaseException | str | None = None) -> None:
    """End `span`, marked as failed when `error` says why."""
    if span is None:
        return
    if error is not None:
        from opentelemetry.trace import Status, StatusCode

        if isinstance(error, BaseException):
            span.record_exception(error)
        span.set_status(Status(StatusCode.ERROR, str(error)[:500]))
    span.end()


def attach(span: Span | None) -> object | None:
    """Make `span` current in this (green) thread; the token goes to `detach`."""
    if span is None:
        return None
    from opentelemetry import context, trace

    return context.attach(trace.set_span_in_context(span))


def detach(token: object | None) -> None:
    if token is not None:
        from opentelemetry import context

        context.detach(token)  # type: ignore[arg-type]


# -- the relay -------------------------------------------------------------------------------------


def publish_spans(exchange: str, routing_keys: Iterable[str], envelopes: list[dict[str, Any]]) -> list[Span | None]:
    """A PRODUCER span per envelope that carries a `traceparent` (none when off)."""
    if _tracer is None:
        return []
    return [
        start_span(f"publish {key}", "PRODUCER", envelope[TRACEPARENT], {
            "messaging.system": "rabbitmq",
            "messaging.operation.type": "send",
            "messaging.destination.name": exchange,
            "messaging.rabbitmq.destination.routing_key": key,
            "messaging.message.id": envelope["event_id"],
            "crm.origin": envelope["origin"],
            "crm.position": envelope["position"],
        }) if envelope.get(TRACEPARENT) else None
        for key, envelope in zip(routing_keys, envelopes, strict=True)
    ]


# -- consumers -------------------------------------------------------------------------------------


class Deliveries:
    """The CONSUMER spans of one batch a consumer applies, by event id."""

    def __init__(self, spans: dict[str, Span]) -> None:
        self.spans = spans

    def failed(self, event_id: Any, reason: str) -> None:
        span = self.spans.pop(str(event_id), None)
        end_span(span, reason)

    def end(self) -> None:
        for span in self.spans.values():
            span.end()
        self.spans.clear()


_NO_DELIVERIES = Deliveries({})
_deliveries: contextvars.ContextVar[Deliveries] = contextvars.ContextVar("crm_deliveries", default=_NO_DELIVERIES)


@contextlib.contextmanager
def processing(queue: str, envelopes: list[dict[str, Any]], messages: Iterable[Any],
               acts_on: Callable[[dict[str, Any]], bool]) -> Iterator[Deliveries]:
    """While a consumer applies `envelopes` (received as `messages`): a CONSUMER span per envelope it
    acts on that carries trace context, child of its message's `traceparent` header (the relay's
    publish) or else of the envelope's own. Policies find theirs with `reacting`."""
    if _tracer is None:
        yield _NO_DELIVERIES
        return
    headers = {str(m.properties.get("message_id")): (m.headers or {}).get(TRACEPARENT) for m in messages}
    spans: dict[str, Span] = {}
    for envelope in envelopes:
        event_id = str(envelope.get("event_id"))
        parent = headers.get(event_id) or envelope.get(TRACEPARENT)
        if parent and acts_on(envelope):
            span = start_span(f"process {envelope.get('origin')}.{envelope.get('type')}", "CONSUMER", parent, {
                "messaging.system": "rabbitmq",
                "messaging.operation.type": "process",
                "messaging.consumer.group.name": queue,
                "messaging.message.id": event_id,
                "crm.origin": envelope.get("origin"),
                "crm.position": envelope.get("position"),
            })
            if span is not None:
                spans[event_id] = span
    deliveries = Deliveries(spans)
    token = _deliveries.set(deliveries)
    try:
        yield deliveries
    finally:
        _deliveries.reset(token)
        deliveries.end()


@contextlib.contextmanager
def reacting(envelope: dict[str, Any]) -> Iterator[None]:
    """Run a policy's reaction to `envelope` inside its span: the consumer's span of its delivery, or
    (an envelope pulled from a feed) a CONSUMER span of its own, child of the envelope's traceparent.
    What the reaction saves is then stamped with that span. Nothing when off or without context."""
    if _tracer is None:
        yield
        return
    span = _deliveries.get().spans.get(str(envelope.get("event_id")))
    own = None
    if span is None and envelope.get(TRACEPARENT):
        span = own = start_span(f"process {envelope.get('origin')}.{envelope.get('type')}", "CONSUMER",
                                envelope[TRACEPARENT], {"messaging.message.id": envelope.get("event_id"),
                                                        "crm.origin": envelope.get("origin"),
                                                        "crm.position": envelope.get("position")})
    token = attach(span)
    try:
        yield
    except BaseException as exc:
        end_span(own, exc)
        own = None
        raise
    finally:
        detach(token)
        end_span(own)
