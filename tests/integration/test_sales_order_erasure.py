"""Erasure by crypto-shredding in the sales and order services, on real PostgreSQL: a `pg_dump` of the
service's schema (its event store, data keys, ledger, listing) holds the customer's name, street and
phone while they are a customer, and no byte of them once customer_erased was applied; the service's
`erasure_status` says "pending", then "done" once the key cache's time has passed. And the order list
follows a merge and its undoing (the re-pointing events re-project the rows).

Real: PostgreSQL, each service's application, its policies (a PolicyInbox fed contract-shaped envelopes,
as the policy consumer feeds it), its nameko worker with its real listing (projected synchronously),
pg_dump. Replaced: the customer service (its events are given as envelopes)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from crm_order.application import Orders
from crm_order.policies import policies as order_policies
from crm_order.service import OrderService
from crm_runtime.policy import Policies, PolicyInbox
from crm_runtime.tests.listing_support import listed_application
from crm_sales.application import Opportunities
from crm_sales.policies import policies as sales_policies
from crm_sales.service import SalesService
from tests.support.databases import leaked, pg_dump
from tests.support.envelopes import Stream, customer_erased, customer_merged, customer_unmerged, payload

pytestmark = pytest.mark.integration

AT = "2026-11-20T09:30:00+00:00"


def secrets() -> tuple[str, str, str]:
    """A name, a street and a phone no other test writes (tests share the database)."""
    tag = uuid.uuid4().hex[:8]
    return f"Qiao Wenjing {tag}", f"19 Shennan Avenue {tag}", f"+86 755 5555 {int(tag, 16) % 10000:04d}"


def erase(app: Any, policies: Policies, customer: Stream, customer_id: uuid.UUID) -> None:
    """customer_erased, applied by the service's policies as its consumer would."""
    envelope = customer_erased(customer, customer_id, "DSR-2026-0042", erased_at=AT)
    outcome = PolicyInbox(app, policies, fetch=None).receive([envelope])
    assert outcome.failed == [] and not outcome.parked


@pytest.fixture
def order_service(test_database: dict[str, str], postgres_schema: str) -> Iterator[tuple[Any, Any, Orders]]:
    with listed_application(Orders, OrderService, test_database, postgres_schema) as (app, worker, project):
        yield worker, project, app


@pytest.fixture
def sales_service(test_database: dict[str, str], postgres_schema: str) -> Iterator[tuple[Any, Any, Opportunities]]:
    with listed_application(Opportunities, SalesService, test_database, postgres_schema) as (app, worker, project):
        yield worker, project, app


def test_after_erasure_the_order_schema_holds_no_byte_of_the_customer(order_service, test_database,
                                                                      postgres_schema) -> None:
    worker, project, app = order_service
    name, street, phone = hidden = secrets()
    customer, li_na = Stream("customer"), uuid.uuid4()
    address = {"recipient": name, "line1": street, "city": "Shenzhen", "country": "CN", "phone": phone}
    envelope = customer.publish("customer_address_changed", payload(
        "customer_address_changed", customer_id=li_na, kind="shipping", address={**address, "line2": None,
                                                                                  "region": None,
                                                                                  "postal_code": None},
        default=True, changed_at=AT))
    PolicyInbox(app, order_policies, fetch=None).receive([envelope])
    lines = [{"sku": "LIC", "description": "CRM Pro licence", "quantity": 2, "unit_price": "100.00"}]
    shipped = worker.place({"customer_id": str(li_na), "currency": "CNY", "lines": lines}, command_id="o-1")
    shipped = worker.confirm(shipped["order_id"], {"reference": "ERP-1"})
    worker.ship(shipped["order_id"], {"shipment_id": "S1", "carrier": "SF Express", "lines": {"LIC": 2}})
    worker.record_payment(shipped["order_id"], {"payment_id": "P1", "amount": "200.00", "currency": "CNY",
                                                "method": "bank_transfer"})
    cancelled = worker.place({"customer_id": str(li_na), "currency": "CNY", "lines": lines,
                              "shipping_address": address}, command_id="o-2")
    worker.cancel(cancelled["order_id"], {"reason": f"{name} moved away"})
    project()
    assert leaked(pg_dump(test_database, postgres_schema), hidden) == list(hidden)
    assert worker.erasure_status(str(li_na)) == {"state": "pending"}

    erase(app, order_policies, customer, li_na)
    project()

    assert leaked(pg_dump(test_database, postgres_schema), hidden) == []
    listed = worker.list_orders({"customer_id": str(li_na)})["items"]
    assert sorted(o["total"] for o in listed) == ["200.00", "200.00"]  # the anonymous facts stay
    assert worker.get(shipped["order_id"])["payment_status"] == "paid"
    app.data_keys.ttl = 0  # the key cache of another replica has expired
    assert worker.erasure_status(str(li_na)) == {"state": "done"}
    assert worker.erasure_status(str(uuid.uuid4())) == {"state": "done"}  # never a customer here


def test_after_erasure_the_sales_schema_holds_no_byte_of_the_customer(sales_service, test_database,
                                                                      postgres_schema) -> None:
    worker, project, app = sales_service
    name, street, phone = hidden = secrets()
    customer, li_na = Stream("customer"), uuid.uuid4()
    linked = customer.publish("lead_linked", payload(
        "lead_linked", lead_id=uuid.uuid4(), customer_id=li_na, name=name, company=street))
    PolicyInbox(app, sales_policies, fetch=None).receive([linked])
    lost = worker.open_opportunity({"customer_id": str(li_na), "title": f"Seats for {name}", "owner": "rep-wang-wei",
                        "amount": "1000.00", "currency": "CNY", "expected_close_date": "2027-01-31"},
                       command_id="s-1")
    worker.lose(lost["id"], {"reason": f"{name} called {phone}: too expensive"})
    project()
    assert leaked(pg_dump(test_database, postgres_schema), hidden) == list(hidden)

    erase(app, sales_policies, customer, li_na)
    project()

    assert leaked(pg_dump(test_database, postgres_schema), hidden) == []
    listed = worker.list_opportunities({"customer_id": str(li_na)})["items"]
    assert sorted(Decimal(o["amount"]) for o in listed) == [Decimal("1000.00"), Decimal("12000.00")]
    app.data_keys.ttl = 0
    assert worker.erasure_status(str(li_na)) == {"state": "done"}


def test_the_order_list_follows_a_merge_and_its_undoing(order_service) -> None:
    worker, project, app = order_service
    customer, absorbed, survivor = Stream("customer"), uuid.uuid4(), uuid.uuid4()
    lines = [{"sku": "LIC", "description": "CRM Pro licence", "quantity": 1, "unit_price": "100.00"}]
    order = worker.place({"customer_id": str(absorbed), "currency": "CNY", "lines": lines}, command_id="m-1")
    inbox = PolicyInbox(app, order_policies, fetch=None)

    def listed(customer_id: uuid.UUID) -> list[str]:
        project()
        return [o["order_id"] for o in worker.list_orders({"customer_id": str(customer_id)})["items"]]

    inbox.receive([customer_merged(customer, absorbed, survivor, "merge-7", merged_at=AT)])
    assert (listed(absorbed), listed(survivor)) == ([], [order["order_id"]])
    assert worker.get(order["order_id"])["customer_id"] == str(survivor)

    inbox.receive([customer_unmerged(customer, absorbed, survivor, "merge-7", unmerged_at=AT)])
    assert (listed(absorbed), listed(survivor)) == ([order["order_id"]], [])
