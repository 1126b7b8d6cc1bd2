"""Schemas of the HTTP surface itself: the consent path parameter and the error document. Request
bodies and answers come from crm_contracts."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from crm_contracts.vocabulary.customer import CONSENT_CHANNELS


class ConsentChannelPath(Schema):
    """The `channel` path parameter of the consent endpoint."""

    channel = fields.String(required=True, validate=validate.OneOf(CONSENT_CHANNELS))


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
