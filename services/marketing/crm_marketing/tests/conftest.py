"""Fixtures shared by the marketing tests driven through the policies (test_policies, test_rights). Real
here: the event store (in memory and PostgreSQL, through the root `event_store_env` fixture)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm_marketing.application import Marketing
from crm_marketing.policies import policies
from crm_runtime.policy import PolicyInbox
from tests.support.envelopes import Stream


@pytest.fixture
def marketing(event_store_env: dict[str, str]) -> Iterator[Marketing]:
    """The marketing application on a fresh store, closed afterwards."""
    app = Marketing(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def inbox(marketing: Marketing) -> PolicyInbox:
    """Marketing's policies over `marketing`, fed envelopes as its policy consumer feeds them."""
    return PolicyInbox(marketing, policies, fetch=None)


@pytest.fixture
def customer() -> Stream:
    """The customer service's published events, in order."""
    return Stream("customer")
