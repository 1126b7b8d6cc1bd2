"""crm_runtime.metrics without a broker or database: scrape-time families, the lag arithmetic, and the
nameko provider's classification of workers (HTTP routes by template and status, RPC by transport)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from crm_runtime import metrics


def samples(registry: CollectorRegistry) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = generate_latest(registry).decode()
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_platform_lag_is_what_each_origin_published_minus_what_each_consumer_applied() -> None:
    lag = metrics.Lag(
        origins={"customer": (12, 10, 9), "order": (4, 4, 4)},
        consumers={"customer360": {"customer": 6, "order": 4}, "loyalty": {"order": 3, "gone": 7}},
        parked={"customer360": 1, "customer.relay": 0},
    )
    registry = CollectorRegistry()
    registry.register(metrics.PlatformLagCollector(lambda: lag))

    found = samples(registry)

    assert found[("crm_consumer_lag_events", (("consumer", "customer360"), ("origin", "customer")))] == 3
    assert found[("crm_consumer_lag_events", (("consumer", "customer360"), ("origin", "order")))] == 0
    assert found[("crm_consumer_lag_events", (("consumer", "loyalty"), ("origin", "order")))] == 1
    assert not any(labels == (("consumer", "loyalty"), ("origin", "gone")) for _, labels in found)  # no such origin
    assert found[("crm_platform_relay_lag_events", (("origin", "customer"),))] == 2
    assert found[("crm_platform_parked", (("consumer", "customer360"),))] == 1


def test_a_scrape_time_metric_has_one_declared_kind() -> None:
    out = metrics.Families()
    out.counter("crm_relay_published", {"origin": "customer"}, 3)
    with pytest.raises(TypeError):
        out.gauge("crm_relay_published", {"origin": "customer"}, 3)
    with pytest.raises(KeyError):
        out.gauge("crm_not_declared", {}, 1)


class BrokenSource:
    def collect_metrics(self, out: metrics.Families) -> None:
        raise OSError("the database is down")


def test_a_source_that_fails_is_counted_and_the_scrape_still_answers() -> None:
    source = BrokenSource()
    metrics.watch(source)
    try:
        body, content_type = metrics.exposition()
    finally:
        metrics.unwatch(source)
    assert content_type.startswith("text/plain")
    assert b'crm_scrape_errors_total{source="BrokenSource"}' in body
    assert b"process_resident_memory_bytes" in body


class Worker:
    """The part of nameko's WorkerContext the provider reads (hashable, like the real one)."""

    def __init__(self, entrypoint: Any) -> None:
        self.entrypoint = entrypoint


def worker(entrypoint: Any) -> Any:
    return Worker(entrypoint)


def test_the_provider_counts_routes_by_template_and_status_and_rpc_by_transport() -> None:
    from nameko.rpc import Rpc

    from crm_runtime.nameko.metrics import Metrics, entrypoint_kind
    from crm_runtime.nameko.rpc import HttpRpc
    from crm_runtime.nameko.web import HttpEntrypoint

    route = HttpEntrypoint("GET", "/v1/things/<thing_id>")
    route.method_name = "get_thing"
    command = HttpRpc("/rpc/register")
    command.method_name = "register"
    amqp = Rpc()
    amqp.method_name = "register"
    assert [entrypoint_kind(e) for e in (route, command, amqp)] == ["http", "rpc-http", "rpc-amqp"]

    provider = Metrics()
    provider.container = SimpleNamespace(service_name="things")  # type: ignore[assignment]
    labels = ("things", "GET", "/v1/things/<thing_id>", "404")
    before = metrics.HTTP_REQUESTS.labels(*labels)._value.get()
    ctx = worker(route)
    provider.worker_setup(ctx)
    provider.worker_result(ctx, SimpleNamespace(status_code=404))
    assert metrics.HTTP_REQUESTS.labels(*labels)._value.get() == before + 1

    failed = worker(command)
    provider.worker_setup(failed)
    provider.worker_result(failed, None, (ValueError, ValueError("bad"), None))
    assert metrics.WORKER_DURATION.labels("things", "register", "rpc-http", "ValueError")._sum.get() >= 0
