"""The HTTP edge written once: the `endpoint` wrapper (correlation id, auth, error mapping, access log),
loading bodies and queries through contract schemas, ETag/If-Match, and RPC proxies with a deadline."""

from __future__ import annotations

import functools
import json
import logging
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

import eventlet
from marshmallow import Schema
from nameko.exceptions import IncorrectSignature, MethodNotFound, RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy
from werkzeug.wrappers import Request, Response

from crm_contracts.fields import schema_of
from crm_gateway.auth import Principal, authenticate
from crm_gateway.errors import ApiError, ServiceUnavailableError, UpstreamError, response_for
from crm_runtime import config
from crm_runtime.eventstore import CommandMetadata, use_metadata

access_log = logging.getLogger("crm_gateway.access")

CORRELATION_HEADER = "X-Correlation-Id"
#: What a caller may send as its correlation id; anything else is replaced (it lands in logs and events).
_CORRELATION_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
_CORRELATION_KEY = "crm.correlation_id"
_PRINCIPAL_KEY = "crm.principal"

Handler = Callable[..., Response]


# --- correlation ids ----------------------------------------------------------------------------

def correlation_id_of(request: Request) -> str:
    """The request's correlation id: the caller's X-Correlation-Id if usable, else a new one (kept)."""
    found = request.environ.get(_CORRELATION_KEY)
    if found is None:
        given = request.headers.get(CORRELATION_HEADER, "")
        found = given if _CORRELATION_ID.match(given) else str(uuid.uuid4())
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
                    request.environ[_PRINCIPAL_KEY] = authenticate(request.headers.get("Authorization"), scope)
                response = handler(self, request, **path)
            except Exception as exc:  # noqa: BLE001 - every failure becomes a JSON answer (500 only for bugs)
                response = response_for(exc)
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
    """A JSON answer."""
    return Response(json.dumps(body, default=str), status=status, headers=headers, mimetype="application/json")


def load_body(request: Request, schema: type[Schema]) -> dict[str, Any]:
    """The request's JSON body, checked by `schema`; returned as sent (JSON types) for the service to load.

    415 when it is not JSON, 400 when it does not parse, 422 naming each bad or unknown field.
    """
    if not (request.mimetype == "application/json" or request.mimetype.endswith("+json")):
        raise ApiError(415, "unsupported_media_type", "send the body as JSON (Content-Type: application/json)",
                       {"Content-Type": ["must be application/json"]})
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "malformed_json", f"the body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ApiError(422, "invalid", "the body must be a JSON object", {"_schema": ["must be a JSON object"]})
    # Validation only: the service loads the same contract again, from JSON types the wire can carry.
    schema_of(schema).load(data)
    return data


def load_query(request: Request, schema: type[Schema]) -> dict[str, Any]:
    """The query string, loaded through `schema` (422 naming each bad or unknown parameter)."""
    return schema_of(schema).load(request.args.to_dict())  # type: ignore[no-any-return]


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


def if_match_version(request: Request, required: bool) -> int | None:
    """The version the caller's If-Match names (None for `*` or, when optional, no header).

    428 when required and missing; 400 when it is not one ETag this API gave out.
    """
    value = request.headers.get("If-Match")
    if value is None or not value.strip():
        if required:
            raise ApiError(428, "precondition_required",
                           "send If-Match with the ETag of the version you changed (GET it first)",
                           {"If-Match": ["is required"]})
        return None
    value = value.strip()
    if value == "*":
        return None
    match = re.fullmatch(r'(?:W/)?"?(\d{1,18})"?', value)
    if match is None:
        raise ApiError(400, "bad_request", f"If-Match must be one ETag this API gave out, like \"3\", not {value}",
                       {"If-Match": ["must be one ETag, like \"3\""]})
    return int(match.group(1))


# --- RPC with a deadline ----------------------------------------------------------------------------

class DeadlineServiceProxy:
    """A nameko service proxy whose calls end after `timeout` seconds with ServiceUnavailableError.

    nameko 2's RpcProxy waits for a reply forever when the service's queue exists but nobody consumes it.
    """

    def __init__(self, proxy: Any, service: str, timeout: float) -> None:
        self._proxy = proxy
        self._service = service
        self._timeout = timeout

    def __getattr__(self, method: str) -> Callable[..., Any]:
        return functools.partial(self._call, getattr(self._proxy, method))

    def _call(self, method: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        deadline = eventlet.Timeout(self._timeout)
        try:
            return method(*args, **kwargs)
        except eventlet.Timeout as exc:
            if exc is not deadline:
                raise
            raise ServiceUnavailableError(self._service, f"no answer within {self._timeout:g} s") from None
        except UnknownService:
            raise ServiceUnavailableError(self._service, "it is not running") from None
        except (RemoteError, MethodNotFound, IncorrectSignature):
            raise UpstreamError(self._service) from None
        finally:
            deadline.cancel()


class DeadlineRpcProxy(RpcProxy):
    """RpcProxy to `target_service` whose calls time out (seconds from env `timeout_setting`)."""

    def __init__(self, target_service: str, timeout_setting: str = "GATEWAY_RPC_TIMEOUT", default: float = 10.0,
                 **options: Any) -> None:
        super().__init__(target_service, **options)
        self.timeout_setting = timeout_setting
        self.default_timeout = default

    def get_dependency(self, worker_ctx: Any) -> DeadlineServiceProxy:
        timeout = float(config.setting(self.timeout_setting, str(self.default_timeout)))
        return DeadlineServiceProxy(super().get_dependency(worker_ctx), self.target_service, timeout)
