"""Fixtures of the loyalty tests. Real here: the event store (in memory and PostgreSQL, through the
root `event_store_env` fixture); nothing else runs, no broker, no other service."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from crm_loyalty.application import LoyaltyAccounts
from crm_loyalty.tests.support import PROGRAMME


class SmallProgrammeAccounts(LoyaltyAccounts):
    """The application on the tests' small programme, so a few orders move tiers."""

    programme = PROGRAMME


@pytest.fixture
def accounts(event_store_env: dict[str, str]) -> Iterator[LoyaltyAccounts]:
    """The loyalty application on a fresh store, closed afterwards."""
    app = SmallProgrammeAccounts(env=event_store_env)
    yield app
    app.close()
