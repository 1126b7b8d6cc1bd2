"""Contracts of the customer service: its published events and its request/response payloads."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_contracts.catalog import catalog
from crm_contracts.fields import EMAIL, PHONE, EventPayload, Request, money
from crm_contracts.vocabulary.customer import CONSENT_CHANNELS, CREDIT_RATINGS, CUSTOMER_GRADES, SOURCE_CHANNELS

ORIGIN = "customer"
_ID = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"

NAME = validate.Length(min=1, max=200)


# --- published events ---------------------------------------------------------------------------

@catalog.event(
    "customer_registered", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "name": "Li Na", "email": "li.na@example.com", "phone": "+86 10 5555 0101",
            "company": "Acme Trading", "source_channel": "web"},
)
class CustomerRegisteredV1(EventPayload):
    """A new customer was registered."""

    customer_id = fields.UUID(required=True)
    name = fields.String(required=True)
    email = fields.String(required=True)
    phone = fields.String(allow_none=True, load_default=None)
    company = fields.String(allow_none=True, load_default=None)
    source_channel = fields.String(required=True)


class ProfileChangesV1(EventPayload):
    name = fields.String()
    email = fields.String()
    phone = fields.String(allow_none=True)
    company = fields.String(allow_none=True)


@catalog.event(
    "customer_profile_changed", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "changes": {"phone": "+86 10 5555 0199", "company": "Acme Group"}},
)
class CustomerProfileChangedV1(EventPayload):
    """Profile fields changed; `changes` holds only the fields that changed, with their new values."""

    customer_id = fields.UUID(required=True)
    changes = fields.Nested(ProfileChangesV1, required=True)


@catalog.event(
    "customer_consent_changed", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "channel": "email", "granted": True, "source": "web form",
            "at": "2026-11-20T09:30:00+00:00"},
)
class CustomerConsentChangedV1(EventPayload):
    """The customer granted or withdrew consent to be contacted on one channel."""

    customer_id = fields.UUID(required=True)
    channel = fields.String(required=True)
    granted = fields.Boolean(required=True)
    source = fields.String(required=True)
    at = fields.AwareDateTime(required=True)


@catalog.event(
    "customer_credit_rating_changed", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "rating": "A", "limit": "50000.00", "reason": "annual review"},
)
class CustomerCreditRatingChangedV1(EventPayload):
    """A new credit rating (and optional credit limit) was set."""

    customer_id = fields.UUID(required=True)
    rating = fields.String(required=True)
    limit = money(allow_none=True, load_default=None)
    reason = fields.String(allow_none=True, load_default=None)


class GradeScoresV1(EventPayload):
    value = fields.Integer(required=True)
    structure = fields.Integer(required=True)
    loyalty = fields.Integer(required=True)


@catalog.event(
    "customer_graded", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "grade": "key", "scores": {"value": 5, "structure": 4, "loyalty": 4},
            "reason": "quarterly grading"},
)
class CustomerGradedV1(EventPayload):
    """The customer was graded on value, structure and loyalty (scores 1-5) into key/ordinary/seed."""

    customer_id = fields.UUID(required=True)
    grade = fields.String(required=True)
    scores = fields.Nested(GradeScoresV1, required=True)
    reason = fields.String(allow_none=True, load_default=None)


# --- requests and responses ---------------------------------------------------------------------

class RegisterCustomerRequest(Request):
    """Register a customer. Example: {"name": "Li Na", "email": "li.na@example.com", "source_channel": "web"}"""

    name = fields.String(required=True, validate=NAME)
    email = fields.String(required=True, validate=[EMAIL, validate.Length(max=254)])
    phone = fields.String(allow_none=True, load_default=None, validate=PHONE)
    company = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=200))
    source_channel = fields.String(load_default="web", validate=validate.OneOf(SOURCE_CHANNELS))


class ChangeProfileRequest(Request):
    """Change profile fields; send only those that change. Example: {"phone": "+86 10 5555 0199"}"""

    name = fields.String(validate=NAME)
    email = fields.String(validate=[EMAIL, validate.Length(max=254)])
    phone = fields.String(allow_none=True, validate=PHONE)
    company = fields.String(allow_none=True, validate=validate.Length(max=200))

    @validates_schema
    def not_empty(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("give at least one of name, email, phone, company", "_schema")


class RecordConsentRequest(Request):
    """Grant or withdraw consent for one channel. Example: {"granted": true, "source": "web form"}"""

    granted = fields.Boolean(required=True)
    source = fields.String(load_default="api", validate=validate.Length(min=1, max=100))
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class SetCreditRatingRequest(Request):
    """Set the credit rating. Example: {"rating": "A", "limit": "50000.00", "reason": "annual review"}"""

    rating = fields.String(required=True, validate=validate.OneOf(CREDIT_RATINGS))
    limit = money(allow_none=True, load_default=None, validate=validate.Range(min=0))
    reason = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))


class GradeCustomerRequest(Request):
    """Grade on the three quality axes, 1-5 each. Example: {"value": 5, "structure": 3, "loyalty": 4}"""

    value = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
    structure = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
    loyalty = fields.Integer(required=True, validate=validate.Range(min=1, max=5))
    reason = fields.String(allow_none=True, load_default=None, validate=validate.Length(max=500))


class ConsentSchema(Schema):
    granted = fields.Boolean()
    source = fields.String()
    at = fields.AwareDateTime()


class CustomerSchema(Schema):
    """A customer's master record as the customer service holds it."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    name = fields.String()
    email = fields.String()
    phone = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    source_channel = fields.String(validate=validate.OneOf(SOURCE_CHANNELS))
    consents = fields.Dict(
        keys=fields.String(validate=validate.OneOf(CONSENT_CHANNELS)), values=fields.Nested(ConsentSchema)
    )
    credit_rating = fields.String(allow_none=True)
    credit_limit = money(allow_none=True)
    grade = fields.String(allow_none=True, validate=validate.OneOf(CUSTOMER_GRADES))
    grade_scores = fields.Dict(keys=fields.String(), values=fields.Integer(), allow_none=True)
    registered_at = fields.AwareDateTime()
    modified_at = fields.AwareDateTime()
