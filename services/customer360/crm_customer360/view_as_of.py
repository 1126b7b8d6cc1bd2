"""The 360 view of one customer as it stood at a past instant: the fold of the customer's stored events
that occurred at or before it.

The read model keeps every event about a customer in `timeline` (origin, position, type, occurred_at and
the whole payload; lead events by lead id, with the customer id once the lead is linked), so the view as
of T is `view.fold_batch` over those rows with occurred_at <= T, in each origin's order, finished with the
clock at T. The fold is pure and order-independent across origins, so this is what the live view showed
at T had its clock stood at T, and what a rebuild from the events up to T gives. Analytics are computed
as of T against the model of the base in force at T (the newest estimated at or before T).

Merges count as they stood at T (`customer_merge` keeps when each link was made and undone): before a
merge the customers show separately, each its own part; while merged, the survivor shows the parts
merged into it (`view.show`, as the live view does) and an absorbed customer is MovedError to the
survivor of that time. Each row's customer id is the part it was folded into, so the parts fold again
from their own rows.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm_contracts.errors import MovedError
from crm_customer360 import analytics, analytics_store
from crm_customer360 import view as views
from crm_customer360.readmodel import TIMELINE_ENTRY_SQL, TIMELINE_ORDER_SQL, TIMELINE_PAGE


def customer_360_as_of(cur: Any, customer_id: str, instant: datetime,
                       config: analytics.AnalyticsConfig = analytics_store.CONFIG) -> dict[str, Any] | None:
    """The 360 answer of `customer_id` as of `instant` (aware), or None if nothing about them happened by then.
    Raises MovedError if the customer was merged into another at that instant."""
    key, instant = views.key(customer_id), instant.astimezone(UTC)
    links = links_at(cur, instant)
    survivor = views.root_of(links, key)
    if survivor != key:
        raise MovedError(key, survivor)
    members = views.members_of(links, key)
    cur.execute("SELECT lead_id::text FROM lead_view WHERE customer_id = ANY(%s::uuid[])", (members,))
    lead_ids = [lead_id for (lead_id,) in cur.fetchall()]
    cur.execute(
        "SELECT origin, position, event_id::text, type, occurred_at, customer_id::text, lead_id::text, payload "
        "FROM timeline WHERE (customer_id = ANY(%s::uuid[]) OR lead_id = ANY(%s::uuid[])) AND occurred_at <= %s "
        "ORDER BY origin, position",
        (members, lead_ids, instant),
    )
    envelopes = [
        {"origin": origin, "position": position, "event_id": event_id, "type": kind,
         "occurred_at": at.astimezone(UTC).isoformat(), "customer_id": None if lead_id else cid, "payload": payload}
        for origin, position, event_id, kind, at, cid, lead_id, payload in cur.fetchall()
    ]
    parts: dict[str, views.View] = {}
    views.fold_batch(parts, {}, envelopes)
    if key not in parts:
        return None
    clock = instant.astimezone(UTC).isoformat()
    doc = views.show(key, {member: parts[member] for member in members if member in parts}, clock)
    # Built by PostgreSQL as the live answer's timeline is (readmodel.CUSTOMER_360_SQL), instants included.
    cur.execute(
        f"SELECT coalesce(jsonb_agg({TIMELINE_ENTRY_SQL} ORDER BY t.occurred_at DESC, t.origin, t.position DESC), "
        "'[]'::jsonb) FROM (SELECT origin, position, event_id, type, occurred_at, summary, customer_id FROM timeline "
        f"WHERE customer_id = ANY(%s::uuid[]) AND occurred_at <= %s ORDER BY {TIMELINE_ORDER_SQL} LIMIT %s) AS t",
        (members, instant, TIMELINE_PAGE),
    )
    timeline = cur.fetchone()[0]
    model = analytics_store.model_in_force(cur, instant)
    figures = (analytics.customer_analytics(analytics.facts_of(doc, config), model, config, as_of=instant)
               if model is not None else None)
    return {**doc, "timeline": timeline, "timeline_total": sum(doc["events"].values()), "analytics": figures,
            "as_of": clock}


def links_at(cur: Any, instant: datetime) -> views.Links:
    """The merges in force at `instant`: absorbed customer -> its survivor then (view.apply_merge's links)."""
    cur.execute("SELECT customer_id::text, survivor_id::text, merge_id, merged_at FROM customer_merge "
                "WHERE merged_at <= %s AND (unmerged_at IS NULL OR unmerged_at > %s)", (instant, instant))
    return {absorbed: {"survivor_id": survivor, "merge_id": merge_id, "merged_at": at.astimezone(UTC).isoformat()}
            for absorbed, survivor, merge_id, at in cur.fetchall()}
