"""Checks every service's publishing tests share: what a feed publishes is what its contracts say."""

from __future__ import annotations

from typing import Any

from eventsourcing.domain import Aggregate

from crm_contracts.catalog import catalog


def domain_event_classes(*aggregates: type[Aggregate]) -> set[type]:
    """The event classes the aggregates record (not eventsourcing's base classes Event and Created)."""
    return {
        cls
        for aggregate in aggregates
        for cls in vars(aggregate).values()
        if isinstance(cls, type) and issubclass(cls, Aggregate.Event) and cls.__name__ not in ("Event", "Created")
    }


def assert_published_under_contracts(envelopes: list[dict[str, Any]], origin: str) -> None:
    """Every envelope comes from `origin` and its payload is valid under its registered contract."""
    assert envelopes, "the feed published nothing"
    for envelope in envelopes:
        contract = catalog.get(envelope["type"], envelope["version"])
        assert envelope["origin"] == contract.origin == origin, envelope["type"]
        assert contract.schema().validate(envelope["payload"]) == {}, envelope["type"]
