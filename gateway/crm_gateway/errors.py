"""Every error answer of the gateway: one table from service error codes to HTTP statuses, one JSON shape.

The body is always `{"error": {"code": ..., "message": ..., "fields": {field: [reasons]}}}`, plus
`details` when the service said more (the existing customer of a taken email, the current version).
A customer merged into another (`moved`) is a redirect: 308 to the same request with the survivor's id.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

import amqp.exceptions
import kombu.exceptions
import psycopg2
from marshmallow import ValidationError
from werkzeug.wrappers import Request, Response

from crm_contracts.errors import ServiceError
from crm_runtime.nameko.client import ServiceFailedError, ServiceUnavailableError

log = logging.getLogger(__name__)

#: The one mapping from a service's error code (crm_contracts.errors) to the HTTP status a client sees.
STATUS_BY_CODE: dict[str, int] = {
    "not_found": 404,
    "conflict": 409,
    "stale_version": 412,
    "invalid": 422,
    "rule_violation": 409,
    "moved": 308,
}

Fields = dict[str, list[str]]


class ApiError(Exception):
    """An error answered at the edge, before (or instead of) any service call."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        fields: Fields | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.fields = fields or {}
        self.headers = dict(headers or {})


#: Seconds a client is asked to wait (Retry-After) when something the gateway needs is unavailable.
RETRY_AFTER_SECONDS = 5

#: What the message broker's transport raises while RabbitMQ is down or unreachable: kombu wraps most,
#: py-amqp raises its own connection errors, and the socket layer raises OSError (refused, reset...).
BROKER_ERRORS: tuple[type[BaseException], ...] = (
    kombu.exceptions.OperationalError,
    amqp.exceptions.ConnectionError,
    ConnectionError,
    OSError,
)
#: What psycopg2 raises while PostgreSQL (the idempotency store) is down or its connection is broken.
DATABASE_ERRORS: tuple[type[BaseException], ...] = (psycopg2.OperationalError, psycopg2.InterfaceError)


def unavailable_dependency(exc: BaseException) -> str | None:
    """The name of the dependency whose unavailability `exc` reports (None: `exc` is something else)."""
    if isinstance(exc, DATABASE_ERRORS):
        return "the idempotency store (PostgreSQL)"
    if isinstance(exc, kombu.exceptions.OperationalError | amqp.exceptions.ConnectionError | ConnectionError):
        return "the message broker (RabbitMQ)"
    return None


def flatten_messages(messages: Any, prefix: str = "") -> Fields:
    """marshmallow's nested messages as `{"a.b": [reasons]}`, so every bad field is named once."""
    if isinstance(messages, Mapping):
        flat: Fields = {}
        for key, value in messages.items():
            name = f"{prefix}.{key}" if prefix else str(key)
            flat.update(flatten_messages(value, name))
        return flat
    if isinstance(messages, list | tuple) and all(isinstance(m, str) for m in messages):
        return {prefix or "_schema": list(messages)}
    if isinstance(messages, list | tuple):
        flat = {}
        for index, value in enumerate(messages):
            flat.update(flatten_messages(value, f"{prefix}.{index}" if prefix else str(index)))
        return flat
    return {prefix or "_schema": [str(messages)]}


def error_body(code: str, message: str, fields: Fields | None = None, details: Mapping[str, Any] | None = None) -> dict:
    """The JSON error document."""
    error: dict[str, Any] = {"code": code, "message": message, "fields": fields or {}}
    if details:
        error["details"] = dict(details)
    return {"error": error}


def error_response(
    status: int,
    code: str,
    message: str,
    fields: Fields | None = None,
    headers: Mapping[str, str] | None = None,
    details: Mapping[str, Any] | None = None,
) -> Response:
    """A JSON error answer."""
    body = json.dumps(error_body(code, message, fields, details), default=str)
    return Response(body, status=status, headers=dict(headers or {}), mimetype="application/json")


def unavailable(message: str) -> Response:
    """503 with Retry-After: something the gateway needs is down; the same request may succeed later."""
    return error_response(503, "service_unavailable", message, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


#: What a path segment and a query may keep unencoded in a redirect (RFC 3986 pchar; a query keeps its escapes).
_SEGMENT_SAFE = "-._~!$&'()*+,;=:@"
_QUERY_SAFE = _SEGMENT_SAFE + "/?%"


def moved_location(request: Request, details: Mapping[str, Any]) -> str | None:
    """Where a request about a customer merged into another goes instead: the same path and query with the
    asked id (`details["customer_id"]`, in any spelling a UUID takes) replaced by the survivor's canonical
    id; None when the path does not name it or either id is not a UUID. Always a relative path of this
    gateway: the request's own segments and query percent-encoded, never a host, never a line break."""
    try:
        asked, survivor = uuid.UUID(str(details.get("customer_id"))), uuid.UUID(str(details.get("survivor_id")))
    except ValueError:
        return None
    segments = request.path.split("/")
    moved = [_uuid_or_none(segment) == asked for segment in segments]
    if not any(moved) or segments[0] != "" or "" in segments[1:-1]:
        return None
    location = "/".join(str(survivor) if is_asked else quote(segment, safe=_SEGMENT_SAFE)
                        for segment, is_asked in zip(segments, moved, strict=True))
    query = quote(request.query_string, safe=_QUERY_SAFE)
    return f"{location}?{query}" if query else location


def _uuid_or_none(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def response_for(exc: BaseException, request: Request | None = None) -> Response:
    """The HTTP answer to any exception raised while handling `request`."""
    if isinstance(exc, ApiError):
        return error_response(exc.status, exc.code, exc.message, exc.fields, exc.headers)
    if isinstance(exc, ValidationError):
        return error_response(422, "invalid", "the request is not valid", flatten_messages(exc.messages))
    if isinstance(exc, ServiceError):
        details = dict(exc.details)
        fields = flatten_messages(details.pop("fields")) if details.get("fields") else {}
        status = STATUS_BY_CODE.get(exc.code)
        if status is None:
            # A code this table does not know is a contract drift between service and gateway.
            log.error("unmapped service error code %r: %s", exc.code, exc.message)
            status = 500
        headers = {}
        if exc.code == "moved":
            location = moved_location(request, details) if request is not None else None
            if location is None:  # a customer named elsewhere than the path moved: say so, no redirect
                status = STATUS_BY_CODE["conflict"]
            else:
                headers["Location"] = location
        return error_response(status, exc.code, exc.message, fields, headers, details=details)
    if isinstance(exc, ServiceUnavailableError):
        return unavailable(str(exc))
    dependency = unavailable_dependency(exc)
    if dependency is not None:
        log.warning("%s is unavailable: %s: %s", dependency, type(exc).__name__, exc)
        return unavailable(f"{dependency} is unavailable ({type(exc).__name__}); retry later")
    if isinstance(exc, ServiceFailedError):
        return error_response(502, "upstream_error", str(exc))
    log.exception("unexpected error while handling a request", exc_info=exc)
    return error_response(500, "internal", "unexpected error; X-Correlation-Id finds it in the gateway's logs")
