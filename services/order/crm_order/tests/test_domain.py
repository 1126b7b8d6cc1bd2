"""The Order aggregate, alone: no store, no broker."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from crm_contracts.errors import CrmError, RuleViolationError
from crm_order.domain import (
    CurrencyMismatchError,
    DuplicateIdConflictError,
    IllegalTransitionError,
    InvalidOrderDataError,
    NothingToChargeError,
    Order,
    OverpaymentError,
    OverRefundError,
    QuantityExceededError,
    ShipmentNotFoundError,
    UnknownLineError,
    returned_value,
)
from crm_order.tests.support import ADDRESS, an_order, assert_invariants, order_lines, replay

TOTAL = Decimal("12400.00")


def event_names(order: Order) -> list[str]:
    return [type(e).__name__ for e in order.collect_events()]


def a_confirmed_order() -> Order:
    order = an_order()
    order.confirm("ERP-1")
    order.collect_events()
    return order


def a_delivered_order(paid: Decimal = TOTAL) -> Order:
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 10, "DAY": 2})
    order.record_delivery("S1")
    if paid:
        order.record_payment("P1", paid, "CNY", "bank_transfer")
    order.collect_events()
    return order


def test_placing_prices_the_lines_and_records_one_event():
    order = an_order()
    assert [line["line_total"] for line in order.lines] == [Decimal("10800.00"), Decimal("1600.00")]
    assert (order.subtotal, order.discount_total, order.total) == (Decimal("13600.00"), Decimal("1200.00"), TOTAL)
    assert (order.status, order.payment_status, order.outstanding) == ("placed", "unpaid", TOTAL)
    assert order.shipping_address["line2"] is None
    assert event_names(order) == ["Placed"]


def test_line_totals_round_half_up_to_cents():
    lines = _line(quantity=3, unit_price=Decimal("10.01"), discount=Decimal("12.5"))
    assert an_order(lines=lines).total == Decimal("26.28")  # 30.03 x 0.875 = 26.27625


def test_an_order_from_an_opportunity_has_the_id_derived_from_it():
    opportunity = uuid4()
    first = an_order(opportunity_id=opportunity, quote_id=uuid4())
    again = an_order(opportunity_id=opportunity)
    assert first.id == again.id == Order.id_for_opportunity(opportunity)
    assert an_order().id != an_order().id


def _line(**overrides: Any) -> list[dict[str, Any]]:
    line = {"sku": "A", "description": "a", "quantity": 1, "unit_price": Decimal("1.00")}
    line.update(overrides)
    return [line]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"currency": "XXX"}, "currency"),
        ({"currency": "cny"}, "currency"),
        ({"customer_id": "not-a-uuid"}, "customer_id"),
        ({"lines": []}, "lines"),
        ({"lines": order_lines() + [order_lines()[0]]}, "lines.2.sku"),
        ({"lines": _line(sku=" ")}, "lines.0.sku"),
        ({"lines": _line(description="")}, "lines.0.description"),
        ({"lines": _line(quantity=0)}, "lines.0.quantity"),
        ({"lines": _line(quantity=1.5)}, "lines.0.quantity"),
        ({"lines": _line(quantity=True)}, "lines.0.quantity"),
        ({"lines": _line(unit_price=1.5)}, "lines.0.unit_price"),
        ({"lines": _line(unit_price=Decimal("1.005"))}, "lines.0.unit_price"),
        ({"lines": _line(unit_price=Decimal("-1.00"))}, "lines.0.unit_price"),
        ({"lines": _line(unit_price=Decimal("NaN"))}, "lines.0.unit_price"),
        ({"lines": _line(discount=Decimal("101"))}, "lines.0.discount"),
        ({"lines": _line(discount=5)}, "lines.0.discount"),
        ({"lines": _line(colour="red")}, "lines.0.colour"),
        ({"shipping_address": {**ADDRESS, "city": " "}}, "shipping_address.city"),
        ({"shipping_address": {**ADDRESS, "country": "China"}}, "shipping_address.country"),
        ({"shipping_address": {**ADDRESS, "floor": "12"}}, "shipping_address.floor"),
        ({"at": datetime(2026, 11, 20, 9, 30)}, "at"),
    ],
)
def test_placing_with_bad_data_names_the_field(overrides, field):
    with pytest.raises(InvalidOrderDataError) as raised:
        an_order(**overrides)
    assert list(raised.value.details["fields"]) == [field]


def test_an_order_worth_nothing_is_a_rule_violation_naming_its_lines():
    # Each line is well formed; the business takes no order whose total is zero (409, not 422).
    with pytest.raises(NothingToChargeError) as raised:
        an_order(lines=_line(discount=Decimal("100")))
    assert isinstance(raised.value, RuleViolationError)
    assert list(raised.value.details["fields"]) == ["lines"]


def test_confirming_twice_or_after_cancelling_is_refused():
    order = an_order()
    order.confirm("ERP-1")
    with pytest.raises(IllegalTransitionError):
        order.confirm("ERP-2")
    with pytest.raises(IllegalTransitionError):
        order.confirm()
    cancelled = an_order()
    cancelled.cancel("changed their mind")
    with pytest.raises(IllegalTransitionError):
        cancelled.confirm()


def test_erp_resending_its_confirmation_changes_nothing():
    order = an_order()
    order.confirm("ERP-1")
    version = order.version
    order.confirm("ERP-1")
    assert order.version == version and order.erp_reference == "ERP-1"
    assert [type(e).__name__ for e in order.collect_events()].count("Confirmed") == 1  # none for the resend


def test_nothing_ships_before_confirmation():
    order = an_order()
    with pytest.raises(IllegalTransitionError) as raised:
        order.ship("S1", "SF Express", {"LIC": 1})
    assert raised.value.details["status"] == "placed"
    assert order.shipments == {}


def test_partial_shipments_until_every_line_is_shipped():
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 4}, tracking_number="SF1")
    assert order.status == "partially_shipped"
    order.ship("S2", "EMS", {"LIC": 6, "DAY": 2})
    assert order.status == "shipped"
    first, second = order.collect_events()
    assert (first.fully_shipped, second.fully_shipped) == (False, True)
    assert first.lines == [{"sku": "LIC", "description": "CRM Pro licence", "quantity": 4}]
    assert first.shipping_address == order.shipping_address


@pytest.mark.parametrize(
    ("lines", "error", "field"),
    [
        ({"LIC": 11}, QuantityExceededError, "lines.LIC"),
        ({"NOPE": 1}, UnknownLineError, "lines.NOPE"),  # a well-formed SKU, not this order's: 409
        ({"LIC": 0}, InvalidOrderDataError, "lines.LIC"),
        ({}, InvalidOrderDataError, "lines"),
    ],
)
def test_shipping_more_than_ordered_or_unknown_lines_is_refused(lines, error, field):
    order = a_confirmed_order()
    with pytest.raises(error) as raised:
        order.ship("S1", "SF Express", lines)
    assert field in raised.value.details["fields"]


def test_shipping_more_than_is_left_after_an_earlier_shipment_is_refused():
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 8})
    with pytest.raises(QuantityExceededError) as raised:
        order.ship("S2", "SF Express", {"LIC": 3})
    assert raised.value.details["available"] == 2


def test_a_resent_shipment_is_ignored_and_a_reused_shipment_id_is_a_conflict():
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 4})
    order.collect_events()
    order.ship("S1", "SF Express", {"LIC": 4})
    assert event_names(order) == []
    with pytest.raises(DuplicateIdConflictError):
        order.ship("S1", "SF Express", {"LIC": 5})


def test_delivery_is_per_shipment_and_the_last_one_delivers_the_order():
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 10})
    order.ship("S2", "EMS", {"DAY": 2})
    order.collect_events()
    order.record_delivery("S2")
    assert order.status == "partially_delivered"
    order.record_delivery("S1")
    assert order.status == "delivered"
    first, second = order.collect_events()
    assert (first.fully_delivered, second.fully_delivered) == (False, True)
    assert second.lines == [{"sku": "LIC", "description": "CRM Pro licence", "quantity": 10}]
    order.record_delivery("S1")
    assert event_names(order) == []
    with pytest.raises(ShipmentNotFoundError):
        order.record_delivery("S9")


def test_delivering_a_partial_shipment_never_makes_the_order_delivered():
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 10})
    order.record_delivery("S1")
    assert order.status == "partially_shipped"
    assert order.delivered == {"LIC": 10, "DAY": 0}


def test_payments_until_paid_and_paid_is_recorded_once():
    order = an_order()
    order.collect_events()
    order.record_payment("P1", Decimal("5000.00"), "CNY", "bank_transfer", "RCPT-1")
    assert (order.payment_status, order.outstanding) == ("partially_paid", Decimal("7400.00"))
    assert event_names(order) == ["PaymentRecorded"]
    order.record_payment("P2", Decimal("7400.00"), "CNY", "card")
    events = order.collect_events()
    assert [type(e).__name__ for e in events] == ["PaymentRecorded", "Paid"]
    assert (events[1].amount, events[1].currency) == (TOTAL, "CNY")
    assert order.payment_status == "paid"


def test_a_payment_over_the_outstanding_amount_is_refused():
    order = an_order()
    order.record_payment("P1", Decimal("12000.00"), "CNY", "card")
    with pytest.raises(OverpaymentError) as raised:
        order.record_payment("P2", Decimal("400.01"), "CNY", "card")
    assert raised.value.details["outstanding"] == "400.00"
    assert order.paid == Decimal("12000.00")


@pytest.mark.parametrize(
    ("amount", "currency", "method", "error", "field"),
    [
        (Decimal("10.00"), "USD", "card", CurrencyMismatchError, "currency"),
        (10.0, "CNY", "card", InvalidOrderDataError, "amount"),
        (Decimal("0.00"), "CNY", "card", InvalidOrderDataError, "amount"),
        (Decimal("-5.00"), "CNY", "card", InvalidOrderDataError, "amount"),
        (Decimal("0.001"), "CNY", "card", InvalidOrderDataError, "amount"),
        (Decimal("10.00"), "CNY", "barter", InvalidOrderDataError, "method"),
    ],
)
def test_a_payment_must_be_decimal_money_in_the_order_currency(amount, currency, method, error, field):
    with pytest.raises(error) as raised:
        an_order().record_payment("P1", amount, currency, method)
    assert field in raised.value.details["fields"]


def test_a_resent_payment_is_ignored_even_after_the_order_is_paid():
    order = an_order()
    order.record_payment("P1", TOTAL, "CNY", "bank_transfer", "RCPT-1")
    order.collect_events()
    order.record_payment("P1", TOTAL, "CNY", "bank_transfer", "RCPT-1")
    assert event_names(order) == []
    assert order.paid == TOTAL


def test_a_payment_id_reused_for_another_amount_is_a_conflict():
    order = an_order()
    order.record_payment("P1", Decimal("100.00"), "CNY", "card")
    with pytest.raises(DuplicateIdConflictError) as raised:
        order.record_payment("P1", Decimal("200.00"), "CNY", "card")
    assert "payment_id" in raised.value.details["fields"]


def test_cancelling_before_shipping_carries_the_reason_and_what_was_paid():
    order = a_confirmed_order()
    order.record_payment("P1", Decimal("100.00"), "CNY", "card")
    order.collect_events()
    order.cancel("  customer changed their mind ")
    cancelled, refunded = order.collect_events()
    assert (cancelled.reason, cancelled.amount_paid, order.status) == (
        "customer changed their mind", Decimal("100.00"), "cancelled"
    )
    assert isinstance(refunded, Order.Refunded)
    assert (refunded.amount, refunded.refunded_total, order.refunded) == (Decimal("100.00"),) * 3
    with pytest.raises(IllegalTransitionError):
        order.cancel("again")
    with pytest.raises(IllegalTransitionError):
        order.record_payment("P2", Decimal("1.00"), "CNY", "card")
    with pytest.raises(IllegalTransitionError):
        order.ship("S1", "SF Express", {"LIC": 1})


def test_cancelling_needs_a_reason_and_is_refused_once_anything_shipped():
    order = a_confirmed_order()
    with pytest.raises(InvalidOrderDataError):
        order.cancel(" ")
    order.ship("S1", "SF Express", {"DAY": 1})
    with pytest.raises(IllegalTransitionError) as raised:
        order.cancel("too late")
    assert raised.value.details["status"] == "partially_shipped"


def test_a_return_of_delivered_goods_with_a_refund():
    order = a_delivered_order()
    order.record_return("R1", {"LIC": 2}, Decimal("2160.00"), "CNY", "two seats too many")
    (recorded,) = order.collect_events()
    assert (recorded.refund, recorded.refunded_total) == (Decimal("2160.00"), Decimal("2160.00"))
    assert recorded.lines == [{"sku": "LIC", "description": "CRM Pro licence", "quantity": 2}]
    assert (order.returned["LIC"], order.refunded, order.status) == (2, Decimal("2160.00"), "delivered")


def test_only_delivered_goods_can_be_returned():
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 10})
    order.ship("S2", "SF Express", {"DAY": 2})
    order.record_delivery("S1")
    with pytest.raises(QuantityExceededError):
        order.record_return("R1", {"DAY": 1}, Decimal("0.00"), "CNY")
    order.record_return("R1", {"LIC": 10}, Decimal("0.00"), "CNY")
    with pytest.raises(QuantityExceededError) as raised:
        order.record_return("R2", {"LIC": 1}, Decimal("0.00"), "CNY")
    assert raised.value.details["available"] == 0


def test_a_refund_is_never_more_than_was_paid():
    order = a_delivered_order(paid=Decimal("1000.00"))
    with pytest.raises(OverRefundError) as raised:
        order.record_return("R1", {"LIC": 1}, Decimal("1000.01"), "CNY")
    assert raised.value.details["limit"] == "1000.00"
    order.record_return("R1", {"LIC": 1}, Decimal("1000.00"), "CNY")
    with pytest.raises(OverRefundError):
        order.record_return("R2", {"LIC": 1}, Decimal("0.01"), "CNY")


def test_a_refund_is_never_more_than_the_goods_returned_are_worth():
    order = a_delivered_order()
    with pytest.raises(OverRefundError) as raised:
        order.record_return("R1", {"DAY": 1}, Decimal("800.01"), "CNY")
    assert raised.value.details["limit"] == "800.00"
    with pytest.raises(CurrencyMismatchError):
        order.record_return("R1", {"DAY": 1}, Decimal("800.00"), "EUR")


def test_a_resent_return_is_ignored_and_a_reused_return_id_is_a_conflict():
    order = a_delivered_order()
    order.record_return("R1", {"DAY": 1}, Decimal("800.00"), "CNY")
    order.collect_events()
    order.record_return("R1", {"DAY": 1}, Decimal("800.00"), "CNY")
    assert event_names(order) == []
    with pytest.raises(DuplicateIdConflictError):
        order.record_return("R1", {"DAY": 2}, Decimal("800.00"), "CNY")


def test_returned_values_of_a_line_add_up_to_its_total_whatever_the_rounding():
    line = {"quantity": 3, "line_total": Decimal("10.01")}
    parts = [returned_value(line, already, 1) for already in range(3)]
    assert sum(parts) == Decimal("10.01")


@pytest.mark.parametrize(
    "command",
    [
        lambda o: o.ship("S2", "EMS", {"LIC": 1, "DAY": 5}),
        lambda o: o.record_payment("P2", Decimal("99999.00"), "CNY", "card"),
        lambda o: o.record_return("R1", {"LIC": 1, "DAY": 3}, Decimal("0.00"), "CNY"),
        lambda o: o.cancel("too late"),
    ],
)
def test_a_refused_command_changes_nothing(command):
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 5, "DAY": 1})
    order.record_delivery("S1")
    order.collect_events()
    before = order.progress()
    with pytest.raises(CrmError):
        command(order)
    assert order.progress() == before
    assert order.collect_events() == []


def test_the_state_is_rebuilt_from_the_events_alone():
    order = an_order()
    order.confirm("ERP-1")
    order.ship("S1", "SF Express", {"LIC": 10, "DAY": 2})
    order.record_payment("P1", TOTAL, "CNY", "card")
    order.record_delivery("S1")
    order.record_return("R1", {"DAY": 1}, Decimal("800.00"), "CNY")
    history = order.collect_events()
    rebuilt = replay(history)
    assert rebuilt.progress() == order.progress()
    assert_invariants(rebuilt)


def test_progress_answers_where_is_my_order():
    order = a_confirmed_order()
    order.ship("S1", "SF Express", {"LIC": 4}, tracking_number="SF1")
    order.record_delivery("S1")
    progress = order.progress()
    assert progress["status"] == "partially_shipped"
    assert progress["lines"][0] == {
        "sku": "LIC", "description": "CRM Pro licence", "ordered": 10, "shipped": 4, "delivered": 4, "returned": 0
    }
    (shipment,) = progress["shipments"]
    assert (shipment["shipment_id"], shipment["carrier"], shipment["tracking_number"], shipment["lines"]) == (
        "S1", "SF Express", "SF1", {"LIC": 4}
    )
    assert shipment["delivered_at"] is not None
