"""The inbox: applies integration events exactly once, in each origin's order (guarantee 4).

Per origin it tracks the position of the last applied event, in the same PostgreSQL transaction as
the effect. An envelope whose `previous` is the tracked position is applied; one at or below it is a
duplicate and is dropped; one further ahead reveals a gap, which is filled by pulling the missing
range from the origin's feed (`events_since`) before going on. Each origin is applied in its own
transaction, so one failing origin never holds back the others.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
import psycopg2.extras

log = logging.getLogger(__name__)

TRACKING_DDL = """
CREATE TABLE IF NOT EXISTS inbox_tracking (
    origin text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    applied bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""

Envelope = dict[str, Any]
#: Applies envelopes (already ordered per origin, never duplicates) inside the caller's transaction.
ApplyBatch = Callable[[Any, list[Envelope]], None]
#: Pulls envelopes published by `origin` after `position`: (origin, position, limit) -> envelopes.
Fetch = Callable[[str, int, int], list[Envelope]]


class FeedUnavailableError(Exception):
    """The origin's feed could not be read; the gap stays open and is repaired on a later pass."""


@dataclass
class Outcome:
    """What one call to Inbox.receive did."""

    applied: int = 0
    duplicates: int = 0
    pulled: int = 0
    deferred: int = 0
    failed: list[tuple[Envelope, str]] = field(default_factory=list)


class Inbox:
    """Exactly-once, in-order application of envelopes to a read model in PostgreSQL."""

    def __init__(self, dsn: str, apply_batch: ApplyBatch, fetch: Fetch | None, pull_limit: int = 1000) -> None:
        self.dsn = dsn
        self.apply_batch = apply_batch
        self.fetch = fetch
        self.pull_limit = pull_limit
        self._conn: Any = None

    def connection(self) -> Any:
        if self._conn is None or self._conn.closed:
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

    def receive(self, envelopes: Iterable[Envelope]) -> Outcome:
        """Apply a batch of envelopes from any origins, in any order, possibly repeated."""
        outcome = Outcome()
        by_origin: dict[str, list[Envelope]] = {}
        for envelope in envelopes:
            by_origin.setdefault(envelope["origin"], []).append(envelope)
        for origin, group in by_origin.items():
            try:
                self._receive_from(origin, group, outcome)
            except FeedUnavailableError as exc:
                # Leave the gap open: these envelopes are acked, and pulled again from the feed
                # by a later batch or by catch_up.
                log.warning("gap in %s not repaired yet: %s", origin, exc, extra={"origin": origin})
                outcome.deferred += len(group)
            except Exception as exc:  # noqa: BLE001 - a failing handler is reported, never swallowed
                self.connection().rollback()
                log.exception("applying events from %s failed", origin, extra={"origin": origin})
                outcome.failed.extend((envelope, f"{type(exc).__name__}: {exc}") for envelope in group)
        return outcome

    def catch_up(self, origin: str) -> Outcome:
        """Pull and apply everything `origin` published after the tracked position."""
        outcome = Outcome()
        while True:
            before = outcome.applied
            self._receive_from(origin, [], outcome, pull_always=True)
            if outcome.applied == before:
                return outcome

    def _receive_from(self, origin: str, group: list[Envelope], outcome: Outcome, pull_always: bool = False) -> None:
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
            if accepted:
                self.apply_batch(cur, accepted)
                cur.execute(
                    "UPDATE inbox_tracking SET position = %s, applied = applied + %s, updated_at = now() "
                    "WHERE origin = %s",
                    (tracked, len(accepted), origin),
                )
            outcome.applied += len(accepted)

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


def create_tracking_table(cur: Any) -> None:
    """Migration: the inbox tracking table, in the schema on the cursor's search_path."""
    cur.execute(TRACKING_DDL)
