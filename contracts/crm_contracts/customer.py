"""Contracts of the customer service: its published events and its request/response payloads."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_contracts.catalog import catalog
from crm_contracts.fields import EMAIL, PHONE, Boolean, EventPayload, Request, Text, integer, money
from crm_contracts.order import AddressRequest
from crm_contracts.vocabulary.customer import (
    ADDRESS_KINDS,
    CONSENT_CHANNELS,
    CREDIT_RATINGS,
    CUSTOMER_GRADES,
    SOURCE_CHANNELS,
)

ORIGIN = "customer"
_ID = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"
_LEAD = "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d"
_CAMPAIGN = "8c1d2e3f-4a5b-4c6d-9e7f-0a1b2c3d4e5f"
#: How the customer a lead became was found: registered from it, or matched by these (first wins).
LEAD_MATCHES = ("registered", "customer_id", "email", "phone")

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
    email = fields.String(
        required=True, allow_none=True,
        metadata={"description": "null for a customer known by phone only (a lead that left only a phone)"},
    )
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


@catalog.event(
    "lead_linked", 1, origin=ORIGIN,
    sample={"lead_id": _LEAD, "customer_id": _ID, "campaign_id": _CAMPAIGN, "new_customer": True,
            "matched_by": "registered", "name": "Zhang Min", "company": "Bright Retail",
            "estimated_amount": "12000.00", "currency": "CNY", "expected_close_date": "2027-06-30",
            "sales_owner": "rep-wang-wei"},
)
class LeadLinkedV1(EventPayload):
    """A converted lead (marketing.lead_converted) became this customer: registered from the lead
    (`new_customer`), or an existing customer it matched. Published once per lead. Carries the lead's
    opportunity facts, so sales opens the opportunity for this customer without guessing."""

    lead_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    campaign_id = fields.UUID(allow_none=True, load_default=None, metadata={"description": "the lead's campaign"})
    new_customer = fields.Boolean(required=True, metadata={"description": "registered from this lead"})
    matched_by = fields.String(
        required=True, validate=validate.OneOf(LEAD_MATCHES),
        metadata={"description": "registered (new), or how an existing customer was found: the lead's "
                                 "customer_id, its email, its phone"},
    )
    name = fields.String(required=True, metadata={"description": "the lead's contact name"})
    company = fields.String(allow_none=True, load_default=None)
    estimated_amount = money(required=True)
    currency = fields.String(required=True, metadata={"description": "ISO 4217 code"})
    expected_close_date = fields.Date(allow_none=True, load_default=None)
    sales_owner = fields.String(allow_none=True, load_default=None, metadata={"description": "the sales rep"})


# --- requests and responses ---------------------------------------------------------------------

class RegisterCustomerRequest(Request):
    """Register a customer, known by an email, a phone, or both (each belongs to one customer only).
    Example: {"name": "Li Na", "email": "li.na@example.com", "source_channel": "web"}"""

    name = Text(required=True, validate=NAME)
    email = Text(allow_none=True, load_default=None, validate=[EMAIL, validate.Length(max=254)])
    phone = Text(allow_none=True, load_default=None, validate=PHONE)
    company = Text(allow_none=True, load_default=None, validate=validate.Length(max=200))
    source_channel = Text(load_default="web", validate=validate.OneOf(SOURCE_CHANNELS))

    @validates_schema
    def reachable(self, data: dict, **kwargs: object) -> None:
        if not data.get("email") and not data.get("phone"):
            raise ValidationError("give an email or a phone number", "email")


class ChangeProfileRequest(Request):
    """Change profile fields; send only those that change. Example: {"phone": "+86 10 5555 0199"}"""

    name = Text(validate=NAME)
    email = Text(validate=[EMAIL, validate.Length(max=254)])
    phone = Text(allow_none=True, validate=PHONE)
    company = Text(allow_none=True, validate=validate.Length(max=200))

    @validates_schema
    def not_empty(self, data: dict, **kwargs: object) -> None:
        if not data:
            raise ValidationError("give at least one of name, email, phone, company", "_schema")


class RecordConsentRequest(Request):
    """Grant or withdraw consent for one channel. Example: {"granted": true, "source": "web form"}"""

    granted = Boolean(required=True)
    source = Text(load_default="api", validate=validate.Length(min=1, max=100))
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class SetCreditRatingRequest(Request):
    """Set the credit rating. Example: {"rating": "A", "limit": "50000.00", "reason": "annual review"}"""

    rating = Text(required=True, validate=validate.OneOf(CREDIT_RATINGS))
    limit = money(allow_none=True, load_default=None, validate=validate.Range(min=0))
    reason = Text(allow_none=True, load_default=None, validate=validate.Length(max=500))


class GradeCustomerRequest(Request):
    """Grade on the three quality axes, 1-5 each. Example: {"value": 5, "structure": 3, "loyalty": 4}"""

    value = integer(required=True, validate=validate.Range(min=1, max=5))
    structure = integer(required=True, validate=validate.Range(min=1, max=5))
    loyalty = integer(required=True, validate=validate.Range(min=1, max=5))
    reason = Text(allow_none=True, load_default=None, validate=validate.Length(max=500))


class ConsentSchema(Schema):
    granted = fields.Boolean()
    source = fields.String()
    at = fields.AwareDateTime()


class CustomerSchema(Schema):
    """A customer's master record as the customer service holds it."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    name = fields.String(allow_none=True, metadata={"description": "null once the customer is erased"})
    email = fields.String(allow_none=True, metadata={"description": "null for a customer known by phone only"})
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
    addresses = fields.Dict(
        keys=fields.String(validate=validate.OneOf(ADDRESS_KINDS)), values=fields.Nested(lambda: AddressSchema()),
        metadata={"description": "the billing and the shipping address, by kind"},
    )
    erased = fields.Boolean(metadata={"description": "erased (GDPR Art. 17): personal fields are null"})
    possible_duplicates = fields.List(
        fields.Dict(), metadata={"description": "registration only: customers this one may duplicate (a warning; "
                                                "GET /v1/customers/{id}/duplicates gives the same with reasons)"})


# --- customer addresses (added for order's ship-to; kept apart so additions elsewhere do not meet) ---

class PostalAddressV1(EventPayload):
    """A postal address with the fields order's shipping addresses use; `country` is ISO 3166-1 alpha-2."""

    recipient = fields.String(required=True)
    line1 = fields.String(required=True)
    line2 = fields.String(allow_none=True, load_default=None)
    city = fields.String(required=True)
    region = fields.String(allow_none=True, load_default=None)
    postal_code = fields.String(allow_none=True, load_default=None)
    country = fields.String(required=True)
    phone = fields.String(allow_none=True, load_default=None)


@catalog.event(
    "customer_address_changed", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "kind": "shipping",
            "address": {"recipient": "Li Na", "line1": "88 Jianguo Road", "line2": "Floor 12", "city": "Beijing",
                        "region": "Beijing", "postal_code": "100022", "country": "CN", "phone": "+86 10 5555 0101"},
            "default": True, "changed_at": "2026-11-20T09:30:00+00:00"},
)
class CustomerAddressChangedV1(EventPayload):
    """A billing or shipping address of the customer was added or changed; `default` marks the one used
    when nothing else names an address (order ships to the default shipping address)."""

    customer_id = fields.UUID(required=True)
    kind = fields.String(required=True, validate=validate.OneOf(ADDRESS_KINDS))
    address = fields.Nested(PostalAddressV1, required=True)
    default = fields.Boolean(required=True)
    changed_at = fields.AwareDateTime(required=True)


class SetAddressRequest(Request):
    """A billing or shipping address of the customer (one per kind; the newest replaces the last).
    Example: {"address": {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}}"""

    address = fields.Nested(AddressRequest, required=True)
    default = Boolean(load_default=True, metadata={"description": "the address used when nothing else names one"})


class AddressSchema(Schema):
    """One of the customer's addresses, as the customer service holds it."""

    address = fields.Nested(PostalAddressV1)
    default = fields.Boolean()
    changed_at = fields.AwareDateTime()


# --- erasure (GDPR Art. 17, 19): crypto-shredding in the customer service ----------------------------

@catalog.event(
    "customer_erased", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "request_id": "erasure-2026-0042", "erased_at": "2026-11-20T09:30:00+00:00"},
)
class CustomerErasedV1(EventPayload):
    """The customer was erased (GDPR Art. 17): every subscriber forgets what it holds about them (Art. 19)
    and keeps only anonymous facts (amounts, dates). Their earlier events, pulled or replayed after this,
    carry their personal fields redacted (empty or null): the key that sealed them is destroyed."""

    customer_id = fields.UUID(required=True)
    request_id = fields.String(required=True, metadata={"description": "the erasure request's reference"})
    erased_at = fields.AwareDateTime(required=True)


class EraseCustomerRequest(Request):
    """Erase the customer (GDPR Art. 17). Example: {"request_id": "DSR-2026-0042"}"""

    request_id = Text(allow_none=True, load_default=None, validate=validate.Length(min=1, max=100),
                      metadata={"description": "the data-subject request's reference (default: derived)"})


class ErasureSchema(Schema):
    """Where a customer's erasure stands in the customer service (its ledger and key)."""

    customer_id = fields.UUID()
    request_id = fields.String()
    requested_at = fields.AwareDateTime()
    erased_at = fields.AwareDateTime(allow_none=True, metadata={"description": "customer_erased recorded"})
    shredded_at = fields.AwareDateTime(allow_none=True, metadata={"description": "the data key destroyed"})


# --- merge and unmerge (issue 11): duplicates folded into one survivor, reversibly ---------------------

_SURVIVOR = "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a"
#: A merge id: the client's (letters, digits and . _ : -) or one the customer service derives.
MERGE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,99}$"
MERGE_ID = validate.Regexp(MERGE_ID_PATTERN,
                           error="use 1-100 letters, digits, '.', '_', ':' or '-', starting with a letter or digit")
#: How many customers one merge may absorb.
MAX_ABSORBED = 50


@catalog.event(
    "customer_merged", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "survivor_id": _SURVIVOR, "merge_id": "merge-2026-0007",
            "merged_at": "2026-11-20T09:30:00+00:00"},
)
class CustomerMergedV1(EventPayload):
    """The customer was absorbed into another (a duplicate folded into its survivor): every subscriber
    re-points what it holds for `customer_id` to `survivor_id`, remembering `merge_id`, so that the merge
    can be undone. A merge of N customers publishes N of these with one `merge_id`. `survivor_id` is the
    final survivor (never itself absorbed at the time of the merge)."""

    customer_id = fields.UUID(required=True, metadata={"description": "the absorbed customer"})
    survivor_id = fields.UUID(required=True, metadata={"description": "the customer it was merged into"})
    merge_id = fields.String(required=True, metadata={"description": "the merge operation (one per merge)"})
    merged_at = fields.AwareDateTime(required=True)


@catalog.event(
    "customer_unmerged", 1, origin=ORIGIN,
    sample={"customer_id": _ID, "survivor_id": _SURVIVOR, "merge_id": "merge-2026-0007",
            "unmerged_at": "2026-11-21T10:00:00+00:00"},
)
class CustomerUnmergedV1(EventPayload):
    """The merge `merge_id` was undone for `customer_id`: every subscriber gives back to `customer_id`
    what it re-pointed to `survivor_id` under `merge_id`; what was recorded on the survivor after the
    merge stays with the survivor. Never published while the survivor is itself merged into another."""

    customer_id = fields.UUID(required=True, metadata={"description": "the customer given back its own record"})
    survivor_id = fields.UUID(required=True, metadata={"description": "the survivor of the merge undone"})
    merge_id = fields.String(required=True)
    unmerged_at = fields.AwareDateTime(required=True)


class MergeCustomersRequest(Request):
    """Merge customers into the survivor named in the path. Example:
    {"absorb": ["3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"], "merge_id": "merge-2026-0007"}"""

    absorb = fields.List(
        fields.UUID(), required=True, validate=validate.Length(min=1, max=MAX_ABSORBED),
        metadata={"description": "the customers folded into the survivor (duplicates of it)"},
    )
    merge_id = Text(load_default=None, allow_none=True, validate=MERGE_ID,
                    metadata={"description": "the client's id of this merge (default: derived from the call)"})

    @validates_schema
    def distinct(self, data: dict, **kwargs: object) -> None:
        absorb = data.get("absorb") or []
        if len(set(absorb)) != len(absorb):
            raise ValidationError("names a customer twice", "absorb")


class UnmergeRequest(Request):
    """Undo a merge, for every customer it absorbed or only for some. Example:
    {"customer_ids": ["3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"]}"""

    customer_ids = fields.List(
        fields.UUID(), load_default=None, allow_none=True, validate=validate.Length(min=1, max=MAX_ABSORBED),
        metadata={"description": "the absorbed customers to give back (default: all of the merge)"},
    )

    @validates_schema
    def distinct(self, data: dict, **kwargs: object) -> None:
        customer_ids = data.get("customer_ids") or []
        if len(set(customer_ids)) != len(customer_ids):
            raise ValidationError("names a customer twice", "customer_ids")


class MergedCustomerSchema(Schema):
    """One customer a merge absorbed, and whether it was given back."""

    customer_id = fields.UUID()
    unmerged_at = fields.AwareDateTime(allow_none=True, metadata={"description": "null while still merged"})


class MergeSchema(Schema):
    """A merge as the customer service records it."""

    merge_id = fields.String()
    version = fields.Integer(metadata={"description": "the merge record's version; the gateway's ETag"})
    survivor_id = fields.UUID()
    absorbed = fields.List(fields.Nested(MergedCustomerSchema))
    merged_at = fields.AwareDateTime()
    undone = fields.Boolean(metadata={"description": "every absorbed customer was given back"})
