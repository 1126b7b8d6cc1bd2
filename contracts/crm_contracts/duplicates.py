"""Contracts of candidate duplicates (customer360's read side): the queries and their answers."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm_contracts.customer360 import MAX_PAGE_SIZE
from crm_contracts.fields import QueryInteger, Request

THRESHOLD = validate.Range(min=0.05, max=1.0)


class DuplicatesQuery(Request):
    """Query parameters of GET /v1/customers/{id}/duplicates: `threshold` is the name similarity (0..1)
    from which a similar name counts (default DUPLICATE_NAME_THRESHOLD, 0.6)."""

    threshold = fields.Float(load_default=None, allow_none=True, validate=THRESHOLD)
    limit = QueryInteger(load_default=20, validate=validate.Range(min=1, max=100))


class DuplicatePairsQuery(Request):
    """Query parameters of GET /v1/duplicates: the batch check, a page of pairs at a time."""

    threshold = fields.Float(load_default=None, allow_none=True, validate=THRESHOLD)
    page = QueryInteger(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    page_size = QueryInteger(load_default=20, validate=validate.Range(min=1, max=MAX_PAGE_SIZE))


class ReasonSchema(Schema):
    reason = fields.String(metadata={"description": "email, phone, name, or name_company"})
    score = fields.Float()
    value = fields.String(metadata={"description": "the normalised email or E.164 phone both share"})
    name_similarity = fields.Float()
    company_similarity = fields.Float(allow_none=True)


class CandidateSchema(Schema):
    """A customer who may be the same person, with why and how likely (score 0..1)."""

    customer_id = fields.UUID()
    name = fields.String(allow_none=True)
    email = fields.String(allow_none=True)
    phone = fields.String(allow_none=True)
    company = fields.String(allow_none=True)
    score = fields.Float()
    reasons = fields.List(fields.Nested(ReasonSchema))


class DuplicatesSchema(Schema):
    customer_id = fields.UUID()
    candidates = fields.List(fields.Nested(CandidateSchema))


class DuplicatePairSchema(Schema):
    customer_ids = fields.List(fields.UUID())
    score = fields.Float()
    reasons = fields.List(fields.Nested(ReasonSchema))


class DuplicatePairsPageSchema(Schema):
    items = fields.List(fields.Nested(DuplicatePairSchema))
    page = fields.Integer()
    page_size = fields.Integer()
    total = fields.Integer()
