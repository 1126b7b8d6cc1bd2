"""Orders on a real event store: the same suite on the in-memory store and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.errors import CrmError, StaleVersionError
from crm_order.application import Orders
from crm_order.domain import Order, OrderAlreadyPlacedError, OrderNotFoundError, OverpaymentError
from crm_order.tests.support import ADDRESS, assert_invariants, order_lines

TOTAL = Decimal("12400.00")


@pytest.fixture
def orders(event_store_env):
    app = Orders(env=event_store_env)
    yield app
    app.close()


def place(orders: Orders, customer_id=None, **kwargs):
    return orders.place(customer_id or uuid4(), "CNY", order_lines(), ADDRESS, **kwargs)


def test_place_then_load_keeps_money_as_decimal_and_times_aware(orders):
    at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    placed = place(orders, at=at)
    loaded = orders.order(placed.id)
    assert (loaded.total, loaded.currency, loaded.version) == (TOTAL, "CNY", 1)
    assert isinstance(loaded.lines[0]["unit_price"], Decimal) and loaded.lines[0]["discount"] == Decimal("10")
    assert loaded.placed_at == at
    assert loaded.progress() == placed.progress()


def test_the_whole_lifecycle_survives_the_store(orders):
    order = place(orders)
    orders.confirm(order.id, "ERP-SO-1", expected_version=1)
    orders.record_payment(order.id, "P1", Decimal("5000.00"), "CNY", "bank_transfer", "RCPT-1")
    orders.ship(order.id, "S1", "SF Express", {"LIC": 10}, tracking_number="SF1")
    orders.ship(order.id, "S2", "EMS", {"DAY": 2})
    orders.record_delivery(order.id, "S1")
    orders.record_delivery(order.id, "S2")
    orders.record_payment(order.id, "P2", Decimal("7400.00"), "CNY", "card")
    orders.record_return(order.id, "R1", {"DAY": 1}, Decimal("800.00"), "CNY", "not needed")
    loaded = orders.order(order.id)
    assert (loaded.status, loaded.payment_status, loaded.paid, loaded.refunded) == (
        "delivered", "paid", TOTAL, Decimal("800.00")
    )
    assert loaded.erp_reference == "ERP-SO-1"
    assert_invariants(loaded)


def test_a_resent_payment_changes_nothing_in_the_store(orders):
    order = place(orders)
    orders.record_payment(order.id, "P1", TOTAL, "CNY", "card")
    version = orders.order(order.id).version
    orders.record_payment(order.id, "P1", TOTAL, "CNY", "card")
    assert orders.order(order.id).version == version


def test_an_opportunity_becomes_one_order_only(orders):
    opportunity = uuid4()
    first = place(orders, opportunity_id=opportunity, quote_id=uuid4())
    with pytest.raises(OrderAlreadyPlacedError) as raised:
        place(orders, opportunity_id=opportunity)
    assert raised.value.details["existing_order_id"] == str(first.id)


def test_placing_with_a_command_id_twice_places_one_order(orders):
    first = place(orders, command_id="client:key-1")
    head = orders.recorder.max_notification_id()
    again = place(orders, command_id="client:key-1")
    assert again.id == first.id == Order.id_for_command("client:key-1")
    assert orders.recorder.max_notification_id() == head


def test_a_racing_delivery_of_a_placement_answers_the_order_the_winner_placed(orders):
    # The winner's order is stored but this delivery did not see it processed: its save collides.
    winner = Order.place(uuid4(), "CNY", order_lines(), ADDRESS, order_id=Order.id_for_command("client:key-1"))
    orders.save(winner)
    assert place(orders, command_id="client:key-1").customer_id == winner.customer_id


def test_a_repeated_command_on_an_order_answers_it_as_it_is(orders):
    order = place(orders)
    confirmed = orders.confirm(order.id, expected_version=1, command_id="c-1")
    again = orders.confirm(order.id, expected_version=1, command_id="c-1")
    assert (again.version, again.status) == (confirmed.version, "confirmed")


def test_a_placement_from_an_opportunity_repeated_under_its_command_id_answers_the_order(orders):
    opportunity = uuid4()
    first = place(orders, opportunity_id=opportunity, command_id="policy:sales:42")
    assert place(orders, opportunity_id=opportunity, command_id="policy:sales:42").id == first.id
    with pytest.raises(OrderAlreadyPlacedError):
        place(orders, opportunity_id=opportunity, command_id="another-command")


def test_a_stale_expected_version_changes_nothing(orders):
    order = place(orders)
    orders.confirm(order.id, expected_version=1)
    with pytest.raises(StaleVersionError) as raised:
        orders.cancel(order.id, "changed their mind", expected_version=1)
    assert raised.value.details["current_version"] == 2
    assert orders.order(order.id).status == "confirmed"


def test_unknown_order_is_not_found(orders):
    with pytest.raises(OrderNotFoundError):
        orders.record_payment(uuid4(), "P1", Decimal("1.00"), "CNY", "card")


def test_a_refused_command_stores_nothing(orders):
    order = place(orders)
    with pytest.raises(CrmError):
        orders.ship(order.id, "S1", "SF Express", {"LIC": 1})
    assert orders.order(order.id).version == 1


def test_concurrent_payments_never_exceed_the_total(orders):
    order = place(orders)

    def pay(i):
        try:
            orders.record_payment(order.id, f"P{i}", Decimal("5000.00"), "CNY", "card")
        except (StaleVersionError, OverpaymentError):
            return False
        return True

    with ThreadPoolExecutor(6) as pool:
        accepted = sum(pool.map(pay, range(6)))
    loaded = orders.order(order.id)
    assert loaded.paid <= loaded.total
    assert loaded.paid == Decimal("5000.00") * accepted
    assert 1 <= accepted <= 2


def test_where_is_my_order_for_one_order(orders):
    order = place(orders)
    orders.confirm(order.id)
    orders.ship(order.id, "S1", "SF Express", {"LIC": 4}, tracking_number="SF1")
    orders.record_delivery(order.id, "S1")
    progress = orders.progress(order.id)
    assert progress["status"] == "partially_shipped"
    assert [(line["sku"], line["ordered"], line["shipped"], line["delivered"]) for line in progress["lines"]] == [
        ("LIC", 10, 4, 4),
        ("DAY", 2, 0, 0),
    ]
    assert [(s["shipment_id"], s["carrier"], s["tracking_number"]) for s in progress["shipments"]] == [
        ("S1", "SF Express", "SF1")
    ]


def test_where_are_my_orders_for_one_customer(orders):
    customer, other = uuid4(), uuid4()
    first = place(orders, customer)
    place(orders, other)
    second = place(orders, customer)
    orders.confirm(second.id)
    orders.cancel(first.id, "duplicate order")
    progress = orders.orders_of_customer(customer)
    assert [(p["order_id"], p["status"]) for p in progress] == [(first.id, "cancelled"), (second.id, "confirmed")]
    assert orders.orders_of_customer(uuid4()) == []


def test_a_customers_orders_are_found_across_log_pages(orders, monkeypatch):
    monkeypatch.setattr("crm_runtime.rights.OWNERS_PAGE", 2)
    customer = uuid4()
    placed = [place(orders, customer if i % 2 else None).id for i in range(7)]
    assert [p["order_id"] for p in orders.orders_of_customer(customer)] == placed[1::2]
