"""The command and query entrypoint of every service: `@rpc`, reachable two ways.

- over RabbitMQ (nameko's RPC), as `service.method(*args)` from a ClusterRpcProxy or RpcProxy;
- over HTTP, as `POST /rpc/<method>` with the JSON body `{"args": [...], "kwargs": {...}}` on the
  service's own web port. This path needs no broker: while RabbitMQ is down a command still reaches
  its service and its events wait in the outbox (ARCHITECTURE.md, "Shape").

Both answer the same way: a result, or an expected error (a domain error, invalid input) as a
crm_contracts.errors.ServiceError with its code, message and details; anything else is a failure of
the service. The gateway's ServiceClient speaks both (crm_gateway.clients).
"""

from __future__ import annotations

import json
from functools import partial
from typing import Any
from uuid import UUID

from eventlet.event import Event
from marshmallow import ValidationError
from nameko.exceptions import IncorrectSignature, get_module_path, registry
from nameko.rpc import Rpc
from werkzeug.wrappers import Request, Response

from crm_contracts.errors import CrmError, InvalidRequestError, ServiceError
from crm_runtime.nameko.web import HttpEntrypoint

# Rebuild ServiceError (with code, message, details) on the caller's side instead of RemoteError.
registry[get_module_path(ServiceError)] = ServiceError

#: HTTP headers that carry the worker context data of an HTTP command (the RPC path uses AMQP headers):
#: the caller's ids, and its W3C trace context (crm_runtime.tracing; used only while tracing is on).
CONTEXT_HEADERS = {"X-Correlation-Id": "correlation_id", "X-Causation-Id": "causation_id",
                   "traceparent": "traceparent"}
#: Status of an expected error on the HTTP path; the body says which (`{"error": {code, message, details}}`).
EXPECTED_ERROR_STATUS = 409
#: The largest HTTP command body a service reads (the gateway's own limit is smaller).
MAX_COMMAND_BYTES = 4 * 1024 * 1024


#: The HTTP header saying the body of a 200 is the result itself (a RawJson), not {"result": ...}.
BARE_RESULT_HEADER = "X-Rpc-Result"


class RawJson(str):
    """A result that is already JSON text (a read model that PostgreSQL serialised): sent over HTTP as
    it is, with no decoding and encoding again on either side; an AMQP caller gets it decoded."""


def aggregate_id(value: Any, field: str = "id") -> UUID:
    """An id argument of an RPC call as a UUID; anything else is an `invalid` error naming the field."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise InvalidRequestError(f"{field}: {value!r} is not a UUID", fields={field: ["must be a UUID"]}) from None


def as_service_error(exc: BaseException) -> ServiceError | None:
    """The wire form of an expected error, or None for an unexpected one."""
    if isinstance(exc, ServiceError):
        return exc
    if isinstance(exc, CrmError):
        return ServiceError.from_error(exc)
    if isinstance(exc, ValidationError):
        return ServiceError("invalid", "the request is not valid", {"fields": exc.messages})
    return None


class CrmRpc(Rpc):
    """`@rpc` over AMQP that turns domain and validation errors into ServiceError replies."""

    def __init__(self, expected_exceptions: tuple[type[BaseException], ...] = (), **kwargs: Any) -> None:
        super().__init__(expected_exceptions=(CrmError, ValidationError, *expected_exceptions), **kwargs)

    def handle_result(self, message: Any, worker_ctx: Any, result: Any, exc_info: Any) -> Any:
        if exc_info is not None:
            wire = as_service_error(exc_info[1])
            if wire is not None:
                exc_info = (ServiceError, wire, exc_info[2])
        elif isinstance(result, RawJson):
            result = json.loads(result)
        return super().handle_result(message, worker_ctx, result, exc_info)


def json_answer(status: int, body: Any) -> Response:
    return Response(json.dumps(body, default=str), status=status, mimetype="application/json")


class HttpRpc(HttpEntrypoint):
    """The same method as `POST /rpc/<method>`: JSON arguments in, JSON result or error out."""

    def __init__(self, url: str, **kwargs: Any) -> None:
        super().__init__("POST", url, expected_exceptions=(CrmError, ValidationError), **kwargs)

    def handle_request(self, request: Request) -> Response:
        request.shallow = False
        try:
            args, kwargs = self._arguments(request)
            self.check_signature(args, kwargs)
        except (ValueError, TypeError, IncorrectSignature) as exc:  # arguments that do not fit: the caller's bug
            return json_answer(400, {"error": {"code": "bad_request", "message": str(exc), "details": {}}})
        context = {key: request.headers[h] for h, key in CONTEXT_HEADERS.items() if request.headers.get(h)}
        done = Event()
        self.container.spawn_worker(
            self, args, kwargs, context_data=context, handle_result=partial(self._handle_result, done)
        )
        result, exc_info = done.wait()
        if exc_info is None:
            if isinstance(result, RawJson):
                return Response(result, status=200, mimetype="application/json", headers={BARE_RESULT_HEADER: "bare"})
            return json_answer(200, {"result": result})
        wire = as_service_error(exc_info[1])
        if wire is None:
            return json_answer(500, {"error": {"code": "internal", "message": f"{self.method_name} failed",
                                               "details": {}}})
        return json_answer(EXPECTED_ERROR_STATUS, {"error": {"code": wire.code, "message": wire.message,
                                                             "details": wire.details}})

    @staticmethod
    def _handle_result(done: Event, worker_ctx: Any, result: Any, exc_info: Any) -> tuple[Any, Any]:
        done.send((result, exc_info))
        return result, exc_info

    @staticmethod
    def _arguments(request: Request) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if (request.content_length or 0) > MAX_COMMAND_BYTES:
            raise ValueError(f"the command body is larger than {MAX_COMMAND_BYTES} bytes")
        raw = request.stream.read(MAX_COMMAND_BYTES + 1)  # bounded, whether chunked or not
        if len(raw) > MAX_COMMAND_BYTES:
            raise ValueError(f"the command body is larger than {MAX_COMMAND_BYTES} bytes")
        try:
            body = json.loads(raw or b"{}")
        except RecursionError:
            raise ValueError("the command body is nested too deeply") from None
        if not isinstance(body, dict):
            raise ValueError('the body must be {"args": [...], "kwargs": {...}}')
        args, kwargs = body.get("args", []), body.get("kwargs", {})
        if not isinstance(args, list) or not isinstance(kwargs, dict):
            raise ValueError('"args" must be a list and "kwargs" an object')
        return tuple(args), kwargs


#: `@amqp_rpc`: over RabbitMQ only, for calls that must not be served on a public HTTP port.
amqp_rpc = CrmRpc.decorator


def rpc(fn: Any = None, **options: Any) -> Any:
    """Expose a service method as a command or query, over AMQP RPC and over HTTP (`POST /rpc/<name>`)."""

    def register(method: Any) -> Any:
        HttpRpc.decorator(f"/rpc/{method.__name__}")(method)
        return CrmRpc.decorator(**options)(method)

    return register(fn) if fn is not None else register
