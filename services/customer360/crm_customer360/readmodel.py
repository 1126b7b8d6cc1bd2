"""The 360° read model in PostgreSQL: tables, the batch upsert the inbox calls, and queries.

Every statement uses unqualified table names: the connection's search_path chooses the schema, so
the live view (schema `customer360`) and a rebuild (schema `customer360_next`) share this code.
"""

from __future__ import annotations

from typing import Any

from psycopg2.extras import Json, execute_values

from crm_customer360 import view as views
from crm_runtime.inbox import create_tracking_table

SCHEMA = "customer360"

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS customer_view (
    customer_id uuid PRIMARY KEY,
    name text,
    email text,
    lifecycle_stage text,
    last_activity_at timestamptz,
    doc jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    origin text NOT NULL,
    position bigint NOT NULL,
    customer_id uuid NOT NULL,
    event_id uuid NOT NULL,
    type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    summary text NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (origin, position)
);
"""
#: Search and timeline indexes. A rebuild creates them after its bulk load: filling trigram (GIN)
#: indexes row by row costs more than building them once.
INDEXES_DDL = """
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE INDEX IF NOT EXISTS customer_view_name_trgm ON customer_view USING gin (lower(name) public.gin_trgm_ops);
CREATE INDEX IF NOT EXISTS customer_view_email_trgm ON customer_view USING gin (lower(email) public.gin_trgm_ops);
CREATE INDEX IF NOT EXISTS timeline_customer ON timeline (customer_id, occurred_at DESC);
"""

TIMELINE_PAGE = 50


def create_tables(cur: Any, with_indexes: bool = True) -> None:
    """Migration (`crm-migrate customer360`): the read model and its inbox tracking."""
    cur.execute(TABLES_DDL)
    if with_indexes:
        create_indexes(cur)
    create_tracking_table(cur)


def create_indexes(cur: Any) -> None:
    cur.execute(INDEXES_DDL)


def apply_batch(cur: Any, envelopes: list[dict[str, Any]]) -> None:
    """Fold a batch of envelopes into the views and the timeline, in one round trip per table."""
    about_customers = [e for e in envelopes if e.get("customer_id")]
    if not about_customers:
        return
    ids = sorted({e["customer_id"] for e in about_customers})
    cur.execute(
        "SELECT customer_id::text, doc FROM customer_view WHERE customer_id = ANY(%s::uuid[]) FOR UPDATE", (ids,)
    )
    current: dict[str, dict[str, Any]] = dict(cur.fetchall())  # fresh objects, ours to fold into
    for envelope in about_customers:
        customer_id = envelope["customer_id"]
        if customer_id not in current:
            current[customer_id] = views.empty_view(customer_id)
        views.fold_into(current[customer_id], envelope)
    execute_values(
        cur,
        "INSERT INTO customer_view (customer_id, name, email, lifecycle_stage, last_activity_at, doc) VALUES %s "
        "ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, "
        "lifecycle_stage = EXCLUDED.lifecycle_stage, last_activity_at = EXCLUDED.last_activity_at, doc = EXCLUDED.doc",
        [
            (cid, doc["profile"].get("name"), doc["profile"].get("email"), doc["lifecycle_stage"],
             doc["last_activity_at"], Json(doc))
            for cid, doc in ((cid, current[cid]) for cid in ids)
        ],
        page_size=1000,
    )
    execute_values(
        cur,
        "INSERT INTO timeline (origin, position, customer_id, event_id, type, occurred_at, summary, payload) "
        "VALUES %s ON CONFLICT (origin, position) DO NOTHING",
        [
            (e["origin"], e["position"], e["customer_id"], e["event_id"], e["type"], e["occurred_at"],
             views.timeline_summary(e), Json(e["payload"]))
            for e in about_customers
        ],
        page_size=1000,
    )


def customer_360(cur: Any, customer_id: str) -> dict[str, Any] | None:
    """One customer's 360° record with the newest timeline entries, or None."""
    cur.execute("SELECT doc FROM customer_view WHERE customer_id = %s", (customer_id,))
    row = cur.fetchone()
    if row is None:
        return None
    cur.execute(
        "SELECT origin, position, event_id::text, type, occurred_at, summary FROM timeline "
        "WHERE customer_id = %s ORDER BY occurred_at DESC, origin, position DESC LIMIT %s",
        (customer_id, TIMELINE_PAGE),
    )
    timeline = [
        {"origin": o, "position": p, "event_id": eid, "type": t, "occurred_at": at.isoformat(), "summary": s}
        for o, p, eid, t, at, s in cur.fetchall()
    ]
    doc = row[0]
    return {**doc, "timeline": timeline, "timeline_total": sum(doc["events"].values())}


def search(cur: Any, query: str, page: int, page_size: int) -> dict[str, Any]:
    """Customers whose name or email contains `query` (case-insensitive), a page at a time."""
    literal = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    pattern = f"%{literal}%"
    where = "lower(name) LIKE %(p)s OR lower(email) LIKE %(p)s" if query else "TRUE"
    cur.execute(f"SELECT count(*) FROM customer_view WHERE {where}", {"p": pattern})
    total = cur.fetchone()[0]
    cur.execute(
        f"SELECT customer_id::text, name, email, lifecycle_stage, last_activity_at FROM customer_view "
        f"WHERE {where} ORDER BY name, customer_id LIMIT %(limit)s OFFSET %(offset)s",
        {"p": pattern, "limit": page_size, "offset": (page - 1) * page_size},
    )
    items = [
        {"customer_id": cid, "name": name, "email": email, "lifecycle_stage": stage,
         "last_activity_at": at.isoformat() if at else None}
        for cid, name, email, stage, at in cur.fetchall()
    ]
    return {"items": items, "page": page, "page_size": page_size, "total": total}


def all_rows(cur: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table, in a stable order (to compare a rebuild with the live view)."""
    tables = {}
    for table, order in (("customer_view", "customer_id"), ("timeline", "origin, position")):
        cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
        tables[table] = cur.fetchall()
    return tables
