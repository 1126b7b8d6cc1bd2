"""The HTTP edge written once: the `endpoint` wrapper (correlation id, auth, error mapping, access log),
loading bodies and queries through contract schemas, ETag/If-Match, and RPC proxies with a deadline.

Hostile bodies are answered before any parsing can hurt: a body over GATEWAY_MAX_BODY_BYTES (default
64 KiB) is 413, whether its Content-Length says so or a chunked body grows past it while read; a body
that is not UTF-8 JSON (bad syntax, NaN/Infinity, an integer too long to convert, nesting too deep for
the parser) is 400; valid JSON nested deeper than MAX_JSON_DEPTH levels is 400 too. Query strings are
decoded strictly: bytes that are not UTF-8 reach the contract as lone surrogates, which it refuses (422).
"""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from marshmallow import Schema
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Request, Response

from crm_contracts.fields import schema_of
from crm_gateway.auth import Principal, authenticate_request
from crm_gateway.errors import ApiError, response_for
from crm_runtime import config
from crm_runtime.eventstore import CommandMetadata, use_metadata
from crm_runtime.nameko.rpc import RawJson

access_log = logging.getLogger("crm_gateway.access")

CORRELATION_HEADER = "X-Correlation-Id"
#: What a caller's correlation id is used as sent; anything else is replaced by a new id (it lands in
#: logs and events), as the OpenAPI document says: the header itself never makes a request fail.
CORRELATION_ID_PATTERN = r"^[A-Za-z0-9._:\-]{1,128}$"
_CORRELATION_ID = re.compile(CORRELATION_ID_PATTERN[1:-1])
_CORRELATION_KEY = "crm.correlation_id"
_PRINCIPAL_KEY = "crm.principal"

Handler = Callable[..., Response]


# --- correlation ids ----------------------------------------------------------------------------

def correlation_id_of(request: Request) -> str:
    """The request's correlation id: the caller's X-Correlation-Id if usable, else a new one (kept)."""
    found = request.environ.get(_CORRELATION_KEY)
    if found is None:
        given = request.headers.get(CORRELATION_HEADER, "")
        found = given if _CORRELATION_ID.fullmatch(given) else str(uuid.uuid4())
        request.environ[_CORRELATION_KEY] = found
    return found


class CorrelationId(DependencyProvider):
    """Gives each worker its request's correlation id and sends it along with every RPC call it makes.

    nameko's RPC proxy turns `worker_ctx.data` into message headers at call time, and the services'
    providers read `correlation_id` back from there (crm_runtime.nameko.dependencies.metadata_of).
    """

    def worker_setup(self, worker_ctx: Any) -> None:
        request = worker_ctx.args[0] if worker_ctx.args and isinstance(worker_ctx.args[0], Request) else None
        if request is not None:
            correlation_id = correlation_id_of(request)
        else:
            correlation_id = worker_ctx.data.get("correlation_id") or worker_ctx.call_id
        worker_ctx.data["correlation_id"] = correlation_id
        # The JSON log formatter reads the id from here, so every log line of this request carries it.
        use_metadata(CommandMetadata(correlation_id=correlation_id))

    def get_dependency(self, worker_ctx: Any) -> str:
        return worker_ctx.data.get("correlation_id")  # type: ignore[no-any-return]


# --- the endpoint wrapper -----------------------------------------------------------------------

def principal_of(request: Request) -> Principal:
    """The authenticated caller of `request` (set by `endpoint`)."""
    return request.environ[_PRINCIPAL_KEY]  # type: ignore[no-any-return]


def endpoint(scope: str | None) -> Callable[[Handler], Handler]:
    """Wrap an HTTP handler: require `scope` (None: public), answer every error as JSON, return the
    correlation id, and write one access-log line. Put it under nameko's `@http`."""

    def decorate(handler: Handler) -> Handler:
        @functools.wraps(handler)
        def wrapper(self: Any, request: Request, **path: Any) -> Response:
            started = time.perf_counter()
            correlation_id = correlation_id_of(request)
            try:
                if scope is not None:
                    request.environ[_PRINCIPAL_KEY] = authenticate_request(request, scope)
                response = handler(self, request, **path)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer (500 only for bugs)
                response = response_for(exc, request)
            response.headers[CORRELATION_HEADER] = correlation_id
            log_request(request, response, started, correlation_id)
            return response

        return wrapper

    return decorate


def log_request(request: Request, response: Response, started: float, correlation_id: str) -> None:
    """One access-log line per request."""
    duration_ms = round((time.perf_counter() - started) * 1000, 1)
    access_log.info(
        "%s %s %d %.1fms",
        request.method,
        request.path,
        response.status_code,
        duration_ms,
        extra={
            "method": request.method,
            "path": request.path,
            "status": response.status_code,
            "duration_ms": duration_ms,
            "request_correlation_id": correlation_id,
        },
    )


# --- bodies, queries, paths ---------------------------------------------------------------------

def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer (a service's answer that is JSON text already, RawJson, is sent as it came)."""
    text = body if isinstance(body, RawJson) else json.dumps(body, default=str)
    return Response(text, status=status, headers=headers, mimetype="application/json")


#: The largest request body accepted, in bytes (env GATEWAY_MAX_BODY_BYTES); larger is 413.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: The deepest nesting of objects and arrays accepted in a body (the top-level object is depth 1).
MAX_JSON_DEPTH = 32
_READ_CHUNK = 16 * 1024


def max_body_bytes() -> int:
    """The body size limit in force (GATEWAY_MAX_BODY_BYTES, default 64 KiB)."""
    return int(config.setting("GATEWAY_MAX_BODY_BYTES", str(DEFAULT_MAX_BODY_BYTES)))


def body_too_large(limit: int) -> ApiError:
    return ApiError(413, "body_too_large", f"the body is larger than {limit} bytes",
                    {"_body": [f"must be at most {limit} bytes"]})


def read_body(request: Request) -> bytes:
    """The raw body, at most `max_body_bytes()`: 413 when Content-Length says more, or when a chunked
    body (no Content-Length) grows past it while it is read. Never reads more than limit + 1 bytes."""
    limit = max_body_bytes()
    declared = request.content_length
    if declared is not None and declared > limit:
        raise body_too_large(limit)
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if declared is None and not chunked:
        return b""
    # werkzeug's `stream` stops at Content-Length; a chunked body has none, so its raw input (which the
    # WSGI server ends at the last chunk) is read here with the limit enforced as it goes.
    stream = request.input_stream if declared is None else request.stream
    parts: list[bytes] = []
    size = 0
    while True:
        part = stream.read(min(_READ_CHUNK, limit + 1 - size))
        if not part:
            return b"".join(parts)
        parts.append(part)
        size += len(part)
        if size > limit:
            raise body_too_large(limit)


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def parse_json(raw: bytes) -> Any:
    """A body as JSON: UTF-8 only, standard JSON only, at most MAX_JSON_DEPTH deep; 400 naming the problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise malformed(f"the body is not UTF-8: {exc.reason} at byte {exc.start}") from None
    try:
        data = json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        raise malformed(f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise malformed(f"the body is nested deeper than {MAX_JSON_DEPTH} levels") from None
    except ValueError as exc:  # an integer too long to convert (int max str digits), NaN, Infinity
        raise malformed(f"the body is not valid JSON: {exc}") from None
    if json_depth(data) > MAX_JSON_DEPTH:
        raise malformed(f"the body is nested deeper than {MAX_JSON_DEPTH} levels")
    return data


def malformed(message: str) -> ApiError:
    return ApiError(400, "malformed_json", message, {"_body": [message]})


def json_depth(data: Any) -> int:
    """How deeply objects and arrays nest in `data` (a scalar is 0), without recursion."""
    deepest = 0
    pending: list[tuple[Any, int]] = [(data, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict):
            children: Any = value.values()
        elif isinstance(value, list):
            children = value
        else:
            continue
        deepest = max(deepest, depth)
        pending.extend((child, depth + 1) for child in children)
    return deepest


def load_body(request: Request, schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body, checked by `schema`; returned as sent (JSON types) for the service to load.

    415 when it is not JSON, 413 when it is too large, 400 when it does not parse (or nests too deep),
    422 naming each bad or unknown field.
    """
    if not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)",
                       {"Content-Type": ["must be application/json"]})
    data = parse_json(read_body(request))
    if not isinstance(data, dict):
        raise ApiError(422, "invalid", "the body must be a JSON object", {"_schema": ["must be a JSON object"]})
    # Validation only: the service loads the same contract again, from JSON types the wire can carry.
    schema_of(schema).load(data)
    return data


def load_optional_body(request: Request, schema: type[Schema]) -> dict[str, Any]:
    """Like `load_body`, but a request without a body (no Content-Length or 0, not chunked) is `{}`."""
    chunked = "chunked" in request.headers.get("Transfer-Encoding", "").lower()
    if not request.content_length and not chunked:
        schema_of(schema).load({})
        return {}
    return load_body(request, schema)


def query_parameters(request: Request) -> dict[str, str]:
    """The query string as name -> first value. Percent-decoded strictly: bytes that are not UTF-8 become
    lone surrogates (never U+FFFD), so the contract refuses them and names the parameter."""
    raw = request.query_string.decode("latin-1")
    parameters: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="surrogateescape"):
        parameters.setdefault(name, value)
    return parameters


def load_query(request: Request, schema: type[Schema]) -> dict[str, Any]:
    """The query string, loaded through `schema` (422 naming each bad or unknown parameter)."""
    return schema_of(schema).load(query_parameters(request))  # type: ignore[no-any-return]


def uuid_path(value: str, what: str = "customer") -> str:
    """A path id as a canonical UUID; 404 for anything that is not one (no such resource can exist)."""
    try:
        return str(uuid.UUID(value))
    except ValueError:
        raise ApiError(404, "not_found", f"no {what} {value!r}: ids are UUIDs") from None


# --- ETag and If-Match ---------------------------------------------------------------------------

def etag(version: int) -> str:
    """An aggregate version as a strong HTTP entity tag."""
    return f'"{version}"'


#: What If-Match may hold, as the OpenAPI document states it: `*` or one ETag this API gave out, with
#: optional surrounding spaces or tabs (HTTP's optional whitespace).
IF_MATCH_PATTERN = r'^[ \t]*(\*|(W/)?"?[0-9]{1,18}"?)[ \t]*$'
_IF_MATCH = re.compile(r'[ \t]*(?:\*|(?:W/)?"?([0-9]{1,18})"?)[ \t]*')


def if_match_version(request: Request, required: bool) -> int | None:
    """The version the caller's If-Match names (None for `*` or, when optional, no header).

    428 when required and missing; 400 when present but not one ETag this API gave out (blank included).
    """
    value = request.headers.get("If-Match")
    if value is None:
        if required:
            raise ApiError(428, "precondition_required",
                           "send If-Match with the ETag of the version you changed (GET it first)",
                           {"If-Match": ["is required"]})
        return None
    match = _IF_MATCH.fullmatch(value)
    if match is None:
        shown = value.strip(" \t")
        raise ApiError(400, "bad_request", f"If-Match must be one ETag this API gave out, like \"3\", not {shown!r}",
                       {"If-Match": ["must be one ETag, like \"3\", or *"]})
    return int(match.group(1)) if match.group(1) is not None else None

