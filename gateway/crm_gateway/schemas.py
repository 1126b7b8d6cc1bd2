"""Schemas of the HTTP surface itself: path and list-query parameters, pages, the error document, and the
few bodies the gateway shapes itself. Request bodies and answers otherwise come from crm_contracts.

The list filters are what the services' `list_*` methods take (filters, page, page_size); an unknown
filter is 422 naming it, like an unknown body field.
"""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm_contracts import order
from crm_contracts.customer360 import MAX_PAGE_SIZE
from crm_contracts.fields import QueryInteger, Request, Text
from crm_contracts.vocabulary.customer import ADDRESS_KINDS, CONSENT_CHANNELS
from crm_contracts.vocabulary.loyalty import TIERS
from crm_contracts.vocabulary.marketing import CAMPAIGN_STATUSES, LEAD_CHANNELS, LEAD_GRADES, LEAD_STATUSES
from crm_contracts.vocabulary.money import CURRENCIES
from crm_contracts.vocabulary.order import ORDER_STATUSES, PAYMENT_STATUSES
from crm_contracts.vocabulary.sales import STAGES
from crm_contracts.vocabulary.service import (
    CASE_CHANNELS,
    CASE_STATUSES,
    COMPLAINT_CATEGORIES,
    COMPLAINT_STAGES,
    DEPARTMENTS,
    ESCALATION_TIERS,
    FAQ_STATUSES,
    PRIORITIES,
)
from crm_runtime.listing import MAX_TOTAL

#: An opportunity is open until it is won or lost.
OPPORTUNITY_STATUSES = ("open", "won", "lost")


class ConsentChannelPath(Schema):
    """The `channel` path parameter of the consent endpoint."""

    channel = fields.String(required=True, validate=validate.OneOf(CONSENT_CHANNELS))


class AddressKindPath(Schema):
    """The `kind` path parameter of the address endpoint."""

    kind = fields.String(required=True, validate=validate.OneOf(ADDRESS_KINDS))


class ErrorDetailSchema(Schema):
    code = fields.String(required=True, metadata={"description": "stable, documented: switch on this"})
    message = fields.String(required=True)
    # Named `fields` on the wire; the attribute cannot be, it would hide marshmallow's `fields` module.
    bad_fields = fields.Dict(keys=fields.String(), values=fields.List(fields.String()), data_key="fields",
                             metadata={"description": "each bad field (dotted path) with its reasons"})
    details = fields.Dict(metadata={"description": "more from the service, e.g. existing_customer_id"})


class ErrorSchema(Schema):
    """Every 4xx/5xx answer."""

    error = fields.Nested(ErrorDetailSchema, required=True)


# --- list queries: one per collection, each a filter per documented field plus paging -----------------

#: The deepest page a list query may ask for: the services' listings count and page through the first
#: MAX_TOTAL matches only (crm_runtime.listing), so with the largest page size every page up to this one is
#: answerable whatever `page_size` is, as the document says; beyond them a client narrows its filters.
MAX_PAGE = MAX_TOTAL // MAX_PAGE_SIZE


def _page() -> dict[str, fields.Field]:
    return {
        "page": QueryInteger(load_default=1, validate=validate.Range(min=1, max=MAX_PAGE)),
        "page_size": QueryInteger(load_default=20, validate=validate.Range(min=1, max=MAX_PAGE_SIZE)),
    }


def _one_of(values: tuple[str, ...]) -> Text:
    return Text(validate=validate.OneOf(values))


def _name() -> Text:
    return Text(validate=validate.Length(min=1, max=200))


def _list_query(name: str, doc: str, filters: dict[str, fields.Field]) -> type[Request]:
    query: type[Request] = Request.from_dict({**filters, **_page()}, name=name)  # type: ignore[assignment]
    query.__doc__ = doc
    return query


CampaignQuery = _list_query("CampaignQuery", "Filters of GET /v1/campaigns.", {
    "status": _one_of(CAMPAIGN_STATUSES), "currency": _one_of(CURRENCIES),
})
LeadQuery = _list_query("LeadQuery", "Filters of GET /v1/leads.", {
    "status": _one_of(LEAD_STATUSES), "campaign_id": fields.UUID(), "grade": _one_of(LEAD_GRADES),
    "customer_id": fields.UUID(), "channel": _one_of(LEAD_CHANNELS),
})
OpportunityQuery = _list_query("OpportunityQuery", "Filters of GET /v1/opportunities (status: open, won or lost).", {
    "stage": _one_of(STAGES), "owner": _name(), "customer_id": fields.UUID(), "status": _one_of(OPPORTUNITY_STATUSES),
    "lead_id": fields.UUID(), "currency": _one_of(CURRENCIES),
})
OrderQuery = _list_query("OrderQuery", "Filters of GET /v1/orders.", {
    "status": _one_of(ORDER_STATUSES), "customer_id": fields.UUID(), "payment_status": _one_of(PAYMENT_STATUSES),
    "currency": _one_of(CURRENCIES), "opportunity_id": fields.UUID(),
})
CaseQuery = _list_query("CaseQuery", "Filters of GET /v1/cases.", {
    "status": _one_of(CASE_STATUSES), "priority": _one_of(PRIORITIES), "customer_id": fields.UUID(),
    "complaint_category": _one_of(COMPLAINT_CATEGORIES), "complaint_stage": _one_of(COMPLAINT_STAGES),
    "department": _one_of(DEPARTMENTS), "channel": _one_of(CASE_CHANNELS), "agent": _name(), "group": _name(),
    "escalated_to": _one_of(ESCALATION_TIERS),
})
FaqQuery = _list_query("FaqQuery", "Filters of GET /v1/faqs.", {
    "status": _one_of(FAQ_STATUSES), "department": _one_of(DEPARTMENTS),
})
LoyaltyAccountQuery = _list_query("LoyaltyAccountQuery", "Filters of GET /v1/loyalty-accounts.", {
    "tier": _one_of(TIERS), "customer_id": fields.UUID(), "currency": _one_of(CURRENCIES),
})


class FaqSuggestionQuery(Request):
    """Query of GET /v1/faqs/suggestions: the customer's question and how many articles at most."""

    q = Text(required=True, validate=validate.Length(min=1, max=2000))
    limit = QueryInteger(load_default=3, validate=validate.Range(min=1, max=10))


class WinRateQuery(Request):
    """Query of GET /v1/sales/win-rate: one rep's, or everyone's when left out."""

    owner = _name()


# --- bodies the gateway shapes itself (the contract takes an id the path already gives) ---------------

class EnrolBody(Request):
    """Enrol the customer of the path; the body may be left out. Example: {}"""

    at = fields.AwareDateTime(load_default=None, allow_none=True)


# --- answers -------------------------------------------------------------------------------------------

def page_of(item: type[Schema], name: str) -> type[Schema]:
    """The answer of a list: one page of `item`s and the total across pages."""
    page = Schema.from_dict({
        "items": fields.List(fields.Nested(item)), "page": fields.Integer(), "page_size": fields.Integer(),
        "total": fields.Integer(metadata={"description": "matches counted, at most 10000"}),
        "total_exact": fields.Boolean(metadata={"description": "false when there are more than `total`"}),
    }, name=name)
    page.__doc__ = f"One page of {item.__name__.removesuffix('Schema')}s."
    return page


class CustomerOrdersSchema(Schema):
    """Where are my orders: every order of one customer, oldest first."""

    customer_id = fields.UUID()
    orders = fields.List(fields.Nested(order.OrderProgressSchema))
