"""Orders: the order service's commands (load, call, save) and queries."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from crm_contracts.errors import StaleVersionError
from crm_order.domain import Order, OrderAlreadyPlacedError, OrderNotFoundError
from crm_runtime.eventstore import ServiceApplication

#: Notifications read per query while folding the log for a customer's orders.
LOG_PAGE = 1000


class Orders(ServiceApplication):
    """Customer orders from placement to payment, shipment, delivery and returns."""

    service = "order"

    def place(
        self,
        customer_id: UUID,
        currency: str,
        lines: Sequence[Mapping[str, Any]],
        shipping_address: Mapping[str, str | None],
        opportunity_id: UUID | None = None,
        quote_id: UUID | None = None,
        at: datetime | None = None,
    ) -> Order:
        """Place an order; from an opportunity at most once (its id is derived from the opportunity)."""
        order = Order.place(customer_id, currency, lines, shipping_address, opportunity_id, quote_id, at)
        if opportunity_id is not None and self._exists(order.id):
            raise OrderAlreadyPlacedError(opportunity_id, order.id)
        try:
            self.save(order)
        except IntegrityError:
            if opportunity_id is not None:
                raise OrderAlreadyPlacedError(opportunity_id, order.id) from None
            raise
        return order

    def confirm(
        self,
        order_id: UUID,
        reference: str | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Order:
        """Confirm a placed order (ERP accepted it)."""
        order = self.order(order_id, expected_version)
        order.confirm(reference, at)
        self._save(order)
        return order

    def ship(
        self,
        order_id: UUID,
        shipment_id: str,
        carrier: str,
        lines: Mapping[str, int],
        tracking_number: str | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Order:
        """Record a shipment (SKU -> quantity) of a confirmed order."""
        order = self.order(order_id, expected_version)
        order.ship(shipment_id, carrier, lines, tracking_number, at)
        self._save(order)
        return order

    def record_delivery(
        self, order_id: UUID, shipment_id: str, at: datetime | None = None, expected_version: int | None = None
    ) -> Order:
        """Record that one shipment was delivered."""
        order = self.order(order_id, expected_version)
        order.record_delivery(shipment_id, at)
        self._save(order)
        return order

    def record_payment(
        self,
        order_id: UUID,
        payment_id: str,
        amount: Decimal,
        currency: str,
        method: str,
        reference: str | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Order:
        """Record a payment reported by ERP; a resent payment id changes nothing."""
        order = self.order(order_id, expected_version)
        order.record_payment(payment_id, amount, currency, method, reference, at)
        self._save(order)
        return order

    def cancel(
        self, order_id: UUID, reason: str, at: datetime | None = None, expected_version: int | None = None
    ) -> Order:
        """Cancel an order before anything of it ships."""
        order = self.order(order_id, expected_version)
        order.cancel(reason, at)
        self._save(order)
        return order

    def record_return(
        self,
        order_id: UUID,
        return_id: str,
        lines: Mapping[str, int],
        refund: Decimal,
        currency: str,
        reason: str | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Order:
        """Record goods returned from delivered lines and the refund given."""
        order = self.order(order_id, expected_version)
        order.record_return(return_id, lines, refund, currency, reason, at)
        self._save(order)
        return order

    # --- queries ---------------------------------------------------------------------------------

    def order(self, order_id: UUID, expected_version: int | None = None) -> Order:
        """Load an order; with `expected_version`, insist it is the current version."""
        try:
            order: Order = self.repository.get(order_id)
        except AggregateNotFoundError:
            raise OrderNotFoundError(f"order {order_id} not found", order_id=str(order_id)) from None
        if expected_version is not None and order.version != expected_version:
            raise StaleVersionError(
                f"order {order_id} is at version {order.version}, not {expected_version}",
                current_version=order.version,
            )
        return order

    def progress(self, order_id: UUID) -> dict[str, Any]:
        """Where is my order: status, per-line ordered/shipped/delivered quantities, shipments."""
        return self.order(order_id).progress()

    def orders_of_customer(self, customer_id: UUID) -> list[dict[str, Any]]:
        """The progress of every order of one customer, oldest first.

        There is no read model yet, so this folds the notification log: it reads every `Placed`
        notification the service ever recorded (the recorder filters by topic, in pages of
        LOG_PAGE), decodes each to compare its customer, then loads each of the customer's orders.
        Cost: O(all orders ever placed) per call plus one aggregate load per order of the customer.
        Fine for a domain layer and modest volumes; the customer360 read model replaces it later.
        """
        placed_topic = get_topic(Order.Placed)
        order_ids: list[UUID] = []
        position = 0
        while True:
            notifications = self.recorder.select_notifications(
                start=position, limit=LOG_PAGE, topics=[placed_topic], inclusive_of_start=False
            )
            for notification in notifications:
                position = notification.id
                placed = self.mapper.to_domain_event(notification)
                if placed.customer_id == customer_id:
                    order_ids.append(placed.originator_id)
            if len(notifications) < LOG_PAGE:
                break
        return [self.order(order_id).progress() for order_id in order_ids]

    def _exists(self, order_id: UUID) -> bool:
        try:
            self.repository.get(order_id)
        except AggregateNotFoundError:
            return False
        return True

    def _save(self, order: Order) -> None:
        """Save an order; losing a race to another writer is the caller's to retry."""
        try:
            self.save(order)
        except IntegrityError:
            raise StaleVersionError(f"order {order.id} was changed concurrently; reload it and retry") from None
