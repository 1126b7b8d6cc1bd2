"""The cost of the analytics on the 360 view: refresh (the base's model and every customer's figures) for
a generated base, and reads of a 360 view with its analytics, live and as of a past instant.

The base is tests/support/history.py's seeded history (default 10,000 customers over two years), folded by
the view's own fold and loaded straight into a schema of its own (the inbox is not what is measured
here; `bench.reads` measures apply). Beside each read of the 360 view (readmodel.customer_360: the view,
its analytics and its newest timeline page) the same customers' bare view rows are read, the same-run
baseline of what the analytics and timeline add. `python -m bench.analytics [customers]` prints the figures
as JSON; `analytics_phase(settings)` is the phase `python -m bench` runs (10,000 customers; --quick 300).
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import psycopg2
from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from bench.common import Settings, ensure_database, log
from crm_customer360 import analytics_store, readmodel
from crm_customer360 import view as views
from crm_customer360.view_as_of import customer_360_as_of
from crm_runtime import config
from tests.support.history import generate

#: Customers of the generated base (the issue's 10k) and 360 reads timed, per run; --quick: a smoke test.
CUSTOMERS, READS = 10_000, 300
QUICK_CUSTOMERS, QUICK_READS = 300, 50


def analytics_phase(settings: Settings, customers: int | None = None) -> dict[str, Any]:
    """The bench phase: `measure` in the bench database (CUSTOMERS, or QUICK_CUSTOMERS with --quick)."""
    ensure_database(settings)
    default, reads = (QUICK_CUSTOMERS, QUICK_READS) if settings.quick else (CUSTOMERS, READS)
    return measure(customers or default, reads, settings.dsn())


def measure(customers: int = CUSTOMERS, reads: int = READS, dsn: str | None = None) -> dict[str, Any]:
    """Figures of one run: seconds to refresh, read latencies p50/p99 in ms (with analytics, as of a past
    instant, and the bare view row), in the database of `dsn` (default: the environment's)."""
    log(f"  analytics: generating {customers:,} customers' history")
    history = generate(customers, seed=3)
    folded: dict[str, Any] = {}
    views.fold_batch(folded, {}, history.envelopes)
    for doc in folded.values():
        views.finish(doc)
    schema = f"bench_analytics_{uuid.uuid4().hex[:8]}"
    conn = psycopg2.connect(dsn or config.postgres_dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            readmodel.create_tables(cur)
            log(f"  analytics: loading {len(folded):,} views and {len(history.envelopes):,} timeline rows")
            _load(cur, folded, history.envelopes)
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            log("  analytics: refreshing")
            started = time.perf_counter()
            analytics_store.refresh(cur, history.as_of)
            refresh = time.perf_counter() - started
        ids = list(folded)[:reads]
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(schema)))
            live = _timed(lambda cid: readmodel.customer_360(cur, cid), ids)
            past = datetime(2026, 6, 1, tzinfo=UTC)
            then = _timed(lambda cid: customer_360_as_of(cur, cid, past), ids)
            bare = _timed(lambda cid: _view_row(cur, cid), ids)
    finally:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        conn.close()
    return {"customers": customers, "events": len(history.envelopes), "refresh_seconds": round(refresh, 2),
            "refresh_per_second": round(customers / refresh, 1) if refresh else None,
            "reads": len(ids), "read_360_ms": live, "read_360_as_of_ms": then, "read_view_row_ms": bare}


def _view_row(cur: Any, customer_id: str) -> Any:
    """The baseline read: one customer's view document by its key, nothing joined."""
    cur.execute("SELECT doc FROM customer_view WHERE customer_id = %s", (customer_id,))
    return cur.fetchone()


def _load(cur: Any, folded: dict[str, Any], envelopes: list[dict[str, Any]]) -> None:
    execute_values(cur, "INSERT INTO customer_view (customer_id, name, email, lifecycle_stage, last_activity_at, doc) "
                   "VALUES %s", [(cid, d["profile"].get("name"), d["profile"].get("email"), d["lifecycle_stage"],
                                  d["last_activity_at"], Json(d)) for cid, d in folded.items()], page_size=1000)
    execute_values(cur, "INSERT INTO timeline (origin, position, customer_id, lead_id, event_id, type, occurred_at, "
                   "summary, payload) VALUES %s",
                   [(e["origin"], e["position"], e["customer_id"], None, e["event_id"], e["type"], e["occurred_at"],
                     views.timeline_summary(e), Json(e["payload"])) for e in envelopes], page_size=2000)


def _timed(read: Any, ids: list[str]) -> dict[str, float]:
    took = []
    for cid in ids:
        started = time.perf_counter()
        read(cid)
        took.append((time.perf_counter() - started) * 1000)
    took.sort()
    return {"p50": round(took[len(took) // 2], 2), "p99": round(took[max(0, int(len(took) * 0.99) - 1)], 2)}


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]) if len(sys.argv) > 1 else 10_000), indent=2))
