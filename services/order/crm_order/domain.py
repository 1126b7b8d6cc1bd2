"""Orders as event-sourced aggregates. Pure: no framework, no driver.

Lifecycle (DOMAIN.md "Order"): placed -> confirmed -> shipped -> delivered, with payments recorded
alongside until the order is paid, cancellation only before anything ships, and returns of delivered
lines with a refund.

Decisions a reader needs:
- Lines are identified by their SKU, which is unique within an order.
- A line's discount is a percentage of its gross amount; line totals are rounded half-up to cents.
- Delivery is recorded per shipment (that is what a carrier reports); the order is delivered when it
  is fully shipped and every shipment is delivered. Each delivery is published as `order_delivered`
  with `fully_delivered` telling consumers whether it completed the order.
- Commands that carry an external id (payment, shipment, return) are idempotent by that id, because
  ERP and SCM may resend: the same id with the same facts changes nothing; the same id with other
  facts is a conflict. Commands without an id (confirm, cancel) are checked against the state.
- Returns do not change the order total (credit notes are ERP's business); a refund is never more
  than the value of the goods returned, nor more than was paid and not yet refunded.
- Cancelling an order that took payments refunds what was paid and not yet refunded, in the same
  command (`Refunded`, published as `order_refunded`): money is never kept for goods never sent.
- The shipping address comes from the command, else from the customer's default shipping address
  (CustomerTerms, fed by customer events). An order may be placed without one; it cannot be
  confirmed until it has one (`set_shipping_address`).
- The credit limit is checked, not enforced: an order whose total exceeds the customer's credit limit
  is placed with `over_credit_limit` set, for a person to decide. The customer contract's limit has
  no currency: it is read as an amount in CREDIT_LIMIT_CURRENCY, and orders in another currency are
  never flagged. The limit is compared with this order's total alone: the customer's other
  outstanding orders are not counted (order keeps no per-customer exposure yet).
- Discounts are percentages in hundredths, the rule sales quotes by: 12.345% is refused, not rounded.
- Every domain event carries `customer_id` so publishing needs nothing but the event itself.
- A customer's rights (crm_runtime.rights): the shipping address (recipient, phone included) and the
  free-text reasons of cancellations, refunds and returns are personal (sealed by the application);
  amounts, dates, lines, statuses and ids are not. They are sealed under the data key of the customer
  the order was placed for, wherever merges take the order (events that carry them name that customer
  as `placed_for`; those stored before sealing carry none): an order given back by an unmerge keeps
  nothing sealed under the survivor's key, and erasing the survivor shreds the absorbed customers'
  keys too. An order is a crm_runtime.rights.CustomerOwnedRecord: a merge re-points
  it to the survivor by `CustomerRepointed` (remembering `merged_from` and `merge_id`; later
  events carry the survivor's id), an unmerge gives it back by `CustomerRestored`; an erasure marks it
  `CustomerForgotten`: it then takes no new address (nothing to ship to: it cannot be confirmed any
  more) and records its later reasons redacted, while payments, shipments of a confirmed order,
  deliveries, cancellation and returns go on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from crm_contracts.errors import ConflictError, InvalidRequestError, NotFoundError, RuleViolationError
from crm_contracts.vocabulary.money import CURRENCIES, MAX_DISCOUNT_PERCENT, MAX_LINE_AMOUNT, MONEY_PLACES
from crm_contracts.vocabulary.order import (
    ADDRESS_FIELDS,
    PAYMENT_METHODS,
    REQUIRED_ADDRESS_FIELDS,
)
from crm_runtime.rights import CustomerOwnedRecord

#: Orders placed from an opportunity get an id derived from it, so placing twice collides.
ORDER_FROM_OPPORTUNITY_NAMESPACE = uuid.UUID("6a1f9a52-3c7e-4d0b-8e55-0f4b2c9d7a13")
#: Orders placed directly get an id derived from the placing command, so a redelivery collides.
ORDER_FROM_COMMAND_NAMESPACE = uuid.UUID("2d8c4b71-9e3a-4f56-b0c2-7a1e5d9f3c48")
#: CustomerTerms ids are derived from the customer id: one per customer, found without a lookup.
CUSTOMER_TERMS_NAMESPACE = uuid.UUID("b3f1d7a4-8e26-4c59-a0d3-5f9e2c7b1a64")
#: The currency a customer's credit limit is read in (the customer contract's limit carries none).
CREDIT_LIMIT_CURRENCY = "CNY"
#: Discount percentages are in hundredths, as sales quotes them.
PERCENT_STEP = Decimal("0.01")
CENT = Decimal(1).scaleb(-MONEY_PLACES)
ZERO = Decimal("0.00")
HUNDRED = Decimal(100)
#: What a shipping address reads as once its customer is erased (the key that sealed it shredded).
REDACTED_ADDRESS: dict[str, str | None] = {name: "" if name in REQUIRED_ADDRESS_FIELDS else None
                                           for name in ADDRESS_FIELDS}


class OrderNotFoundError(NotFoundError):
    """No order has this id."""


class ShipmentNotFoundError(NotFoundError):
    """The order has no shipment with this id."""


class InvalidOrderDataError(InvalidRequestError):
    """A command's input breaks a rule of form; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


class CurrencyMismatchError(RuleViolationError):
    """An amount in another currency than the order's: a valid currency, but not this order's."""

    def __init__(self, given: str, expected: str) -> None:
        reason = f"must be the order's currency {expected}, not {given}"
        super().__init__(f"currency: {reason}", fields={"currency": [reason]}, currency=expected)


class UnknownLineError(RuleViolationError):
    """A shipment, delivery or return names a SKU this order has no line of."""

    def __init__(self, sku: str) -> None:
        super().__init__(f"lines.{sku}: is not a line of this order", fields={f"lines.{sku}": ["is not a line of "
                                                                                                "this order"]}, sku=sku)


class NothingToChargeError(RuleViolationError):
    """Well-formed lines whose total is zero (free or fully discounted): the business takes no such order."""

    def __init__(self) -> None:
        reason = "the order total must be positive"
        super().__init__(f"lines: {reason}", fields={"lines": [reason]})


class IllegalTransitionError(RuleViolationError):
    """The command is not allowed in the order's current status."""

    def __init__(self, command: str, status: str, why: str) -> None:
        super().__init__(f"cannot {command} an order that is {status}: {why}", status=status, command=command)


class QuantityExceededError(RuleViolationError):
    """More of a line shipped or returned than is left to ship or return."""

    def __init__(self, field: str, sku: str, asked: int, available: int, what: str) -> None:
        super().__init__(
            f"{field}: {asked} of {sku} asked, only {available} {what}",
            sku=sku,
            available=available,
            fields={field: [f"only {available} {what}"]},
        )


class OverpaymentError(RuleViolationError):
    """A payment larger than what is still outstanding."""

    def __init__(self, amount: Decimal, outstanding: Decimal, currency: str) -> None:
        super().__init__(
            f"payment of {amount} {currency} exceeds the outstanding {outstanding} {currency}",
            outstanding=str(outstanding),
            fields={"amount": [f"exceeds the outstanding {outstanding} {currency}"]},
        )


class OverRefundError(RuleViolationError):
    """A refund larger than what may be refunded."""

    def __init__(self, refund: Decimal, limit: Decimal, currency: str, why: str) -> None:
        super().__init__(
            f"refund of {refund} {currency} exceeds {limit} {currency}, {why}",
            limit=str(limit),
            fields={"refund": [f"exceeds {limit} {currency}, {why}"]},
        )


class ShippingAddressMissingError(RuleViolationError):
    """The order has no shipping address yet: it cannot be confirmed (nothing could be shipped)."""

    def __init__(self) -> None:
        super().__init__(
            "cannot confirm an order without a shipping address: set one first",
            fields={"shipping_address": ["must be set before the order is confirmed"]},
        )


class CustomerForgottenError(RuleViolationError):
    """The order's customer was erased: the order takes no new personal data (a shipping address)."""

    def __init__(self, command: str) -> None:
        super().__init__(f"cannot {command}: the order's customer was erased, with the shipping address",
                         command=command)


class DuplicateIdConflictError(ConflictError):
    """An external id (payment, shipment, return) reused for different facts."""

    def __init__(self, kind: str, external_id: str) -> None:
        super().__init__(
            f"{kind} {external_id} was already recorded with other details",
            fields={f"{kind}_id": ["already recorded with other details"]},
        )


class OrderAlreadyPlacedError(ConflictError):
    """An order was already placed from this opportunity."""

    def __init__(self, opportunity_id: uuid.UUID, order_id: uuid.UUID) -> None:
        super().__init__(
            f"opportunity {opportunity_id} already became order {order_id}",
            existing_order_id=str(order_id),
            fields={"opportunity_id": ["already became an order"]},
        )


def now() -> datetime:
    """The current time, timezone-aware (every recorded time is)."""
    return datetime.now(UTC)


class Order(CustomerOwnedRecord):
    """One customer order, from placement to payment, shipment, delivery and returns."""

    @classmethod
    def create_id(cls, opportunity_id: uuid.UUID | None) -> uuid.UUID:
        """eventsourcing's hook for a new aggregate's id: derived from the opportunity, if any."""
        return cls.id_for_opportunity(opportunity_id) if opportunity_id is not None else uuid.uuid4()

    @staticmethod
    def id_for_opportunity(opportunity_id: uuid.UUID) -> uuid.UUID:
        """The id an order placed from `opportunity_id` has: one opportunity, one order."""
        return uuid.uuid5(ORDER_FROM_OPPORTUNITY_NAMESPACE, str(opportunity_id))

    @staticmethod
    def id_for_command(command_id: str) -> uuid.UUID:
        """The id an order placed directly by command `command_id` gets: the same for every delivery."""
        return uuid.uuid5(ORDER_FROM_COMMAND_NAMESPACE, command_id)

    @event("Placed")
    def __init__(
        self,
        customer_id: uuid.UUID,
        currency: str,
        lines: list[dict[str, Any]],
        subtotal: Decimal,
        discount_total: Decimal,
        total: Decimal,
        shipping_address: dict[str, str | None] | None,
        opportunity_id: uuid.UUID | None,
        quote_id: uuid.UUID | None,
        at: datetime,
        over_credit_limit: bool = False,  # defaults: orders placed before the credit check was made
        credit_limit: Decimal | None = None,
    ) -> None:
        self.customer_id = customer_id
        #: Whose data key seals the order's personal fields, wherever merges take the order.
        self.placed_for = customer_id
        self.currency = currency
        self.lines = [dict(line) for line in lines]
        self.subtotal = subtotal
        self.discount_total = discount_total
        self.total = total
        self.shipping_address = dict(shipping_address) if shipping_address is not None else None
        self.over_credit_limit = over_credit_limit
        self.credit_limit = credit_limit
        self.opportunity_id = opportunity_id
        self.quote_id = quote_id
        self.placed_at = at
        self.confirmed_at: datetime | None = None
        self.erp_reference: str | None = None
        self.cancelled_at: datetime | None = None
        self.cancel_reason: str | None = None
        self.paid_at: datetime | None = None
        self.shipped: dict[str, int] = {line["sku"]: 0 for line in lines}
        self.delivered: dict[str, int] = {line["sku"]: 0 for line in lines}
        self.returned: dict[str, int] = {line["sku"]: 0 for line in lines}
        self.shipments: dict[str, dict[str, Any]] = {}
        self.payments: dict[str, dict[str, Any]] = {}
        self.returns: dict[str, dict[str, Any]] = {}
        self.paid = ZERO
        self.refunded = ZERO
        #: The merges that re-pointed this order, oldest first, each {"merge_id", "merged_from"}.
        self.merges: list[dict[str, Any]] = []
        self.customer_forgotten = False

    @classmethod
    def place(
        cls,
        customer_id: uuid.UUID,
        currency: str,
        lines: Sequence[Mapping[str, Any]],
        shipping_address: Mapping[str, str | None] | None,
        opportunity_id: uuid.UUID | None = None,
        quote_id: uuid.UUID | None = None,
        at: datetime | None = None,
        order_id: uuid.UUID | None = None,
        credit_limit: Decimal | None = None,
    ) -> Order:
        """Place an order directly, or from a won opportunity's accepted quote (give its ids).

        The id is derived from the opportunity when there is one; else `order_id` (derived from the
        placing command) when given, so a redelivered command collides with its first run. Without a
        shipping address it is placed all the same and waits for one before it can be confirmed; with
        the customer's `credit_limit` known, a total above it is flagged (see the module docstring).
        """
        if not isinstance(customer_id, uuid.UUID):
            raise InvalidOrderDataError("customer_id", "must be a UUID")
        check_currency(currency)
        priced = price_lines(lines)
        subtotal = sum((line["quantity"] * line["unit_price"] for line in priced), ZERO)
        total = sum((line["line_total"] for line in priced), ZERO)
        if total <= 0:
            raise NothingToChargeError()
        facts: dict[str, Any] = {
            "customer_id": customer_id,
            "currency": currency,
            "lines": priced,
            "subtotal": subtotal,
            "discount_total": subtotal - total,
            "total": total,
            "shipping_address": check_address(shipping_address) if shipping_address is not None else None,
            "opportunity_id": opportunity_id,
            "quote_id": quote_id,
            "at": check_time(at),
            "over_credit_limit": is_over_credit_limit(total, currency, credit_limit),
            "credit_limit": credit_limit,
        }
        if order_id is None or opportunity_id is not None:
            return cls(**facts)
        return cls._create(cls.Placed, id=order_id, **facts)  # type: ignore[attr-defined]

    # --- derived state ---------------------------------------------------------------------------

    @property
    def status(self) -> str:
        """Fulfilment status, derived from the recorded facts so it cannot disagree with them."""
        if self.cancelled_at is not None:
            return "cancelled"
        if self.confirmed_at is None:
            return "placed"
        ordered = sum(line["quantity"] for line in self.lines)
        shipped = sum(self.shipped.values())
        delivered = sum(self.delivered.values())
        if shipped == 0:
            return "confirmed"
        if shipped < ordered:
            return "partially_shipped"
        if delivered == 0:
            return "shipped"
        if delivered < ordered:
            return "partially_delivered"
        return "delivered"

    @property
    def payment_status(self) -> str:
        """Unpaid, partially paid or paid, from the recorded payments against the total."""
        if self.paid == 0:
            return "unpaid"
        return "paid" if self.paid == self.total else "partially_paid"

    @property
    def outstanding(self) -> Decimal:
        """What is still to be paid."""
        return self.total - self.paid

    def line(self, sku: str) -> dict[str, Any] | None:
        """The order line with this SKU, if there is one."""
        return next((line for line in self.lines if line["sku"] == sku), None)

    # --- confirm and cancel ----------------------------------------------------------------------

    def confirm(self, reference: str | None = None, at: datetime | None = None) -> None:
        """Confirm a placed order (ERP accepted it); only then may it ship. ERP resending its confirmation
        (the same `reference`, its own sales-order id) changes nothing."""
        if reference is not None and self.confirmed_at is not None and self.erp_reference == reference:
            return  # the ERP's id is the idempotency key of its confirmation
        if self.status != "placed":
            raise IllegalTransitionError("confirm", self.status, "only a placed order can be confirmed")
        if self.customer_forgotten:
            raise CustomerForgottenError("confirm the order")
        if self.shipping_address is None:
            raise ShippingAddressMissingError()
        self._confirmed(
            customer_id=self.customer_id,
            placed_for=self.placed_for,
            reference=check_optional_text(reference, "reference"),
            currency=self.currency,
            lines=self.lines,
            total=self.total,
            shipping_address=self.shipping_address,
            at=check_time(at),
        )

    @event("Confirmed")
    def _confirmed(
        self,
        customer_id: uuid.UUID,
        reference: str | None,
        currency: str,
        lines: list[dict[str, Any]],
        total: Decimal,
        shipping_address: dict[str, str | None],
        at: datetime,
        placed_for: uuid.UUID | None = None,
    ) -> None:
        self.confirmed_at = at
        self.erp_reference = reference

    def set_shipping_address(self, address: Mapping[str, str | None], at: datetime | None = None) -> None:
        """Give a placed order (not yet confirmed) its shipping address; the same address again changes nothing."""
        checked = check_address(address)
        if self.status != "placed":
            raise IllegalTransitionError("set the shipping address of", self.status, "only before it is confirmed")
        if self.customer_forgotten:
            raise CustomerForgottenError("set the shipping address")
        if checked == self.shipping_address:
            return
        self._shipping_address_set(customer_id=self.customer_id, shipping_address=checked, at=check_time(at),
                                   placed_for=self.placed_for)

    @event("ShippingAddressSet")
    def _shipping_address_set(
        self, customer_id: uuid.UUID, shipping_address: dict[str, str | None], at: datetime,
        placed_for: uuid.UUID | None = None,
    ) -> None:
        self.shipping_address = dict(shipping_address)

    def cancel(self, reason: str, at: datetime | None = None) -> None:
        """Cancel an order before anything of it has shipped; the reason is required. What was paid
        (and not yet refunded) is refunded with the cancellation."""
        check_text(reason, "reason")
        if self.status == "cancelled":
            raise IllegalTransitionError("cancel", self.status, "it is already cancelled")
        if any(self.shipped.values()):
            raise IllegalTransitionError("cancel", self.status, "part of it has already shipped")
        at = check_time(at)
        reason = self._personal(reason.strip(), "")
        self._cancelled(
            customer_id=self.customer_id,
            placed_for=self.placed_for,
            reason=reason,
            currency=self.currency,
            lines=self.lines,
            total=self.total,
            amount_paid=self.paid,
            at=at,
        )
        refund = self.paid - self.refunded
        if refund > 0:
            self._refunded(
                customer_id=self.customer_id,
                placed_for=self.placed_for,
                amount=refund,
                currency=self.currency,
                reason=reason,
                refunded_total=self.refunded + refund,
                at=at,
            )

    @event("Cancelled")
    def _cancelled(
        self,
        customer_id: uuid.UUID,
        reason: str,
        currency: str,
        lines: list[dict[str, Any]],
        total: Decimal,
        amount_paid: Decimal,
        at: datetime,
        placed_for: uuid.UUID | None = None,
    ) -> None:
        self.cancelled_at = at
        self.cancel_reason = reason

    @event("Refunded")
    def _refunded(
        self,
        customer_id: uuid.UUID,
        amount: Decimal,
        currency: str,
        reason: str,
        refunded_total: Decimal,
        at: datetime,
        placed_for: uuid.UUID | None = None,
    ) -> None:
        self.refunded = self.refunded + amount

    # --- shipments and deliveries ----------------------------------------------------------------

    def ship(
        self,
        shipment_id: str,
        carrier: str,
        lines: Mapping[str, int],
        tracking_number: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record a (possibly partial) shipment of `lines` (sku -> quantity) by `carrier`."""
        check_text(shipment_id, "shipment_id")
        check_text(carrier, "carrier")
        tracking_number = check_optional_text(tracking_number, "tracking_number")
        quantities = check_quantities(lines)
        existing = self.shipments.get(shipment_id)
        if existing is not None:
            if (existing["carrier"], existing["tracking_number"], existing["lines"]) != (
                carrier,
                tracking_number,
                quantities,
            ):
                raise DuplicateIdConflictError("shipment", shipment_id)
            return  # SCM resent a shipment already recorded
        if self.status in ("placed", "cancelled"):
            raise IllegalTransitionError("ship", self.status, "only a confirmed order can ship")
        for sku, quantity in quantities.items():
            line = self.line(sku)
            if line is None:
                raise UnknownLineError(sku)
            left = line["quantity"] - self.shipped[sku]
            if quantity > left:
                raise QuantityExceededError(f"lines.{sku}", sku, quantity, left, "left to ship")
        fully_shipped = all(
            self.shipped[line["sku"]] + quantities.get(line["sku"], 0) == line["quantity"] for line in self.lines
        )
        self._shipped(
            customer_id=self.customer_id,
            placed_for=self.placed_for,
            shipment_id=shipment_id,
            carrier=carrier,
            tracking_number=tracking_number,
            lines=self._described(quantities),
            # Set: a confirmed order has one (redacted, once its customer is erased).
            shipping_address=self._personal(self.shipping_address or {}, REDACTED_ADDRESS),
            fully_shipped=fully_shipped,
            at=check_time(at),
        )

    @event("Shipped")
    def _shipped(
        self,
        customer_id: uuid.UUID,
        shipment_id: str,
        carrier: str,
        tracking_number: str | None,
        lines: list[dict[str, Any]],
        shipping_address: dict[str, str | None],
        fully_shipped: bool,
        at: datetime,
        placed_for: uuid.UUID | None = None,
    ) -> None:
        quantities = {line["sku"]: line["quantity"] for line in lines}
        for sku, quantity in quantities.items():
            self.shipped[sku] += quantity
        self.shipments[shipment_id] = {
            "carrier": carrier,
            "tracking_number": tracking_number,
            "lines": quantities,
            "shipped_at": at,
            "delivered_at": None,
        }

    def record_delivery(self, shipment_id: str, at: datetime | None = None) -> None:
        """Record that one shipment reached the customer; a resent delivery changes nothing."""
        check_text(shipment_id, "shipment_id")
        shipment = self.shipments.get(shipment_id)
        if shipment is None:
            raise ShipmentNotFoundError(
                f"order {self.id} has no shipment {shipment_id}", shipment_id=shipment_id, order_id=str(self.id)
            )
        if shipment["delivered_at"] is not None:
            return  # the carrier or SCM resent the delivery
        delivered_now = {sku: self.delivered[sku] + shipment["lines"].get(sku, 0) for sku in self.delivered}
        fully_delivered = all(delivered_now[line["sku"]] == line["quantity"] for line in self.lines)
        self._shipment_delivered(
            customer_id=self.customer_id,
            shipment_id=shipment_id,
            carrier=shipment["carrier"],
            lines=self._described(shipment["lines"]),
            fully_delivered=fully_delivered,
            at=check_time(at),
        )

    @event("ShipmentDelivered")
    def _shipment_delivered(
        self,
        customer_id: uuid.UUID,
        shipment_id: str,
        carrier: str,
        lines: list[dict[str, Any]],
        fully_delivered: bool,
        at: datetime,
    ) -> None:
        for line in lines:
            self.delivered[line["sku"]] += line["quantity"]
        self.shipments[shipment_id] = {**self.shipments[shipment_id], "delivered_at": at}

    # --- payments --------------------------------------------------------------------------------

    def record_payment(
        self,
        payment_id: str,
        amount: Decimal,
        currency: str,
        method: str,
        reference: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record a payment reported by ERP; the one that completes the total also marks it paid."""
        check_text(payment_id, "payment_id")
        check_amount(amount, "amount", positive=True)
        self.check_same_currency(currency)
        if method not in PAYMENT_METHODS:
            raise InvalidOrderDataError("method", f"must be one of {', '.join(PAYMENT_METHODS)}")
        reference = check_optional_text(reference, "reference")
        # Duplicates first: ERP resending a payment of a since fully paid order is not an overpayment.
        existing = self.payments.get(payment_id)
        if existing is not None:
            if (existing["amount"], existing["method"], existing["reference"]) != (amount, method, reference):
                raise DuplicateIdConflictError("payment", payment_id)
            return
        if self.status == "cancelled":
            raise IllegalTransitionError("record a payment for", self.status, "it takes no more payments")
        if amount > self.outstanding:
            raise OverpaymentError(amount, self.outstanding, self.currency)
        at = check_time(at)
        paid_total = self.paid + amount
        self._payment_recorded(
            customer_id=self.customer_id,
            payment_id=payment_id,
            amount=amount,
            currency=self.currency,
            method=method,
            reference=reference,
            paid_total=paid_total,
            outstanding=self.total - paid_total,
            at=at,
        )
        if self.paid == self.total:
            self._paid(customer_id=self.customer_id, amount=self.paid, currency=self.currency, at=at)

    @event("PaymentRecorded")
    def _payment_recorded(
        self,
        customer_id: uuid.UUID,
        payment_id: str,
        amount: Decimal,
        currency: str,
        method: str,
        reference: str | None,
        paid_total: Decimal,
        outstanding: Decimal,
        at: datetime,
    ) -> None:
        self.paid = self.paid + amount
        self.payments[payment_id] = {"amount": amount, "method": method, "reference": reference, "received_at": at}

    @event("Paid")
    def _paid(self, customer_id: uuid.UUID, amount: Decimal, currency: str, at: datetime) -> None:
        self.paid_at = at

    # --- returns ---------------------------------------------------------------------------------

    def record_return(
        self,
        return_id: str,
        lines: Mapping[str, int],
        refund: Decimal,
        currency: str,
        reason: str | None = None,
        at: datetime | None = None,
    ) -> None:
        """Record goods returned from delivered lines (sku -> quantity) and the refund given."""
        check_text(return_id, "return_id")
        quantities = check_quantities(lines)
        check_amount(refund, "refund", positive=False)
        self.check_same_currency(currency)
        reason = check_optional_text(reason, "reason")
        existing = self.returns.get(return_id)
        if existing is not None:
            if (existing["lines"], existing["refund"], existing["reason"]) != (quantities, refund, reason):
                raise DuplicateIdConflictError("return", return_id)
            return
        value = ZERO
        for sku, quantity in quantities.items():
            line = self.line(sku)
            if line is None:
                raise UnknownLineError(sku)
            returnable = self.delivered[sku] - self.returned[sku]
            if quantity > returnable:
                raise QuantityExceededError(f"lines.{sku}", sku, quantity, returnable, "delivered and not returned")
            value += returned_value(line, self.returned[sku], quantity)
        if refund > value:
            raise OverRefundError(refund, value, self.currency, "the value of the goods returned")
        refundable = self.paid - self.refunded
        if refund > refundable:
            raise OverRefundError(refund, refundable, self.currency, "what was paid and not yet refunded")
        self._return_recorded(
            customer_id=self.customer_id,
            placed_for=self.placed_for,
            return_id=return_id,
            lines=self._described(quantities),
            refund=refund,
            currency=self.currency,
            reason=self._personal(reason, None),
            refunded_total=self.refunded + refund,
            at=check_time(at),
        )

    @event("ReturnRecorded")
    def _return_recorded(
        self,
        customer_id: uuid.UUID,
        return_id: str,
        lines: list[dict[str, Any]],
        refund: Decimal,
        currency: str,
        reason: str | None,
        refunded_total: Decimal,
        at: datetime,
        placed_for: uuid.UUID | None = None,
    ) -> None:
        quantities = {line["sku"]: line["quantity"] for line in lines}
        for sku, quantity in quantities.items():
            self.returned[sku] += quantity
        self.refunded = self.refunded + refund
        self.returns[return_id] = {"lines": quantities, "refund": refund, "reason": reason, "returned_at": at}

    # --- queries ---------------------------------------------------------------------------------

    def progress(self) -> dict[str, Any]:
        """Where is my order: status, per-line quantities, shipments with carrier, money."""
        return {
            "order_id": self.id,
            "version": self.version,
            "customer_id": self.customer_id,
            "status": self.status,
            "payment_status": self.payment_status,
            "currency": self.currency,
            "total": self.total,
            "paid": self.paid,
            "outstanding": self.outstanding,
            "refunded": self.refunded,
            "lines": [
                {
                    "sku": line["sku"],
                    "description": line["description"],
                    "ordered": line["quantity"],
                    "shipped": self.shipped[line["sku"]],
                    "delivered": self.delivered[line["sku"]],
                    "returned": self.returned[line["sku"]],
                }
                for line in self.lines
            ],
            "shipments": [
                {
                    "shipment_id": shipment_id,
                    "carrier": shipment["carrier"],
                    "tracking_number": shipment["tracking_number"],
                    "lines": dict(shipment["lines"]),
                    "shipped_at": shipment["shipped_at"],
                    "delivered_at": shipment["delivered_at"],
                }
                for shipment_id, shipment in self.shipments.items()
            ],
            "shipping_address": dict(self.shipping_address) if self.shipping_address is not None else None,
            "over_credit_limit": self.over_credit_limit,
            "credit_limit": self.credit_limit,
            "opportunity_id": self.opportunity_id,
            "placed_at": self.placed_at,
            "confirmed_at": self.confirmed_at,
            "paid_at": self.paid_at,
            "cancelled_at": self.cancelled_at,
            "cancel_reason": self.cancel_reason,
        }

    # --- checks ----------------------------------------------------------------------------------

    def check_same_currency(self, currency: str) -> None:
        """Amounts in another currency than the order's are refused, never converted."""
        if currency != self.currency:
            raise CurrencyMismatchError(currency, self.currency)

    def _described(self, quantities: Mapping[str, int]) -> list[dict[str, Any]]:
        """Quantities per SKU as event lines, in the order's line order, with descriptions."""
        return [
            {"sku": line["sku"], "description": line["description"], "quantity": quantities[line["sku"]]}
            for line in self.lines
            if line["sku"] in quantities
        ]


def price_lines(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check order lines and compute each line's total: quantity x unit price less the discount."""
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Sequence) or not lines:
        raise InvalidOrderDataError("lines", "must be a non-empty list")
    priced: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, line in enumerate(lines):
        field = f"lines.{index}"
        if not isinstance(line, Mapping):
            raise InvalidOrderDataError(field, "must be an object")
        unknown = set(line) - {"sku", "description", "quantity", "unit_price", "discount"}
        if unknown:
            raise InvalidOrderDataError(f"{field}.{sorted(unknown)[0]}", "is not a line field")
        sku = line.get("sku")
        check_text(sku, f"{field}.sku")
        if sku in seen:
            raise InvalidOrderDataError(f"{field}.sku", "appears on another line of this order")
        seen.add(sku)
        check_text(line.get("description"), f"{field}.description")
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidOrderDataError(f"{field}.quantity", "must be a whole number of at least 1")
        unit_price = check_amount(line.get("unit_price"), f"{field}.unit_price", positive=False)
        discount = line.get("discount", Decimal(0))
        if (
            not isinstance(discount, Decimal)
            or not discount.is_finite()
            or not 0 <= discount <= MAX_DISCOUNT_PERCENT
            or discount != discount.quantize(PERCENT_STEP)
        ):
            reason = f"must be a Decimal percent from 0 to {MAX_DISCOUNT_PERCENT}, in hundredths"
            raise InvalidOrderDataError(f"{field}.discount", reason)
        gross = quantity * unit_price
        if gross > MAX_LINE_AMOUNT:
            raise InvalidOrderDataError(f"{field}.quantity", f"quantity × unit price must not exceed {MAX_LINE_AMOUNT}")
        line_total = (gross * (HUNDRED - discount) / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)
        priced.append(
            {
                "sku": sku,
                "description": line["description"].strip(),
                "quantity": quantity,
                "unit_price": unit_price,
                "discount": discount,
                "line_total": line_total,
            }
        )
    return priced


def is_over_credit_limit(total: Decimal, currency: str, credit_limit: Decimal | None) -> bool:
    """Whether an order's total exceeds the customer's credit limit (only comparable in CREDIT_LIMIT_CURRENCY)."""
    return credit_limit is not None and currency == CREDIT_LIMIT_CURRENCY and total > credit_limit


class CustomerTerms(Aggregate):
    """What the order service keeps of a customer, fed by customer events: the default billing and
    shipping addresses, and the credit rating and limit. One per customer (its id is derived from the
    customer id), read when an order is placed and never saved with it."""

    @staticmethod
    def id_for(customer_id: uuid.UUID) -> uuid.UUID:
        """The id of `customer_id`'s terms."""
        return uuid.uuid5(CUSTOMER_TERMS_NAMESPACE, str(customer_id))

    @classmethod
    def create_id(cls, customer_id: uuid.UUID) -> uuid.UUID:
        """eventsourcing's hook: the id derived from the customer."""
        return cls.id_for(customer_id)

    @event("Started")
    def __init__(self, customer_id: uuid.UUID) -> None:
        self.customer_id = customer_id
        self.default_addresses: dict[str, dict[str, str | None]] = {}
        self.credit_rating: str | None = None
        self.credit_limit: Decimal | None = None
        self.forgotten = False

    @property
    def default_shipping_address(self) -> dict[str, str | None] | None:
        """Where the customer's goods go when an order names no address."""
        address = self.default_addresses.get("shipping")
        return dict(address) if address is not None else None

    def record_address(self, kind: str, address: Mapping[str, str | None], default: bool, at: datetime) -> None:
        """Record a default address of `kind`; a non-default address is none of order's business."""
        if kind not in ("billing", "shipping"):
            raise InvalidOrderDataError("kind", "must be billing or shipping")
        checked = check_address(address)
        if not default or self.default_addresses.get(kind) == checked:
            return
        self._default_address_recorded(kind=kind, address=checked, at=check_time(at), customer_id=self.customer_id)

    @event("DefaultAddressRecorded")
    def _default_address_recorded(
        self, kind: str, address: dict[str, str | None], at: datetime, customer_id: uuid.UUID | None = None
    ) -> None:
        # `customer_id` names whose key seals the address (absent from events recorded before sealing).
        self.default_addresses[kind] = dict(address)

    def forget(self, request_id: str) -> None:
        """The customer was erased: their addresses read redacted and no order is placed for them."""
        if not self.forgotten:
            self._forgotten(request_id=request_id)

    @event("Forgotten")
    def _forgotten(self, request_id: str) -> None:
        self.forgotten = True

    def record_credit(self, rating: str, limit: Decimal | None) -> None:
        """Record the customer's credit rating and limit (None: no limit set)."""
        check_text(rating, "rating")
        if limit is not None:
            check_amount(limit, "limit", positive=False)
        if (rating, limit) == (self.credit_rating, self.credit_limit):
            return
        self._credit_recorded(rating=rating, limit=limit)

    @event("CreditRecorded")
    def _credit_recorded(self, rating: str, limit: Decimal | None) -> None:
        self.credit_rating = rating
        self.credit_limit = limit


def returned_value(line: Mapping[str, Any], already_returned: int, quantity: int) -> Decimal:
    """What `quantity` more units of `line` are worth at its discounted price.

    Computed as value(already + quantity) - value(already), so the values of all returns of a line
    add up to exactly its total, whatever the rounding of each.
    """

    def value(units: int) -> Decimal:
        return (line["line_total"] * units / line["quantity"]).quantize(CENT, rounding=ROUND_HALF_UP)

    return value(already_returned + quantity) - value(already_returned)


def check_currency(currency: Any) -> None:
    """An active ISO 4217 code."""
    if currency not in CURRENCIES:
        raise InvalidOrderDataError("currency", "must be an active ISO 4217 code, e.g. CNY, EUR, USD")


def check_amount(amount: Any, field: str, *, positive: bool) -> Decimal:
    """Money is a finite Decimal in cents: never a float, never finer than the wire carries."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidOrderDataError(field, "must be a Decimal amount")
    if amount < 0 or (positive and amount == 0):
        raise InvalidOrderDataError(field, "must be positive" if positive else "must not be negative")
    if amount != amount.quantize(CENT):
        raise InvalidOrderDataError(field, f"must have at most {MONEY_PLACES} decimal places")
    return amount


def check_quantities(lines: Mapping[str, int]) -> dict[str, int]:
    """A non-empty mapping of SKU to a positive whole quantity."""
    if not isinstance(lines, Mapping) or not lines:
        raise InvalidOrderDataError("lines", "must map at least one SKU to a quantity")
    for sku, quantity in lines.items():
        check_text(sku, "lines")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidOrderDataError(f"lines.{sku}", "must be a whole number of at least 1")
    return dict(lines)


def check_address(address: Mapping[str, str | None]) -> dict[str, str | None]:
    """A shipping address with the known fields, the required ones filled, an ISO 3166 country."""
    if not isinstance(address, Mapping):
        raise InvalidOrderDataError("shipping_address", "must be an object")
    unknown = set(address) - set(ADDRESS_FIELDS)
    if unknown:
        raise InvalidOrderDataError(f"shipping_address.{sorted(unknown)[0]}", "is not an address field")
    for name in REQUIRED_ADDRESS_FIELDS:
        check_text(address.get(name), f"shipping_address.{name}")
    for name, value in address.items():
        if value is not None and not isinstance(value, str):
            raise InvalidOrderDataError(f"shipping_address.{name}", "must be text")
    country = address["country"]
    if not (len(country) == 2 and country.isascii() and country.isalpha() and country.isupper()):
        raise InvalidOrderDataError("shipping_address.country", "must be an ISO 3166-1 alpha-2 code, e.g. CN")
    return {name: address.get(name) for name in ADDRESS_FIELDS}


def check_text(value: Any, field: str) -> None:
    """Non-blank text."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidOrderDataError(field, "must not be blank")


def check_optional_text(value: Any, field: str) -> str | None:
    """None, or non-blank text."""
    if value is None:
        return None
    check_text(value, field)
    return value


def check_time(at: datetime | None) -> datetime:
    """When a fact happened (ERP/SCM report it) or now; always timezone-aware."""
    if at is None:
        return now()
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidOrderDataError("at", "must be a timezone-aware date and time")
    return at
