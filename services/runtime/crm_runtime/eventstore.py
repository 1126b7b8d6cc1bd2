"""Event-sourced applications on PostgreSQL (or in memory), configured from the environment.

Each service's application subclasses ServiceApplication. It stores its events in its own PostgreSQL
schema, never creates tables at start (migration is explicit: `crm-migrate`), and stamps every new
event with the command's correlation and causation ids, and the `traceparent` of the span saving it
when tracing is on (crm_runtime.tracing), which the relay copies into the envelope.

It always inserts through eventsourcing's default path, never its database functions
(POSTGRES_ENABLE_DB_FUNCTIONS): the default path locks the events table for each insert, so
notification ids commit in the order they were issued even with two writer processes (the relay
relies on that, ARCHITECTURE.md guarantee 2), and it writes a process recorder's tracking record in
the same transaction. The function path does neither.

Every application records with a process recorder, so a policy's command and the position of the
event it reacts to are one transaction (`reaction_tracking`, used by crm_runtime.policy).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, ClassVar

import psycopg.sql
from eventsourcing.application import Application, ProcessingEvent
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, JSONTranscoder, ProcessRecorder, Recorder, Tracking, Transcoding
from eventsourcing.postgres import PostgresDatastore
from eventsourcing.utils import Environment
from psycopg.types.composite import CompositeInfo, register_composite

from crm_runtime import config, metrics, tracing
from crm_runtime.crypto import DataKeys, PersonalFields, PostgresDataKeys, ShreddingMapper, data_keys_for
from crm_runtime.inbox import connection_usable

log = logging.getLogger(__name__)

#: Key under which command metadata is kept inside a stored event's state.
METADATA_KEY = "__crm_meta__"

#: eventsourcing's switch to its insert function, which takes no table lock and drops tracking
#: records (STACK.md): never turned on here, whatever the environment says.
UNSAFE_DB_FUNCTIONS = "POSTGRES_ENABLE_DB_FUNCTIONS"
_FALSE = {"", "0", "n", "no", "f", "false", "off"}


@dataclass(frozen=True)
class CommandMetadata:
    """Who asked for a change: the request's correlation id and the message that caused it; on a stored
    event also the `traceparent` of the span that saved it (None: not traced)."""

    correlation_id: str | None = None
    causation_id: str | None = None
    traceparent: str | None = None


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


class ReactionSavedTwiceError(RuntimeError):
    """A policy's reaction tried a second save: a bug in the policy (its effect would not be atomic)."""


@dataclass
class ReactionTracking:
    """The position of the event a policy is reacting to, to be recorded with the reaction's one save."""

    tracking: Tracking
    recorded: bool = False


_current_reaction: contextvars.ContextVar[ReactionTracking | None] = contextvars.ContextVar(
    "crm_reaction_tracking", default=None
)


@contextlib.contextmanager
def reaction_tracking(tracking: Tracking) -> Iterator[ReactionTracking]:
    """Within this block, the next save also records `tracking`, in the same transaction; a second
    save raises (a reaction is one transaction, or a crash between two saves would lose the second)."""
    pending = ReactionTracking(tracking)
    token = _current_reaction.set(pending)
    try:
        yield pending
    finally:
        _current_reaction.reset(token)


def event_metadata(domain_event: Any) -> CommandMetadata:
    """The metadata stamped on a stored (or pending) domain event."""
    meta = vars(domain_event).get(METADATA_KEY) or {}
    return CommandMetadata(meta.get("correlation_id"), meta.get("causation_id"), meta.get(tracing.TRACEPARENT))


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
        "POSTGRES_POOL_SIZE": config.setting("POSTGRES_POOL_SIZE", "2"),
        "POSTGRES_MAX_OVERFLOW": config.setting("POSTGRES_MAX_OVERFLOW", "8"),
        UNSAFE_DB_FUNCTIONS: "false",  # the locking insert path: see the module docstring
        # Checked on every checkout, without a round trip: see check_pooled_connection.
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

    A shared commit can fail ambiguously: the connection drops after COMMIT reached the server, so
    the events may be stored though the save raised (eventsourcing's own retry of the insert then
    meets them as an IntegrityError). `already_stored(events)` tells such a save from a real
    conflict, so a save that did commit is reported as saved, not as a conflict.
    """

    def __init__(
        self,
        save: Callable[..., Any],
        max_batch: int = 200,
        already_stored: Callable[[Sequence[Any]], bool] | None = None,
    ) -> None:
        self._save = save
        self._max_batch = max_batch
        self._already_stored = already_stored
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
            try:
                pending.wake.wait()
            except BaseException:
                # Killed while queued (eventlet's GreenletExit, a timeout): leave without a trace, so
                # the callers queued behind are still served.
                self._withdraw(pending)
                raise
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
                    self._pass_lead()
        if pending.error is not None:
            raise pending.error
        return pending.result

    def _withdraw(self, pending: _PendingSave) -> None:
        """Take a caller that stopped waiting out of the queue; pass the lead on if it had it."""
        with self._mutex:
            if not any(queued is pending for queued in self._queue):
                return  # a leader took it into its batch already: that leader finishes it
            self._queue = [queued for queued in self._queue if queued is not pending]
            if pending.wake.is_set():  # queued and woken means it was handed the lead
                self._pass_lead()

    def _pass_lead(self) -> None:
        """Wake the first queued caller to lead the next commit, or stop committing. Holds _mutex."""
        if self._queue:
            self._queue[0].wake.set()
        else:
            self._committing = False

    def _commit(self, batch: list[_PendingSave]) -> None:
        metrics.GROUP_COMMIT_BATCH.observe(len(batch))
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
            events = [event for obj in pending.objs if isinstance(obj, Aggregate) for event in obj.pending_events]
            try:
                pending.result = self._save(*pending.objs, **pending.kwargs)
            except IntegrityError as exc:
                if self._stored_after_all(events):
                    log.warning("a save whose commit looked failed is stored after all; reporting it saved")
                    pending.result = []
                else:
                    pending.error = exc
            except Exception as exc:  # noqa: BLE001 - handed back to that caller, raised there
                pending.error = exc
            self._finish([pending])

    def _stored_after_all(self, events: list[Any]) -> bool:
        """Whether a save that met an IntegrityError had in fact committed (see the class docstring)."""
        if not events or self._already_stored is None:
            return False
        try:
            return self._already_stored(events)
        except Exception:  # noqa: BLE001 - cannot tell: the caller gets its IntegrityError, as before
            log.warning("could not check whether a conflicting save was stored after all", exc_info=True)
            return False

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


def _register_type_adapters_quoted(datastore: PostgresDatastore) -> None:
    """eventsourcing 9.5.6's PostgresDatastore.register_type_adapters, with the schema quoted.

    The library looks its composite types up as the text `schema.name`, which PostgreSQL cannot parse
    when the schema is a reserved word: the order service's schema is `order`. Same steps, with
    the name given as a quoted identifier.
    """
    missing = [name for name in datastore.db_type_names if name not in datastore.psycopg_type_adapters]
    if not missing:
        return
    with datastore.get_connection() as conn:
        for name in missing:
            info = CompositeInfo.fetch(conn, psycopg.sql.Identifier(datastore.schema, name))
            if info is None:
                continue
            register_composite(info, conn)
            datastore.psycopg_type_adapters[name] = info
            datastore.psycopg_python_types[name] = info.python_type


PostgresDatastore.register_type_adapters = _register_type_adapters_quoted  # type: ignore[method-assign,assignment]


def check_pooled_connection(conn: Any) -> None:
    """The pool's check of an idle connection before handing it out, at the cost of one non-blocking
    syscall instead of eventsourcing's pre-ping round trip (which, for every query of every command,
    cost as much as the query). A server that restarted or ended the session has closed the socket,
    which makes it readable: that connection is dropped and another one taken, as with the pre-ping."""
    if not connection_usable(conn):
        if conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE:
            # Idle, yet its socket is readable: the server ended it. psycopg_pool replaces a connection
            # that failed its check only if it is closed (an open, idle one goes back to the pool and
            # fails every later check: after a database outage no command got a connection again).
            conn.close()
        raise psycopg.OperationalError("the pooled connection was closed by the server")


class ServiceApplication(Application):
    """Base of every service's eventsourcing Application."""

    #: The service (and PostgreSQL schema) this application belongs to, e.g. "customer".
    service: ClassVar[str] = ""
    #: Personal fields of this service's domain events, sealed under each person's data key
    #: (crm_runtime.crypto: crypto-shredding); empty: events are stored as they are.
    personal_data: ClassVar[Mapping[type, PersonalFields]] = {}
    #: The data keys and erasure ledger, when `personal_data` is declared.
    data_keys: DataKeys | None = None

    def __init__(self, env: dict[str, str] | None = None, *, create_table: bool | None = None) -> None:
        settings = event_store_env(self.service, create_table=create_table)
        settings.update(env or {})
        super().__init__(env=settings)
        datastore = getattr(self.recorder, "datastore", None)
        if datastore is not None and datastore.pool._check is not None:
            datastore.pool._check = check_pooled_connection  # see check_pooled_connection
        if settings.get("CREATE_TABLE") == "true" and isinstance(self.data_keys, PostgresDataKeys):
            self.data_keys.create_tables()
        enabled = settings.get("GROUP_COMMIT", config.setting("GROUP_COMMIT", "true")).lower() == "true"
        self._group_commit = (
            GroupCommit(super().save, already_stored=self.already_stored) if enabled and self.uses_postgres else None
        )
        if getattr(getattr(self.recorder, "datastore", None), "enable_db_functions", False):
            raise RuntimeError(f"{UNSAFE_DB_FUNCTIONS} is on: the event store would lose events; refusing to start")

    def construct_env(self, name: str, env: Mapping[str, str] | None = None) -> Environment:
        """eventsourcing's environment (os.environ, then `env`), with the insert function always off.

        eventsourcing reads the switch under its own name and under `<APP NAME>_` + name; an attempt
        to turn it on either way is logged and ignored, so no setting can bring back the unsafe path.
        """
        environment = super().construct_env(name, env)
        for key in environment.create_keys(UNSAFE_DB_FUNCTIONS):
            value = dict.get(environment, key)
            if value is not None and value.strip().lower() not in _FALSE:
                log.error(
                    "ignoring %s=%s: eventsourcing's insert function takes no table lock (two writers then "
                    "commit notification ids out of order and the relay skips events) and drops tracking "
                    "records; the event store uses its locking insert",
                    key, value,
                )
            environment[key] = "false"
        return environment

    def already_stored(self, events: Sequence[Any]) -> bool:
        """Whether every one of these domain events is in the store exactly as it would be written now.

        Same originator, version, topic and state bytes: only this save could have written them (the
        state holds the event's own timestamp), so a match means an ambiguous commit went through.
        """
        for event in events:
            stored = self.mapper.to_stored_event(event)
            found = self.recorder.select_events(
                stored.originator_id, gt=stored.originator_version - 1, lte=stored.originator_version
            )
            if not found or found[0].topic != stored.topic or found[0].state != stored.state:
                return False
        return True

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Save aggregates in one transaction, stamping each new event with command metadata."""
        meta = current_metadata()
        stamp = {"correlation_id": meta.correlation_id, "causation_id": meta.causation_id}
        traceparent = tracing.current_traceparent()  # None unless tracing is on
        if traceparent is not None:
            stamp[tracing.TRACEPARENT] = traceparent
        for obj in objs:
            if isinstance(obj, Aggregate):
                for pending in obj.pending_events:
                    # Frozen dataclasses: write past __setattr__. The mapper stores __dict__ as is,
                    # and @event's apply ignores keys its method does not name.
                    vars(pending)[METADATA_KEY] = stamp
        if isinstance(self.mapper, ShreddingMapper):
            self.mapper.prepare(e for obj in objs if isinstance(obj, Aggregate) for e in obj.pending_events)
        reaction = _current_reaction.get()
        if reaction is not None:
            if reaction.recorded:
                raise ReactionSavedTwiceError("a reaction saves once: its events and its tracking are one transaction")
            recordings = self._save_tracked(objs, reaction.tracking)
            reaction.recorded = True
            return recordings
        if self._group_commit is not None:
            return self._group_commit.save(*objs, **kwargs)
        return super().save(*objs, **kwargs)

    def _notify(self, recordings: list[Any]) -> None:
        metrics.EVENTS_SAVED.labels(self.service).inc(len(recordings))  # every successful save passes here
        super()._notify(recordings)

    def record_tracking(self, tracking: Tracking) -> None:
        """Record that a policy applied the event at `tracking` without changing anything."""
        self._save_tracked((), tracking)

    def _save_tracked(self, objs: Sequence[Any], tracking: Tracking) -> Any:
        """Save `objs` and `tracking` in one transaction (not grouped: the tracking belongs to this save).

        The process recorder refuses a position at or below the one it holds (IntegrityError)."""
        processing: ProcessingEvent[Any] = ProcessingEvent(tracking=tracking)
        processing.collect_events(*objs)
        recordings = self._record(processing)
        self._take_snapshots(processing)
        self._notify(recordings)
        return recordings

    def construct_mapper(self) -> Any:
        """eventsourcing's mapper; a ShreddingMapper (crm_runtime.crypto) when personal data is declared."""
        mapper = super().construct_mapper()
        if not self.personal_data:
            return mapper
        self.data_keys = data_keys_for(self.factory)
        return ShreddingMapper(mapper.transcoder, self.data_keys, self.personal_data, mapper.compressor, mapper.cipher)

    def construct_recorder(self) -> ProcessRecorder:  # type: ignore[override]
        """A process recorder: an application recorder that can also record policies' tracking."""
        return self.factory.process_recorder()

    def tracked_position(self, origin: str) -> int:
        """The position of the last event from `origin` that a policy of this service applied."""
        recorder: Recorder = self.recorder
        assert isinstance(recorder, ProcessRecorder)
        return recorder.max_tracking_id(origin) or 0

    def register_transcodings(self, transcoder: JSONTranscoder) -> None:
        """The library's transcodings, plus dates."""
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    @property
    def uses_postgres(self) -> bool:
        return self.env.get("PERSISTENCE_MODULE") == "eventsourcing.postgres"
