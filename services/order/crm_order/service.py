"""The order nameko service: RPC commands and queries, thin adapters over Orders."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from crm_contracts import order as contracts
from crm_contracts.fields import schema_of
from crm_order.application import Orders
from crm_order.domain import Order
from crm_order.listing import order_listing
from crm_order.policies import policies
from crm_order.publishing import translator
from crm_runtime.listing import Listing
from crm_runtime.nameko.dependencies import EventSourcedApplication, PolicyConsumer, PostgresCursor
from crm_runtime.nameko.listing import ListingProjection
from crm_runtime.nameko.rights import CustomerRightsService
from crm_runtime.nameko.rpc import aggregate_id, rpc
from crm_runtime.nameko.service import EventSourcedService


def order_key(order_id: str) -> UUID:
    """The order id argument of a call, checked (a non-UUID is `invalid`, not a crash)."""
    return aggregate_id(order_id, "order_id")


def order_view(order: Order) -> dict[str, Any]:
    """An order as the RPC answer: where it is (the contract's OrderProgressSchema), JSON-ready."""
    return schema_of(contracts.OrderProgressSchema).dump(order.progress())  # type: ignore[no-any-return]


class OrderService(CustomerRightsService, EventSourcedService):
    """Orders: place, confirm, ship, deliver, pay, cancel, return; where is my order; where the erasure
    of a customer stands here (`erasure_status`).

    Every command takes the caller's `command_id`: a redelivered or retried call takes effect once and
    answers the order as it is now. Commands on an order take the `expected_version` the caller saw.
    """

    name = "order"
    translator = translator
    application: Orders = EventSourcedApplication(Orders, translator)  # type: ignore[assignment]
    reactions = PolicyConsumer(policies)

    @rpc
    def place(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Place; without an opportunity, the order's id derives from `command_id` (one order per command)."""
        fields = schema_of(contracts.PlaceOrderRequest).load(payload)
        return order_view(self.application.place(**fields, command_id=command_id))

    @rpc
    def get(self, order_id: str) -> dict[str, Any]:
        """Where is my order: status, per-line quantities, shipments, money."""
        return order_view(self.application.order(order_key(order_id)))

    @rpc
    def orders_of_customer(self, customer_id: str) -> list[dict[str, Any]]:
        """Where are my orders: every order of one customer, oldest first."""
        orders = self.application.orders_of_customer(aggregate_id(customer_id, "customer_id"))
        return schema_of(contracts.OrderProgressSchema).dump(orders, many=True)  # type: ignore[no-any-return]

    @rpc
    def confirm(
        self, order_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.ConfirmOrderRequest).load(payload)
        order = self.application.confirm(order_key(order_id), **fields, expected_version=expected_version,
                                         command_id=command_id)
        return order_view(order)

    @rpc
    def set_shipping_address(
        self, order_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        """Give a placed order without one (or with a wrong one) its shipping address, before confirming."""
        fields = schema_of(contracts.SetShippingAddressRequest).load(payload)
        order = self.application.set_shipping_address(order_key(order_id), **fields,
                                                      expected_version=expected_version, command_id=command_id)
        return order_view(order)

    @rpc
    def ship(
        self, order_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.ShipOrderRequest).load(payload)
        order = self.application.ship(order_key(order_id), **fields, expected_version=expected_version,
                                      command_id=command_id)
        return order_view(order)

    @rpc
    def record_delivery(
        self, order_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.RecordDeliveryRequest).load(payload)
        order = self.application.record_delivery(order_key(order_id), **fields, expected_version=expected_version,
                                                 command_id=command_id)
        return order_view(order)

    @rpc
    def record_payment(
        self, order_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.RecordPaymentRequest).load(payload)
        order = self.application.record_payment(order_key(order_id), **fields, expected_version=expected_version,
                                                command_id=command_id)
        return order_view(order)

    @rpc
    def cancel(
        self, order_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.CancelOrderRequest).load(payload)
        order = self.application.cancel(order_key(order_id), **fields, expected_version=expected_version,
                                        command_id=command_id)
        return order_view(order)

    @rpc
    def record_return(
        self, order_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.RecordReturnRequest).load(payload)
        order = self.application.record_return(order_key(order_id), **fields, expected_version=expected_version,
                                               command_id=command_id)
        return order_view(order)


    # --- lists: eventually consistent (milliseconds behind commands), newest change first -------------
    # Filters are equality on the fields named; pages answer {"items", "page", "page_size", "total",
    # "total_exact"} (crm_runtime.listing); an item is what the matching get answers.

    db = PostgresCursor("order")
    listing: Listing = ListingProjection(order_listing(order_view))  # type: ignore[assignment]

    @rpc
    def list_orders(
        self, filters: dict[str, str] | None = None, page: int = 1, page_size: int = 20
    ) -> dict[str, Any]:
        """Orders: one page, filters status, customer_id, payment_status, currency, opportunity_id."""
        return self.listing.query(self.db, "orders", filters, page, page_size)
