"""Fixtures shared by the order tests driven through the policies (test_policies, test_rights). Real here:
the event store (in memory and PostgreSQL, through the root `event_store_env` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm_order.application import Orders
from crm_order.policies import policies
from crm_runtime.policy import PolicyInbox


@pytest.fixture
def orders(event_store_env: dict[str, str]) -> Iterator[Orders]:
    """The order application on a fresh store (on both backends), closed afterwards."""
    app = Orders(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def inbox(orders: Orders) -> PolicyInbox:
    """The order service's policies over `orders`, fed envelopes as its policy consumer feeds them."""
    return PolicyInbox(orders, policies, fetch=None)
