"""Contracts of the analytics on the 360 view (customer360.analytics): one customer's figures, the query
that filters customers by them, and the 360 view's `as_of` query. Formulas: services/customer360/ANALYTICS.md."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm_contracts.fields import Money, QueryInteger, Request, Text
from crm_contracts.vocabulary.customer import CONSENT_CHANNELS, CUSTOMER_GRADES
from crm_contracts.vocabulary.loyalty import TIERS
from crm_contracts.vocabulary.marketing import CAMPAIGN_CHANNELS

#: The largest page the analytics query returns (customer360 clamps to the same).
MAX_ANALYTICS_PAGE_SIZE = 100

RFM_SEGMENT_NAMES = ("champions", "potential_loyalists", "new_customers", "promising", "loyal_customers",
                     "need_attention", "about_to_sleep", "cannot_lose_them", "at_risk", "hibernating", "lost")
LOYALTY_TYPE_NAMES = ("super_value", "incentive", "monopoly", "inertia", "price")
CHURN_RISK_NAMES = ("low", "medium", "high")
#: The 360 view's lifecycle stages: the ladder, then the rule stages (customer360.view.STAGES, RULE_STAGES).
LIFECYCLE_STAGE_NAMES = ("prospect", "lead", "qualified_lead", "opportunity", "customer", "repeat_customer", "loyal",
                         "at_risk", "churned", "won_back")
#: A CSV export of customers by analytics holds at most this many rows.
MAX_EXPORT_ROWS = 10_000


class LifetimeValueSchema(Schema):
    historic = Money(metadata={"description": "net revenue to date (paid less refunded), reporting currency"})
    historic_margin = Money(metadata={"description": "historic x margin rate"})
    retention_clv = Money(allow_none=True, metadata={
        "description": "Dwyer's customer retention model (lost for good): sum of m r^t / (1+d)^t"})
    migration_clv = Money(allow_none=True, metadata={
        "description": "Dwyer's customer migration model (always a share): purchase probability by recency cell"})
    margin_per_period = Money(allow_none=True)
    retention_rate = fields.String(allow_none=True, metadata={"description": "of the customer's cohort"})
    cohort = fields.String(allow_none=True, metadata={"description": "year of the first paid order"})
    recency_cell = fields.Integer(allow_none=True, metadata={"description": "1 = bought in the current period"})
    period_days = fields.Integer()
    horizon_periods = fields.Integer()


class RfmSchema(Schema):
    recency_days = fields.Integer()
    frequency = fields.Integer()
    monetary = Money()
    r = fields.Integer()
    f = fields.Integer()
    m = fields.Integer()
    score = fields.String(metadata={"description": "R, F and M scores (1-5, quintiles of the base), e.g. 545"})
    segment = fields.String(metadata={"description": ", ".join(RFM_SEGMENT_NAMES)})


class LoyaltyTypeSchema(Schema):
    type = fields.String(allow_none=True, metadata={
        "description": f"{', '.join(LOYALTY_TYPE_NAMES)}; null with fewer than two purchases"})
    reason = fields.String()
    attachment = fields.String(metadata={"description": "0-1: satisfaction, engagement, less complaints"})
    attachment_level = fields.String(metadata={"description": "high, low"})
    repeat_purchase = fields.String(metadata={"description": "high, low"})
    promotion_share = fields.String(metadata={"description": "share of orders with a discounted line"})
    dissatisfied = fields.Boolean()
    csi = fields.String(allow_none=True, metadata={"description": "satisfaction index beside loyalty: not the same"})


class ChurnRiskSchema(Schema):
    risk = fields.String(metadata={"description": ", ".join(CHURN_RISK_NAMES)})
    score = fields.Integer(metadata={"description": "0-100, the sum of the rule points"})
    reasons = fields.List(fields.String())
    days_since_last_purchase = fields.Integer()
    expected_interval_days = fields.Integer()


class RelationshipDepthSchema(Schema):
    paid_orders = fields.Integer()
    products = fields.Integer()
    share_of_wallet = fields.String(allow_none=True, metadata={"description": "not known to the platform: null"})


class RelationshipBreadthSchema(Schema):
    channels = fields.List(fields.String())
    products = fields.List(fields.String())
    services = fields.List(fields.String())


class RelationshipSchema(Schema):
    length_days = fields.Integer()
    depth = fields.Nested(RelationshipDepthSchema)
    breadth = fields.Nested(RelationshipBreadthSchema)


class CrossSellSchema(Schema):
    sku = fields.String()
    because = fields.String(metadata={"description": "the product bought that the rule starts from"})
    confidence = fields.String()
    lift = fields.String()


class CustomerAnalyticsSchema(Schema):
    """One customer's analytics, as of `as_of` against the base's model estimated as of `model_as_of`."""

    as_of = fields.AwareDateTime()
    model_as_of = fields.AwareDateTime()
    currency = fields.String()
    value = fields.Nested(LifetimeValueSchema)
    rfm = fields.Nested(RfmSchema, allow_none=True)
    loyalty = fields.Nested(LoyaltyTypeSchema)
    churn = fields.Nested(ChurnRiskSchema, allow_none=True)
    relationship = fields.Nested(RelationshipSchema)
    cross_sell = fields.List(fields.Nested(CrossSellSchema))
    unconverted_orders = fields.Integer(metadata={"description": "paid orders in a currency without a rate"})


class View360Query(Request):
    """Query of GET /v1/customers/{id}/360: `as_of`, an RFC 3339 instant with its offset, not in the future."""

    as_of = fields.AwareDateTime(load_default=None, metadata={"example": "2027-03-01T00:00:00+00:00"})


class SegmentCriteria(Request):
    """Criteria over the 360 view's fields, all optional, combined with AND: the filters of
    GET /v1/analytics/customers and of a saved segment. Example: {"loyalty_type": "super_value",
    "churn_risk": "high", "campaign_channel": "email"}"""

    lifecycle_stage = Text(load_default=None, validate=validate.OneOf(LIFECYCLE_STAGE_NAMES))
    consent = Text(load_default=None, validate=validate.OneOf(CONSENT_CHANNELS), metadata={
        "description": "only customers who granted consent on this channel"})
    tier = Text(load_default=None, validate=validate.OneOf(TIERS), metadata={"description": "loyalty tier"})
    grade = Text(load_default=None, validate=validate.OneOf(CUSTOMER_GRADES))
    campaign_channel = Text(load_default=None, validate=validate.OneOf(CAMPAIGN_CHANNELS), metadata={
        "description": "only customers a campaign on this channel may contact: the consent channel it needs "
                       "(email -> email, telephone -> phone, traditional -> post, online -> none; "
                       "CAMPAIGN_CONSENT_CHANNELS) granted"})
    rfm_segment = Text(load_default=None, validate=validate.OneOf(RFM_SEGMENT_NAMES))
    loyalty_type = Text(load_default=None, validate=validate.OneOf(LOYALTY_TYPE_NAMES))
    churn_risk = Text(load_default=None, validate=validate.OneOf(CHURN_RISK_NAMES))
    clv_min = Money(load_default=None, metadata={"description": "migration-model CLV at least"})
    clv_max = Money(load_default=None, metadata={"description": "migration-model CLV at most"})


#: The criteria's names, in the order they are documented.
CRITERIA = tuple(SegmentCriteria._declared_fields)


class MembersQuery(Request):
    """Paging of customers, and `format=csv` to export every one (up to MAX_EXPORT_ROWS) instead of a page."""

    page = QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = QueryInteger(load_default=20, validate=validate.Range(min=1, max=MAX_ANALYTICS_PAGE_SIZE))
    format = Text(load_default="json", validate=validate.OneOf(("json", "csv")))


class AnalyticsQuery(SegmentCriteria, MembersQuery):
    """Query of GET /v1/analytics/customers: the criteria of a segment (all optional, combined with AND),
    paging, and `format=csv` to export every match (up to MAX_EXPORT_ROWS) instead of one page."""


class SaveSegmentRequest(Request):
    """Save a segment: a name and its criteria (SegmentCriteria). Example: {"name": "Loyal, reachable by email",
    "criteria": {"loyalty_type": "super_value", "campaign_channel": "email"}}"""

    name = Text(required=True, validate=validate.Length(min=1, max=200))
    criteria = fields.Nested(SegmentCriteria, required=True)


class SegmentSchema(Schema):
    """A saved segment: its criteria, and how many customers match them now (`members`)."""

    id = fields.UUID()
    name = fields.String()
    criteria = fields.Dict(keys=fields.String(), metadata={"description": "the criteria given (SegmentCriteria)"})
    created_at = fields.AwareDateTime()
    members = fields.Integer(metadata={"description": "customers matching the criteria now"})
    model_as_of = fields.AwareDateTime(allow_none=True, metadata={"description": "of the analytics judged"})


class SegmentListSchema(Schema):
    items = fields.List(fields.Nested(SegmentSchema))


class AnalyticsItemSchema(Schema):
    customer_id = fields.UUID()
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    lifecycle_stage = fields.String(allow_none=True)
    as_of = fields.AwareDateTime()
    rfm_segment = fields.String(allow_none=True)
    loyalty_type = fields.String(allow_none=True)
    churn_risk = fields.String(allow_none=True)
    retention_clv = Money(allow_none=True)
    migration_clv = Money(allow_none=True)
    historic_value = Money()


class AnalyticsPageSchema(Schema):
    """One page of customers matching the filters, highest migration CLV first."""

    items = fields.List(fields.Nested(AnalyticsItemSchema))
    page = fields.Integer()
    page_size = fields.Integer()
    total = fields.Integer()
    model_as_of = fields.AwareDateTime(allow_none=True)


class AnalyticsRefreshSchema(Schema):
    """What a refresh of the analytics did."""

    as_of = fields.AwareDateTime()
    customers = fields.Integer()
    buyers = fields.Integer()


REPORT_FORMATS = ("json", "csv")
#: GET /v1/reports/{report}: over the 360 views (customer360) or the services' own figures (sales, marketing).
REPORT_NAMES = ("funnel", "satisfaction", "sla", "reps", "cohorts", "analytics", "pipeline", "forecast", "campaigns")


class ReportQuery(Request):
    """Query of every GET /v1/reports/...: `format` json (default) or csv (text/csv, the columns as a header)."""

    format = Text(load_default="json", validate=validate.OneOf(REPORT_FORMATS))


class ReportSchema(Schema):
    """A report for managers: named columns and one object per row (null where a figure is not defined,
    e.g. a conversion from a stage nobody reached). Rates are shares to four places, CSI 0-100."""

    report = fields.String()
    as_of = fields.AwareDateTime(allow_none=True, metadata={
        "description": "the 360 view's clock for reports over the views; null for live service figures"})
    columns = fields.List(fields.String())
    rows = fields.List(fields.Dict(keys=fields.String()))
