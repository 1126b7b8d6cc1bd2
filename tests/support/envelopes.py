"""Contract-shaped envelopes for policy tests: what an origin's relay would publish, payloads built
from the contracts' samples (crm_contracts.catalog), positions chained as the relay chains them."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from crm_contracts.catalog import catalog

#: Namespace of the test envelopes' event ids (deterministic: a redelivery has the same id).
TEST_EVENT_NAMESPACE = uuid.UUID("f1d3a7c2-6b84-4e09-a5c1-3e7d9b2f0a68")


def payload(event_type: str, version: int = 1, **overrides: Any) -> dict[str, Any]:
    """The contract's sample payload of `event_type`, with `overrides` (UUIDs given as UUIDs are fine)."""
    sample = dict(catalog.get(event_type, version).sample)
    sample.update({k: str(v) if isinstance(v, uuid.UUID) else v for k, v in overrides.items()})
    return sample


@dataclass
class Stream:
    """One origin's published events in log order: each envelope's `previous` is the one before it."""

    origin: str
    position: int = 0

    def publish(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        version: int = 1,
        occurred_at: str = "2027-03-10T12:00:00+00:00",
        correlation_id: str | None = "test-correlation",
    ) -> dict[str, Any]:
        """The next envelope of this stream, carrying `data` as its payload."""
        previous, self.position = self.position, self.position + 1
        return {
            "event_id": str(uuid.uuid5(TEST_EVENT_NAMESPACE, f"{self.origin}:{self.position}")),
            "type": event_type,
            "version": version,
            "origin": self.origin,
            "position": self.position,
            "previous": previous,
            "occurred_at": occurred_at,
            "customer_id": data.get("customer_id"),
            "correlation_id": correlation_id,
            "causation_id": None,
            "payload": data,
        }


def customer_merged(customers: Stream, absorbed: uuid.UUID, survivor: uuid.UUID, merge_id: str = "merge-1",
                    **overrides: Any) -> dict[str, Any]:
    """The customer service's next envelope: `absorbed` was merged into `survivor` by `merge_id`."""
    return customers.publish("customer_merged", payload(
        "customer_merged", customer_id=absorbed, survivor_id=survivor, merge_id=merge_id, **overrides))


def customer_unmerged(customers: Stream, absorbed: uuid.UUID, survivor: uuid.UUID, merge_id: str = "merge-1",
                      **overrides: Any) -> dict[str, Any]:
    """The customer service's next envelope: the merge `merge_id` of `absorbed` into `survivor` was undone."""
    return customers.publish("customer_unmerged", payload(
        "customer_unmerged", customer_id=absorbed, survivor_id=survivor, merge_id=merge_id, **overrides))


def customer_erased(customers: Stream, customer_id: uuid.UUID, request_id: str | None = None,
                    **overrides: Any) -> dict[str, Any]:
    """The customer service's next envelope: `customer_id` was erased, by request `request_id`
    (`DSR-<customer id>` unless given)."""
    return customers.publish("customer_erased", payload(
        "customer_erased", customer_id=customer_id, request_id=request_id or f"DSR-{customer_id}", **overrides))
