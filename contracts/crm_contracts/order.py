"""Contracts of the order service: its published events and its request/response payloads.

ERP and SCM subscribe to these events, so each payload is complete on its own: lines, totals and the
shipping address travel wherever a subscriber needs them, and every amount comes with its currency.
"""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_contracts.catalog import catalog
from crm_contracts.fields import PHONE, EventPayload, Request, Text, integer, money
from crm_contracts.sales import CUSTOMER_CHANGES, percent
from crm_contracts.vocabulary.money import CURRENCIES, MAX_DISCOUNT_PERCENT
from crm_contracts.vocabulary.order import (
    ORDER_STATUSES,
    PAYMENT_METHODS,
    PAYMENT_STATUSES,
)

ORIGIN = "order"
_ORDER = "9c4e2f7a-1b3d-4e5f-8a6b-7c8d9e0f1a2b"
_CUSTOMER = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"
_OPPORTUNITY = "5e6f7a8b-9c0d-4e1f-a2b3-c4d5e6f7a8b9"
_QUOTE = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"

_ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "line2": "Floor 12", "city": "Beijing",
            "region": "Beijing", "postal_code": "100022", "country": "CN", "phone": "+86 10 5555 0101"}
_LINES = [
    {"sku": "CRM-PRO-1Y", "description": "CRM Pro licence, one year", "quantity": 10, "unit_price": "1200.00",
     "discount": "10", "line_total": "10800.00"},
    {"sku": "ONBOARD-D", "description": "Onboarding day", "quantity": 2, "unit_price": "800.00",
     "discount": "0", "line_total": "1600.00"},
]
_SHIPPED = [{"sku": "CRM-PRO-1Y", "description": "CRM Pro licence, one year", "quantity": 4}]

CURRENCY = validate.OneOf(CURRENCIES, error="must be an active ISO 4217 code, e.g. CNY, EUR, USD")
TEXT = validate.Length(min=1, max=200)
SKU = validate.Length(min=1, max=64)


# --- parts of published events ------------------------------------------------------------------

class AddressV1(EventPayload):
    """A shipping address; `country` is an ISO 3166-1 alpha-2 code."""

    recipient = fields.String(required=True)
    line1 = fields.String(required=True)
    line2 = fields.String(allow_none=True, load_default=None)
    city = fields.String(required=True)
    region = fields.String(allow_none=True, load_default=None)
    postal_code = fields.String(allow_none=True, load_default=None)
    country = fields.String(required=True)
    phone = fields.String(allow_none=True, load_default=None)


class OrderLineV1(EventPayload):
    """An order line: `discount` is a percentage of quantity x unit price; `line_total` is after it."""

    sku = fields.String(required=True)
    description = fields.String(required=True)
    quantity = fields.Integer(required=True)
    unit_price = money(required=True)
    discount = fields.Decimal(as_string=True, required=True)
    line_total = money(required=True)


class QuantityLineV1(EventPayload):
    """How many of one line a shipment, delivery or return concerns."""

    sku = fields.String(required=True)
    description = fields.String(required=True)
    quantity = fields.Integer(required=True)


# --- published events ---------------------------------------------------------------------------

@catalog.event(
    "order_placed", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "currency": "CNY", "lines": _LINES,
            "subtotal": "13600.00", "discount_total": "1200.00", "total": "12400.00",
            "shipping_address": _ADDRESS, "opportunity_id": _OPPORTUNITY, "quote_id": _QUOTE,
            "placed_at": "2026-11-20T09:30:00+00:00"},
)
class OrderPlacedV1(EventPayload):
    """An order was placed, directly or from a won opportunity's accepted quote (then both ids are set).

    `shipping_address` is null when neither the quote nor the customer's default gave one: the order
    cannot be confirmed until `order_shipping_address_set` gives it one. `over_credit_limit` flags an
    order whose total exceeds the customer's credit limit (`credit_limit`, null when none is known)."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    currency = fields.String(required=True)
    lines = fields.List(fields.Nested(OrderLineV1), required=True)
    subtotal = money(required=True)
    discount_total = money(required=True)
    total = money(required=True)
    shipping_address = fields.Nested(AddressV1, required=True, allow_none=True)
    opportunity_id = fields.UUID(allow_none=True, load_default=None)
    quote_id = fields.UUID(allow_none=True, load_default=None)
    placed_at = fields.AwareDateTime(required=True)
    over_credit_limit = fields.Boolean(load_default=False)
    credit_limit = money(allow_none=True, load_default=None)


@catalog.event(
    "order_confirmed", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "reference": "ERP-SO-2026-00042", "currency": "CNY",
            "lines": _LINES, "total": "12400.00", "shipping_address": _ADDRESS,
            "confirmed_at": "2026-11-20T10:00:00+00:00"},
)
class OrderConfirmedV1(EventPayload):
    """The order was confirmed and may now ship; carries what SCM needs to pick and pack it."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    reference = fields.String(allow_none=True, load_default=None, metadata={"description": "ERP's order number"})
    currency = fields.String(required=True)
    lines = fields.List(fields.Nested(OrderLineV1), required=True)
    total = money(required=True)
    shipping_address = fields.Nested(AddressV1, required=True)
    confirmed_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_shipped", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "shipment_id": "SHP-0001", "carrier": "SF Express",
            "tracking_number": "SF1234567890", "lines": _SHIPPED, "shipping_address": _ADDRESS,
            "fully_shipped": False, "shipped_at": "2026-11-21T08:00:00+00:00"},
)
class OrderShippedV1(EventPayload):
    """One shipment left; partial shipments are allowed and `fully_shipped` says whether this completed it."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    shipment_id = fields.String(required=True)
    carrier = fields.String(required=True)
    tracking_number = fields.String(allow_none=True, load_default=None)
    lines = fields.List(fields.Nested(QuantityLineV1), required=True)
    shipping_address = fields.Nested(AddressV1, required=True)
    fully_shipped = fields.Boolean(required=True)
    shipped_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_delivered", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "shipment_id": "SHP-0001", "carrier": "SF Express",
            "lines": _SHIPPED, "fully_delivered": False, "delivered_at": "2026-11-23T15:20:00+00:00"},
)
class OrderDeliveredV1(EventPayload):
    """One shipment was delivered (delivery is recorded per shipment); `fully_delivered` is true on the
    delivery that completes the whole order."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    shipment_id = fields.String(required=True)
    carrier = fields.String(required=True)
    lines = fields.List(fields.Nested(QuantityLineV1), required=True)
    fully_delivered = fields.Boolean(required=True)
    delivered_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_payment_recorded", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "payment_id": "PAY-7781", "amount": "5000.00",
            "currency": "CNY", "method": "bank_transfer", "reference": "ERP-RCPT-2026-118",
            "paid_total": "5000.00", "outstanding": "7400.00", "received_at": "2026-11-22T11:00:00+00:00"},
)
class OrderPaymentRecordedV1(EventPayload):
    """A payment reported by ERP was recorded; `paid_total` and `outstanding` are after it."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    payment_id = fields.String(required=True)
    amount = money(required=True)
    currency = fields.String(required=True)
    method = fields.String(required=True)
    reference = fields.String(allow_none=True, load_default=None)
    paid_total = money(required=True)
    outstanding = money(required=True)
    received_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_paid", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "amount": "12400.00", "currency": "CNY",
            "paid_at": "2026-11-25T16:45:00+00:00"},
)
class OrderPaidV1(EventPayload):
    """The order is fully paid (published once, with the payment that completed it); loyalty earns on it."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    amount = money(required=True)
    currency = fields.String(required=True)
    paid_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_cancelled", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "reason": "customer changed their mind",
            "currency": "CNY", "lines": _LINES, "total": "12400.00", "amount_paid": "0.00",
            "cancelled_at": "2026-11-20T12:00:00+00:00"},
)
class OrderCancelledV1(EventPayload):
    """The order was cancelled before anything shipped; `amount_paid` is what ERP has to pay back."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    reason = fields.String(required=True)
    currency = fields.String(required=True)
    lines = fields.List(fields.Nested(OrderLineV1), required=True)
    total = money(required=True)
    amount_paid = money(required=True)
    cancelled_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_return_recorded", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "return_id": "RMA-0031",
            "lines": [{"sku": "CRM-PRO-1Y", "description": "CRM Pro licence, one year", "quantity": 1}],
            "refund": "1080.00", "currency": "CNY", "reason": "one seat too many", "refunded_total": "1080.00",
            "returned_at": "2026-12-01T09:00:00+00:00"},
)
class OrderReturnRecordedV1(EventPayload):
    """Delivered goods came back with a refund (possibly 0.00); `refunded_total` is after this return."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    return_id = fields.String(required=True)
    lines = fields.List(fields.Nested(QuantityLineV1), required=True)
    refund = money(required=True)
    currency = fields.String(required=True)
    reason = fields.String(allow_none=True, load_default=None)
    refunded_total = money(required=True)
    returned_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_refunded", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "amount": "12400.00", "currency": "CNY",
            "reason": "customer changed their mind", "refunded_total": "12400.00",
            "refunded_at": "2026-11-26T12:00:00+00:00"},
)
class OrderRefundedV1(EventPayload):
    """An order cancelled after payment was refunded what was paid and not yet refunded (`amount`);
    `refunded_total` is after it. Refunds of returned goods travel in `order_return_recorded` instead."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    amount = money(required=True)
    currency = fields.String(required=True)
    reason = fields.String(required=True, metadata={"description": "the cancellation's reason"})
    refunded_total = money(required=True)
    refunded_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_shipping_address_set", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": _CUSTOMER, "shipping_address": _ADDRESS,
            "set_at": "2026-11-26T10:00:00+00:00"},
)
class OrderShippingAddressSetV1(EventPayload):
    """A placed (not yet confirmed) order got its shipping address, or a new one."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    shipping_address = fields.Nested(AddressV1, required=True)
    set_at = fields.AwareDateTime(required=True)


@catalog.event(
    "order_customer_changed", 1, origin=ORIGIN,
    sample={"order_id": _ORDER, "customer_id": "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a",
            "previous_customer_id": _CUSTOMER, "change": "merged", "merge_id": "merge-2026-0007",
            "changed_at": "2026-11-27T09:00:00+00:00"},
)
class OrderCustomerChangedV1(EventPayload):
    """The order now belongs to another customer: a merge re-pointed it to the survivor
    (customer.customer_merged), or an unmerge gave it back (customer.customer_unmerged). The order's
    later events carry the new `customer_id`."""

    order_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True, metadata={"description": "the order's customer from now on"})
    previous_customer_id = fields.UUID(required=True)
    change = fields.String(required=True, validate=validate.OneOf(CUSTOMER_CHANGES))
    merge_id = fields.String(required=True, metadata={"description": "the merge re-pointing or giving back"})
    changed_at = fields.AwareDateTime(required=True)


# --- requests and responses ---------------------------------------------------------------------

class AddressRequest(Request):
    """A shipping address. Example: {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing",
    "country": "CN"}"""

    recipient = Text(required=True, validate=TEXT)
    line1 = Text(required=True, validate=TEXT)
    line2 = Text(allow_none=True, load_default=None, validate=validate.Length(max=200))
    city = Text(required=True, validate=TEXT)
    region = Text(allow_none=True, load_default=None, validate=validate.Length(max=100))
    postal_code = Text(allow_none=True, load_default=None, validate=validate.Length(max=20))
    country = Text(
        required=True, validate=validate.Regexp(r"^[A-Z]{2}$", error="must be an ISO 3166-1 alpha-2 code, e.g. CN")
    )
    phone = Text(allow_none=True, load_default=None, validate=PHONE)


class OrderLineRequest(Request):
    """One line. Example: {"sku": "CRM-PRO-1Y", "description": "CRM Pro licence", "quantity": 10,
    "unit_price": "1200.00", "discount": "10"}"""

    sku = Text(required=True, validate=SKU)
    description = Text(required=True, validate=validate.Length(min=1, max=500))
    quantity = integer(required=True, validate=validate.Range(min=1))
    unit_price = money(required=True, validate=validate.Range(min=0))
    discount = percent(
        validate=validate.Range(min=0, max=MAX_DISCOUNT_PERCENT),
        metadata={"description": "percent of quantity x unit price, in hundredths (as sales quotes it); 0 when "
                                 "left out"},
    )


class PlaceOrderRequest(Request):
    """Place an order. Example: {"customer_id": "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e", "currency": "CNY",
    "lines": [{"sku": "CRM-PRO-1Y", "description": "CRM Pro licence", "quantity": 10, "unit_price": "1200.00"}],
    "shipping_address": {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}}

    Without `shipping_address` the order takes the customer's default shipping address, if the order service
    knows one; else it is placed without one and cannot be confirmed until one is set."""

    customer_id = fields.UUID(required=True)
    currency = Text(required=True, validate=CURRENCY)
    lines = fields.List(fields.Nested(OrderLineRequest), required=True, validate=validate.Length(min=1, max=500))
    shipping_address = fields.Nested(AddressRequest, allow_none=True, load_default=None)
    opportunity_id = fields.UUID(allow_none=True, load_default=None)
    quote_id = fields.UUID(allow_none=True, load_default=None)

    @validates_schema
    def skus_are_unique(self, data: dict, **kwargs: object) -> None:
        skus = [line["sku"] for line in data.get("lines", [])]
        if len(skus) != len(set(skus)):
            raise ValidationError("each SKU may appear on one line only", "lines")


class ConfirmOrderRequest(Request):
    """Confirm an order. Example: {"reference": "ERP-SO-2026-00042"}"""

    reference = Text(allow_none=True, load_default=None, validate=TEXT)
    at = fields.AwareDateTime(allow_none=True, load_default=None)


class SetShippingAddressRequest(Request):
    """Give a placed, unconfirmed order its shipping address. Example: {"shipping_address": {"recipient":
    "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}}"""

    shipping_address = fields.Nested(AddressRequest, required=True)
    at = fields.AwareDateTime(allow_none=True, load_default=None)


def _quantities(**kwargs: Any) -> fields.Dict:
    return fields.Dict(
        keys=Text(validate=SKU),
        values=integer(validate=validate.Range(min=1)),
        validate=validate.Length(min=1),
        **kwargs,
    )


class ShipOrderRequest(Request):
    """Record a shipment; `lines` maps SKU to quantity. Example: {"shipment_id": "SHP-0001",
    "carrier": "SF Express", "tracking_number": "SF1234567890", "lines": {"CRM-PRO-1Y": 4}}"""

    shipment_id = Text(required=True, validate=TEXT)
    carrier = Text(required=True, validate=TEXT)
    tracking_number = Text(allow_none=True, load_default=None, validate=TEXT)
    lines = _quantities(required=True)
    at = fields.AwareDateTime(allow_none=True, load_default=None)


class RecordDeliveryRequest(Request):
    """Record that a shipment was delivered. Example: {"shipment_id": "SHP-0001"}"""

    shipment_id = Text(required=True, validate=TEXT)
    at = fields.AwareDateTime(allow_none=True, load_default=None)


class RecordPaymentRequest(Request):
    """Record a payment from ERP; resending the same payment_id is harmless. Example:
    {"payment_id": "PAY-7781", "amount": "5000.00", "currency": "CNY", "method": "bank_transfer"}"""

    payment_id = Text(required=True, validate=TEXT)
    amount = money(required=True, validate=validate.Range(min=0, min_inclusive=False))
    currency = Text(required=True, validate=CURRENCY)
    method = Text(required=True, validate=validate.OneOf(PAYMENT_METHODS))
    reference = Text(allow_none=True, load_default=None, validate=TEXT)
    at = fields.AwareDateTime(allow_none=True, load_default=None)


class CancelOrderRequest(Request):
    """Cancel an order before it ships. Example: {"reason": "customer changed their mind"}"""

    reason = Text(required=True, validate=validate.Length(min=1, max=500))
    at = fields.AwareDateTime(allow_none=True, load_default=None)


class RecordReturnRequest(Request):
    """Record a return of delivered goods with its refund; `lines` maps SKU to quantity. Example:
    {"return_id": "RMA-0031", "lines": {"CRM-PRO-1Y": 1}, "refund": "1080.00", "currency": "CNY"}"""

    return_id = Text(required=True, validate=TEXT)
    lines = _quantities(required=True)
    refund = money(required=True, validate=validate.Range(min=0))
    currency = Text(required=True, validate=CURRENCY)
    reason = Text(allow_none=True, load_default=None, validate=validate.Length(min=1, max=500),
                  metadata={"description": "why the goods came back; null or left out when not known"})
    at = fields.AwareDateTime(allow_none=True, load_default=None)


class LineProgressSchema(Schema):
    """One line's quantities: ordered, shipped, delivered and returned."""

    sku = fields.String()
    description = fields.String()
    ordered = fields.Integer()
    shipped = fields.Integer()
    delivered = fields.Integer()
    returned = fields.Integer()


class ShipmentProgressSchema(Schema):
    """One shipment: carrier, tracking number, SKU -> quantity, when shipped and delivered."""

    shipment_id = fields.String()
    carrier = fields.String()
    tracking_number = fields.String(allow_none=True)
    lines = fields.Dict(keys=fields.String(), values=fields.Integer())
    shipped_at = fields.AwareDateTime()
    delivered_at = fields.AwareDateTime(allow_none=True)


class OrderProgressSchema(Schema):
    """Where is my order: status, per-line quantities, shipments with carrier, and the money."""

    order_id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    customer_id = fields.UUID()
    status = fields.String(validate=validate.OneOf(ORDER_STATUSES))
    payment_status = fields.String(validate=validate.OneOf(PAYMENT_STATUSES))
    currency = fields.String()
    total = money()
    paid = money()
    outstanding = money()
    refunded = money()
    lines = fields.List(fields.Nested(LineProgressSchema))
    shipments = fields.List(fields.Nested(ShipmentProgressSchema))
    shipping_address = fields.Nested(AddressV1, allow_none=True)
    over_credit_limit = fields.Boolean(metadata={"description": "the total exceeded the customer's credit limit "
                                                                "when the order was placed"})
    credit_limit = money(allow_none=True)
    opportunity_id = fields.UUID(allow_none=True)
    placed_at = fields.AwareDateTime()
    confirmed_at = fields.AwareDateTime(allow_none=True)
    paid_at = fields.AwareDateTime(allow_none=True)
    cancelled_at = fields.AwareDateTime(allow_none=True)
    cancel_reason = fields.String(allow_none=True)
