"""Orders: the order service's commands (load, call, save) and queries."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import StaleVersionError
from crm_order.domain import REDACTED_ADDRESS, CustomerTerms, Order, OrderAlreadyPlacedError, OrderNotFoundError
from crm_runtime.commands import IdempotentApplication
from crm_runtime.crypto import DataKeys, PersonalFields
from crm_runtime.rights import (
    CustomerErasedError,
    ErasureState,
    erasure_state_of,
    forget_records,
    forget_subjects,
    records_of,
    refusing_erased_customers,
    repoint_records,
    restore_records,
    save_changed,
    subjects_of,
    survivor_path,
)

#: The personal fields of order's events, sealed (crm_runtime.crypto) under the data key of the customer
#: the order was placed for (domain.py says why), with what each reads as once that key is shredded: the
#: shipping address (recipient and phone included) and the free-text reasons a person gave. Amounts,
#: dates, lines and statuses stay clear.
PERSONAL_DATA: dict[type, PersonalFields] = {
    Order.Placed: PersonalFields({"shipping_address": None}, subject="customer_id"),
    Order.ShippingAddressSet: PersonalFields({"shipping_address": REDACTED_ADDRESS}, subject="placed_for"),
    Order.Confirmed: PersonalFields({"shipping_address": REDACTED_ADDRESS}, subject="placed_for"),
    Order.Shipped: PersonalFields({"shipping_address": REDACTED_ADDRESS}, subject="placed_for"),
    Order.Cancelled: PersonalFields({"reason": ""}, subject="placed_for"),
    Order.Refunded: PersonalFields({"reason": ""}, subject="placed_for"),
    Order.ReturnRecorded: PersonalFields({"reason": None}, subject="placed_for"),
    CustomerTerms.DefaultAddressRecorded: PersonalFields({"address": REDACTED_ADDRESS}, subject="customer_id"),
}
#: The events that say whose an order is from then on (each carries the order's `customer_id`).
ORDER_OWNER_EVENTS = (Order.Placed, Order.CustomerRepointed, Order.CustomerRestored)


def check_version(order: Order, expected_version: int | None) -> None:
    """With `expected_version` (the version the caller saw), insist it is the order's current one.

    Commands that add an entry with its own id (shipment, payment, return) check it only when the
    entry is new: a resent command then answers like its first run, not as stale.
    """
    if expected_version is not None and order.version != expected_version:
        raise StaleVersionError(
            f"order {order.id} is at version {order.version}, not {expected_version}",
            current_version=order.version,
        )


class Orders(IdempotentApplication):
    """Customer orders from placement to payment, shipment, delivery and returns.

    Every command takes the id of the call that carries it (`command_id`): a command delivered or
    retried twice takes effect once and answers the order as it is now (crm_runtime.commands).
    """

    service = "order"
    personal_data: ClassVar[dict[type, PersonalFields]] = PERSONAL_DATA
    data_keys: DataKeys

    def place(
        self,
        customer_id: UUID,
        currency: str,
        lines: Sequence[Mapping[str, Any]],
        shipping_address: Mapping[str, str | None] | None = None,
        opportunity_id: UUID | None = None,
        quote_id: UUID | None = None,
        at: datetime | None = None,
        command_id: str | None = None,
    ) -> Order:
        """Place an order; from an opportunity at most once (its id is derived from the opportunity).

        Placed directly with a `command_id`, the order's id is derived from it, so a command
        delivered twice answers the order its first delivery placed. Without a shipping address it
        takes the customer's default one, if known; the customer's credit limit flags it (domain.py).
        """
        if opportunity_id is not None:
            order_id = Order.id_for_opportunity(opportunity_id)
        elif command_id is not None:
            order_id = Order.id_for_command(command_id)
        else:
            order_id = None

        def place() -> Order:
            terms, merges = self._terms_for_placing(customer_id)
            address = shipping_address if shipping_address is not None else terms.default_shipping_address
            order = Order.place(customer_id, currency, lines, address, opportunity_id, quote_id, at, order_id,
                                credit_limit=terms.credit_limit)
            self._follow_merges(order, merges)
            if opportunity_id is not None and self._exists(order.id):
                raise OrderAlreadyPlacedError(opportunity_id, order.id)
            try:
                with refusing_erased_customers():
                    self.save(order)
            except IntegrityError:
                if opportunity_id is not None:
                    raise OrderAlreadyPlacedError(opportunity_id, order.id) from None
                if order_id is not None:
                    return self.order(order_id)  # this command ran before: its first outcome
                raise
            return order

        if order_id is None:
            return place()
        return self.once(command_id, place, lambda: self.order(order_id))

    def place_from_won_opportunity(
        self,
        opportunity_id: UUID,
        customer_id: UUID,
        quote_id: UUID,
        currency: str,
        lines: Sequence[Mapping[str, Any]],
        won_at: datetime,
    ) -> Order:
        """The opportunity_won policy's command: place the order of the won quote, once per opportunity.

        One save, of the order only (a reaction is one transaction with its tracking): the customer's
        terms are read for the default shipping address and the credit limit, never saved here. An
        order already placed from this opportunity is the answer, unchanged. Dated by the win, so a
        reaction applied late or replayed places the same order.
        """
        order_id = Order.id_for_opportunity(opportunity_id)
        if self._exists(order_id):
            return self.order(order_id)
        terms, merges = self._terms_for_placing(customer_id)
        priced = [{name: line[name] for name in ("sku", "description", "quantity", "unit_price", "discount")}
                  for line in lines]
        order = Order.place(customer_id, currency, priced, terms.default_shipping_address, opportunity_id, quote_id,
                            won_at, credit_limit=terms.credit_limit)
        self._follow_merges(order, merges)
        with refusing_erased_customers():
            self.save(order)
        return order

    def _terms_for_placing(self, customer_id: UUID) -> tuple[CustomerTerms, list[tuple[UUID, UUID, str]]]:
        """The terms an order for `customer_id` is placed on, and the merges it follows: the final
        survivor's terms when the customer was merged (the merged person's addresses and credit). An
        erased customer takes no order (CustomerErasedError)."""
        merges = survivor_path(self.repository, customer_id)
        terms = self.customer_terms(customer_id)
        placed_on = self.customer_terms(merges[-1][1]) if merges else terms
        if terms.forgotten or placed_on.forgotten:
            raise CustomerErasedError(customer_id)
        return placed_on, merges

    def _follow_merges(self, order: Order, merges: list[tuple[UUID, UUID, str]] | None = None) -> None:
        """An order of a customer merged into another is re-pointed along the merges (each step undoable)
        in the save at hand: placed for the absorbed id (a command racing the merge, an opportunity won
        before sales heard of it), or committed while the merge's reaction was looking for the orders to
        re-point (caught by the next command on it)."""
        order.follow_merges(survivor_path(self.repository, order.customer_id) if merges is None else merges)

    def record_customer_address(
        self, customer_id: UUID, kind: str, address: Mapping[str, str | None], default: bool, at: datetime
    ) -> CustomerTerms:
        """The customer_address_changed policy's command: keep the customer's default addresses."""
        terms = self.customer_terms(customer_id)
        terms.record_address(kind, address, default, at)
        return self._save_terms(terms)

    def record_customer_credit(self, customer_id: UUID, rating: str, limit: Decimal | None) -> CustomerTerms:
        """The customer_credit_rating_changed policy's command: keep the customer's credit limit."""
        terms = self.customer_terms(customer_id)
        terms.record_credit(rating, limit)
        return self._save_terms(terms)

    def set_shipping_address(
        self,
        order_id: UUID,
        shipping_address: Mapping[str, str | None],
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Order:
        """Give a placed order (not yet confirmed) its shipping address."""

        def set_address() -> Order:
            order = self.order(order_id, expected_version)
            order.set_shipping_address(shipping_address, at)
            return self._save(order)

        return self._once(order_id, command_id, set_address)

    def confirm(
        self,
        order_id: UUID,
        reference: str | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Order:
        """Confirm a placed order (ERP accepted it)."""

        def confirm() -> Order:
            order = self.order(order_id, expected_version)
            order.confirm(reference, at)
            return self._save(order)

        return self._once(order_id, command_id, confirm)

    def ship(
        self,
        order_id: UUID,
        shipment_id: str,
        carrier: str,
        lines: Mapping[str, int],
        tracking_number: str | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Order:
        """Record a shipment (SKU -> quantity) of a confirmed order; a resent shipment id changes nothing."""

        def ship() -> Order:
            order = self.order(order_id)
            if shipment_id not in order.shipments:
                check_version(order, expected_version)
            order.ship(shipment_id, carrier, lines, tracking_number, at)
            return self._save(order)

        return self._once(order_id, command_id, ship)

    def record_delivery(
        self,
        order_id: UUID,
        shipment_id: str,
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Order:
        """Record that one shipment was delivered; a resent delivery changes nothing."""

        def deliver() -> Order:
            order = self.order(order_id)
            shipment = order.shipments.get(shipment_id)
            if shipment is None or shipment["delivered_at"] is None:
                check_version(order, expected_version)
            order.record_delivery(shipment_id, at)
            return self._save(order)

        return self._once(order_id, command_id, deliver)

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
        command_id: str | None = None,
    ) -> Order:
        """Record a payment reported by ERP; a resent payment id changes nothing."""

        def pay() -> Order:
            order = self.order(order_id)
            if payment_id not in order.payments:
                check_version(order, expected_version)
            order.record_payment(payment_id, amount, currency, method, reference, at)
            return self._save(order)

        return self._once(order_id, command_id, pay)

    def cancel(
        self,
        order_id: UUID,
        reason: str,
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Order:
        """Cancel an order before anything of it ships."""

        def cancel() -> Order:
            order = self.order(order_id, expected_version)
            order.cancel(reason, at)
            return self._save(order)

        return self._once(order_id, command_id, cancel)

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
        command_id: str | None = None,
    ) -> Order:
        """Record goods returned from delivered lines and the refund given; a resent return id changes nothing."""

        def take_back() -> Order:
            order = self.order(order_id)
            if return_id not in order.returns:
                check_version(order, expected_version)
            order.record_return(return_id, lines, refund, currency, reason, at)
            return self._save(order)

        return self._once(order_id, command_id, take_back)

    # --- the customer's rights (crm_runtime.rights): erasure, merge, unmerge ---------------------------

    def forget_customer(self, customer_id: UUID, request_id: str) -> None:
        """The customer_erased policy's command: shred the data keys of the customer and of everyone
        merged into them, then mark forgotten, in one save, their terms and each of their orders (with
        those re-pointed from them to a survivor, when an absorbed customer is erased on its own), so
        the listing re-projects them from state that now reads redacted. Idempotent."""
        subjects = subjects_of(self.repository, customer_id)
        forget_subjects(self.data_keys, subjects, request_id)
        changed: list[Any] = forget_records(self, subjects, request_id, ORDER_OWNER_EVENTS, self.order)
        for subject in subjects:
            terms = self.customer_terms(subject)
            terms.forget(request_id)
            changed.append(terms)
        save_changed(self, changed)

    def erasure_state(self, customer_id: UUID) -> ErasureState:
        """"done" once the keys of the customer (and of everyone merged into them) are shredded and the
        key cache's time has passed; "done" for a customer order never heard of."""
        return erasure_state_of(self.data_keys, subjects_of(self.repository, customer_id))

    def absorb_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The customer_merged policy's command: every order of `customer_id` becomes the survivor's (by
        an event remembering where it came from), with the merge noted, in one save. The orders are
        found in the event store itself, so one placed just before the merge is not missed; one placed
        for `customer_id` after it follows the merge as it is placed (`_follow_merges`). Idempotent."""
        repoint_records(self, customer_id, survivor_id, merge_id, ORDER_OWNER_EVENTS, self.order)

    def restore_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The customer_unmerged policy's command: every order the merge re-pointed goes back to
        `customer_id`; orders placed for the survivor since stay the survivor's. Idempotent."""
        restore_records(self, customer_id, survivor_id, merge_id, ORDER_OWNER_EVENTS, self.order)

    # --- queries ---------------------------------------------------------------------------------

    def order(self, order_id: UUID, expected_version: int | None = None) -> Order:
        """Load an order; with `expected_version`, insist it is the current version."""
        try:
            order: Order = self.repository.get(order_id)
        except AggregateNotFoundError:
            raise OrderNotFoundError(f"order {order_id} not found", order_id=str(order_id)) from None
        check_version(order, expected_version)
        return order

    def customer_terms(self, customer_id: UUID) -> CustomerTerms:
        """What order knows of a customer (default addresses, credit); empty terms when nothing yet."""
        try:
            terms: CustomerTerms = self.repository.get(CustomerTerms.id_for(customer_id))
        except AggregateNotFoundError:
            return CustomerTerms(customer_id=customer_id)
        return terms

    def progress(self, order_id: UUID) -> dict[str, Any]:
        """Where is my order: status, per-line ordered/shipped/delivered quantities, shipments."""
        return self.order(order_id).progress()

    def orders_of_customer(self, customer_id: UUID) -> list[dict[str, Any]]:
        """The progress of every order of one customer now (merges followed), oldest first.

        Folds the notification log (crm_runtime.rights.record_owners): every event that says whose an
        order is (placed, re-pointed by a merge, restored by an unmerge), read by topic in pages and
        never decrypted, then loads each of the customer's orders. Cost: O(all orders ever placed) per
        call plus one aggregate load per order of the customer; the listing (`list_orders` filtered by
        customer_id) answers the same from an index, a few milliseconds behind.
        """
        return [self.order(order_id).progress() for order_id in records_of(self, [customer_id], ORDER_OWNER_EVENTS)]

    def _exists(self, order_id: UUID) -> bool:
        try:
            self.repository.get(order_id)
        except AggregateNotFoundError:
            return False
        return True

    def _once(self, order_id: UUID, command_id: str | None, command: Callable[[], Order]) -> Order:
        """Run a command on an existing order once per `command_id`; a repeat answers the order as it is."""
        return self.once(command_id, command, lambda: self.order(order_id))

    def _save_terms(self, terms: CustomerTerms) -> CustomerTerms:
        """Save a customer's terms if they changed (a new, unchanged one is not stored)."""
        if any(not isinstance(pending, CustomerTerms.Started) for pending in terms.pending_events):
            self.save(terms)
        return terms

    def _save(self, order: Order) -> Order:
        """Save an order (re-pointed first if its customer was merged meanwhile); losing a race to another
        writer is the caller's to retry."""
        self._follow_merges(order)
        try:
            with refusing_erased_customers():  # erased, and the forgetting not applied here yet
                self.save(order)
        except IntegrityError:
            raise StaleVersionError(f"order {order.id} was changed concurrently; reload it and retry") from None
        return order
