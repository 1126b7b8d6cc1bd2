"""Fixtures shared by the sales tests driven through the policies (test_policies, test_rights). Real here:
the event store (in memory and PostgreSQL, through the root `event_store_env` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm_runtime.policy import PolicyInbox
from crm_sales.application import Opportunities
from crm_sales.policies import policies
from tests.support.envelopes import Stream


@pytest.fixture
def opportunities(event_store_env: dict[str, str]) -> Iterator[Opportunities]:
    """The sales application on a fresh store (on both backends), closed afterwards."""
    app = Opportunities(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def inbox(opportunities: Opportunities) -> PolicyInbox:
    """The sales service's policies over `opportunities`, fed envelopes as its policy consumer feeds them."""
    return PolicyInbox(opportunities, policies, fetch=None)


@pytest.fixture
def customer() -> Stream:
    """What the customer service publishes, in order."""
    return Stream("customer")
