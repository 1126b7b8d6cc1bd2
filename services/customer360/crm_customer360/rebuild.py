"""Rebuild the 360° view from zero: pull every origin's feed into fresh tables, then swap them in.

The rebuild fills schema `customer360_next` through the same Inbox and apply_batch as the live view
(so it cannot drift from it), in large pages. The swap happens in one transaction that locks the live
tracking table (live consumers wait), pulls the tail that arrived meanwhile, checks the new view is
at least as far along as the live one for every origin, and renames the schemas. Readers see the old
view or the new one, never half of either.

One rebuild at a time: a rebuild holds a PostgreSQL advisory lock (session level, on its own
connection, so it is released even if the process dies) for its whole run; a second one, from any
replica, is refused at once with RebuildRunningError (code `conflict`, HTTP 409) instead of dropping
the first one's schema under it.

An event that can never apply is parked in the rebuilt view as in the live one (crm_runtime.inbox),
so one poison event does not make every rebuild fail.

Every table of the read model is rebuilt (create_tables: customer_view, lead_view, timeline,
view_clock, and for merged customers customer_part, customer_merge, record_owner). The rebuilt view
takes the live view's clock, the instant its time-based stages are computed as of
(readmodel.advance_clock), so its rows equal the live ones: first once before the swap, then again
under the swap's locks should a refresh have moved the live clock meanwhile.
"""

from __future__ import annotations

import logging
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any

import psycopg2
from psycopg2 import sql

from crm_contracts.errors import ConflictError
from crm_customer360 import analytics_store, segments
from crm_customer360.readmodel import SCHEMA, advance_clock, apply_batch, create_indexes, create_tables, view_clock
from crm_runtime import config
from crm_runtime.inbox import Fetch, Inbox

log = logging.getLogger(__name__)

NEXT_SCHEMA = f"{SCHEMA}_next"
OLD_SCHEMA = f"{SCHEMA}_old"
#: The advisory lock a rebuild holds (same key space as the relays' locks: crc32 of a name).
LOCK_KEY = zlib.crc32(f"crm.{SCHEMA}.rebuild".encode())


class RebuildError(Exception):
    """The rebuild could not complete; the live view is untouched."""


class RebuildRunningError(ConflictError):
    """Another rebuild of the view is running; try again when it has finished."""


@dataclass
class RebuildReport:
    """What a rebuild did."""

    events: int = 0
    seconds: float = 0.0
    positions: dict[str, int] = field(default_factory=dict)

    @property
    def events_per_second(self) -> float:
        return self.events / self.seconds if self.seconds else 0.0


def rebuild(fetch: Fetch, origins: list[str], page: int = 5000) -> RebuildReport:
    """Rebuild the view from the feeds of `origins` and swap it in."""
    started = time.monotonic()
    admin = psycopg2.connect(config.postgres_dsn())
    try:
        with admin, admin.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))
            if not cur.fetchone()[0]:
                raise RebuildRunningError("a rebuild of the 360 view is already running; try again later")
        with admin, admin.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(NEXT_SCHEMA)))
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(NEXT_SCHEMA)))
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(NEXT_SCHEMA)))
            create_tables(cur, with_indexes=False)
            _set_logged(cur, False)
        with admin, admin.cursor() as cur:
            cur.execute(sql.SQL("SELECT origin, position FROM {}.inbox_tracking").format(sql.Identifier(SCHEMA)))
            seen = {origin for origin, position in cur.fetchall() if position > 0}
        fresh = Inbox(config.postgres_dsn(NEXT_SCHEMA), apply_batch, fetch, pull_limit=page)
        report = RebuildReport()
        try:
            for origin in origins:
                report.events += _pull_all(fresh, fetch, origin, page, required=origin in seen)
            with admin, admin.cursor() as cur:
                cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(NEXT_SCHEMA)))
                create_indexes(cur)
                _set_logged(cur, True)
                _take_live_clock(cur)
            with admin, admin.cursor() as cur:
                cur.execute(sql.SQL("LOCK TABLE {}.inbox_tracking IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(SCHEMA)))
                # After the tracking (the order apply_batch takes them in): no refresh moves it now.
                cur.execute(sql.SQL("LOCK TABLE {}.view_clock IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(SCHEMA)))
                for origin in origins:
                    report.events += _pull_all(fresh, fetch, origin, page, required=origin in seen)
                cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(NEXT_SCHEMA)))
                _take_live_clock(cur)
                cur.execute(sql.SQL("SELECT origin, position FROM {}.inbox_tracking").format(sql.Identifier(SCHEMA)))
                live = dict(cur.fetchall())
                report.positions = fresh.positions()
                behind = {o: p for o, p in live.items() if report.positions.get(o, 0) < p}
                if behind:
                    raise RebuildError(f"the rebuilt view is behind the live one for {behind}: origins unreachable?")
                cur.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(SCHEMA), sql.Identifier(OLD_SCHEMA)))
                cur.execute(sql.SQL("ALTER SCHEMA {} RENAME TO {}").format(
                    sql.Identifier(NEXT_SCHEMA), sql.Identifier(SCHEMA)))
                cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(OLD_SCHEMA)))
        finally:
            fresh.close()
    finally:
        admin.close()  # ends the session: the advisory lock goes with it
    report.seconds = time.monotonic() - started
    log.info("rebuilt the 360 view from %d events in %.1fs", report.events, report.seconds,
             extra={"count": report.events})
    return report


#: The tables a rebuild fills in bulk: unlogged while it does (no write-ahead log for rows rewritten page
#: after page), made logged (written to the log once) before the swap, or a database crash would empty
#: the view after it.
BULK_TABLES = ("customer_view", "lead_view", "timeline", "customer_search", "customer_part", "record_owner")


def _set_logged(cur: Any, logged: bool) -> None:
    """Make the rebuilt view's bulk tables (search_path) logged or unlogged; logged, with fresh planner
    statistics (the first reads after the swap plan on them)."""
    for table in BULK_TABLES:
        cur.execute(sql.SQL("ALTER TABLE {} SET {}").format(sql.Identifier(table),
                                                            sql.SQL("LOGGED" if logged else "UNLOGGED")))
    if logged:
        cur.execute(sql.SQL("ANALYZE {}").format(sql.SQL(", ").join(sql.Identifier(t) for t in BULK_TABLES)))


def _take_live_clock(cur: Any) -> None:
    """Move the rebuilt view's clock (search_path) to the live view's, re-deriving its stages; a no-op if equal."""
    cur.execute(sql.SQL("SELECT as_of FROM {}.view_clock").format(sql.Identifier(SCHEMA)))
    row = cur.fetchone()
    live = row[0] if row else None
    if live is not None and view_clock(cur) != live.astimezone(UTC).isoformat():
        advance_clock(cur, live)
    # The analytics' models too, the same way (the rows follow from the views and the newest model).
    analytics_store.take_live_models(cur, SCHEMA)
    segments.take_live_segments(cur, SCHEMA)  # saved queries, not facts: copied, not folded


def _pull_all(inbox: Inbox, fetch: Fetch, origin: str, page: int, required: bool) -> int:
    """Apply everything `origin` published; an origin the live view has events from must answer.

    The next page is requested before the current one is applied, so the origin reads and translates
    while this process writes (two cores busy instead of one).
    """
    applied = 0
    with ThreadPoolExecutor(1) as prefetcher:
        try:
            upcoming = prefetcher.submit(fetch, origin, inbox.positions().get(origin, 0), page)
            while envelopes := upcoming.result():
                upcoming = prefetcher.submit(fetch, origin, envelopes[-1]["position"], page)
                outcome = inbox.receive(envelopes, park=True)
                if outcome.failed or outcome.deferred:
                    reason = outcome.failed[0].reason if outcome.failed else "a gap could not be repaired"
                    raise RebuildError(f"applying {origin} events failed: {reason}")
                if outcome.parked:
                    log.warning("rebuild parked %d %s events that cannot apply", len(outcome.parked), origin,
                                extra={"origin": origin, "count": len(outcome.parked)})
                applied += outcome.applied
        except RebuildError:
            raise
        except Exception as exc:  # noqa: BLE001 - any failure aborts the rebuild, leaving the live view
            if not required:
                log.warning("origin %s not reachable and never seen: rebuilt without it (%s)", origin, exc)
                return 0
            raise RebuildError(f"could not read the {origin} feed: {exc}") from exc
    return applied


def rebuild_report(report: RebuildReport) -> dict[str, Any]:
    return {"events": report.events, "seconds": round(report.seconds, 3),
            "events_per_second": round(report.events_per_second, 1), "positions": report.positions}
