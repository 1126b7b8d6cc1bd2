"""The platform's Prometheus metrics, defined once: what every process serves at `/metrics`.

Two kinds, so that nothing has to be kept in sync by hand:

- counted where it happens (a one-line hook at the spot): HTTP requests and RPC/handler durations
  (the nameko `Metrics` provider, crm_runtime.nameko.metrics), events saved and group-commit batch
  sizes (crm_runtime.eventstore), the relay's confirm latency (crm_runtime.relay);
- read at scrape time by a collector: the relay's and the consumers' own counters (their `stats`),
  relay lag (log head minus the relay's cursor, and the age of the oldest event not yet published),
  consumer positions, parked events, database pool use. A process registers what it runs as a
  *source* (`watch`); the collector asks each source when Prometheus scrapes.

Consumer lag needs the origin's published position and the consumer's tracked position side by side,
and must rise while the consumer is down (its own /metrics is gone then): `PlatformLagCollector`
reads both from PostgreSQL and is served by `crm-admin exporter`, the way Kafka's lag exporters sit
beside the consumers rather than in them.

Process memory and CPU come from prometheus_client's default process collector.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

log = logging.getLogger(__name__)

#: Latency buckets (seconds) for requests, handlers and confirms: a few ms to tens of seconds.
LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

# --- counted where it happens ---------------------------------------------------------------------

HTTP_REQUESTS = Counter(
    "crm_http_requests",
    "HTTP requests answered, by route template and status.",
    ["service", "method", "route", "status"],
)
HTTP_DURATION = Histogram(
    "crm_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template.",
    ["service", "method", "route"],
    buckets=LATENCY_BUCKETS,
)
WORKER_DURATION = Histogram(
    "crm_handler_duration_seconds",
    "Time a service method took: RPC commands and queries (transport amqp or http), event handlers, timers.",
    ["service", "method", "kind", "outcome"],
    buckets=LATENCY_BUCKETS,
)
EVENTS_SAVED = Counter("crm_events_saved", "Domain events written to the event store by this process.", ["service"])
GROUP_COMMIT_BATCH = Histogram(
    "crm_group_commit_batch_size",
    "Saves that shared one event-store commit (group commit).",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 200),
)
RELAY_CONFIRM = Histogram(
    "crm_relay_confirm_seconds",
    "Time from publishing a relay batch to the broker confirming all of it.",
    ["origin"],
    buckets=LATENCY_BUCKETS,
)


def observe_confirm(origin: str, started: float) -> None:
    """Hook: a relay batch was confirmed, `started` being its time.monotonic() at publish."""
    RELAY_CONFIRM.labels(origin).observe(time.monotonic() - started)


# --- read at scrape time --------------------------------------------------------------------------


class Source(Protocol):
    """Something a process runs whose state is read when Prometheus scrapes (see `watch`)."""

    def collect_metrics(self, out: Families) -> None: ...


@dataclass
class Families:
    """The scrape-time metric families of one scrape, created on first use, with their documentation."""

    found: dict[str, Metric] = field(default_factory=dict)

    def counter(self, name: str, labels: dict[str, str], value: float) -> None:
        self._add(name, "counter", labels, value)

    def gauge(self, name: str, labels: dict[str, str], value: float) -> None:
        self._add(name, "gauge", labels, value)

    def _add(self, name: str, kind: str, labels: dict[str, str], value: float) -> None:
        declared, documentation = SCRAPED[name]
        if kind != declared:
            raise TypeError(f"{name} is declared a {declared}, not a {kind}")
        family: Any = self.found.get(name)
        if family is None:
            make = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = self.found[name] = make(name, documentation, labels=list(labels))
        family.add_metric(list(labels.values()), value)


#: Every scrape-time metric: its kind and what it means (one table: the dashboard and alerts are checked
#: against it, tests/test_deploy_files.py).
SCRAPED: dict[str, tuple[str, str]] = {
    "crm_relay_leader": ("gauge", "1 if this process holds the relay's advisory lock (publishes), else 0."),
    "crm_relay_published": ("counter", "Events the relay published and the broker confirmed."),
    "crm_relay_unroutable": ("counter", "Events published with no queue bound for their routing key (returned)."),
    "crm_relay_parked": (
        "counter",
        "Events the relay moved past unpublished (untranslatable, refused): outbox_parked.",
    ),
    "crm_relay_errors": ("counter", "Failures of the relay loop, each followed by a back-off and a retry."),
    "crm_relay_lag_events": (
        "gauge",
        "Notifications the relay has not scanned yet (log head minus cursor).",
    ),
    "crm_relay_lag_seconds": ("gauge", "Age of the oldest notification the relay has not scanned yet (0 when none)."),
    "crm_relay_head_position": ("gauge", "The newest notification id in the origin's log."),
    "crm_relay_published_position": ("gauge", "The position of the last event the relay published."),
    "crm_consumer_connected": ("gauge", "1 while the consumer is connected to the broker."),
    "crm_consumer_received": ("counter", "Messages the consumer took from its queue."),
    "crm_consumer_applied": ("counter", "Events applied (their effect committed with their tracking)."),
    "crm_consumer_duplicates": ("counter", "Events dropped as already applied (redeliveries, re-pulls)."),
    "crm_consumer_gap_pulled": ("counter", "Events pulled from an origin's feed to repair a gap or catch up."),
    "crm_consumer_dead_lettered": ("counter", "Events sent to the consumer's dead-letter queue with a reason."),
    "crm_consumer_parked": (
        "gauge",
        "Events parked by the consumer, for an operator (crm-admin dead-letters).",
    ),
    "crm_consumer_position": ("gauge", "The position of the last event applied, per origin."),
    "crm_db_pool_connections": ("gauge", "Database connections of a pool: size (max), in use, waiting callers."),
    "crm_consumer_lag_events": (
        "gauge",
        "Events an origin published that the consumer has not applied (exporter).",
    ),
    "crm_platform_parked": ("gauge", "Events parked platform-wide, per consumer (exporter)."),
    "crm_platform_relay_lag_events": ("gauge", "Notifications not yet scanned by each origin's relay (exporter)."),
    "crm_scrape_errors": ("counter", "Scrape-time readings that failed (the database unreachable, say), per source."),
}

_sources: weakref.WeakSet[Any] = weakref.WeakSet()
_sources_lock = threading.Lock()


def watch(source: Source) -> None:
    """Report `source` at every scrape of this process, as long as it lives (or until `unwatch`)."""
    with _sources_lock:
        _sources.add(source)


def unwatch(source: Source) -> None:
    with _sources_lock:
        _sources.discard(source)


class SourcesCollector(Collector):
    """Reads every watched source at scrape time. A source that fails is counted, never fatal."""

    def __init__(self) -> None:
        self.errors: dict[str, int] = {}

    def collect(self) -> Iterator[Metric]:
        out = Families()
        with _sources_lock:
            sources = list(_sources)
        for source in sources:
            try:
                source.collect_metrics(out)
            except Exception as exc:  # noqa: BLE001 - a scrape shows what it can; the failure is counted
                name = type(source).__name__
                self.errors[name] = self.errors.get(name, 0) + 1
                log.warning("reading metrics of %s failed: %s", name, exc)
        for name, count in self.errors.items():
            out.counter("crm_scrape_errors", {"source": name}, count)
        yield from out.found.values()


REGISTRY.register(SourcesCollector())


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The body and content type of a `/metrics` answer."""
    return generate_latest(registry), CONTENT_TYPE_LATEST


# --- what the sources report ----------------------------------------------------------------------


def relay_metrics(out: Families, relay: Any) -> None:
    """An OutboxRelay's counters (its stats) and its lag, read from its own event store now."""
    origin = {"origin": relay.origin}
    stats = relay.stats
    out.gauge("crm_relay_leader", origin, 1 if stats.is_leader else 0)
    out.counter("crm_relay_published", origin, stats.published)
    out.counter("crm_relay_unroutable", origin, stats.unroutable)
    out.counter("crm_relay_parked", origin, stats.parked)
    out.counter("crm_relay_errors", origin, stats.errors)
    app = relay.feed.app
    head = relay.feed.head()
    with app.recorder.datastore.transaction(commit=False) as cur:
        cur.execute(
            f'SELECT scanned_to, last_published FROM "{relay.schema}".outbox_cursor WHERE origin = %s', (relay.origin,)
        )
        row = cur.fetchone()
    scanned_to = int(row["scanned_to"]) if row else 0
    out.gauge("crm_relay_head_position", origin, head)
    out.gauge("crm_relay_published_position", origin, int(row["last_published"]) if row else 0)
    out.gauge("crm_relay_lag_events", origin, max(0, head - scanned_to))
    age = 0.0
    if head > scanned_to:
        oldest = app.recorder.select_notifications(start=scanned_to + 1, limit=1)
        if oldest:
            occurred = app.mapper.to_domain_event(oldest[0]).timestamp
            age = max(0.0, time.time() - occurred.timestamp())
    out.gauge("crm_relay_lag_seconds", origin, age)


def consumer_metrics(out: Families, consumer_name: str, consumer: Any, positions: dict[str, int]) -> None:
    """An EnvelopeConsumer's counters (its stats) and its tracked position per origin."""
    name = {"consumer": consumer_name}
    stats = consumer.stats
    out.gauge("crm_consumer_connected", name, 1 if stats.connected else 0)
    out.counter("crm_consumer_received", name, stats.received)
    out.counter("crm_consumer_applied", name, stats.applied)
    out.counter("crm_consumer_duplicates", name, stats.duplicates)
    out.counter("crm_consumer_gap_pulled", name, stats.pulled)
    out.counter("crm_consumer_dead_lettered", name, stats.dead_lettered)
    out.gauge("crm_consumer_parked", name, stats.parked)
    for origin, position in sorted(positions.items()):
        out.gauge("crm_consumer_position", {"consumer": consumer_name, "origin": origin}, position)


def pool_metrics(out: Families, pool: str, size: int, in_use: int, waiting: int | None = None) -> None:
    """One connection pool's use."""
    for state, value in (("size", size), ("in_use", in_use), ("waiting", waiting)):
        if value is not None:
            out.gauge("crm_db_pool_connections", {"pool": pool, "state": state}, value)


# --- the platform-wide lag exporter ---------------------------------------------------------------


@dataclass
class Lag:
    """Where every relay and consumer stands, read from PostgreSQL at one instant."""

    #: origin -> (log head, relay cursor, last published position)
    origins: dict[str, tuple[int, int, int]] = field(default_factory=dict)
    #: consumer -> origin -> tracked position
    consumers: dict[str, dict[str, int]] = field(default_factory=dict)
    #: consumer (or `<origin> relay`) -> events parked there
    parked: dict[str, int] = field(default_factory=dict)

    def consumer_lag(self) -> Iterable[tuple[str, str, int]]:
        """(consumer, origin, events published by the origin and not applied by the consumer)."""
        for consumer, tracked in sorted(self.consumers.items()):
            for origin, position in sorted(tracked.items()):
                if origin in self.origins:
                    yield consumer, origin, max(0, self.origins[origin][2] - position)


class PlatformLagCollector(Collector):
    """Consumer and relay lag of the whole platform, read at scrape time (`read` returns a Lag)."""

    def __init__(self, read: Callable[[], Lag]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        out = Families()
        lag = self.read()
        for origin, (head, scanned, _) in sorted(lag.origins.items()):
            out.gauge("crm_platform_relay_lag_events", {"origin": origin}, max(0, head - scanned))
        for consumer, origin, behind in lag.consumer_lag():
            out.gauge("crm_consumer_lag_events", {"consumer": consumer, "origin": origin}, behind)
        for consumer, count in sorted(lag.parked.items()):
            out.gauge("crm_platform_parked", {"consumer": consumer}, count)
        yield from out.found.values()
