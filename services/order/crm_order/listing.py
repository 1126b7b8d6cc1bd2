"""The order service's lists (crm_runtime.listing): orders, by status, customer and payment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm_order.domain import Order
from crm_runtime.listing import Listing, ListingKind

#: What `list_orders` filters on: the order's status and customer (indexed columns), and doc keys.
ORDER_FILTERS = ("status", "customer_id", "payment_status", "currency", "opportunity_id")


def order_columns(order: Order) -> dict[str, Any]:
    return {"customer_id": order.customer_id, "status": order.status}


def order_listing(order_view: Callable[[Order], dict[str, Any]]) -> Listing:
    """The lists of the `order` schema; items are `order_view`'s answer (what `get` returns)."""
    return Listing("order", {Order: ListingKind("orders", order_view, order_columns, ORDER_FILTERS)})
