"""One trace per command, across processes: a registration's spans, exported over OTLP by the real
processes to a collector this test runs, form one chain with the right parents:

    gateway `POST /v1/customers` → customer `customer.register` → customer's relay
    `publish customer.customer_registered` → customer360 `process customer.customer_registered`

Real: the gateway, customer and customer360 processes under their supervisor (a platform of its own,
tracing on through the standard OTEL_EXPORTER_OTLP_ENDPOINT), RabbitMQ and PostgreSQL. The collector
is a small OTLP/HTTP receiver (protobuf, decoded with opentelemetry-proto's own messages). The
envelope the customer service serves carries the command span's `traceparent`, stored with the event.
"""

from __future__ import annotations

import gzip
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from conftest import rabbit_vhost
from tests.e2e.conftest import E2E_OWN_PLATFORM_PORT
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

PORT = E2E_OWN_PLATFORM_PORT + 80


class Collector:
    """Receives OTLP/HTTP trace exports (`POST /v1/traces`, protobuf) and keeps every span with the
    name of the service that sent it."""

    def __init__(self) -> None:
        self.spans: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        collector = self

        class Receiver(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if self.headers.get("Content-Encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces" or self.headers.get("Content-Type") != "application/x-protobuf":
                    self.send_response(404)
                    self.end_headers()
                    return
                collector.receive(ExportTraceServiceRequest.FromString(body))
                answer = ExportTraceServiceResponse().SerializeToString()
                self.send_response(200)
                self.send_header("Content-Type", "application/x-protobuf")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"

    def receive(self, request: ExportTraceServiceRequest) -> None:
        for resource_spans in request.resource_spans:
            attributes = {a.key: a.value.string_value for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    with self.lock:
                        self.spans.append({
                            "service": attributes.get("service.name"), "name": span.name,
                            "trace_id": span.trace_id.hex(), "span_id": span.span_id.hex(),
                            "parent_id": span.parent_span_id.hex() or None,
                            "attributes": {a.key: a.value for a in span.attributes},
                        })

    def named(self, name: str) -> list[dict[str, Any]]:
        with self.lock:
            return [span for span in self.spans if span["name"] == name]


@pytest.fixture(scope="module")
def collector() -> Iterator[Collector]:
    collector = Collector()
    thread = threading.Thread(target=collector.server.serve_forever, daemon=True)
    thread.start()
    yield collector
    collector.server.shutdown()
    collector.server.server_close()


@pytest.fixture(scope="module")
def traced_platform(infra: Infrastructure, collector: Collector, tmp_path_factory: pytest.TempPathFactory
                    ) -> Iterator[RunningPlatform]:
    with rabbit_vhost(infra, "crm_e2e_traces") as vhost, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("traces")), label="e2e_traces", amqp_uri=vhost,
        gateway_port=PORT, service_base_port=PORT + 1,
        settings={"CRM_SERVICES": "customer,customer360,gateway", "CRM_RESTART": "off",
                  "OTEL_EXPORTER_OTLP_ENDPOINT": collector.endpoint, "OTEL_BSP_SCHEDULE_DELAY": "100"},
    ) as running:
        yield running


def test_one_registration_is_one_trace_from_the_gateway_to_the_360_view(
        traced_platform: RunningPlatform, collector: Collector) -> None:
    answer = traced_platform.register(name="Ada Lovelace")
    assert answer.status_code == 201, answer.text
    customer_id = answer.json()["id"]
    traced_platform.view(customer_id)

    def only(spans: list[dict[str, Any]], what: str) -> dict[str, Any]:
        assert len(spans) == 1, f"{len(spans)} spans of {what} exported so far"
        return spans[0]

    def chain() -> tuple[dict[str, Any], ...]:
        """Each span of the chain, found as the one child of the one before."""
        request = only([s for s in collector.named("POST /v1/customers") if s["service"] == "crm-gateway"],
                       "the gateway's request")
        command = only([s for s in collector.named("customer.register") if s["parent_id"] == request["span_id"]],
                       "the customer service's command")
        publish = only([s for s in collector.named("publish customer.customer_registered")
                        if s["parent_id"] == command["span_id"]], "the relay's publish")
        process = only([s for s in collector.named("process customer.customer_registered")
                        if s["parent_id"] == publish["span_id"] and s["service"] == "crm-customer360"],
                       "customer360's processing")
        return request, command, publish, process

    request, command, publish, process = eventually(chain, timeout=30)
    assert request["parent_id"] is None  # the gateway starts the trace
    assert {span["trace_id"] for span in (request, command, publish, process)} == {request["trace_id"]}
    assert (command["service"], publish["service"]) == ("crm-customer", "crm-customer")
    assert publish["attributes"]["messaging.rabbitmq.destination.routing_key"].string_value == \
        "customer.customer_registered"

    # The envelope the customer service serves (the relay's, and gap repair's) carries the command's span,
    # stored with the event: the same bytes whenever it is read.
    (customer,) = traced_platform.platform.services("customer")
    feed = f"http://127.0.0.1:{traced_platform.platform.processes[customer].port}/rpc/events_since"
    first = requests.post(feed, json={"args": [0, 100]}, timeout=10)
    again = requests.post(feed, json={"args": [0, 100]}, timeout=10)
    (registered,) = [e for e in first.json()["result"]
                     if e["type"] == "customer_registered" and e["payload"].get("customer_id") == customer_id]
    assert registered["traceparent"].startswith(f"00-{command['trace_id']}-{command['span_id']}-")
    assert first.content == again.content
