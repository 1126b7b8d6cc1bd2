"""The 360° read model in PostgreSQL: tables, the batch upsert the inbox calls, and queries.

Every statement uses unqualified table names: the connection's search_path chooses the schema, so
the live view (schema `customer360`) and a rebuild (schema `customer360_next`) share this code.
"""

from __future__ import annotations

from copy import deepcopy
from datetime import UTC, datetime
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
CREATE TABLE IF NOT EXISTS lead_view (
    lead_id uuid PRIMARY KEY,
    customer_id uuid,
    doc jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    origin text NOT NULL,
    position bigint NOT NULL,
    customer_id uuid,
    lead_id uuid,
    event_id uuid NOT NULL,
    type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    summary text NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (origin, position)
);
-- Views migrated from the first version: a lead event's row has no customer until its lead is linked.
ALTER TABLE timeline ADD COLUMN IF NOT EXISTS lead_id uuid;
ALTER TABLE timeline ALTER COLUMN customer_id DROP NOT NULL;
CREATE TABLE IF NOT EXISTS view_clock (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    as_of timestamptz
);
INSERT INTO view_clock (one, as_of) VALUES (true, NULL) ON CONFLICT (one) DO NOTHING;
"""
#: Search and timeline indexes. A rebuild creates them after its bulk load: filling trigram (GIN)
#: indexes row by row costs more than building them once.
INDEXES_DDL = """
CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public;
CREATE INDEX IF NOT EXISTS customer_view_name_trgm ON customer_view USING gin (lower(name) public.gin_trgm_ops);
CREATE INDEX IF NOT EXISTS customer_view_email_trgm ON customer_view USING gin (lower(email) public.gin_trgm_ops);
CREATE INDEX IF NOT EXISTS timeline_customer ON timeline (customer_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS timeline_lead ON timeline (lead_id) WHERE lead_id IS NOT NULL;
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
    """Fold a batch of envelopes into the views, the leads and the timeline, in one round trip per table.

    Safe with any number of replicas: each row is locked before it is read, even one seen for the
    first time. Rows that do not exist yet are first inserted as empty placeholders (ON CONFLICT DO
    NOTHING); a second writer of the same new row then waits on the first one's insert until it
    commits, and folds on top of its row instead of folding from an empty one and overwriting it (a
    lost update, for good since tracking has moved).

    No deadlock: every transaction takes its origin's tracking row first (the inbox), then the view
    clock (shared), then its leads' rows in lead id order, then its customers' rows in customer id
    order, both when inserting placeholders and when locking with FOR UPDATE (ORDER BY: PostgreSQL
    locks rows in the sorted order). The customers a lead links to are known once its row is locked,
    before any customer row is taken. Were a deadlock reported anyway, it is a transient error: the
    inbox rolls the origin back and retries it.

    Lead events (no customer id) are folded into `lead_view`; once customer.lead_linked says which
    customer a lead became, in either order of arrival, the lead is shown in that customer's view and
    its timeline rows get the customer id (view.py's docstring tells the whole rule).
    """
    lead_ids = sorted({lead_id for e in envelopes if (lead_id := views.lead_id_of(e)) is not None})
    direct = {views.key(e["customer_id"]) for e in envelopes
              if e.get("customer_id") and not (e["type"] in views.LEAD_EVENTS and views.lead_id_of(e))}
    if not lead_ids and not direct:
        return  # nothing about a customer or a lead: campaigns, FAQ articles, types unknown here
    clock = _clock(cur, lock="FOR SHARE")
    leads = {lead_id: {**views.empty_lead(lead_id), **doc}
             for lead_id, doc in _lock(cur, "lead_view", "lead_id", lead_ids)}
    linked_before = {lead_id: lead["customer_id"] for lead_id, lead in leads.items()}
    customer_ids = sorted(direct | {c for c in linked_before.values() if c})
    # A row folded by an older version lacks newer fields: they start empty (a rebuild fills them).
    customers = {cid: {**views.empty_view(cid), **doc}
                 for cid, doc in _lock(cur, "customer_view", "customer_id", customer_ids)}
    touched = views.fold_batch(customers, leads, envelopes)
    for cid in touched:
        views.finish(customers[cid], clock)
    if touched:
        execute_values(
            cur,
            "INSERT INTO customer_view (customer_id, name, email, lifecycle_stage, last_activity_at, doc) VALUES %s "
            "ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, "
            "lifecycle_stage = EXCLUDED.lifecycle_stage, last_activity_at = EXCLUDED.last_activity_at, "
            "doc = EXCLUDED.doc",
            [_customer_row(cid, customers[cid]) for cid in sorted(touched)],
            page_size=1000,
        )
    if leads:
        execute_values(
            cur,
            "INSERT INTO lead_view (lead_id, customer_id, doc) VALUES %s "
            "ON CONFLICT (lead_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, doc = EXCLUDED.doc",
            [(lead_id, lead["customer_id"], Json(lead)) for lead_id, lead in sorted(leads.items())],
            page_size=1000,
        )
    rows = []
    for e in envelopes:
        lead_id = views.lead_id_of(e) if e["type"] in views.LEAD_EVENTS else None
        customer_id = leads[lead_id]["customer_id"] if lead_id else e.get("customer_id")
        if lead_id or customer_id:
            rows.append((e["origin"], e["position"], customer_id, lead_id, e["event_id"], e["type"],
                         e["occurred_at"], views.timeline_summary(e), Json(e["payload"])))
    execute_values(
        cur,
        "INSERT INTO timeline (origin, position, customer_id, lead_id, event_id, type, occurred_at, summary, payload) "
        "VALUES %s ON CONFLICT (origin, position) DO NOTHING",
        rows,
        page_size=1000,
    )
    # The lead's events that came before its link reach the customer's timeline now.
    newly_linked = [(lead["customer_id"], lead_id) for lead_id, lead in sorted(leads.items())
                    if lead["customer_id"] and not linked_before[lead_id]]
    if newly_linked:
        execute_values(
            cur,
            "UPDATE timeline SET customer_id = link.customer_id::uuid FROM (VALUES %s) AS link (customer_id, lead_id) "
            "WHERE timeline.lead_id = link.lead_id::uuid AND timeline.customer_id IS NULL",
            newly_linked,
        )


def advance_clock(cur: Any, as_of: datetime, page: int = 1000) -> int:
    """Move the view's clock forward to `as_of` (never back) and re-derive every customer's stage as of it.

    Time-based stages (at risk, churned) change with time alone; the fold never reads the wall clock,
    so this periodic refresh is what moves them, and the instant it used is stored with the view (a
    rebuild copies it, so rebuilt rows equal live ones). Locks the clock, then customers in id order,
    as apply_batch does. Returns how many customers changed.
    """
    current = _clock(cur, lock="FOR UPDATE")
    instant = max(filter(None, [_instant(current), as_of]))
    cur.execute("UPDATE view_clock SET as_of = %s", (instant,))
    clock = _clock(cur)
    changed, after = 0, None
    while True:
        cur.execute(
            "SELECT customer_id::text, doc FROM customer_view "
            "WHERE %(after)s::uuid IS NULL OR customer_id > %(after)s::uuid "
            "ORDER BY customer_id LIMIT %(page)s FOR UPDATE",
            {"after": after, "page": page},
        )
        found = cur.fetchall()
        if not found:
            return changed
        updates = []
        for cid, doc in found:
            if not doc:
                continue
            fresh = deepcopy({**views.empty_view(cid), **doc})  # nested values too: `doc` is the "before"
            views.finish(fresh, clock)
            if fresh != doc:
                updates.append(_customer_row(cid, fresh))
        if updates:
            execute_values(
                cur,
                "UPDATE customer_view SET lifecycle_stage = u.stage, doc = u.doc::jsonb "
                "FROM (VALUES %s) AS u (customer_id, name, email, stage, last_activity_at, doc) "
                "WHERE customer_view.customer_id = u.customer_id::uuid",
                updates,
            )
        changed += len(updates)
        after = found[-1][0]


def view_clock(cur: Any) -> str | None:
    """The instant the view's time-based stages were last refreshed as of (ISO 8601, UTC), or None."""
    return _clock(cur)


def _clock(cur: Any, lock: str = "") -> str | None:
    cur.execute(f"SELECT as_of FROM view_clock {lock}")
    row = cur.fetchone()
    return row[0].astimezone(UTC).isoformat() if row and row[0] else None


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _lock(cur: Any, table: str, key: str, ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Lock the rows `ids` of `table` (placeholders for new ones, then FOR UPDATE), in id order."""
    if not ids:
        return []
    cur.execute(
        f"INSERT INTO {table} ({key}, doc) SELECT id, '{{}}'::jsonb FROM unnest(%s::uuid[]) AS id "
        f"ORDER BY id ON CONFLICT ({key}) DO NOTHING",
        (ids,),
    )
    cur.execute(f"SELECT {key}::text, doc FROM {table} WHERE {key} = ANY(%s::uuid[]) ORDER BY {key} FOR UPDATE", (ids,))
    return cur.fetchall()  # fresh objects, ours to fold into; a placeholder ({}) is a row seen for the first time


def _customer_row(cid: str, doc: dict[str, Any]) -> tuple[Any, ...]:
    return (cid, doc["profile"].get("name"), doc["profile"].get("email"), doc["lifecycle_stage"],
            doc["last_activity_at"], Json(doc))


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
    for table, order in (("customer_view", "customer_id"), ("lead_view", "lead_id"), ("timeline", "origin, position"),
                         ("view_clock", "one")):
        cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
        tables[table] = cur.fetchall()
    return tables
