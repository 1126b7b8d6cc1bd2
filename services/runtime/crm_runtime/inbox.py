"""The inbox: applies integration events exactly once, in each origin's order (guarantee 4).

Per origin it tracks the position of the last applied event, in the same PostgreSQL transaction as
the effect. An envelope whose `previous` is the tracked position is applied; one at or below it is a
duplicate and is dropped; one further ahead reveals a gap, which is filled by pulling the missing
range from the origin's feed (`events_since`) before going on. Each origin is applied in its own
transaction, so one failing origin never holds back the others.

Poison. An event that can never apply (a payload the fold cannot take, text PostgreSQL refuses)
would otherwise stop its origin for good: tracking stays before it, so every later event of that
origin is a gap whose pull brings the poison back. `receive(..., park=True)` (the consumer's last
attempt, catch-up and rebuilds) therefore applies a failing batch again one envelope at a time, each
in a SAVEPOINT, and *parks* every envelope that fails with a non-transient error: it is written to
`inbox_parked` with its reason, and tracking moves past it, in the same transaction as the effects
of the envelopes around it. Transient errors (the database or the feed unavailable, a deadlock, a
schema not migrated yet) are never parked: the whole origin's transaction rolls back and is retried
or left to catch-up, since they say nothing about the event.

How this keeps exactly-once: a parked event has been applied zero times, deliberately and visibly
(the table, the dead-letter queue with the reason, the log, the consumer's health), never "maybe".
Its row and the tracking move commit together, so there is no instant at which it is neither applied
nor parked; a redelivery or re-pull of it is at or below the tracked position, a duplicate dropped
like any other. After a fix an operator applies it with `replay_parked(origin, position)`, which
applies the envelope and deletes its parked row in one transaction (a concurrent second replay finds
no row): at most once by construction, and exactly once when the operator replays it. A replayed
event is applied after events of its origin that followed it; the 360 fold's rules commute across
origins but not always within one (a later rename wins), so the operator decides when to replay.
"""

from __future__ import annotations

import json
import logging
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import eventlet.patcher
import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras

log = logging.getLogger(__name__)

TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS inbox_tracking (
    origin text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    applied bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE IF NOT EXISTS inbox_parked (
    origin text NOT NULL,
    position bigint NOT NULL,
    event_id text NOT NULL,
    type text NOT NULL,
    reason text NOT NULL,
    envelope jsonb NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (origin, position)
);
"""

Envelope = dict[str, Any]
#: Applies envelopes (already ordered per origin, never duplicates) inside the caller's transaction.
ApplyBatch = Callable[[Any, list[Envelope]], None]
#: Pulls envelopes published by `origin` after `position`: (origin, position, limit) -> envelopes.
Fetch = Callable[[str, int, int], list[Envelope]]

#: Under eventlet `select.select` is green and, with a zero timeout, may answer before polling the
#: socket; the original one is a plain non-blocking syscall.
_select = eventlet.patcher.original("select").select


class FeedUnavailableError(Exception):
    """The origin's feed could not be read; the gap stays open and is repaired on a later pass."""


#: Errors that say "not now", never "not this event": the database or the network is unavailable
#: (psycopg2 puts lost connections, deadlocks, serialization failures, timeouts and shutdowns under
#: OperationalError), or the schema is not (yet) what this code expects (a deploy before migrating).
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    psycopg2.OperationalError,
    psycopg2.InterfaceError,
    psycopg2.errors.UndefinedTable,
    psycopg2.errors.UndefinedColumn,
    psycopg2.errors.InsufficientPrivilege,
    psycopg2.errors.ReadOnlySqlTransaction,
    FeedUnavailableError,
    OSError,
)


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` may go away by itself (retry later) rather than being the event's fault (park it)."""
    return isinstance(exc, TRANSIENT_ERRORS)


def connection_usable(conn: Any) -> bool:
    """Whether an idle psycopg2 (or psycopg 3) connection can be handed out: open, and not closed by
    the server.

    A server that restarts or terminates a backend closes the socket (after a FATAL message), which
    the client only learns on its next query. An idle connection has nothing to read, so a readable
    socket means it is dead: one syscall, no round trip.
    """
    if conn.closed:
        return False
    if conn.info.transaction_status != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
        return False
    try:
        readable, _, _ = _select([conn.fileno()], [], [], 0)
    except (OSError, ValueError):
        return False
    return not readable


def receive_by_origin(
    envelopes: Iterable[Envelope], receive_from: Callable[[str, list[Envelope], Outcome], None]
) -> Outcome:
    """Hand each origin's envelopes to `receive_from` on their own, so one failing origin never holds
    back the others; a gap the feed cannot fill yet defers the group, any other failure reports it
    (transient or not) for the consumer to retry or park. Shared by the read-side and policy inboxes."""
    outcome = Outcome()
    by_origin: dict[str, list[Envelope]] = {}
    for envelope in envelopes:
        by_origin.setdefault(envelope["origin"], []).append(envelope)
    for origin, group in by_origin.items():
        try:
            receive_from(origin, group, outcome)
        except FeedUnavailableError as exc:
            # Leave the gap open: these envelopes are acked, and pulled again from the feed by a later
            # batch or by catch-up.
            log.warning("gap in %s not repaired yet: %s", origin, exc, extra={"origin": origin})
            outcome.deferred += len(group)
        except Exception as exc:  # noqa: BLE001 - a failing handler is reported, never swallowed
            transient = is_transient(exc)
            log.log(logging.WARNING if transient else logging.ERROR, "applying events from %s failed: %s",
                    origin, exc, exc_info=not transient, extra={"origin": origin})
            outcome.failed.extend(Failure(envelope, _reason(exc), transient) for envelope in group)
    return outcome


class Failure(NamedTuple):
    """An envelope whose origin could not be applied this time, and why."""

    envelope: Envelope
    reason: str
    transient: bool


@dataclass
class Outcome:
    """What one call to Inbox.receive did."""

    applied: int = 0
    duplicates: int = 0
    pulled: int = 0
    deferred: int = 0
    failed: list[Failure] = field(default_factory=list)
    #: Envelopes that could never apply, parked (tracking moved past them), with the reason.
    parked: list[tuple[Envelope, str]] = field(default_factory=list)

    def add(self, earlier: Outcome) -> Outcome:
        """This outcome (of a retry) with the counts of an earlier attempt added; failures are this one's."""
        self.applied += earlier.applied
        self.duplicates += earlier.duplicates
        self.pulled += earlier.pulled
        self.deferred += earlier.deferred
        self.parked[:0] = earlier.parked
        return self


class Inbox:
    """Exactly-once, in-order application of envelopes to a read model in PostgreSQL."""

    def __init__(self, dsn: str, apply_batch: ApplyBatch, fetch: Fetch | None, pull_limit: int = 1000) -> None:
        self.dsn = dsn
        self.apply_batch = apply_batch
        self.fetch = fetch
        self.pull_limit = pull_limit
        self._conn: Any = None

    def connection(self) -> Any:
        """The inbox's connection, idle; a new one if the old one was closed (e.g. a database restart)."""
        if self._conn is not None and not connection_usable(self._conn):
            self.close()
            self._conn = None
        if self._conn is None:
            self._conn = psycopg2.connect(self.dsn)
        return self._conn

    def close(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()

    def positions(self) -> dict[str, int]:
        """The tracked position of every origin seen so far."""
        conn = self.connection()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT origin, position FROM inbox_tracking")
            return dict(cur.fetchall())

    def parked_count(self) -> int:
        """How many envelopes are parked, waiting for an operator."""
        conn = self.connection()
        with conn, conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM inbox_parked")
            return int(cur.fetchone()[0])

    def parked(self) -> list[dict[str, Any]]:
        """Every parked envelope with its reason, oldest first (what an operator looks at)."""
        conn = self.connection()
        with conn, conn.cursor() as cur:
            cur.execute(
                "SELECT origin, position, event_id, type, reason, envelope, parked_at FROM inbox_parked "
                "ORDER BY parked_at, origin, position"
            )
            return [
                {"origin": o, "position": p, "event_id": e, "type": t, "reason": r, "envelope": _decoded(env),
                 "parked_at": at}
                for o, p, e, t, r, env, at in cur.fetchall()
            ]

    def acts_on(self, envelope: Envelope) -> bool:
        """Whether this inbox uses the envelope's content (the read side uses every event's)."""
        return True

    def flush(self) -> None:
        """Nothing kept in memory: every position is recorded with its effects."""

    def receive(self, envelopes: Iterable[Envelope], park: bool = False) -> Outcome:
        """Apply a batch of envelopes from any origins, in any order, possibly repeated.

        With `park`, envelopes that fail with a non-transient error are parked and the rest of their
        origin is applied; without it, any failure leaves the whole origin's group for a retry.
        """
        return receive_by_origin(envelopes, lambda origin, group, outcome: self._receive_from(
            origin, group, outcome, park=park))

    def catch_up(self, origin: str, park: bool = True) -> Outcome:
        """Pull and apply everything `origin` published after the tracked position.

        Parks by default: catch-up is itself the late retry of whatever the queue could not apply.
        """
        outcome = Outcome()
        while True:
            before = outcome.applied + len(outcome.parked)
            self._receive_from(origin, [], outcome, pull_always=True, park=park)
            if outcome.applied + len(outcome.parked) == before:
                return outcome

    def replay_parked(self, origin: str, position: int) -> Envelope:
        """Apply a parked envelope (after its cause was fixed) and unpark it, in one transaction.

        Raises LookupError when nothing is parked there (never parked, or already replayed).
        """
        conn = self.connection()
        with conn, conn.cursor() as cur:
            # The origin's tracking row first, like every inbox transaction: one lock order, no deadlock.
            self._lock_position(cur, origin)
            cur.execute(
                "SELECT envelope FROM inbox_parked WHERE origin = %s AND position = %s FOR UPDATE", (origin, position)
            )
            row = cur.fetchone()
            if row is None:
                raise LookupError(f"nothing parked at {origin} position {position}")
            envelope = _decoded(row[0])
            self.apply_batch(cur, [envelope])
            cur.execute("DELETE FROM inbox_parked WHERE origin = %s AND position = %s", (origin, position))
            cur.execute(
                "UPDATE inbox_tracking SET applied = applied + 1, updated_at = now() WHERE origin = %s", (origin,)
            )
        log.info("replayed parked event %s of %s", position, origin, extra={"origin": origin})
        return envelope

    def _receive_from(
        self, origin: str, group: list[Envelope], outcome: Outcome, pull_always: bool = False, park: bool = False
    ) -> None:
        conn = self.connection()
        with conn, conn.cursor() as cur:
            tracked = self._lock_position(cur, origin)
            accepted: list[Envelope] = []
            pending = deque(sorted(group, key=lambda e: e["position"]))
            if pull_always:
                pulled = self._pull(origin, tracked)
                outcome.pulled += len(pulled)
                pending.extendleft(reversed(pulled))
            while pending:
                envelope = pending.popleft()
                if envelope["position"] <= tracked:
                    outcome.duplicates += 1
                elif envelope["previous"] == tracked:
                    accepted.append(envelope)
                    tracked = envelope["position"]
                else:
                    pulled = self._pull(origin, tracked)
                    outcome.pulled += len(pulled)
                    if not pulled or pulled[0]["position"] > envelope["position"]:
                        raise FeedUnavailableError(
                            f"{origin} feed has nothing after {tracked} up to {envelope['position']}"
                        )
                    pending.appendleft(envelope)
                    pending.extendleft(reversed(pulled))
            if not accepted:
                return
            if park:
                parked = self._apply(cur, accepted)
            else:
                self.apply_batch(cur, accepted)
                parked = []
            applied = len(accepted) - len(parked)
            cur.execute(
                "UPDATE inbox_tracking SET position = %s, applied = applied + %s, updated_at = now() "
                "WHERE origin = %s",
                (tracked, applied, origin),
            )
        outcome.applied += applied
        outcome.parked.extend(parked)

    def _apply(self, cur: Any, accepted: list[Envelope]) -> list[tuple[Envelope, str]]:
        """Apply `accepted`, parking each envelope that cannot apply; return those parked."""
        try:
            with _savepoint(cur):
                self.apply_batch(cur, accepted)
            return []
        except Exception as exc:  # noqa: BLE001 - transient ones go up; the rest are looked at one by one
            if is_transient(exc):
                raise
        parked = []
        for envelope in accepted:
            try:
                with _savepoint(cur):
                    self.apply_batch(cur, [envelope])
            except Exception as exc:  # noqa: BLE001 - parked with its reason, logged, dead-lettered by the caller
                if is_transient(exc):
                    raise
                reason = _reason(exc)
                self._park(cur, envelope, reason)
                parked.append((envelope, reason))
        return parked

    @staticmethod
    def _park(cur: Any, envelope: Envelope, reason: str) -> None:
        cur.execute(
            "INSERT INTO inbox_parked (origin, position, event_id, type, reason, envelope) "
            "VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT (origin, position) DO NOTHING",
            (envelope["origin"], envelope["position"], _text(envelope.get("event_id")), _text(envelope.get("type")),
             _text(reason), _storable(envelope)),
        )
        log.error("parked event %s of %s (%s): %s", envelope["position"], envelope["origin"],
                  _text(envelope.get("type")), reason, extra={"origin": envelope["origin"], "reason": reason})

    def _pull(self, origin: str, position: int) -> list[Envelope]:
        if self.fetch is None:
            raise FeedUnavailableError("this inbox has no feed to pull from")
        try:
            return self.fetch(origin, position, self.pull_limit)
        except Exception as exc:  # noqa: BLE001 - any transport failure means "not now"
            raise FeedUnavailableError(f"pulling {origin} after {position} failed: {exc}") from exc

    @staticmethod
    def _lock_position(cur: Any, origin: str) -> int:
        cur.execute("INSERT INTO inbox_tracking (origin) VALUES (%s) ON CONFLICT (origin) DO NOTHING", (origin,))
        cur.execute("SELECT position FROM inbox_tracking WHERE origin = %s FOR UPDATE", (origin,))
        return int(cur.fetchone()[0])


@contextmanager
def _savepoint(cur: Any) -> Iterator[None]:
    cur.execute("SAVEPOINT inbox_apply")
    try:
        yield
    except Exception as exc:
        if not is_transient(exc):  # a lost connection has no savepoint left to roll back to
            cur.execute("ROLLBACK TO SAVEPOINT inbox_apply")
        raise
    cur.execute("RELEASE SAVEPOINT inbox_apply")


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".strip()


def _text(value: Any) -> str:
    """`value` as text PostgreSQL accepts (no NUL, no lone surrogate): reasons quote bad input."""
    text = "" if value is None else str(value)
    return text.replace("\x00", "\\u0000").encode("utf-8", "backslashreplace").decode("utf-8")


def _storable(envelope: Envelope) -> Any:
    """The envelope as jsonb, losslessly. jsonb refuses \\u0000 and lone surrogates: such an envelope
    (typically the very reason it was parked) is kept as a JSON string holding its JSON text."""
    text = json.dumps(envelope, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return psycopg2.extras.Json(json.dumps(envelope))
    if "\\u0000" in text:
        return psycopg2.extras.Json(json.dumps(envelope))
    return psycopg2.extras.Json(envelope)


def _decoded(stored: Any) -> Envelope:
    return json.loads(stored) if isinstance(stored, str) else stored  # type: ignore[no-any-return]


def create_tracking_table(cur: Any) -> None:
    """Migration: the inbox tracking and parked-events tables, in the schema on the cursor's search_path."""
    cur.execute(TRACKING_DDL)
