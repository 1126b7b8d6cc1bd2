"""Event-sourced applications on PostgreSQL (or in memory), configured from the environment.

Each service's application subclasses ServiceApplication. It stores its events in its own PostgreSQL
schema, never creates tables at start (migration is explicit: `crm-migrate`), and stamps every new
event with the command's correlation and causation ids, which the relay copies into the envelope.
"""

from __future__ import annotations

import contextlib
import contextvars
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import JSONTranscoder, Transcoding

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


class _PendingSave:
    """One caller's aggregates waiting for a shared commit."""

    __slots__ = ("objs", "kwargs", "done", "wake", "result", "error")

    def __init__(self, objs: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.objs = objs
        self.kwargs = kwargs
        self.done = False
        self.wake = threading.Event()
        self.result: Any = None
        self.error: BaseException | None = None


class GroupCommit:
    """Lets saves that arrive while a commit is running share the next commit.

    The event store serialises writers (it locks the events table per insert), so commit latency
    bounds throughput. Callers queue; one of them (the leader) saves everything queued in one
    transaction and wakes the others; then hands leadership to the first caller queued meanwhile.
    When the shared transaction fails (one command lost a race, say), each save is retried alone,
    so every caller gets exactly its own outcome.
    """

    def __init__(self, save: Callable[..., Any], max_batch: int = 200) -> None:
        self._save = save
        self._max_batch = max_batch
        self._mutex = threading.Lock()
        self._queue: list[_PendingSave] = []
        self._committing = False

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        pending = _PendingSave(objs, kwargs)
        with self._mutex:
            self._queue.append(pending)
            leader = not self._committing
            self._committing = True
        if not leader:
            pending.wake.wait()
        if not pending.done:  # we lead: commit what is queued, then pass the lead on
            with self._mutex:
                batch, self._queue = self._queue[: self._max_batch], self._queue[self._max_batch :]
            try:
                self._commit(batch)
            finally:
                # Even if this green thread is killed mid-commit, nobody waits forever.
                for waiting in batch:
                    if not waiting.done:
                        waiting.error = RuntimeError("the shared commit was interrupted; retry the command")
                        self._finish([waiting])
                with self._mutex:
                    if self._queue:
                        self._queue[0].wake.set()
                    else:
                        self._committing = False
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _commit(self, batch: list[_PendingSave]) -> None:
        if len(batch) > 1 and not any(p.kwargs for p in batch):
            objs = [obj for p in batch for obj in p.objs]
            # save() takes the pending events off the aggregates; keep them for the retry one by one.
            pending_events = [(obj, list(obj.pending_events)) for obj in objs if isinstance(obj, Aggregate)]
            try:
                self._save(*objs)
            except Exception:  # noqa: BLE001 - the shared commit failed: each save on its own below
                for aggregate, events in pending_events:
                    aggregate.pending_events[:] = events
            else:
                self._finish(batch)
                return
        for pending in batch:
            try:
                pending.result = self._save(*pending.objs, **pending.kwargs)
            except Exception as exc:  # noqa: BLE001 - handed back to that caller, raised there
                pending.error = exc
            self._finish([pending])

    @staticmethod
    def _finish(batch: list[_PendingSave]) -> None:
        for pending in batch:
            pending.done = True
            pending.wake.set()


class DateAsISO(Transcoding):
    """Stores a `date` (a schedule, an expected close date) as an ISO string: eventsourcing knows datetime only."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class ServiceApplication(Application):
    """Base of every service's eventsourcing Application."""

    #: The service (and PostgreSQL schema) this application belongs to, e.g. "customer".
    service: ClassVar[str] = ""

    def __init__(self, env: dict[str, str] | None = None, *, create_table: bool | None = None) -> None:
        settings = event_store_env(self.service, create_table=create_table)
        settings.update(env or {})
        super().__init__(env=settings)
        enabled = settings.get("GROUP_COMMIT", config.setting("GROUP_COMMIT", "true")).lower() == "true"
        self._group_commit = GroupCommit(super().save) if enabled and self.uses_postgres else None

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
        if self._group_commit is not None:
            return self._group_commit.save(*objs, **kwargs)
        return super().save(*objs, **kwargs)

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """The library's transcodings, plus dates."""
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    @property
    def uses_postgres(self) -> bool:
        return self.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
