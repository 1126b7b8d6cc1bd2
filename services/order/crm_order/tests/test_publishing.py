"""Publishing: every order event the application stores comes out of the feed as a payload that
validates against its published contract, and every public domain event has a translation."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.catalog import catalog
from crm_order.application import Orders
from crm_order.domain import Order
from crm_order.publishing import translator
from crm_order.tests.support import ADDRESS, order_lines
from crm_runtime.feed import EventFeed
from tests.support.publishing import assert_published_under_contracts, domain_event_classes

PUBLISHED = {
    "order_placed", "order_confirmed", "order_shipped", "order_delivered", "order_payment_recorded",
    "order_paid", "order_cancelled", "order_return_recorded", "order_refunded", "order_shipping_address_set",
}


@pytest.fixture
def orders(event_store_env):
    app = Orders(env=event_store_env)
    yield app
    app.close()


@pytest.fixture
def envelopes(orders):
    """The feed after one order went the whole way, another was cancelled, a third was cancelled after
    payment (and refunded), and a fourth was placed without an address and given one."""
    customer = uuid4()
    order = orders.place(customer, "CNY", order_lines(), ADDRESS, opportunity_id=uuid4(), quote_id=uuid4())
    orders.confirm(order.id, "ERP-SO-1")
    orders.record_payment(order.id, "P1", Decimal("5000.00"), "CNY", "bank_transfer", "RCPT-1")
    orders.ship(order.id, "S1", "SF Express", {"LIC": 10}, tracking_number="SF1")
    orders.ship(order.id, "S2", "EMS", {"DAY": 2})
    orders.record_delivery(order.id, "S1")
    orders.record_delivery(order.id, "S2")
    orders.record_payment(order.id, "P2", Decimal("7400.00"), "CNY", "card")
    orders.record_return(order.id, "R1", {"DAY": 1}, Decimal("800.00"), "CNY", "not needed")
    cancelled = orders.place(customer, "CNY", order_lines(), ADDRESS)
    orders.cancel(cancelled.id, "customer changed their mind")
    refunded = orders.place(customer, "CNY", order_lines(), ADDRESS)
    orders.record_payment(refunded.id, "P3", Decimal("12400.00"), "CNY", "card")
    orders.cancel(refunded.id, "out of stock")
    addressless = orders.place(customer, "CNY", order_lines())
    orders.set_shipping_address(addressless.id, ADDRESS)
    return EventFeed(orders, translator).events_since(0, 1000)


def test_every_payload_validates_against_its_contract(envelopes):
    assert {e["type"] for e in envelopes} == PUBLISHED
    assert_published_under_contracts(envelopes, "order")
    for envelope in envelopes:
        contract = catalog.get(envelope["type"], envelope["version"])
        # Complete, and nothing a consumer cannot find in the contract.
        assert set(envelope["payload"]) == set(contract.schema().fields), envelope["type"]
        assert envelope["customer_id"] == envelope["payload"]["customer_id"]


def test_the_feed_tells_the_story_in_order(envelopes):
    assert [e["type"] for e in envelopes] == [
        "order_placed", "order_confirmed", "order_payment_recorded", "order_shipped", "order_shipped",
        "order_delivered", "order_delivered", "order_payment_recorded", "order_paid", "order_return_recorded",
        "order_placed", "order_cancelled",
        "order_placed", "order_payment_recorded", "order_paid", "order_cancelled", "order_refunded",
        "order_placed", "order_shipping_address_set",
    ]
    by_type = {e["type"]: e["payload"] for e in envelopes}
    assert (by_type["order_refunded"]["amount"], by_type["order_refunded"]["reason"]) == ("12400.00", "out of stock")
    assert envelopes[-2]["payload"]["shipping_address"] is None
    assert by_type["order_paid"]["amount"] == "12400.00" and by_type["order_paid"]["currency"] == "CNY"
    assert envelopes[0]["payload"]["shipping_address"]["city"] == "Beijing"
    assert [e["payload"]["fully_delivered"] for e in envelopes if e["type"] == "order_delivered"] == [False, True]
    assert by_type["order_return_recorded"]["refund"] == "800.00"


def test_every_public_domain_event_has_a_translation():
    domain_events = domain_event_classes(Order)
    # Every order event is public but the erasure's mark (customer.customer_erased said it already).
    assert domain_events - {Order.CustomerForgotten} == set(translator.published_classes)

