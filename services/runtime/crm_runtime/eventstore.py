"""Event-sourced applications on PostgreSQL (or in memory), configured from the environment.

Each service's application subclasses ServiceApplication. It stores its events in its own PostgreSQL
schema, never creates tables at start (migration is explicit: `crm-migrate`), and stamps every new
event with the command's correlation and causation ids, which the relay copies into the envelope.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate

from crm_runtime import config

#: Key under which command metadata is kept inside a stored event's state.
METADATA_KEY = "__crm_meta__"


@dataclass(frozen=True)
class CommandMetadata:
    """Who asked for a change: the request's correlation id and the message that caused it."""

    correlation_id: str | None = None
    causation_id: str | None = None


_current_metadata: contextvars.ContextVar[CommandMetadata] = contextvars.ContextVar(
    "crm_command_metadata", default=CommandMetadata()  # noqa: B039 - frozen, immutable
)


@contextlib.contextmanager
def command_metadata(correlation_id: str | None, causation_id: str | None = None) -> Iterator[None]:
    """Within this block, events saved by any ServiceApplication carry these ids."""
    token = _current_metadata.set(CommandMetadata(correlation_id, causation_id))
    try:
        yield
    finally:
        _current_metadata.reset(token)


def use_metadata(metadata: CommandMetadata) -> None:
    """Make `metadata` current for the rest of this (green) thread's work."""
    _current_metadata.set(metadata)


def current_metadata() -> CommandMetadata:
    return _current_metadata.get()


def event_metadata(domain_event: Any) -> CommandMetadata:
    """The metadata stamped on a stored (or pending) domain event."""
    meta = vars(domain_event).get(METADATA_KEY) or {}
    return CommandMetadata(meta.get("correlation_id"), meta.get("causation_id"))


def event_store_env(service: str, *, create_table: bool | None = None) -> dict[str, str]:
    """eventsourcing settings for `service`: PostgreSQL schema `service`, or memory when
    CRM_EVENT_STORE=memory (unit tests)."""
    if config.setting("CRM_EVENT_STORE", "postgres") == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    params = config.postgres_params()
    if create_table is None:
        create_table = config.setting("CREATE_TABLE", "false").lower() in {"1", "true", "yes"}
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        "POSTGRES_HOST": params["host"],
        "POSTGRES_PORT": params["port"],
        "POSTGRES_DBNAME": params["dbname"],
        "POSTGRES_USER": params["user"],
        "POSTGRES_PASSWORD": params["password"],
        "POSTGRES_SCHEMA": service,
        "POSTGRES_POOL_SIZE": config.setting("POSTGRES_POOL_SIZE", "5"),
        "POSTGRES_MAX_OVERFLOW": config.setting("POSTGRES_MAX_OVERFLOW", "10"),
        "POSTGRES_ENABLE_DB_FUNCTIONS": config.setting("POSTGRES_ENABLE_DB_FUNCTIONS", "true"),
        "POSTGRES_PRE_PING": "true",
        "CREATE_TABLE": "true" if create_table else "false",
    }


class ServiceApplication(Application):
    """Base of every service's eventsourcing Application."""

    #: The service (and PostgreSQL schema) this application belongs to, e.g. "customer".
    service: ClassVar[str] = ""

    def __init__(self, env: dict[str, str] | None = None, *, create_table: bool | None = None) -> None:
        settings = event_store_env(self.service, create_table=create_table)
        settings.update(env or {})
        super().__init__(env=settings)

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Save aggregates in one transaction, stamping each new event with command metadata."""
        meta = current_metadata()
        stamp = {"correlation_id": meta.correlation_id, "causation_id": meta.causation_id}
        for obj in objs:
            if isinstance(obj, Aggregate):
                for pending in obj.pending_events:
                    # Frozen dataclasses: write past __setattr__. The mapper stores __dict__ as is,
                    # and @event's apply ignores keys its method does not name.
                    vars(pending)[METADATA_KEY] = stamp
        return super().save(*objs, **kwargs)

    @property
    def uses_postgres(self) -> bool:
        return self.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
