"""Contracts of the sales service: its published events and its request/response payloads."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

from crm_contracts.catalog import catalog
from crm_contracts.fields import EventPayload, Request, Text, integer, money
from crm_contracts.vocabulary.sales import (
    CURRENCIES,
    MAX_DISCOUNT_PERCENT,
    OPEN_STAGES,
    QUOTE_STATUSES,
    STAGES,
)

ORIGIN = "sales"
_OPPORTUNITY = "5b7e1c2d-8a4f-4e6b-9d3c-1f0a2b3c4d5e"
_CUSTOMER = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"
_LEAD = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
_QUOTE_1 = "c1d2e3f4-a5b6-5c7d-8e9f-0a1b2c3d4e5f"
_QUOTE_2 = "d2e3f4a5-b6c7-5d8e-9f0a-1b2c3d4e5f60"

TEXT = validate.Length(min=1, max=500)
PROBABILITY = validate.Range(min=0, max=100)
_LINES = [
    {"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50, "unit_price": "240.00",
     "discount": "10.00", "line_total": "10800.00"},
    {"sku": "ONBOARD", "description": "Onboarding workshop", "quantity": 1, "unit_price": "1500.00",
     "discount": "0.00", "line_total": "1500.00"},
]
_TOTALS = {"subtotal": "13500.00", "discount_total": "1200.00", "total": "12300.00"}


#: A percentage is carried in hundredths ("12.34"): finer input is refused, never rounded.
PERCENT_PLACES = 2
#: A percentage as a string: 0 to 100, at most PERCENT_PLACES significant decimals (trailing zeros allowed).
PERCENT_PATTERN = rf"^0*(100(\.0+)?|[0-9]{{1,2}}(\.[0-9]{{1,{PERCENT_PLACES}}}0*)?)$"
_PERCENT = re.compile(PERCENT_PATTERN)


class Percent(fields.Decimal):
    """A discount (or rate) percentage from 0 to 100 in hundredths, carried as a string like money.

    The one rule for discounts across sales and order: "12.345" is refused with the field named, not
    rounded to "12.35" (marshmallow's `places` alone would quantize it silently). Like Money, a JSON number
    is refused and a string must match PERCENT_PATTERN, which the OpenAPI document states.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(as_string=True, places=PERCENT_PLACES, **kwargs)

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if isinstance(value, str):
            if _PERCENT.fullmatch(value) is None:
                raise ValidationError(f"must be a percentage from 0 to 100 with at most {PERCENT_PLACES} decimal "
                                      "places, like \"12.34\"")
        elif isinstance(value, Decimal):
            exponent = value.normalize().as_tuple().exponent
            if isinstance(exponent, int) and exponent < -PERCENT_PLACES:
                raise ValidationError(f"must have at most {PERCENT_PLACES} decimal places, like \"12.34\"")
        else:
            raise ValidationError("must be a percentage as a string, like \"12.34\"")
        try:
            return super()._deserialize(value, attr, data, **kwargs)
        except InvalidOperation:
            raise self.make_error("invalid") from None


def percent(**kwargs: Any) -> Percent:
    """A percentage in hundredths (see Percent): quote and order lines' discounts use this one rule."""
    return Percent(**kwargs)


# --- published events ---------------------------------------------------------------------------

@catalog.event(
    "opportunity_opened", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "lead_id": _LEAD,
            "title": "Acme Trading: 50 CRM seats", "owner": "rep-wang-wei", "amount": "12000.00",
            "currency": "CNY", "expected_close_date": "2026-12-31", "stage": "prospecting", "probability": 10,
            "opened_at": "2026-11-02T08:00:00+00:00"},
)
class OpportunityOpenedV1(EventPayload):
    """An opportunity was opened for a customer, from a converted lead when `lead_id` is set."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    lead_id = fields.UUID(allow_none=True, load_default=None)
    title = fields.String(required=True)
    owner = fields.String(required=True, metadata={"description": "the owning sales rep"})
    amount = money(required=True, metadata={"description": "the estimated amount"})
    currency = fields.String(required=True, metadata={"description": "ISO 4217 code"})
    expected_close_date = fields.Date(required=True)
    stage = fields.String(required=True)
    probability = fields.Integer(required=True, metadata={"description": "win probability, whole percent"})
    opened_at = fields.AwareDateTime(required=True)


@catalog.event(
    "opportunity_stage_changed", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "from_stage": "qualification",
            "to_stage": "proposal", "probability": 50, "changed_at": "2026-11-16T10:00:00+00:00"},
)
class OpportunityStageChangedV1(EventPayload):
    """The opportunity moved between open stages (or its probability was revised: same stage).
    Winning and losing are published as opportunity_won and opportunity_lost instead."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    from_stage = fields.String(required=True)
    to_stage = fields.String(required=True)
    probability = fields.Integer(required=True)
    changed_at = fields.AwareDateTime(required=True)


@catalog.event(
    "opportunity_amount_changed", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "amount": "13500.00",
            "previous_amount": "12000.00", "currency": "CNY"},
)
class OpportunityAmountChangedV1(EventPayload):
    """The estimated amount was revised (the currency never changes)."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    amount = money(required=True)
    previous_amount = money(required=True)
    currency = fields.String(required=True)


@catalog.event(
    "opportunity_close_date_changed", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "expected_close_date": "2027-01-31",
            "previous_expected_close_date": "2026-12-31"},
)
class OpportunityCloseDateChangedV1(EventPayload):
    """The expected close date moved (it places the opportunity in the forecast by month)."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    expected_close_date = fields.Date(required=True)
    previous_expected_close_date = fields.Date(required=True)


@catalog.event(
    "opportunity_reassigned", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "owner": "rep-zhao-lei",
            "previous_owner": "rep-wang-wei"},
)
class OpportunityReassignedV1(EventPayload):
    """Another sales rep owns the opportunity now."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    owner = fields.String(required=True)
    previous_owner = fields.String(required=True)


class QuoteLineV1(EventPayload):
    """A priced quote line: quantity x unit price less `discount` percent, rounded half-up to cents."""

    sku = fields.String(required=True)
    description = fields.String(required=True)
    quantity = fields.Integer(required=True)
    unit_price = money(required=True)
    discount = percent(required=True)
    line_total = money(required=True)


@catalog.event(
    "quote_sent", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "quote_id": _QUOTE_2, "quote_version": 2,
            "supersedes_quote_id": _QUOTE_1, "currency": "CNY", "lines": _LINES, **_TOTALS,
            "sent_at": "2026-11-20T09:00:00+00:00"},
)
class QuoteSentV1(EventPayload):
    """A quote version was sent to the customer; it supersedes `supersedes_quote_id` when set.
    `total` is the sum of the line totals; `discount_total` is `subtotal` - `total`."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    quote_id = fields.UUID(required=True)
    quote_version = fields.Integer(required=True)
    supersedes_quote_id = fields.UUID(allow_none=True, load_default=None)
    currency = fields.String(required=True)
    lines = fields.List(fields.Nested(QuoteLineV1), required=True)
    subtotal = money(required=True)
    discount_total = money(required=True)
    total = money(required=True)
    sent_at = fields.AwareDateTime(required=True)


@catalog.event(
    "quote_accepted", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "quote_id": _QUOTE_2, "quote_version": 2,
            "currency": "CNY", "total": "12300.00", "accepted_at": "2026-11-25T14:30:00+00:00"},
)
class QuoteAcceptedV1(EventPayload):
    """The customer accepted the current quote version."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    quote_id = fields.UUID(required=True)
    quote_version = fields.Integer(required=True)
    currency = fields.String(required=True)
    total = money(required=True)
    accepted_at = fields.AwareDateTime(required=True)


@catalog.event(
    "quote_rejected", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "quote_id": _QUOTE_1, "quote_version": 1,
            "reason": "price above budget", "rejected_at": "2026-11-18T11:00:00+00:00"},
)
class QuoteRejectedV1(EventPayload):
    """The customer rejected the current quote version; a new version may follow."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    quote_id = fields.UUID(required=True)
    quote_version = fields.Integer(required=True)
    reason = fields.String(allow_none=True, load_default=None)
    rejected_at = fields.AwareDateTime(required=True)


@catalog.event(
    "opportunity_won", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "owner": "rep-wang-wei",
            "from_stage": "negotiation", "quote_id": _QUOTE_2, "quote_version": 2, "currency": "CNY",
            "lines": _LINES, **_TOTALS, "won_at": "2026-11-26T09:15:00+00:00"},
)
class OpportunityWonV1(EventPayload):
    """The opportunity was won with its accepted quote; order creates the order from these lines."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    owner = fields.String(required=True)
    from_stage = fields.String(required=True)
    quote_id = fields.UUID(required=True)
    quote_version = fields.Integer(required=True)
    currency = fields.String(required=True)
    lines = fields.List(fields.Nested(QuoteLineV1), required=True)
    subtotal = money(required=True)
    discount_total = money(required=True)
    total = money(required=True)
    won_at = fields.AwareDateTime(required=True)


@catalog.event(
    "opportunity_lost", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": _CUSTOMER, "owner": "rep-wang-wei",
            "from_stage": "proposal", "reason": "chose a competitor on price", "amount": "12000.00",
            "currency": "CNY", "lost_at": "2026-11-26T09:15:00+00:00"},
)
class OpportunityLostV1(EventPayload):
    """The opportunity was lost, with the reason; `amount` is the estimate it was lost at."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    owner = fields.String(required=True)
    from_stage = fields.String(required=True)
    reason = fields.String(required=True)
    amount = money(required=True)
    currency = fields.String(required=True)
    lost_at = fields.AwareDateTime(required=True)


#: Why a record's customer changed: a merge re-pointed it to the survivor (customer.customer_merged), an
#: unmerge gave it back (customer.customer_unmerged). Order's records say the same.
CUSTOMER_CHANGES = ("merged", "unmerged")


@catalog.event(
    "opportunity_customer_changed", 1, origin=ORIGIN,
    sample={"opportunity_id": _OPPORTUNITY, "customer_id": "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a",
            "previous_customer_id": _CUSTOMER, "change": "merged", "merge_id": "merge-2026-0007",
            "changed_at": "2026-11-27T09:00:00+00:00"},
)
class OpportunityCustomerChangedV1(EventPayload):
    """The opportunity (with its quotes) now belongs to another customer: a merge re-pointed it to the
    survivor, or an unmerge gave it back. Its later events carry the new `customer_id`."""

    opportunity_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True, metadata={"description": "the opportunity's customer from now on"})
    previous_customer_id = fields.UUID(required=True)
    change = fields.String(required=True, validate=validate.OneOf(CUSTOMER_CHANGES))
    merge_id = fields.String(required=True, metadata={"description": "the merge re-pointing or giving back"})
    changed_at = fields.AwareDateTime(required=True)


# --- requests and responses ---------------------------------------------------------------------

class OpenOpportunityRequest(Request):
    """Open an opportunity. Example: {"customer_id": "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e",
    "title": "50 CRM seats", "owner": "rep-wang-wei", "amount": "12000.00", "currency": "CNY",
    "expected_close_date": "2026-12-31"}"""

    customer_id = fields.UUID(required=True)
    lead_id = fields.UUID(allow_none=True, load_default=None)
    title = Text(required=True, validate=TEXT)
    owner = Text(required=True, validate=TEXT)
    amount = money(required=True, validate=validate.Range(min=0))
    currency = Text(required=True, validate=validate.OneOf(CURRENCIES))
    expected_close_date = fields.Date(required=True)


class MoveStageRequest(Request):
    """Move to an open stage; probability defaults to the stage's. Example: {"stage": "proposal"}"""

    stage = Text(required=True, validate=validate.OneOf(OPEN_STAGES))
    probability = integer(allow_none=True, load_default=None, validate=PROBABILITY)


class ChangeAmountRequest(Request):
    """Revise the estimated amount. Example: {"amount": "13500.00"}"""

    amount = money(required=True, validate=validate.Range(min=0))


class ChangeExpectedCloseDateRequest(Request):
    """Move the expected close date. Example: {"expected_close_date": "2027-01-31"}"""

    expected_close_date = fields.Date(required=True)


class ReassignRequest(Request):
    """Hand the opportunity to another rep. Example: {"owner": "rep-zhao-lei"}"""

    owner = Text(required=True, validate=TEXT)


class QuoteLineRequest(Request):
    """One quote line. Example: {"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50,
    "unit_price": "240.00", "discount": "10.00"}"""

    sku = Text(required=True, validate=validate.Length(min=1, max=100))
    description = Text(required=True, validate=TEXT)
    quantity = integer(required=True, validate=validate.Range(min=1))
    unit_price = money(required=True, validate=validate.Range(min=0))
    discount = percent(load_default=Decimal("0.00"), validate=validate.Range(min=0, max=MAX_DISCOUNT_PERCENT))


class SendQuoteRequest(Request):
    """Send a new quote version (it supersedes the previous one). Example: {"lines": [{"sku": "CRM-SEAT",
    "description": "CRM seat, annual", "quantity": 50, "unit_price": "240.00", "discount": "10.00"}]}"""

    lines = fields.List(fields.Nested(QuoteLineRequest), required=True, validate=validate.Length(min=1))


class RejectQuoteRequest(Request):
    """Record the customer's rejection of a quote. Example: {"reason": "price above budget"}"""

    reason = Text(allow_none=True, load_default=None, validate=TEXT)


class LoseOpportunityRequest(Request):
    """Close an opportunity as lost; the reason is required. Example: {"reason": "chose a competitor"}"""

    reason = Text(required=True, validate=TEXT)


class QuoteLineSchema(Schema):
    sku = fields.String()
    description = fields.String()
    quantity = fields.Integer()
    unit_price = money()
    discount = percent()
    line_total = money()


class QuoteSchema(Schema):
    """One quote version as the sales service holds it."""

    quote_id = fields.UUID()
    version = fields.Integer()
    status = fields.String(validate=validate.OneOf(QUOTE_STATUSES))
    lines = fields.List(fields.Nested(QuoteLineSchema))
    subtotal = money()
    discount_total = money()
    total = money()
    sent_at = fields.AwareDateTime()
    decided_at = fields.AwareDateTime(allow_none=True)
    rejection_reason = fields.String(allow_none=True)


class StageEntrySchema(Schema):
    stage = fields.String(validate=validate.OneOf(STAGES))
    probability = fields.Integer()
    at = fields.AwareDateTime()


class OpportunitySchema(Schema):
    """An opportunity as the sales service holds it."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    customer_id = fields.UUID()
    lead_id = fields.UUID(allow_none=True)
    title = fields.String()
    owner = fields.String()
    amount = money()
    currency = fields.String()
    expected_close_date = fields.Date()
    stage = fields.String(validate=validate.OneOf(STAGES))
    probability = fields.Integer()
    weighted_amount = money()
    stage_history = fields.List(fields.Nested(StageEntrySchema))
    quotes = fields.List(fields.Nested(QuoteSchema))
    won_quote_id = fields.UUID(allow_none=True)
    lost_reason = fields.String(allow_none=True)
    opened_at = fields.AwareDateTime()
    closed_at = fields.AwareDateTime(allow_none=True)


class PipelineTotalsSchema(Schema):
    """Open opportunities grouped by a stage, a close month ("YYYY-MM") or a rep, in one currency."""

    key = fields.String()
    currency = fields.String()
    count = fields.Integer()
    amount = money()
    weighted_amount = money()


class WinRateSchema(Schema):
    """Won and lost counts and the share won, to four places; null before anything closed."""

    won = fields.Integer()
    lost = fields.Integer()
    rate = fields.Decimal(as_string=True, places=4, allow_none=True)
