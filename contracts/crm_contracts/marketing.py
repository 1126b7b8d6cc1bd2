"""Contracts of the marketing service: its published events and its request/response payloads."""

from __future__ import annotations

from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_contracts.catalog import catalog
from crm_contracts.fields import EMAIL, PHONE, EventPayload, Request, Text, integer, money
from crm_contracts.vocabulary.marketing import (
    CAMPAIGN_CHANNELS,
    CAMPAIGN_STATUSES,
    CURRENCIES,
    ENGAGEMENT_KINDS,
    LEAD_CHANNELS,
    LEAD_GRADES,
    LEAD_STATUSES,
    MAX_SCORE,
)

ORIGIN = "marketing"
_CAMPAIGN = "8c1d2e3f-4a5b-4c6d-9e7f-0a1b2c3d4e5f"
_LEAD = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
_CUSTOMER = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"
_SAVED_SEGMENT = "6d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"

TEXT = validate.Length(min=1, max=500)
NAME = validate.Length(min=1, max=200)
SCORE = validate.Range(min=0, max=MAX_SCORE)
_SEGMENT = {"industries": ["retail", "manufacturing"], "regions": ["East China"], "grades": ["key", "ordinary"],
            "company_size_min": 50}
_RESULTS = {"responses": 340, "leads": 48, "qualified_leads": 12, "conversions": 5,
            "attributed_revenue": "61500.00", "cost": "24000.00", "currency": "CNY", "cost_per_lead": "500.00",
            "roi_percent": "156.25"}


def _segment_fields(request: bool) -> dict[str, fields.Field]:
    """The criteria of a target segment; a request's are checked (text rules, known grades), a published
    event's are loaded as they were published."""
    text, whole = (Text, integer) if request else (fields.String, fields.Integer)
    # A criterion given names at least one value (an empty list would select nothing); documented as minItems.
    values = validate.Length(min=1) if request else None
    return {
        "industries": fields.List(text(validate=NAME), validate=values),
        "regions": fields.List(text(validate=NAME), validate=values),
        "grades": fields.List(text(validate=validate.OneOf(LEAD_GRADES) if request else None), validate=values),
        "lifecycle_stages": fields.List(text(validate=NAME), validate=values),
        "consent_channels": fields.List(text(validate=NAME), validate=values),
        "company_size_min": whole(validate=validate.Range(min=0)),
        "company_size_max": whole(validate=validate.Range(min=0)),
    }


SegmentV1 = EventPayload.from_dict(_segment_fields(request=False), name="SegmentV1")


class CampaignResultsV1(EventPayload):
    """A campaign's effect: counts, attributed revenue, cost, cost per lead and return on investment."""

    responses = fields.Integer(required=True)
    leads = fields.Integer(required=True)
    qualified_leads = fields.Integer(required=True)
    conversions = fields.Integer(required=True)
    attributed_revenue = money(required=True)
    cost = money(required=True)
    currency = fields.String(required=True, metadata={"description": "ISO 4217 code of every amount"})
    cost_per_lead = money(allow_none=True, load_default=None, metadata={"description": "null before any lead"})
    roi_percent = fields.Decimal(
        as_string=True, places=2, allow_none=True, load_default=None,
        metadata={"description": "(revenue - cost) / cost in percent; null when the campaign cost nothing"},
    )


# --- published events ---------------------------------------------------------------------------

@catalog.event(
    "campaign_planned", 1, origin=ORIGIN,
    sample={"campaign_id": _CAMPAIGN, "name": "Spring retail push", "objective": "50 qualified retail leads",
            "segment": _SEGMENT, "channels": ["email", "online"], "starts_on": "2027-03-01",
            "ends_on": "2027-04-30", "budget": "24000.00", "currency": "CNY"},
)
class CampaignPlannedV1(EventPayload):
    """A campaign was planned: its target segment, channels, schedule and budget."""

    campaign_id = fields.UUID(required=True)
    name = fields.String(required=True)
    objective = fields.String(required=True)
    segment = fields.Nested(SegmentV1, required=True, metadata={
        "description": "the target segment's criteria; empty for a campaign to a saved segment of customers, "
                       "whose members reached at launch are published as campaign_member_reached"})
    channels = fields.List(fields.String(), required=True)
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)
    budget = money(required=True)
    currency = fields.String(required=True, metadata={"description": "ISO 4217 code"})


@catalog.event(
    "campaign_launched", 1, origin=ORIGIN,
    sample={"campaign_id": _CAMPAIGN, "name": "Spring retail push", "launched_at": "2027-03-01T08:00:00+00:00"},
)
class CampaignLaunchedV1(EventPayload):
    """A planned campaign was launched: it now records responses and brings in leads."""

    campaign_id = fields.UUID(required=True)
    name = fields.String(required=True)
    launched_at = fields.AwareDateTime(required=True)


@catalog.event(
    "campaign_response_recorded", 1, origin=ORIGIN,
    sample={"campaign_id": _CAMPAIGN, "channel": "email", "count": 25, "at": "2027-03-02T10:00:00+00:00"},
)
class CampaignResponseRecordedV1(EventPayload):
    """Responses to a campaign were counted on one of its channels."""

    campaign_id = fields.UUID(required=True)
    channel = fields.String(required=True)
    count = fields.Integer(required=True)
    at = fields.AwareDateTime(required=True)


@catalog.event(
    "campaign_closed", 1, origin=ORIGIN,
    sample={"campaign_id": _CAMPAIGN, "results": _RESULTS},
)
class CampaignClosedV1(EventPayload):
    """A campaign was closed, with its actual cost and its results at closing. Leads it brought in may
    still qualify and convert afterwards; the marketing service's results query has the latest."""

    campaign_id = fields.UUID(required=True)
    results = fields.Nested(CampaignResultsV1, required=True)


@catalog.event(
    "campaign_member_reached", 1, origin=ORIGIN,
    sample={"campaign_id": _CAMPAIGN, "customer_id": _CUSTOMER, "segment_id": _SAVED_SEGMENT,
            "channels": ["email", "online"], "reached_at": "2027-03-01T08:00:00+00:00"},
)
class CampaignMemberReachedV1(EventPayload):
    """A campaign launched to a saved segment (customer360) reached one of its members, on the channels
    the member's consent allows (never one without it). One event per member, carrying the customer id."""

    campaign_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    segment_id = fields.UUID(required=True, metadata={"description": "the saved segment the campaign targets"})
    channels = fields.List(fields.String(validate=validate.OneOf(CAMPAIGN_CHANNELS)), required=True,
                           metadata={"description": "the campaign's channels the member may be contacted on"})
    reached_at = fields.AwareDateTime(required=True)


@catalog.event(
    "lead_captured", 1, origin=ORIGIN,
    sample={"lead_id": _LEAD, "campaign_id": _CAMPAIGN, "channel": "web_form", "name": "Zhang Min",
            "email": "zhang.min@example.com", "phone": "+86 21 5555 0142", "company": "Bright Retail",
            "company_size": 250, "role": "Head of Purchasing", "industry": "retail",
            "captured_at": "2027-03-03T09:15:00+00:00"},
)
class LeadCapturedV1(EventPayload):
    """A lead was captured from a channel, by a campaign when `campaign_id` is set. No customer yet."""

    lead_id = fields.UUID(required=True)
    campaign_id = fields.UUID(allow_none=True, load_default=None)
    channel = fields.String(required=True)
    name = fields.String(required=True)
    email = fields.String(allow_none=True, load_default=None)
    phone = fields.String(allow_none=True, load_default=None)
    company = fields.String(allow_none=True, load_default=None)
    company_size = fields.Integer(allow_none=True, load_default=None, metadata={"description": "employees"})
    role = fields.String(allow_none=True, load_default=None)
    industry = fields.String(allow_none=True, load_default=None)
    captured_at = fields.AwareDateTime(required=True)


@catalog.event(
    "lead_graded", 1, origin=ORIGIN,
    sample={"lead_id": _LEAD, "grade": "key", "reason": "chain of 40 stores"},
)
class LeadGradedV1(EventPayload):
    """A lead was graded as a key, ordinary or seed prospect."""

    lead_id = fields.UUID(required=True)
    grade = fields.String(required=True)
    reason = fields.String(allow_none=True, load_default=None)


@catalog.event(
    "lead_scored", 1, origin=ORIGIN,
    sample={"lead_id": _LEAD, "score": 47, "fit": 35, "engagement": 12, "scored_at": "2027-03-05T12:00:00+00:00"},
)
class LeadScoredV1(EventPayload):
    """A lead's score changed: fit plus engagement decayed to `scored_at`, from 0 to 100."""

    lead_id = fields.UUID(required=True)
    score = fields.Integer(required=True)
    fit = fields.Integer(required=True)
    engagement = fields.Integer(required=True)
    scored_at = fields.AwareDateTime(required=True)


@catalog.event(
    "lead_qualified", 1, origin=ORIGIN,
    sample={"lead_id": _LEAD, "campaign_id": _CAMPAIGN, "score": 47, "grade": "key", "note": "budget confirmed"},
)
class LeadQualifiedV1(EventPayload):
    """A lead was qualified: worth handing over to sales."""

    lead_id = fields.UUID(required=True)
    campaign_id = fields.UUID(allow_none=True, load_default=None)
    score = fields.Integer(allow_none=True, load_default=None)
    grade = fields.String(allow_none=True, load_default=None)
    note = fields.String(allow_none=True, load_default=None)


@catalog.event(
    "lead_disqualified", 1, origin=ORIGIN,
    sample={"lead_id": _LEAD, "campaign_id": _CAMPAIGN, "reason": "student project, no budget"},
)
class LeadDisqualifiedV1(EventPayload):
    """A lead was disqualified for a reason; it is closed for good."""

    lead_id = fields.UUID(required=True)
    campaign_id = fields.UUID(allow_none=True, load_default=None)
    reason = fields.String(required=True)


@catalog.event(
    "lead_converted", 1, origin=ORIGIN,
    sample={"lead_id": _LEAD, "customer_id": _CUSTOMER, "campaign_id": _CAMPAIGN, "name": "Zhang Min",
            "email": "zhang.min@example.com", "phone": "+86 21 5555 0142", "company": "Bright Retail",
            "channel": "web_form", "grade": "key", "score": 47, "estimated_amount": "12000.00", "currency": "CNY",
            "expected_close_date": "2027-06-30", "sales_owner": "rep-wang-wei"},
)
class LeadConvertedV1(EventPayload):
    """A qualified lead was handed to sales: customer registers (or links) the customer, sales opens an
    opportunity. `customer_id` is set when the lead was already known to be that customer."""

    lead_id = fields.UUID(required=True)
    customer_id = fields.UUID(allow_none=True, load_default=None)
    campaign_id = fields.UUID(allow_none=True, load_default=None)
    name = fields.String(required=True)
    email = fields.String(allow_none=True, load_default=None)
    phone = fields.String(allow_none=True, load_default=None)
    company = fields.String(allow_none=True, load_default=None)
    channel = fields.String(required=True, metadata={"description": "where the lead was captured"})
    grade = fields.String(allow_none=True, load_default=None)
    score = fields.Integer(allow_none=True, load_default=None)
    estimated_amount = money(required=True)
    currency = fields.String(required=True, metadata={"description": "ISO 4217 code"})
    expected_close_date = fields.Date(allow_none=True, load_default=None)
    sales_owner = fields.String(allow_none=True, load_default=None, metadata={"description": "the sales rep"})


# --- requests and responses ---------------------------------------------------------------------

SegmentRequest = Request.from_dict(_segment_fields(request=True), name="SegmentRequest")


class PlanCampaignRequest(Request):
    """Plan a campaign for marketing's own criteria (`segment`: prospects by industry, region, size...) or
    for a saved segment of customers (`segment_id`, from POST /v1/segments: it replaces the criteria; its
    members are reached at launch, honouring their consent). Exactly one of the two. Example:
    {"name": "Spring retail push", "objective": "50 qualified leads", "segment": {"industries": ["retail"]},
    "channels": ["email"], "starts_on": "2027-03-01", "ends_on": "2027-04-30", "budget": "24000.00",
    "currency": "CNY"}"""

    name = Text(required=True, validate=NAME)
    objective = Text(required=True, validate=TEXT)
    segment = fields.Nested(SegmentRequest, load_default=None, metadata={
        "description": "marketing's criteria of the audience; not with segment_id"})
    segment_id = fields.UUID(allow_none=True, load_default=None, metadata={
        "description": "a saved segment (customer360) to target instead of criteria; reached at launch"})
    channels = fields.List(
        Text(validate=validate.OneOf(CAMPAIGN_CHANNELS)), required=True, validate=validate.Length(min=1)
    )
    starts_on = fields.Date(required=True)
    ends_on = fields.Date(required=True)
    budget = money(required=True, validate=validate.Range(min=0))
    currency = Text(required=True, validate=validate.OneOf(CURRENCIES))

    @validates_schema
    def schedule_in_order(self, data: dict[str, Any], **kwargs: object) -> None:
        if "starts_on" in data and "ends_on" in data and data["ends_on"] < data["starts_on"]:
            raise ValidationError("must not be before starts_on", "ends_on")

    @validates_schema
    def segment_not_empty(self, data: dict[str, Any], **kwargs: object) -> None:
        if data.get("segment") is not None and not data["segment"]:
            raise ValidationError("must name at least one criterion", "segment")

    @validates_schema
    def one_audience(self, data: dict[str, Any], **kwargs: object) -> None:
        if data.get("segment") is not None and data.get("segment_id") is not None:
            raise ValidationError("give either criteria or a saved segment (segment_id), not both", "segment")
        if data.get("segment") is None and data.get("segment_id") is None:
            raise ValidationError("give criteria (segment) or a saved segment (segment_id)", "segment")


class RecordResponseRequest(Request):
    """Count responses on one channel. Example: {"channel": "email", "count": 25}"""

    channel = Text(required=True, validate=validate.OneOf(CAMPAIGN_CHANNELS))
    count = integer(load_default=1, validate=validate.Range(min=1))
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class CloseCampaignRequest(Request):
    """Close a campaign; the actual cost defaults to the budget. Example: {"actual_cost": "23500.00"}"""

    actual_cost = money(allow_none=True, load_default=None, validate=validate.Range(min=0))


class AttributeRevenueRequest(Request):
    """Set the revenue a converted lead really brought. Example: {"amount": "13500.00", "currency": "CNY"}"""

    amount = money(required=True, validate=validate.Range(min=0))
    currency = Text(required=True, validate=validate.OneOf(CURRENCIES))


class CaptureLeadRequest(Request):
    """Capture a lead. Example: {"channel": "web_form", "name": "Zhang Min", "email": "zhang.min@example.com",
    "campaign_id": "8c1d2e3f-4a5b-4c6d-9e7f-0a1b2c3d4e5f", "company_size": 250, "industry": "retail"}"""

    channel = Text(required=True, validate=validate.OneOf(LEAD_CHANNELS))
    name = Text(required=True, validate=NAME)
    email = Text(allow_none=True, load_default=None, validate=[EMAIL, validate.Length(max=254)])
    phone = Text(allow_none=True, load_default=None, validate=PHONE)
    campaign_id = fields.UUID(allow_none=True, load_default=None)
    company = Text(allow_none=True, load_default=None, validate=validate.Length(max=200))
    company_size = integer(allow_none=True, load_default=None, validate=validate.Range(min=0))
    role = Text(allow_none=True, load_default=None, validate=validate.Length(max=200))
    industry = Text(allow_none=True, load_default=None, validate=validate.Length(max=200))
    at = fields.AwareDateTime(load_default=None, allow_none=True)

    @validates_schema
    def reachable(self, data: dict[str, Any], **kwargs: object) -> None:
        if not data.get("email") and not data.get("phone"):
            raise ValidationError("give an email or a phone number to reach the lead by", "email")


class RecordEngagementRequest(Request):
    """Record an open, a visit or a reply. Example: {"kind": "reply"}"""

    kind = Text(required=True, validate=validate.OneOf(ENGAGEMENT_KINDS))
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class GradeLeadRequest(Request):
    """Grade a lead. Example: {"grade": "key", "reason": "chain of 40 stores"}"""

    grade = Text(required=True, validate=validate.OneOf(LEAD_GRADES))
    reason = Text(allow_none=True, load_default=None, validate=validate.Length(max=500))


class QualifyLeadRequest(Request):
    """Qualify a lead. Example: {"note": "budget confirmed"}"""

    note = Text(multiline=True, allow_none=True, load_default=None, validate=validate.Length(max=500))


class DisqualifyLeadRequest(Request):
    """Disqualify a lead. Example: {"reason": "student project, no budget"}"""

    reason = Text(required=True, validate=TEXT)


class ConvertLeadRequest(Request):
    """Hand a qualified lead to sales. Example: {"estimated_amount": "12000.00", "currency": "CNY",
    "expected_close_date": "2027-06-30", "sales_owner": "rep-wang-wei"}"""

    estimated_amount = money(required=True, validate=validate.Range(min=0))
    currency = Text(required=True, validate=validate.OneOf(CURRENCIES))
    expected_close_date = fields.Date(allow_none=True, load_default=None)
    sales_owner = Text(allow_none=True, load_default=None, validate=validate.Length(min=1, max=200))
    customer_id = fields.UUID(allow_none=True, load_default=None)


class CampaignResultsSchema(Schema):
    """A campaign's results as the marketing service answers the results query."""

    responses = fields.Integer()
    leads = fields.Integer()
    qualified_leads = fields.Integer()
    conversions = fields.Integer()
    attributed_revenue = money()
    cost = money()
    currency = fields.String()
    cost_per_lead = money(allow_none=True)
    roi_percent = fields.Decimal(as_string=True, places=2, allow_none=True)


class CampaignSchema(Schema):
    """A campaign as the marketing service holds it."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    name = fields.String()
    objective = fields.String()
    segment = fields.Nested(SegmentV1)
    channels = fields.List(fields.String(validate=validate.OneOf(CAMPAIGN_CHANNELS)))
    starts_on = fields.Date()
    ends_on = fields.Date()
    budget = money()
    currency = fields.String()
    status = fields.String(validate=validate.OneOf(CAMPAIGN_STATUSES))
    results = fields.Nested(CampaignResultsSchema)
    segment_id = fields.UUID(allow_none=True, metadata={"description": "the saved segment it targets, if any"})
    reached = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={
        "description": "members of its saved segment reached at launch, per channel (consent allowing)"})


class LeadSchema(Schema):
    """A lead as the marketing service holds it."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    campaign_id = fields.UUID(allow_none=True)
    channel = fields.String(validate=validate.OneOf(LEAD_CHANNELS))
    name = fields.String()
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    company_size = fields.Integer(allow_none=True)
    role = fields.String(allow_none=True)
    industry = fields.String(allow_none=True)
    captured_at = fields.AwareDateTime()
    status = fields.String(validate=validate.OneOf(LEAD_STATUSES))
    grade = fields.String(allow_none=True, validate=validate.OneOf(LEAD_GRADES))
    score = fields.Integer(allow_none=True, validate=SCORE)
    fit = fields.Integer(allow_none=True)
    engagement = fields.Integer(allow_none=True)
    disqualification_reason = fields.String(allow_none=True)
    customer_id = fields.UUID(allow_none=True)
    estimated_amount = money(allow_none=True)
    currency = fields.String(allow_none=True)
