"""`Metrics`: the nameko side of crm_runtime.metrics. Times every worker of the service (HTTP routes by
their template and status, RPC methods by transport, event handlers and timers), and at scrape time
reports what the service's other providers run: the outbox relay, the inbox or policy consumer, and
the database pools. ServiceWithHealth declares it, so every process has it and serves `/metrics`."""

from __future__ import annotations

import time
from typing import Any

import psycopg2
from nameko.extensions import DependencyProvider
from nameko.rpc import Rpc
from nameko.web.handlers import HttpRequestHandler

from crm_runtime import metrics
from crm_runtime.inbox import Inbox
from crm_runtime.nameko.dependencies import EventSourcedApplication, InboxConsumer, PostgresCursor
from crm_runtime.nameko.rpc import HttpRpc


def entrypoint_kind(entrypoint: Any) -> str:
    """What kind of entrypoint started a worker: `http` (a route), `rpc-http`, `rpc-amqp`, or its class."""
    if isinstance(entrypoint, HttpRpc):
        return "rpc-http"
    if isinstance(entrypoint, HttpRequestHandler):
        return "http"
    if isinstance(entrypoint, Rpc):
        return "rpc-amqp"
    return type(entrypoint).__name__.lower()


class Metrics(DependencyProvider):
    """Counts and times the service's workers; a metrics source for the service's other providers."""

    def __init__(self) -> None:
        self._started: dict[Any, float] = {}

    def setup(self) -> None:
        metrics.watch(self)

    def stop(self) -> None:
        metrics.unwatch(self)

    def kill(self) -> None:
        self.stop()

    def worker_setup(self, worker_ctx: Any) -> None:
        self._started[worker_ctx] = time.perf_counter()

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        started = self._started.pop(worker_ctx, None)
        if started is None:
            return
        elapsed = time.perf_counter() - started
        service, entrypoint = self.container.service_name, worker_ctx.entrypoint
        kind = entrypoint_kind(entrypoint)
        if kind == "http":
            status = str(getattr(result, "status_code", 500) if exc_info is None else 500)
            metrics.HTTP_REQUESTS.labels(service, entrypoint.method, entrypoint.url, status).inc()
            metrics.HTTP_DURATION.labels(service, entrypoint.method, entrypoint.url).observe(elapsed)
        else:
            outcome = "ok" if exc_info is None else type(exc_info[1]).__name__
            metrics.WORKER_DURATION.labels(service, entrypoint.method_name, kind, outcome).observe(elapsed)

    def get_dependency(self, worker_ctx: Any) -> None:
        return None

    def collect_metrics(self, out: metrics.Families) -> None:
        """Read the state of the service's relay, consumer and pools (called at scrape time)."""
        for provider in self.container.dependencies:
            if isinstance(provider, EventSourcedApplication) and provider.app is not None:
                datastore = getattr(provider.app.recorder, "datastore", None)
                if datastore is None:
                    continue  # in-memory store (unit tests): no log to measure
                stats = datastore.pool.get_stats()
                metrics.pool_metrics(
                    out,
                    f"{provider.attr_name}",
                    stats.get("pool_max", 0),
                    stats.get("pool_size", 0) - stats.get("pool_available", 0),
                    stats.get("requests_waiting", 0),
                )
                if provider.relay is not None:
                    metrics.relay_metrics(out, provider.relay)
            elif isinstance(provider, InboxConsumer) and provider.consumer is not None:
                metrics.consumer_metrics(
                    out, provider.queue, provider.consumer, tracked_positions(provider.consumer.inbox)
                )
            elif isinstance(provider, PostgresCursor) and provider.pool is not None:
                free = semaphore_count(provider._available)
                metrics.pool_metrics(
                    out, provider.attr_name, provider.size, provider.size - free if free is not None else 0
                )


def semaphore_count(semaphore: Any) -> int | None:
    """How many a semaphore still gives out: eventlet's green one (`counter`) or the standard one."""
    for attribute in ("counter", "_value"):
        if isinstance(getattr(semaphore, attribute, None), int):
            return int(getattr(semaphore, attribute))
    return None


def tracked_positions(inbox: Any) -> dict[str, int]:
    """The inbox's tracked positions, read on a connection of its own: the consumer's connection may be
    inside a transaction in another green thread."""
    if not isinstance(inbox, Inbox):
        return inbox.positions()  # type: ignore[no-any-return]  # PolicyInbox: the event store's pool
    conn = psycopg2.connect(inbox.dsn, connect_timeout=3)
    try:
        with conn, conn.cursor() as cur:
            cur.execute("SELECT origin, position FROM inbox_tracking")
            return {origin: int(position) for origin, position in cur.fetchall()}
    finally:
        conn.close()
