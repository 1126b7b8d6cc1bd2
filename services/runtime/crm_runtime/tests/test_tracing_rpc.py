"""A service's worker span is the parent of the span of the service it calls, over either transport:
the caller's `traceparent` travels beside its correlation id (an HTTP header, or a nameko RPC context
value), and the callee's worker runs inside its own span.

Real: two nameko containers (caller and callee) with the Tracing provider, this session's RabbitMQ
virtual host, HTTP on free ports. Spans go to OpenTelemetry's in-memory exporter.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from crm_runtime import tracing
from crm_runtime.nameko.client import ServiceClient
from crm_runtime.nameko.rpc import rpc
from crm_runtime.nameko.tracing import Tracing
from crm_runtime.tests.tracing_support import spans_in_memory

pytestmark = pytest.mark.integration


class Callee:
    name = "callee"
    tracing = Tracing()

    @rpc
    def where(self) -> str | None:
        return tracing.current_traceparent()


class Caller:
    name = "caller"
    tracing = Tracing()
    callee = ServiceClient("callee")

    @rpc
    def ask(self) -> dict[str, Any]:
        return {"mine": tracing.current_traceparent(), "theirs": self.callee.where()}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    with spans_in_memory() as exporter:
        yield exporter


@pytest.mark.parametrize("transport", ["http", "amqp"])
def test_the_callee_s_span_is_a_child_of_the_caller_s(
        transport: str, amqp_vhost: str, spans: InMemorySpanExporter, monkeypatch: pytest.MonkeyPatch) -> None:
    callee_port = free_port()
    if transport == "http":
        monkeypatch.setenv("CRM_CALLEE_URLS", f"http://127.0.0.1:{callee_port}")
    else:
        monkeypatch.delenv("CRM_CALLEE_URLS", raising=False)
    containers = [
        ServiceContainer(Callee, {"AMQP_URI": amqp_vhost, "WEB_SERVER_ADDRESS": f"127.0.0.1:{callee_port}"}),
        ServiceContainer(Caller, {"AMQP_URI": amqp_vhost, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}),
    ]
    for container in containers:
        container.start()
    try:
        with ClusterRpcProxy({"AMQP_URI": amqp_vhost}, timeout=10) as proxy:
            answer = proxy.caller.ask()
    finally:
        for container in containers:
            container.stop()

    finished = {span.name: span for span in spans.get_finished_spans()}
    caller, callee = finished["caller.ask"], finished["callee.where"]
    assert caller.kind is SpanKind.SERVER and callee.kind is SpanKind.SERVER
    assert caller.parent is None  # a call without trace context starts a trace
    assert callee.parent is not None and callee.parent.span_id == caller.context.span_id
    assert callee.context.trace_id == caller.context.trace_id
    assert answer == {"mine": tracing.traceparent_of(caller), "theirs": tracing.traceparent_of(callee)}
    assert dict(callee.attributes or {})["crm.transport"] == transport
