"""`list_opportunities`: opportunities opened and closed through commands, then listed by status,
stage, owner and customer.

Real: PostgreSQL (a fresh schema) for the event store and the listing; the projector is driven
synchronously (`project()`); the worker is nameko's worker_factory with those real dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from crm_contracts.errors import InvalidRequestError
from crm_runtime.tests.listing_support import listed_service, postgres_env
from crm_sales.application import Opportunities
from crm_sales.service import SalesService

CUSTOMER = str(uuid4())
OPENING = {"customer_id": CUSTOMER, "title": "50 CRM seats", "owner": "rep-wang-wei", "amount": "12000.00",
           "currency": "CNY", "expected_close_date": "2027-06-30"}


@pytest.fixture
def listed(test_database: dict[str, str], postgres_schema: str) -> Iterator[Any]:
    app = Opportunities(env=postgres_env(test_database, postgres_schema))
    with listed_service(SalesService, app, test_database, postgres_schema) as found:
        yield found
    app.close()


def test_opportunities_are_listed_by_status_stage_owner_and_customer(listed):
    service, project = listed
    lost = service.open_opportunity(OPENING)
    zhao = service.open_opportunity({**OPENING, "owner": "rep-zhao-lei"})
    other = service.open_opportunity({**OPENING, "customer_id": str(uuid4())})
    service.lose(lost["id"], {"reason": "chose a competitor"}, expected_version=lost["version"])
    project()

    def ids(filters: dict[str, str]) -> list[str]:
        return [o["id"] for o in service.list_opportunities(filters)["items"]]

    assert ids({"status": "lost"}) == [lost["id"]]
    assert ids({"status": "open"}) == [other["id"], zhao["id"]]
    assert ids({"owner": "rep-zhao-lei"}) == [zhao["id"]]
    assert ids({"customer_id": CUSTOMER, "stage": "prospecting"}) == [zhao["id"]]
    assert service.list_opportunities()["items"][0] == service.get_opportunity(lost["id"])


def test_an_unknown_filter_is_refused_naming_it(listed):
    service, _ = listed
    with pytest.raises(InvalidRequestError) as refused:
        service.list_opportunities({"amount": "1.00"})
    assert list(refused.value.details["fields"]) == ["amount"]
