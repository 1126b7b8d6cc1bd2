"""The order service's policies, driven through a PolicyInbox with contract-shaped envelopes, on the
in-memory store and on PostgreSQL: a won opportunity becomes one order however often it is delivered;
the customer's default shipping address and credit limit reach the orders placed after them; an order
placed without an address waits for one before it can be confirmed."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from crm_order.application import Orders
from crm_order.domain import Order, ShippingAddressMissingError
from crm_runtime.policy import PolicyInbox
from tests.support.envelopes import Stream, payload

ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "line2": None, "city": "Beijing", "region": None,
           "postal_code": "100022", "country": "CN", "phone": None}


def won(customer_id: UUID, opportunity_id: UUID) -> dict:
    return payload("opportunity_won", customer_id=customer_id, opportunity_id=opportunity_id)


def test_a_won_opportunity_places_one_order_even_when_delivered_twice(orders: Orders, inbox: PolicyInbox) -> None:
    customer_id, opportunity_id = uuid4(), uuid4()
    event = Stream("sales").publish("opportunity_won", won(customer_id, opportunity_id))
    first = inbox.receive([event])
    again = inbox.receive([event])
    assert (first.applied, again.duplicates, again.failed) == (1, 1, [])
    order = orders.order(Order.id_for_opportunity(opportunity_id))
    assert (order.customer_id, order.total, order.version) == (customer_id, Decimal("12300.00"), 1)
    assert [line["sku"] for line in order.lines] == ["CRM-SEAT", "ONBOARD"]
    assert order.placed_at.isoformat() == payload("opportunity_won")["won_at"]  # dated by the win, not now()
    assert len(orders.orders_of_customer(customer_id)) == 1


def test_an_order_without_an_address_stays_placed_until_it_gets_one(orders: Orders, inbox: PolicyInbox) -> None:
    opportunity_id = uuid4()
    inbox.receive([Stream("sales").publish("opportunity_won", won(uuid4(), opportunity_id))])
    order_id = Order.id_for_opportunity(opportunity_id)
    assert orders.order(order_id).shipping_address is None
    with pytest.raises(ShippingAddressMissingError) as refused:
        orders.confirm(order_id, "ERP-1")
    assert "shipping_address" in refused.value.details["fields"]
    assert orders.order(order_id).status == "placed"
    orders.set_shipping_address(order_id, ADDRESS)
    assert orders.confirm(order_id, "ERP-1").status == "confirmed"


def test_the_customers_default_shipping_address_and_credit_limit_reach_the_order(
    orders: Orders, inbox: PolicyInbox
) -> None:
    customer_id, opportunity_id = uuid4(), uuid4()
    customers = Stream("customer")
    address_changed = customers.publish("customer_address_changed", payload(
        "customer_address_changed", customer_id=customer_id, address=ADDRESS, default=True))
    billing = customers.publish("customer_address_changed", payload(
        "customer_address_changed", customer_id=customer_id, kind="billing",
        address={**ADDRESS, "line1": "1 Finance Street"}, default=True))
    rated = customers.publish("customer_credit_rating_changed", payload(
        "customer_credit_rating_changed", customer_id=customer_id, limit="10000.00"))
    outcome = inbox.receive([address_changed, billing, rated, address_changed])
    assert (outcome.applied, outcome.duplicates) == (3, 1)
    terms = orders.customer_terms(customer_id)
    assert (terms.default_shipping_address, terms.credit_limit, terms.version) == (ADDRESS, Decimal("10000.00"), 4)

    inbox.receive([Stream("sales").publish("opportunity_won", won(customer_id, opportunity_id))])
    order = orders.order(Order.id_for_opportunity(opportunity_id))
    assert order.shipping_address == ADDRESS
    assert (order.over_credit_limit, order.credit_limit) == (True, Decimal("10000.00"))  # 12,300 > 10,000
    assert orders.confirm(order.id).status == "confirmed"  # flagged, not blocked


def test_a_non_default_address_changes_nothing(orders: Orders, inbox: PolicyInbox) -> None:
    customer_id = uuid4()
    event = Stream("customer").publish("customer_address_changed", payload(
        "customer_address_changed", customer_id=customer_id, default=False))
    assert inbox.receive([event]).applied == 1
    assert orders.customer_terms(customer_id).default_shipping_address is None
    assert orders.tracked_position("customer") == 1
