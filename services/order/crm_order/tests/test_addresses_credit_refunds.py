"""The order rules added with the lifecycle: no confirmation without a shipping address, the credit
limit flagged, a cancellation after payment refunded, discounts in hundredths (the rule sales quotes by),
and CustomerTerms, order's copy of a customer's default addresses and credit limit. Pure domain."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_order.domain import (
    CustomerTerms,
    IllegalTransitionError,
    InvalidOrderDataError,
    Order,
    ShippingAddressMissingError,
    is_over_credit_limit,
)
from crm_order.tests.support import ADDRESS, an_order, assert_invariants, order_lines, replay

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
FULL_ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "line2": None, "city": "Beijing", "region": None,
                "postal_code": None, "country": "CN", "phone": None}


def test_an_order_without_an_address_is_placed_but_not_confirmed_until_it_has_one():
    order = an_order(shipping_address=None)
    with pytest.raises(ShippingAddressMissingError):
        order.confirm("ERP-1")
    order.set_shipping_address(ADDRESS, T0)
    order.set_shipping_address(ADDRESS, T0)  # the same address again changes nothing
    order.confirm("ERP-1")
    events = order.collect_events()
    assert [type(e).__name__ for e in events] == ["Placed", "ShippingAddressSet", "Confirmed"]
    assert replay(events).shipping_address == FULL_ADDRESS
    with pytest.raises(IllegalTransitionError):
        order.set_shipping_address({**ADDRESS, "city": "Shanghai"}, T0)  # SCM may be picking it already


def test_a_bad_address_names_the_field():
    order = an_order(shipping_address=None)
    with pytest.raises(InvalidOrderDataError) as raised:
        order.set_shipping_address({**ADDRESS, "country": "China"}, T0)
    assert "shipping_address.country" in raised.value.details["fields"]


@pytest.mark.parametrize(
    ("total", "currency", "limit", "flagged"),
    [
        (Decimal("12400.00"), "CNY", Decimal("10000.00"), True),
        (Decimal("10000.00"), "CNY", Decimal("10000.00"), False),  # up to the limit is within it
        (Decimal("12400.00"), "CNY", None, False),  # no limit known
        (Decimal("12400.00"), "USD", Decimal("10000.00"), False),  # the limit is in CNY: not comparable
    ],
)
def test_the_credit_limit_flags_an_order_above_it(total, currency, limit, flagged):
    assert is_over_credit_limit(total, currency, limit) is flagged


def test_an_order_over_the_credit_limit_is_placed_flagged():
    order = an_order(credit_limit=Decimal("10000.00"))
    assert (order.over_credit_limit, order.progress()["over_credit_limit"]) == (True, True)
    assert an_order(credit_limit=Decimal("20000.00")).over_credit_limit is False


def test_cancelling_after_payment_refunds_what_was_paid_and_not_refunded():
    order = an_order()
    order.confirm()
    order.record_payment("P1", Decimal("12400.00"), "CNY", "card")
    order.collect_events()
    order.cancel("customer changed their mind", T0)
    cancelled, refunded = order.collect_events()
    assert type(refunded).__name__ == "Refunded"
    assert (refunded.amount, refunded.refunded_total, refunded.reason) == (
        Decimal("12400.00"), Decimal("12400.00"), "customer changed their mind")
    assert (order.refunded, order.progress()["refunded"]) == (Decimal("12400.00"),) * 2
    assert_invariants(order)


def test_cancelling_an_unpaid_order_refunds_nothing():
    order = an_order()
    order.collect_events()
    order.cancel("duplicate order")
    assert [type(e).__name__ for e in order.collect_events()] == ["Cancelled"]
    assert order.refunded == Decimal(0)


@pytest.mark.parametrize("discount", [Decimal("12.345"), Decimal("0.001"), Decimal("-1"), Decimal("100.01")])
def test_a_discount_finer_than_hundredths_or_out_of_range_is_refused(discount):
    lines = order_lines()
    lines[0]["discount"] = discount
    with pytest.raises(InvalidOrderDataError) as raised:
        Order.place(uuid4(), "CNY", lines, ADDRESS)
    assert "lines.0.discount" in raised.value.details["fields"]


def test_a_discount_in_hundredths_is_accepted():
    lines = order_lines()
    lines[0]["discount"] = Decimal("12.35")
    assert Order.place(uuid4(), "CNY", lines, ADDRESS).lines[0]["discount"] == Decimal("12.35")


def test_customer_terms_keep_the_default_addresses_and_the_credit_limit():
    terms = CustomerTerms(customer_id=uuid4())
    terms.record_address("shipping", ADDRESS, False, T0)  # not the default: none of order's business
    assert terms.default_shipping_address is None
    terms.record_address("shipping", ADDRESS, True, T0)
    terms.record_address("shipping", ADDRESS, True, T0)  # the same again changes nothing
    terms.record_credit("A", Decimal("50000.00"))
    terms.record_credit("A", Decimal("50000.00"))
    events = terms.collect_events()
    assert [type(e).__name__ for e in events] == ["Started", "DefaultAddressRecorded", "CreditRecorded"]
    rebuilt = replay(events)
    assert (rebuilt.default_shipping_address, rebuilt.credit_limit) == (FULL_ADDRESS, Decimal("50000.00"))
    assert CustomerTerms.id_for(terms.customer_id) == terms.id
    with pytest.raises(InvalidOrderDataError):
        terms.record_address("office", ADDRESS, True, T0)
