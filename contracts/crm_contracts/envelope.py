"""The envelope every integration event travels in (ARCHITECTURE.md, guarantee 3)."""

from __future__ import annotations

import uuid

from marshmallow import EXCLUDE, Schema, fields, validate

EXCHANGE = "crm.events"
DEAD_LETTER_EXCHANGE = "crm.dead-letter"

#: Namespace of event ids: uuid5(EVENT_ID_NAMESPACE, f"{aggregate_id}:{version}").
EVENT_ID_NAMESPACE = uuid.UUID("8f6c1e2a-4b1d-4c8e-9a51-3c2f0d7e6b10")


def event_id_for(aggregate_id: uuid.UUID | str, aggregate_version: int) -> str:
    """The deterministic id of the event at `aggregate_version` of `aggregate_id`."""
    return str(uuid.uuid5(EVENT_ID_NAMESPACE, f"{aggregate_id}:{aggregate_version}"))


def routing_key(origin: str, event_type: str) -> str:
    """Routing key on the topic exchange: `<service>.<event_name>`."""
    return f"{origin}.{event_type}"


class EnvelopeSchema(Schema):
    """An integration event as published on `crm.events` and served by `events_since`."""

    class Meta:
        unknown = EXCLUDE  # consumers ignore fields added by newer publishers

    event_id = fields.UUID(required=True)
    type = fields.String(required=True, validate=validate.Length(min=1, max=100))
    version = fields.Integer(required=True, validate=validate.Range(min=1))
    origin = fields.String(required=True, validate=validate.Length(min=1, max=50))
    position = fields.Integer(required=True, validate=validate.Range(min=1))
    previous = fields.Integer(required=True, validate=validate.Range(min=0))
    occurred_at = fields.AwareDateTime(required=True)
    customer_id = fields.UUID(required=True, allow_none=True)
    correlation_id = fields.String(required=True, allow_none=True)
    causation_id = fields.String(required=True, allow_none=True)
    #: W3C trace context of the command that saved the event (OpenTelemetry, off by default): absent on
    #: events saved while tracing was off. Stored with the event, so every publication carries the same.
    traceparent = fields.String(
        required=False,
        allow_none=True,
        metadata={"description": "W3C `traceparent` of the span that saved the event; absent when not traced"},
    )
    payload = fields.Dict(required=True, keys=fields.String())
