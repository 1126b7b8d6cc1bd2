"""`list_orders`: orders placed and moved through commands, then listed with filters and paging.

Real: PostgreSQL (a fresh schema) for the event store and the listing; the projector is driven
synchronously (`project()`); the worker is nameko's worker_factory with those real dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from crm_contracts.errors import InvalidRequestError
from crm_order.application import Orders
from crm_order.service import OrderService
from crm_runtime.tests.listing_support import listed_service, postgres_env

LINES = [{"sku": "LIC", "description": "CRM Pro licence", "quantity": 2, "unit_price": "100.00"}]
ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}


@pytest.fixture
def listed(test_database: dict[str, str], postgres_schema: str) -> Iterator[Any]:
    app = Orders(env=postgres_env(test_database, postgres_schema))
    with listed_service(OrderService, app, test_database, postgres_schema) as found:
        yield found
    app.close()


def place(service: Any, customer_id: str) -> dict[str, Any]:
    return service.place({"customer_id": customer_id, "currency": "CNY", "lines": LINES, "shipping_address": ADDRESS})


def test_orders_are_listed_by_customer_and_status_newest_change_first(listed):
    service, project = listed
    mine, theirs = str(uuid4()), str(uuid4())
    first, second = place(service, mine), place(service, mine)
    place(service, theirs)
    service.confirm(first["order_id"], {"reference": "ERP-1"}, expected_version=first["version"])
    project()

    of_mine = service.list_orders({"customer_id": mine})
    assert [o["order_id"] for o in of_mine["items"]] == [first["order_id"], second["order_id"]]
    assert of_mine["items"][0] == service.get(first["order_id"])  # an item is what `get` answers
    assert (of_mine["total"], of_mine["page"], of_mine["page_size"]) == (2, 1, 20)
    assert [o["order_id"] for o in service.list_orders({"status": "confirmed"})["items"]] == [first["order_id"]]
    assert service.list_orders({"payment_status": "unpaid", "customer_id": theirs})["total"] == 1
    assert len(service.list_orders(None, page=2, page_size=2)["items"]) == 1


def test_an_unknown_filter_is_refused_naming_it(listed):
    service, _ = listed
    with pytest.raises(InvalidRequestError) as refused:
        service.list_orders({"total": "12.00"})
    assert list(refused.value.details["fields"]) == ["total"]
