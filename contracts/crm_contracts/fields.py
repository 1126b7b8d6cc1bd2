"""Field types and base schemas shared by every contract module."""

from __future__ import annotations

from functools import cache

from marshmallow import EXCLUDE, RAISE, Schema, fields, validate

EMAIL = validate.Email(error="must be a valid email address")
PHONE = validate.Regexp(r"^\+?[0-9 ()\-]{5,30}$", error="must be a phone number: digits, spaces, + ( ) -")


MONEY_SCHEMA = {"type": "string", "format": "decimal", "pattern": r"^-?[0-9]+(\.[0-9]{1,2})?$"}


def money(**kwargs) -> fields.Decimal:  # type: ignore[no-untyped-def]
    """A decimal amount, carried as a string so no float ever touches money (and so documented)."""
    metadata = {**MONEY_SCHEMA, **kwargs.pop("metadata", {})}
    return fields.Decimal(as_string=True, places=2, metadata=metadata, **kwargs)


@cache
def schema_of(schema: type[Schema]) -> Schema:
    """One shared instance per schema class: building a Schema deep-copies its fields, so it is
    done once per class, not once per event or request (instances are safe to reuse)."""
    return schema()


class EventPayload(Schema):
    """Base of integration-event payloads: consumers ignore fields newer publishers add."""

    class Meta:
        unknown = EXCLUDE


class Request(Schema):
    """Base of HTTP/RPC request bodies: unknown fields are an error naming the field."""

    class Meta:
        unknown = RAISE
