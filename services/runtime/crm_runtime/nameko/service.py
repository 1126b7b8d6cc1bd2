"""What every CRM nameko service has: health endpoints, and (for event-sourced ones) the event feed."""

from __future__ import annotations

import json
from typing import Any, ClassVar

from werkzeug.wrappers import Response

from crm_contracts.integration import Translator
from crm_runtime import metrics
from crm_runtime.feed import EventFeed
from crm_runtime.nameko.dependencies import Health
from crm_runtime.nameko.metrics import Metrics
from crm_runtime.nameko.rpc import amqp_rpc, rpc
from crm_runtime.nameko.tracing import Tracing
from crm_runtime.nameko.web import http

#: The most events one `events_since` call returns.
MAX_FEED_PAGE = 5000


def json_response(status: int, body: Any) -> Response:
    return Response(json.dumps(body, default=str), status=status, mimetype="application/json")


class ServiceWithHealth:
    """Liveness and readiness over HTTP (for Kubernetes probes and `make run`) and over RPC; Prometheus
    metrics at `/metrics` (crm_runtime.metrics); a span per worker when tracing is on (crm_runtime.tracing)."""

    health = Health()
    prometheus = Metrics()
    tracing = Tracing()

    @http("GET", "/health/live")
    def live(self, request: Any) -> Response:
        return json_response(200, {"service": self.name, "live": True})  # type: ignore[attr-defined]

    @http("GET", "/health/ready")
    def ready(self, request: Any) -> Response:
        report = self.health()
        return json_response(200 if report["ready"] else 503, report)

    @http("GET", "/metrics")
    def prometheus_metrics(self, request: Any) -> Response:
        body, content_type = metrics.exposition()
        return Response(body, status=200, content_type=content_type)

    @amqp_rpc  # not on the HTTP port: /health/ready says the same, and the gateway's port is public
    def health_report(self) -> dict[str, Any]:
        return self.health()


class EventSourcedService(ServiceWithHealth):
    """Base of the six lifecycle services: serves the published feed that the relay publishes from."""

    translator: ClassVar[Translator]
    application: Any

    @rpc
    def events_since(self, position: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Envelopes published after `position`, oldest first: gap repair and rebuilds read this."""
        return EventFeed(self.application, self.translator).events_since(int(position), min(int(limit), MAX_FEED_PAGE))
