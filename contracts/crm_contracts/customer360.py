"""Contracts of customer360, the read side: the 360 view, search and rebuild answers, and the search query."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm_contracts.fields import Request

#: The largest page a search returns (customer360 clamps to the same).
MAX_PAGE_SIZE = 100


class SearchQuery(Request):
    """Query parameters of GET /v1/customers: `q` matches name or email (case-insensitive)."""

    q = fields.String(load_default="", validate=validate.Length(max=200))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = fields.Integer(load_default=20, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


class SearchItemSchema(Schema):
    customer_id = fields.UUID()
    name = fields.String()
    email = fields.String()
    lifecycle_stage = fields.String(allow_none=True)
    last_activity_at = fields.AwareDateTime(allow_none=True)


class SearchPageSchema(Schema):
    """One page of search results."""

    items = fields.List(fields.Nested(SearchItemSchema))
    page = fields.Integer()
    page_size = fields.Integer()
    total = fields.Integer()


class TimelineEntrySchema(Schema):
    origin = fields.String()
    position = fields.Integer()
    event_id = fields.UUID()
    type = fields.String()
    occurred_at = fields.AwareDateTime()
    summary = fields.String()


class Customer360Schema(Schema):
    """The unified view of one customer across every service (customer360.view)."""

    customer_id = fields.UUID()
    profile = fields.Dict()
    consents = fields.Dict()
    credit = fields.Dict(allow_none=True)
    grade = fields.Dict(allow_none=True)
    lifecycle_stage = fields.String(allow_none=True)
    relationship_phase = fields.String(allow_none=True)
    registered_at = fields.AwareDateTime(allow_none=True)
    first_seen_at = fields.AwareDateTime(allow_none=True)
    last_activity_at = fields.AwareDateTime(allow_none=True)
    events = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "count per origin"})
    paid_orders = fields.Integer()
    timeline = fields.List(fields.Nested(TimelineEntrySchema), metadata={"description": "newest first"})
    timeline_total = fields.Integer()


class RebuildReportSchema(Schema):
    """What a rebuild of the 360 view did (customer360.rebuild)."""

    events = fields.Integer()
    seconds = fields.Float()
    events_per_second = fields.Float()
    positions = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "per origin"})
