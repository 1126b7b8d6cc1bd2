"""Expected errors: raised by domains, carried over RPC, mapped to one HTTP status by the gateway.

Pure Python on purpose: domain modules subclass these without importing any framework.
"""

from __future__ import annotations

from typing import Any


class CrmError(Exception):
    """Base of every expected error. `code` is the stable, documented name a client can switch on."""

    code = "error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class NotFoundError(CrmError):
    code = "not_found"


class ConflictError(CrmError):
    """The command collides with existing state (a taken email, an already converted lead)."""

    code = "conflict"


class StaleVersionError(CrmError):
    """The caller's expected aggregate version is not the current one (optimistic concurrency)."""

    code = "stale_version"


class InvalidRequestError(CrmError):
    """Input that breaks a rule; `details["fields"]` maps each bad field to its reasons."""

    code = "invalid"


class RuleViolationError(CrmError):
    """A command that is valid in form but not allowed in the aggregate's current state."""

    code = "rule_violation"


class MovedError(CrmError):
    """The customer asked for was merged into another: `details` name `customer_id` (the one asked for)
    and `survivor_id` (the final survivor, where the caller should go instead)."""

    code = "moved"

    def __init__(self, customer_id: Any, survivor_id: Any) -> None:
        super().__init__(
            f"customer {customer_id} was merged into customer {survivor_id}",
            customer_id=str(customer_id),
            survivor_id=str(survivor_id),
        )


class ServiceError(Exception):
    """The wire form of a CrmError: what crosses RPC, rebuilt on the caller's side."""

    def __init__(self, code: str, message: str, details: dict[str, Any] | None = None) -> None:
        super().__init__(code, message, details or {})
        self.code = code
        self.message = message
        self.details = details or {}

    @classmethod
    def from_error(cls, error: CrmError) -> "ServiceError":
        return cls(error.code, error.message, dict(error.details))

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"
