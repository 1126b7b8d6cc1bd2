"""`Tracing`: the nameko side of crm_runtime.tracing. Opens a SERVER span around each worker of a
service (an HTTP route of the gateway, an `@rpc` command or query), child of the caller's
`traceparent`, and makes it current, so the calls the worker makes and the events it saves carry it.
ServiceWithHealth declares it, so every process has it; it starts tracing at setup when a collector is
configured (crm_runtime.tracing.configure) and does nothing per worker otherwise."""

from __future__ import annotations

from typing import Any

from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler

from crm_runtime import tracing
from crm_runtime.nameko.rpc import HttpRpc, as_service_error

#: Workers never traced: probes, scrapes and feed reads (frequent, and no part of a command).
UNTRACED = frozenset({"live", "ready", "prometheus_metrics", "health_report", "events_since"})


class Tracing(DependencyProvider):
    """A span per worker while tracing is on (see the module docstring)."""

    def __init__(self) -> None:
        self._open: dict[Any, tuple[Any, object | None]] = {}

    def setup(self) -> None:
        tracing.configure(self.container.service_name)

    def stop(self) -> None:
        tracing.flush()

    def kill(self) -> None:
        tracing.flush(1000)

    def worker_setup(self, worker_ctx: Any) -> None:
        if not tracing.enabled():
            return
        entrypoint = worker_ctx.entrypoint
        if entrypoint.method_name in UNTRACED or not isinstance(entrypoint, HttpRequestHandler | Rpc):
            return  # timers and other entrypoints start no trace of their own
        service = self.container.service_name
        correlation_id = worker_ctx.data.get("correlation_id")
        if isinstance(entrypoint, HttpRequestHandler) and not isinstance(entrypoint, HttpRpc):
            request = worker_ctx.args[0] if worker_ctx.args else None
            span = tracing.start_span(f"{entrypoint.method} {entrypoint.url}", "SERVER",
                                      request.headers.get(tracing.TRACEPARENT) if request is not None else None, {
                                          "http.request.method": entrypoint.method, "http.route": entrypoint.url,
                                          "crm.service": service,
                                      })
        else:  # a command or query, over RabbitMQ (CrmRpc) or HTTP (HttpRpc): the caller's context came along
            span = tracing.start_span(f"{service}.{entrypoint.method_name}", "SERVER",
                                      worker_ctx.data.get(tracing.TRACEPARENT), {
                                          "rpc.system": "nameko", "rpc.service": service,
                                          "rpc.method": entrypoint.method_name,
                                          "crm.transport": "http" if isinstance(entrypoint, HttpRpc) else "amqp",
                                          "crm.correlation_id": correlation_id,
                                      })
        self._open[worker_ctx] = (span, tracing.attach(span))

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        opened = self._open.pop(worker_ctx, None)
        if opened is None:
            return
        span, token = opened
        tracing.detach(token)
        status = getattr(result, "status_code", None)
        if status is not None:
            span.set_attribute("http.response.status_code", int(status))
        # An expected error (a domain refusal, invalid input) is the caller's, not a failure of this span.
        error = exc_info[1] if exc_info is not None and as_service_error(exc_info[1]) is None else None
        if exc_info is not None and error is None:
            span.set_attribute("crm.error", type(exc_info[1]).__name__)
        if error is None and isinstance(status, int) and status >= 500:
            error = f"HTTP {status}"
        tracing.end_span(span, error)

    def get_dependency(self, worker_ctx: Any) -> None:
        return None
