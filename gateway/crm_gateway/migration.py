"""The gateway's migration (entry point crm.migrations:gateway): every table of schema `gateway`."""

from __future__ import annotations

from typing import Any

from crm_gateway import idempotency
from crm_gateway.subscribers import registry, webhooks


def create_tables(cur: Any) -> None:
    """Idempotency keys and instances, the subscribers registry, webhook subscriptions and deliveries."""
    idempotency.create_tables(cur)
    registry.create_tables(cur)
    webhooks.create_tables(cur)
