"""Contracts of the service context (after-sales and the contact centre): its published events and
its request/response payloads."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm_contracts.catalog import catalog
from crm_contracts.fields import Boolean, EventPayload, Request, Text, integer
from crm_contracts.sales import CUSTOMER_CHANGES
from crm_contracts.vocabulary.service import (
    CASE_CHANNELS,
    CASE_STATUSES,
    COMPLAINT_CATEGORIES,
    COMPLAINT_SEVERITIES,
    COMPLAINT_STAGES,
    DEPARTMENTS,
    ESCALATION_TIERS,
    FAQ_STATUSES,
    PRIORITIES,
    SLA_TARGETS,
    SURVEY_MAX_SCORE,
    SURVEY_MIN_SCORE,
)

ORIGIN = "service"
_CASE = "9a4f2c1d-7b3e-4d5a-8c6f-1e2d3c4b5a69"
_CUSTOMER = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"
_ARTICLE = "c5d6e7f8-1a2b-4c3d-9e4f-5a6b7c8d9e0f"
_AT = "2026-11-20T09:30:00+00:00"

SUBJECT = validate.Length(min=1, max=300)
TEXT = validate.Length(min=1, max=20000)
NAME = validate.Length(min=1, max=200)
SCORE = validate.Range(min=SURVEY_MIN_SCORE, max=SURVEY_MAX_SCORE)
#: What a satisfaction survey is about: a fully delivered order or a closed case.
SURVEY_SUBJECTS = ("order", "case")
_ORDER = "9c4e2f7a-1b3d-4e5f-8a6b-7c8d9e0f1a2b"
_SURVEY = "2b7d9e41-6c3a-5f08-9d2e-4a1b7c6e8f30"


def _customer_id() -> fields.UUID:
    """The customer a case belongs to; null when the sender is not (yet) a known customer."""
    return fields.UUID(allow_none=True, load_default=None)


# --- published events: cases --------------------------------------------------------------------

@catalog.event(
    "case_opened", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "channel": "email", "subject": "Parcel not delivered",
            "sender": "li.na@example.com", "opened_at": _AT},
)
class CaseOpenedV1(EventPayload):
    """A customer message opened a case on one channel (the body stays inside the service)."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    channel = fields.String(required=True)
    subject = fields.String(required=True)
    sender = fields.String(required=True)
    opened_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_acknowledged", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "sender": "li.na@example.com", "channel": "email",
            "respond_by": "2026-11-21T09:30:00+00:00", "suggested_faq_ids": [_ARTICLE], "acknowledged_at": _AT},
)
class CaseAcknowledgedV1(EventPayload):
    """The case was acknowledged automatically on opening, promising a first response by `respond_by`
    and pointing to the FAQ articles that match it."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    sender = fields.String(required=True)
    channel = fields.String(required=True)
    respond_by = fields.AwareDateTime(required=True)
    suggested_faq_ids = fields.List(fields.UUID(), load_default=list)
    acknowledged_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_classified", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "department": "customer_service", "priority": "ordinary",
            "matched_keywords": ["delivery"], "classified_by": "rules",
            "first_response_due": "2026-11-21T09:30:00+00:00", "resolution_due": "2026-11-25T09:30:00+00:00",
            "classified_at": _AT},
)
class CaseClassifiedV1(EventPayload):
    """The case was classified into a department and a priority class (by the rules, or by an agent),
    which set its SLA deadlines."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    department = fields.String(required=True)
    priority = fields.String(required=True)
    matched_keywords = fields.List(fields.String(), load_default=list)
    classified_by = fields.String(required=True)
    first_response_due = fields.AwareDateTime(required=True)
    resolution_due = fields.AwareDateTime(required=True)
    classified_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_assigned", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "group": "customer_care", "agent": None,
            "assigned_at": _AT},
)
class CaseAssignedV1(EventPayload):
    """The case was queued for an agent group (and, when given, one agent in it)."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    group = fields.String(required=True)
    agent = fields.String(allow_none=True, load_default=None)
    assigned_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_responded", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "agent": "wang.wei",
            "body": "Your parcel left our depot today.", "first_response": True,
            "responded_at": "2026-11-20T11:00:00+00:00"},
)
class CaseRespondedV1(EventPayload):
    """An agent responded to the customer; `first_response` marks the one that met (or missed) the
    first-response target."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    agent = fields.String(required=True)
    body = fields.String(required=True)
    first_response = fields.Boolean(required=True)
    responded_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_sla_breached", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "target": "first_response", "priority": "ordinary",
            "due_at": "2026-11-21T09:30:00+00:00", "detected_at": "2026-11-21T09:45:00+00:00"},
)
class CaseSlaBreachedV1(EventPayload):
    """The case missed one SLA target; published at most once per target and case."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    target = fields.String(required=True, validate=validate.OneOf(SLA_TARGETS))
    priority = fields.String(allow_none=True, load_default=None)
    due_at = fields.AwareDateTime(required=True)
    detected_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_escalated", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "level": 1, "to": "team_lead",
            "reason": "first_response SLA breached", "escalated_at": "2026-11-21T09:45:00+00:00"},
)
class CaseEscalatedV1(EventPayload):
    """The case was escalated to `level` (1 = team lead, 2 = department head, 3 and up = senior
    management), by an SLA breach, an emergency or an agent."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    level = fields.Integer(required=True)
    to = fields.String(required=True)
    reason = fields.String(required=True)
    escalated_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_resolved", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "resolution": "Parcel re-sent by express",
            "within_sla": True, "resolved_at": "2026-11-22T10:00:00+00:00"},
)
class CaseResolvedV1(EventPayload):
    """The case was resolved; `within_sla` says whether the resolution target was kept."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    resolution = fields.String(required=True)
    within_sla = fields.Boolean(required=True)
    resolved_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_closed", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "department": "customer_service",
            "priority": "ordinary", "is_complaint": False, "closed_at": "2026-11-23T10:00:00+00:00"},
)
class CaseClosedV1(EventPayload):
    """The case was closed; a satisfaction survey may follow."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    department = fields.String(allow_none=True, load_default=None)
    priority = fields.String(allow_none=True, load_default=None)
    is_complaint = fields.Boolean(required=True)
    closed_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_reopened", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "reason": "parcel still missing",
            "reopened_at": "2026-11-24T08:00:00+00:00"},
)
class CaseReopenedV1(EventPayload):
    """A resolved or closed case was reopened."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    reason = fields.String(required=True)
    reopened_at = fields.AwareDateTime(required=True)


# --- published events: complaints ---------------------------------------------------------------

@catalog.event(
    "complaint_registered", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "registered_by": "rules", "registered_at": _AT},
)
class ComplaintRegisteredV1(EventPayload):
    """The case was flagged as a complaint (stage "received"), by the rules or by an agent."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    registered_by = fields.String(required=True)
    registered_at = fields.AwareDateTime(required=True)


@catalog.event(
    "complaint_assessed", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "category": "delivery", "severity": "medium",
            "assessment": "courier lost the parcel", "assessed_at": "2026-11-20T10:00:00+00:00"},
)
class ComplaintAssessedV1(EventPayload):
    """The complaint was classified and assessed."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    category = fields.String(required=True)
    severity = fields.String(required=True)
    assessment = fields.String(required=True)
    assessed_at = fields.AwareDateTime(required=True)


@catalog.event(
    "complaint_resolved", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "resolution": "Parcel re-sent by express",
            "resolved_at": "2026-11-22T10:00:00+00:00"},
)
class ComplaintResolvedV1(EventPayload):
    """The complaint was resolved (with its case)."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    resolution = fields.String(required=True)
    resolved_at = fields.AwareDateTime(required=True)


@catalog.event(
    "complaint_summarised", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "summary": "Lost parcel, re-sent at our cost",
            "root_cause": "courier hand-over not scanned", "summarised_at": "2026-11-22T11:00:00+00:00"},
)
class ComplaintSummarisedV1(EventPayload):
    """The resolved complaint was summarised with its root cause, for analysis."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    summary = fields.String(required=True)
    root_cause = fields.String(required=True)
    summarised_at = fields.AwareDateTime(required=True)


# --- published events: surveys and FAQ ----------------------------------------------------------

@catalog.event(
    "survey_completed", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": _CUSTOMER, "score": 4, "comment": "quick and friendly",
            "completed_at": "2026-11-23T12:00:00+00:00"},
)
class SurveyCompletedV1(EventPayload):
    """The customer answered the satisfaction survey of a closed case: score 1 (very dissatisfied) to 5
    (very satisfied). Satisfaction index = (mean score - 1) / 4 * 100."""

    case_id = fields.UUID(required=True)
    customer_id = _customer_id()
    score = fields.Integer(required=True, validate=SCORE)
    comment = fields.String(allow_none=True, load_default=None)
    completed_at = fields.AwareDateTime(required=True)


@catalog.event(
    "survey_requested", 1, origin=ORIGIN,
    sample={"survey_id": _SURVEY, "customer_id": _CUSTOMER, "subject": "order", "subject_id": _ORDER,
            "requested_at": "2026-11-23T15:20:00+00:00"},
)
class SurveyRequestedV1(EventPayload):
    """A satisfaction survey was asked of the customer, once per subject: after an order was fully
    delivered (`subject` "order", `subject_id` the order id) or a case was closed ("case", the case id)."""

    survey_id = fields.UUID(required=True)
    customer_id = _customer_id()
    subject = fields.String(required=True, validate=validate.OneOf(SURVEY_SUBJECTS))
    subject_id = fields.UUID(required=True)
    requested_at = fields.AwareDateTime(required=True)


@catalog.event(
    "survey_answered", 1, origin=ORIGIN,
    sample={"survey_id": _SURVEY, "customer_id": _CUSTOMER, "subject": "order", "subject_id": _ORDER,
            "score": 5, "comment": "arrived early", "answered_at": "2026-11-24T08:00:00+00:00"},
)
class SurveyAnsweredV1(EventPayload):
    """The customer answered a delivered order's satisfaction survey: score 1 to 5, as `survey_completed`
    does for a case (a case's survey is answered on the case and published as `survey_completed`)."""

    survey_id = fields.UUID(required=True)
    customer_id = _customer_id()
    subject = fields.String(required=True, validate=validate.OneOf(SURVEY_SUBJECTS))
    subject_id = fields.UUID(required=True)
    score = fields.Integer(required=True, validate=SCORE)
    comment = fields.String(allow_none=True, load_default=None)
    answered_at = fields.AwareDateTime(required=True)


@catalog.event(
    "case_customer_changed", 1, origin=ORIGIN,
    sample={"case_id": _CASE, "customer_id": "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a",
            "previous_customer_id": _CUSTOMER, "change": "merged", "merge_id": "merge-2026-0007",
            "changed_at": "2026-11-27T09:00:00+00:00"},
)
class CaseCustomerChangedV1(EventPayload):
    """The case (with its complaint and survey answer) now belongs to another customer: a merge re-pointed
    it to the survivor (customer.customer_merged), or an unmerge gave it back (customer.customer_unmerged).
    The case's later events carry the new `customer_id`; its routing, SLA clocks and status are unchanged."""

    case_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True, metadata={"description": "the case's customer from now on"})
    previous_customer_id = fields.UUID(required=True)
    change = fields.String(required=True, validate=validate.OneOf(CUSTOMER_CHANGES))
    merge_id = fields.String(required=True, metadata={"description": "the merge re-pointing or giving back"})
    changed_at = fields.AwareDateTime(required=True)


@catalog.event(
    "survey_customer_changed", 1, origin=ORIGIN,
    sample={"survey_id": _SURVEY, "customer_id": "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a",
            "previous_customer_id": _CUSTOMER, "change": "unmerged", "merge_id": "merge-2026-0007",
            "changed_at": "2026-11-27T09:00:00+00:00"},
)
class SurveyCustomerChangedV1(EventPayload):
    """The satisfaction survey now belongs to another customer (a merge or an unmerge, as
    `case_customer_changed`); its later events carry the new `customer_id`."""

    survey_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True, metadata={"description": "the survey's customer from now on"})
    previous_customer_id = fields.UUID(required=True)
    change = fields.String(required=True, validate=validate.OneOf(CUSTOMER_CHANGES))
    merge_id = fields.String(required=True, metadata={"description": "the merge re-pointing or giving back"})
    changed_at = fields.AwareDateTime(required=True)


@catalog.event(
    "faq_published", 1, origin=ORIGIN,
    sample={"article_id": _ARTICLE, "question": "Where is my parcel?", "keywords": ["delivery", "tracking"],
            "department": "customer_service", "published_at": _AT},
)
class FaqPublishedV1(EventPayload):
    """An FAQ article was published; it is suggested for matching cases from now on."""

    article_id = fields.UUID(required=True)
    question = fields.String(required=True)
    keywords = fields.List(fields.String(), load_default=list)
    department = fields.String(allow_none=True, load_default=None)
    published_at = fields.AwareDateTime(required=True)


@catalog.event(
    "faq_retired", 1, origin=ORIGIN,
    sample={"article_id": _ARTICLE, "reason": "new tracking portal", "retired_at": "2026-12-01T09:00:00+00:00"},
)
class FaqRetiredV1(EventPayload):
    """An FAQ article was retired and is suggested no more."""

    article_id = fields.UUID(required=True)
    reason = fields.String(required=True)
    retired_at = fields.AwareDateTime(required=True)


@catalog.event(
    "faq_used", 1, origin=ORIGIN,
    sample={"article_id": _ARTICLE, "case_id": _CASE, "customer_id": _CUSTOMER, "helpful": True,
            "used_at": "2026-11-20T10:00:00+00:00"},
)
class FaqUsedV1(EventPayload):
    """An FAQ article was used, for a case when given; `helpful` is the reader's vote, null when none."""

    article_id = fields.UUID(required=True)
    case_id = fields.UUID(allow_none=True, load_default=None)
    customer_id = _customer_id()
    helpful = fields.Boolean(allow_none=True, load_default=None)
    used_at = fields.AwareDateTime(required=True)


# --- requests and responses ---------------------------------------------------------------------

class OpenCaseRequest(Request):
    """Open a case. Example: {"channel": "email", "subject": "Parcel not delivered",
    "body": "Order 1001 has not arrived.", "sender": "li.na@example.com"}"""

    channel = Text(required=True, validate=validate.OneOf(CASE_CHANNELS))
    subject = Text(required=True, validate=SUBJECT)
    body = Text(multiline=True, load_default="", validate=validate.Length(max=20000))
    sender = Text(required=True, validate=NAME)
    customer_id = fields.UUID(allow_none=True, load_default=None)


class ClassifyCaseRequest(Request):
    """Reclassify a case. Example: {"department": "finance", "priority": "important", "by": "wang.wei"}"""

    department = Text(required=True, validate=validate.OneOf(DEPARTMENTS))
    priority = Text(required=True, validate=validate.OneOf(PRIORITIES))
    by = Text(required=True, validate=NAME)


class AssignCaseRequest(Request):
    """Assign a case. Example: {"group": "customer_care", "agent": "wang.wei"}"""

    group = Text(required=True, validate=NAME)
    agent = Text(allow_none=True, load_default=None, validate=NAME)


class RespondToCaseRequest(Request):
    """Respond to a case. Example: {"agent": "wang.wei", "body": "Your parcel left our depot today."}"""

    agent = Text(required=True, validate=NAME)
    body = Text(multiline=True, required=True, validate=TEXT)


class EscalateCaseRequest(Request):
    """Escalate a case one level. Example: {"reason": "customer threatens to cancel"}"""

    reason = Text(required=True, validate=validate.Length(min=1, max=500))


class ResolveCaseRequest(Request):
    """Resolve a case. Example: {"resolution": "Parcel re-sent by express"}"""

    resolution = Text(multiline=True, required=True, validate=TEXT)


class ReopenCaseRequest(Request):
    """Reopen a resolved or closed case. Example: {"reason": "parcel still missing"}"""

    reason = Text(required=True, validate=validate.Length(min=1, max=500))


class FlagComplaintRequest(Request):
    """Flag a case as a complaint. Example: {"by": "wang.wei"}"""

    by = Text(required=True, validate=NAME)


class AssessComplaintRequest(Request):
    """Assess a complaint. Example: {"category": "delivery", "severity": "medium",
    "assessment": "courier lost the parcel"}"""

    category = Text(required=True, validate=validate.OneOf(COMPLAINT_CATEGORIES))
    severity = Text(required=True, validate=validate.OneOf(COMPLAINT_SEVERITIES))
    assessment = Text(multiline=True, required=True, validate=TEXT)


class SummariseComplaintRequest(Request):
    """Summarise a resolved complaint. Example: {"summary": "Lost parcel, re-sent",
    "root_cause": "courier hand-over not scanned"}"""

    summary = Text(multiline=True, required=True, validate=TEXT)
    root_cause = Text(multiline=True, required=True, validate=validate.Length(min=1, max=2000))


class CompleteSurveyRequest(Request):
    """Answer a closed case's satisfaction survey. Example: {"score": 4, "comment": "quick and friendly"}"""

    score = integer(required=True, validate=SCORE)
    comment = Text(multiline=True, allow_none=True, load_default=None, validate=validate.Length(max=2000))


class AnswerSurveyRequest(Request):
    """Answer a delivered order's satisfaction survey. Example: {"score": 5, "comment": "arrived early"}"""

    score = integer(required=True, validate=SCORE)
    comment = Text(multiline=True, allow_none=True, load_default=None, validate=validate.Length(max=2000))


class SurveySchema(Schema):
    """A satisfaction survey: what it is about, and the answer once given."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    customer_id = fields.UUID(allow_none=True)
    subject = fields.String(validate=validate.OneOf(SURVEY_SUBJECTS))
    subject_id = fields.UUID()
    status = fields.String(validate=validate.OneOf(("requested", "answered")))
    requested_at = fields.AwareDateTime()
    score = fields.Integer(allow_none=True)
    comment = fields.String(allow_none=True)
    answered_at = fields.AwareDateTime(allow_none=True)


class DraftFaqRequest(Request):
    """Draft an FAQ article. Example: {"question": "Where is my parcel?",
    "answer": "Track it at ...", "keywords": ["delivery", "tracking"]}"""

    question = Text(required=True, validate=validate.Length(min=1, max=500))
    answer = Text(multiline=True, required=True, validate=TEXT)
    keywords = fields.List(Text(validate=validate.Length(min=1, max=50)), load_default=list,
                           validate=validate.Length(max=30))
    department = Text(allow_none=True, load_default=None, validate=validate.OneOf(DEPARTMENTS))


class ReviseFaqRequest(Request):
    """Rewrite a draft FAQ article. Example: {"question": "Where is my parcel?", "answer": "Track it at ..."}"""

    question = Text(required=True, validate=validate.Length(min=1, max=500))
    answer = Text(multiline=True, required=True, validate=TEXT)
    keywords = fields.List(Text(validate=validate.Length(min=1, max=50)), load_default=list,
                           validate=validate.Length(max=30))


class RetireFaqRequest(Request):
    """Retire a published FAQ article. Example: {"reason": "new tracking portal"}"""

    reason = Text(required=True, validate=validate.Length(min=1, max=500))


class RecordFaqUseRequest(Request):
    """Record a use of an FAQ article. Example: {"case_id": "9a4f2c1d-7b3e-4d5a-8c6f-1e2d3c4b5a69",
    "helpful": true}"""

    case_id = fields.UUID(allow_none=True, load_default=None)
    helpful = Boolean(allow_none=True, load_default=None)


class ResponseSchema(Schema):
    agent = fields.String()
    body = fields.String()
    at = fields.AwareDateTime()


class CaseSchema(Schema):
    """A case as the service context holds it."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    customer_id = fields.UUID(allow_none=True)
    channel = fields.String(validate=validate.OneOf(CASE_CHANNELS))
    subject = fields.String()
    body = fields.String()
    sender = fields.String()
    status = fields.String(validate=validate.OneOf(CASE_STATUSES))
    department = fields.String(validate=validate.OneOf(DEPARTMENTS))
    priority = fields.String(validate=validate.OneOf(PRIORITIES))
    classified_by = fields.String()
    matched_keywords = fields.List(fields.String())
    opened_at = fields.AwareDateTime()
    acknowledged_at = fields.AwareDateTime(allow_none=True)
    suggested_faq_ids = fields.List(fields.UUID())
    first_response_due = fields.AwareDateTime(allow_none=True)
    resolution_due = fields.AwareDateTime(allow_none=True)
    first_response_at = fields.AwareDateTime(allow_none=True)
    breaches = fields.Dict(keys=fields.String(validate=validate.OneOf(SLA_TARGETS)), values=fields.AwareDateTime())
    escalation_level = fields.Integer()
    escalated_to = fields.String(allow_none=True, validate=validate.OneOf(ESCALATION_TIERS))
    group = fields.String(allow_none=True)
    agent = fields.String(allow_none=True)
    responses = fields.List(fields.Nested(ResponseSchema))
    resolution = fields.String(allow_none=True)
    resolved_at = fields.AwareDateTime(allow_none=True)
    closed_at = fields.AwareDateTime(allow_none=True)
    reopen_count = fields.Integer()
    is_complaint = fields.Boolean()
    complaint_stage = fields.String(allow_none=True, validate=validate.OneOf(COMPLAINT_STAGES))
    complaint_category = fields.String(allow_none=True)
    complaint_severity = fields.String(allow_none=True)
    complaint_summary = fields.String(allow_none=True)
    complaint_root_cause = fields.String(allow_none=True)
    survey_score = fields.Integer(allow_none=True)
    survey_comment = fields.String(allow_none=True)


class FaqArticleSchema(Schema):
    """An FAQ article with its usage figures."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    question = fields.String()
    answer = fields.String()
    keywords = fields.List(fields.String())
    department = fields.String(allow_none=True)
    status = fields.String(validate=validate.OneOf(FAQ_STATUSES))
    uses = fields.Integer()
    helpful_votes = fields.Integer()
    unhelpful_votes = fields.Integer()
    helpfulness = fields.Decimal(as_string=True, allow_none=True, metadata={"description": "helpful share, 0-1"})


class FaqSuggestionSchema(Schema):
    """A suggested FAQ article: score = |T ∩ A| / sqrt(|T| * |A|) over the text's and article's terms."""

    article_id = fields.UUID()
    score = fields.Float()
    matched = fields.List(fields.String())


class SatisfactionIndexSchema(Schema):
    """A customer's satisfaction index: (mean survey score - 1) / 4 * 100, null before any survey."""

    customer_id = fields.UUID()
    index = fields.Decimal(as_string=True, allow_none=True)


class SuggestFaqsRequest(Request):
    """Suggest published FAQ articles for a question. Example: {"text": "Where is my parcel?", "limit": 3}"""

    text = Text(multiline=True, required=True, validate=validate.Length(min=1, max=20000))
    limit = integer(load_default=3, validate=validate.Range(min=1, max=10))
