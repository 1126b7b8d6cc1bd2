"""Builders shared by the order tests: a typical order, and the invariants every order must keep."""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from crm_contracts.vocabulary.order import ORDER_STATUSES, PAYMENT_STATUSES
from crm_order.domain import Order

ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}


def order_lines() -> list[dict[str, Any]]:
    """Two lines: 10 licences at 10% off (10,800.00) and 2 onboarding days (1,600.00)."""
    return [
        {"sku": "LIC", "description": "CRM Pro licence", "quantity": 10, "unit_price": Decimal("1200.00"),
         "discount": Decimal("10")},
        {"sku": "DAY", "description": "Onboarding day", "quantity": 2, "unit_price": Decimal("800.00")},
    ]


def an_order(customer_id: UUID | None = None, **overrides: Any) -> Order:
    """A placed order of `order_lines()` in CNY, total 12,400.00."""
    fields: dict[str, Any] = {
        "customer_id": customer_id or uuid4(),
        "currency": "CNY",
        "lines": order_lines(),
        "shipping_address": ADDRESS,
    }
    fields.update(overrides)
    return Order.place(**fields)


def replay(events: Iterable[Order.Event]) -> Order:
    """Rebuild an order from its events alone, as the repository does."""
    order: Any = None
    for domain_event in events:
        order = domain_event.mutate(order)
    return order


def assert_invariants(order: Order) -> None:
    """What no sequence of commands may break."""
    assert order.status in ORDER_STATUSES
    assert order.payment_status in PAYMENT_STATUSES
    assert Decimal(0) <= order.paid <= order.total
    assert Decimal(0) <= order.refunded <= order.paid
    assert order.paid == sum((p["amount"] for p in order.payments.values()), Decimal(0))
    returns_refunded = sum((r["refund"] for r in order.returns.values()), Decimal(0))
    if order.cancelled_at is not None:  # a cancellation refunds everything paid
        assert order.refunded == order.paid
    else:
        assert order.refunded == returns_refunded
    for line in order.lines:
        sku = line["sku"]
        assert 0 <= order.returned[sku] <= order.delivered[sku] <= order.shipped[sku] <= line["quantity"]
        assert order.shipped[sku] == sum(s["lines"].get(sku, 0) for s in order.shipments.values())
    if any(order.shipped.values()):
        assert order.confirmed_at is not None, "shipped before confirmation"
        assert order.status != "cancelled", "cancelled after shipping"
    if order.cancelled_at is not None:
        assert not any(order.shipped.values())
    assert (order.paid_at is not None) == (order.payment_status == "paid")
