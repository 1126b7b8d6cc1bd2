"""`list_accounts`: accounts enrolled through commands, then listed by tier and customer.

Real: PostgreSQL (a fresh schema) for the event store and the listing; the projector is driven
synchronously (`project()`); the worker is nameko's worker_factory with those real dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from crm_contracts.errors import InvalidRequestError
from crm_loyalty.application import LoyaltyAccounts
from crm_loyalty.service import LoyaltyService
from crm_runtime.tests.listing_support import listed_service, postgres_env

AT = datetime.now(UTC).isoformat()


@pytest.fixture
def listed(test_database: dict[str, str], postgres_schema: str) -> Iterator[Any]:
    app = LoyaltyAccounts(env=postgres_env(test_database, postgres_schema))
    with listed_service(LoyaltyService, app, test_database, postgres_schema) as found:
        yield found
    app.close()


def test_accounts_are_listed_by_tier_and_customer(listed):
    service, project = listed
    first, second = str(uuid4()), str(uuid4())
    service.enrol({"customer_id": first, "at": AT})
    service.enrol({"customer_id": second, "at": AT})
    project()

    everyone = service.list_accounts()
    assert [a["customer_id"] for a in everyone["items"]] == [second, first]
    assert everyone["items"][0] == service.get(second)  # an item is what `get` answers
    tier = everyone["items"][0]["tier"]
    assert service.list_accounts({"tier": tier})["total"] == 2
    assert service.list_accounts({"tier": "no-such-tier"})["items"] == []
    assert [a["customer_id"] for a in service.list_accounts({"customer_id": first})["items"]] == [first]


def test_an_unknown_filter_is_refused_naming_it(listed):
    service, _ = listed
    with pytest.raises(InvalidRequestError) as refused:
        service.list_accounts({"balance": "0"})
    assert list(refused.value.details["fields"]) == ["balance"]
