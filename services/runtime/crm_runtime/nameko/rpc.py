"""An RPC entrypoint whose expected errors cross the wire as crm_contracts.errors.ServiceError."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from marshmallow import ValidationError
from nameko.exceptions import get_module_path, registry
from nameko.rpc import Rpc

from crm_contracts.errors import CrmError, InvalidRequestError, ServiceError

# Rebuild ServiceError (with code, message, details) on the caller's side instead of RemoteError.
registry[get_module_path(ServiceError)] = ServiceError


def aggregate_id(value: Any, field: str = "id") -> UUID:
    """An id argument of an RPC call as a UUID; anything else is an `invalid` error naming the field."""
    try:
        return value if isinstance(value, UUID) else UUID(str(value))
    except ValueError:
        raise InvalidRequestError(f"{field}: {value!r} is not a UUID", fields={field: ["must be a UUID"]}) from None


def as_service_error(exc: BaseException) -> ServiceError | None:
    """The wire form of an expected error, or None for an unexpected one."""
    if isinstance(exc, CrmError):
        return ServiceError.from_error(exc)
    if isinstance(exc, ValidationError):
        return ServiceError("invalid", "the request is not valid", {"fields": exc.messages})
    return None


class CrmRpc(Rpc):
    """`@rpc` that turns domain and validation errors into ServiceError replies (not logged as crashes)."""

    def __init__(self, expected_exceptions: tuple[type[BaseException], ...] = (), **kwargs: Any) -> None:
        super().__init__(expected_exceptions=(CrmError, ValidationError, *expected_exceptions), **kwargs)

    def handle_result(self, message: Any, worker_ctx: Any, result: Any, exc_info: Any) -> Any:
        if exc_info is not None:
            wire = as_service_error(exc_info[1])
            if wire is not None:
                exc_info = (ServiceError, wire, exc_info[2])
        return super().handle_result(message, worker_ctx, result, exc_info)


rpc = CrmRpc.decorator
