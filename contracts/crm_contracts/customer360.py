"""Contracts of customer360, the read side: the 360 view, search and rebuild answers, and the search query."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm_contracts.analytics import CustomerAnalyticsSchema
from crm_contracts.fields import Money, QueryInteger, Request, Text

#: The largest page a search returns (customer360 clamps to the same).
MAX_PAGE_SIZE = 100


#: A search counts matching customers exactly up to this many; past it, `total` is this and `total_capped` true.
SEARCH_TOTAL_CAP = 100


class SearchQuery(Request):
    """Query parameters of GET /v1/customers: `q` matches the start of a customer's name, of a word of the
    name, or of the email (case-insensitive); empty lists every customer by name."""

    q = Text(load_default="", validate=validate.Length(max=200), metadata={
        "description": "the start of a name, of a word of it, or of an email (case-insensitive); results come "
                       "in the order of the first of those each customer matched, then name"})
    page = QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = QueryInteger(load_default=20, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


class SearchItemSchema(Schema):
    """One customer found. A customer registered by phone has no email, and a view that heard of a customer
    from another origin before its registration has no profile yet: both may be null."""

    customer_id = fields.UUID()
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    lifecycle_stage = fields.String(allow_none=True)
    last_activity_at = fields.AwareDateTime(allow_none=True)


class SearchPageSchema(Schema):
    """One page of search results."""

    items = fields.List(fields.Nested(SearchItemSchema))
    page = fields.Integer()
    page_size = fields.Integer()
    total = fields.Integer(metadata={"description": f"customers matching, counted up to {SEARCH_TOTAL_CAP}"})
    total_capped = fields.Boolean(metadata={
        "description": f"true when more than {SEARCH_TOTAL_CAP} customers match: `total` is then {SEARCH_TOTAL_CAP}"})


class TimelineEntrySchema(Schema):
    origin = fields.String()
    position = fields.Integer()
    event_id = fields.UUID()
    type = fields.String()
    occurred_at = fields.AwareDateTime()
    summary = fields.String()
    customer_id = fields.UUID(allow_none=True, metadata={
        "description": "the customer the entry is about: a customer merged into this one keeps its own id"})


def _amounts(description: str) -> fields.Dict:
    """Money per currency: {"CNY": "12400.00"} (decimal strings, never floats)."""
    return fields.Dict(keys=fields.String(), values=Money(), metadata={"description": description})


class LeadSchema(Schema):
    """A lead that became this customer, as marketing folded it (lead events before the link included)."""

    customer_id = fields.UUID(allow_none=True)
    campaign_id = fields.UUID(allow_none=True)
    channel = fields.String(allow_none=True)
    name = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    status = fields.String(allow_none=True, metadata={"description": "captured, qualified, disqualified, converted"})
    score = fields.Integer(allow_none=True)
    grade = fields.String(allow_none=True)
    captured_at = fields.AwareDateTime(allow_none=True)
    first_at = fields.AwareDateTime(allow_none=True)
    last_at = fields.AwareDateTime(allow_none=True)
    events = fields.Integer()


class MarketingTouchesSchema(Schema):
    leads = fields.Dict(keys=fields.UUID(), values=fields.Nested(LeadSchema), metadata={"description": "by lead id"})
    linked_campaigns = fields.List(fields.UUID(), metadata={"description": "campaigns named by customer.lead_linked"})
    campaigns = fields.List(fields.UUID(), metadata={"description": "every campaign the customer came from"})
    lead_score = fields.Integer(allow_none=True, metadata={"description": "of the newest lead"})
    lead_grade = fields.String(allow_none=True, metadata={"description": "of the newest lead"})


class QuoteSchema(Schema):
    quote_id = fields.UUID()
    version = fields.Integer(allow_none=True)
    status = fields.String(metadata={"description": "sent, accepted, rejected"})
    total = Money(allow_none=True)


class OpportunitySchema(Schema):
    title = fields.String(allow_none=True)
    status = fields.String(metadata={"description": "open, won, lost"})
    stage = fields.String(allow_none=True)
    probability = fields.Integer(allow_none=True)
    amount = Money(allow_none=True)
    currency = fields.String(allow_none=True)
    owner = fields.String(allow_none=True)
    expected_close_date = fields.Date(allow_none=True)
    opened_at = fields.AwareDateTime(allow_none=True)
    lead_id = fields.UUID(allow_none=True)
    quote = fields.Nested(QuoteSchema, allow_none=True, metadata={"description": "the latest quote"})
    won_amount = Money(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    lost_reason = fields.String(allow_none=True)


class PipelineSchema(Schema):
    opportunities = fields.Dict(keys=fields.UUID(), values=fields.Nested(OpportunitySchema),
                                metadata={"description": "by opportunity id"})
    open_total = _amounts("open pipeline: amounts of open opportunities, per currency")
    won_total = _amounts("won revenue: totals of won opportunities, per currency")
    won_by_owner = fields.Dict(keys=fields.String(), values=fields.Dict(keys=fields.String(), values=Money()),
                               metadata={"description": "won revenue per sales owner, per currency"})
    owners = fields.List(fields.String(), metadata={"description": "every owner of the customer's opportunities"})


class OrderSchema(Schema):
    status = fields.String(allow_none=True, metadata={
        "description": "placed, confirmed, partly_shipped, shipped, partly_delivered, delivered, paid, cancelled, "
                       "refunded"})
    currency = fields.String(allow_none=True)
    total = Money(allow_none=True)
    paid = Money()
    refunded = Money()
    outstanding = Money(metadata={"description": "total - paid, none for a cancelled order"})
    placed_at = fields.AwareDateTime(allow_none=True)
    paid_at = fields.AwareDateTime(allow_none=True)
    opportunity_id = fields.UUID(allow_none=True)
    over_credit_limit = fields.Boolean()
    shipments = fields.Integer()
    returns = fields.Integer()
    skus = fields.List(fields.String(), metadata={"description": "the SKUs on the order's lines"})
    discounted = fields.Boolean(metadata={"description": "a line was sold at a discount (a promotion)"})


class LastOrderSchema(Schema):
    order_id = fields.UUID()
    status = fields.String(allow_none=True)
    total = Money(allow_none=True)
    currency = fields.String(allow_none=True)
    placed_at = fields.AwareDateTime(allow_none=True)


class OrdersSchema(Schema):
    by_id = fields.Dict(keys=fields.UUID(), values=fields.Nested(OrderSchema), metadata={"description": "by order id"})
    revenue = _amounts("paid less refunded, per currency")
    outstanding = _amounts("outstanding balance of open orders, per currency")
    last_order = fields.Nested(LastOrderSchema, allow_none=True)


class ComplaintSchema(Schema):
    status = fields.String(metadata={"description": "open, resolved"})
    category = fields.String(allow_none=True)
    severity = fields.String(allow_none=True)
    summary = fields.String(allow_none=True)


class CaseSchema(Schema):
    status = fields.String(metadata={"description": "open, resolved, closed"})
    channel = fields.String(allow_none=True)
    subject = fields.String(allow_none=True)
    opened_at = fields.AwareDateTime(allow_none=True)
    department = fields.String(allow_none=True)
    priority = fields.String(allow_none=True)
    group = fields.String(allow_none=True)
    agent = fields.String(allow_none=True)
    responded = fields.Boolean()
    sla_breaches = fields.Integer()
    escalation_level = fields.Integer()
    resolved_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    is_complaint = fields.Boolean()
    complaint = fields.Nested(ComplaintSchema, allow_none=True)


class SurveySchema(Schema):
    subject = fields.String(allow_none=True)
    subject_id = fields.UUID(allow_none=True)
    requested_at = fields.AwareDateTime(allow_none=True)
    score = fields.Integer(allow_none=True)


class ComplaintCountsSchema(Schema):
    total = fields.Integer()
    unresolved = fields.Integer()


class SatisfactionSchema(Schema):
    csi = fields.Decimal(as_string=True, allow_none=True,
                         metadata={"description": "0-100, (mean score - 1) / 4 * 100, one decimal"})
    responses = fields.Integer()


class ServiceSummarySchema(Schema):
    cases = fields.Dict(keys=fields.UUID(), values=fields.Nested(CaseSchema), metadata={"description": "by case id"})
    surveys = fields.Dict(keys=fields.UUID(), values=fields.Nested(SurveySchema),
                          metadata={"description": "by survey id"})
    scores = fields.Dict(keys=fields.String(), values=fields.Integer(),
                         metadata={"description": "survey score 1-5 per surveyed subject (case or order)"})
    open_cases = fields.Integer()
    sla_breaches = fields.Integer()
    complaints = fields.Nested(ComplaintCountsSchema)
    satisfaction = fields.Nested(SatisfactionSchema)


class PointsLotSchema(Schema):
    points = fields.Integer()
    earned_at = fields.AwareDateTime(allow_none=True)
    expires_at = fields.AwareDateTime(allow_none=True)


class BenefitSchema(Schema):
    level = fields.String(allow_none=True)
    kind = fields.String(allow_none=True)
    description = fields.String(allow_none=True)
    granted_at = fields.AwareDateTime(allow_none=True)


class LoyaltySummarySchema(Schema):
    account_id = fields.UUID(allow_none=True)
    tier = fields.String(allow_none=True)
    currency = fields.String(allow_none=True)
    enrolled_at = fields.AwareDateTime(allow_none=True)
    balance = fields.Integer()
    points_owed = fields.Integer()
    rolling_spend = Money(allow_none=True)
    lots = fields.Dict(keys=fields.String(), values=fields.Nested(PointsLotSchema),
                       metadata={"description": "points earned per order ('<order_id>|<earned_at>'), less expired "
                                                "and taken back"})
    benefits = fields.Dict(keys=fields.UUID(), values=fields.Nested(BenefitSchema))
    points_expiring = fields.Integer(metadata={"description": "of the balance, expiring within 90 days of stage_as_of"})
    next_expiry_at = fields.AwareDateTime(allow_none=True)


class Customer360Schema(Schema):
    """The unified view of one customer across every service (customer360.view)."""

    customer_id = fields.UUID()
    profile = fields.Dict()
    consents = fields.Dict()
    credit = fields.Dict(allow_none=True)
    grade = fields.Dict(allow_none=True)
    addresses = fields.Dict(keys=fields.String(), values=fields.Dict(), metadata={"description": "default per kind"})
    lifecycle_stage = fields.String(allow_none=True, metadata={
        "description": "prospect, lead, qualified_lead, opportunity, customer, repeat_customer, loyal, or by rule "
                       "at_risk, churned, won_back (as of stage_as_of)"})
    relationship_phase = fields.String(allow_none=True, metadata={
        "description": "breakthrough, consolidation, harvest, dormancy, pause"})
    stage_reached = fields.String(allow_none=True, metadata={"description": "the furthest stage of the ladder"})
    stage_as_of = fields.AwareDateTime(allow_none=True, metadata={
        "description": "the instant stages are computed as of: the newest event or the view's clock, the later"})
    stage_reasons = fields.List(fields.String(), metadata={"description": "why a rule stage applies"})
    registered_at = fields.AwareDateTime(allow_none=True)
    merged_from = fields.List(fields.UUID(), metadata={
        "description": "only for a survivor of a merge: the customers merged into it, shown here with it"})
    erased_at = fields.AwareDateTime(metadata={
        "description": "only once the customer is erased (customer_erased): the profile, addresses and every "
                       "personal value are then null; anonymous facts stay"})
    first_seen_at = fields.AwareDateTime(allow_none=True)
    last_activity_at = fields.AwareDateTime(allow_none=True)
    events = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "count per origin"})
    paid_orders = fields.Integer()
    marketing = fields.Nested(MarketingTouchesSchema)
    pipeline = fields.Nested(PipelineSchema)
    orders = fields.Nested(OrdersSchema)
    service = fields.Nested(ServiceSummarySchema)
    loyalty = fields.Nested(LoyaltySummarySchema)
    timeline = fields.List(fields.Nested(TimelineEntrySchema), metadata={"description": "newest first"})
    timeline_total = fields.Integer()
    analytics = fields.Nested(CustomerAnalyticsSchema, allow_none=True, metadata={
        "description": "lifetime value, RFM, loyalty type, churn risk, relationship and cross-sell as of "
                       "`analytics.as_of` (null until the first analytics refresh)"})
    as_of = fields.AwareDateTime(metadata={"description": "only in an answer to ?as_of=: the instant asked for"})


class RebuildReportSchema(Schema):
    """What a rebuild of the 360 view did (customer360.rebuild)."""

    events = fields.Integer()
    seconds = fields.Float()
    events_per_second = fields.Float()
    positions = fields.Dict(keys=fields.String(), values=fields.Integer(), metadata={"description": "per origin"})
