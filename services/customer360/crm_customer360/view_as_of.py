"""The 360 view of one customer as it stood at a past instant: the fold of the customer's stored events
that occurred at or before it.

The read model keeps every event about a customer in `timeline` (origin, position, type, occurred_at and
the whole payload; lead events by lead id, with the customer id once the lead is linked), so the view as
of T is `view.fold_batch` over those rows with occurred_at <= T, in each origin's order, finished with the
clock at T. The fold is pure and order-independent across origins, so this is what the live view showed
at T had its clock stood at T, and what a rebuild from the events up to T gives. Analytics are computed
as of T against the model of the base in force at T (the newest estimated at or before T).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from crm_customer360 import analytics, analytics_store
from crm_customer360 import view as views
from crm_customer360.readmodel import TIMELINE_PAGE


def customer_360_as_of(cur: Any, customer_id: str, instant: datetime,
                       config: analytics.AnalyticsConfig = analytics_store.CONFIG) -> dict[str, Any] | None:
    """The 360 answer of `customer_id` as of `instant` (aware), or None if nothing about them happened by then."""
    key, instant = views.key(customer_id), instant.astimezone(UTC)
    cur.execute("SELECT lead_id::text FROM lead_view WHERE customer_id = %s", (key,))
    lead_ids = [lead_id for (lead_id,) in cur.fetchall()]
    cur.execute(
        "SELECT origin, position, event_id::text, type, occurred_at, customer_id::text, lead_id::text, payload "
        "FROM timeline WHERE (customer_id = %s OR lead_id = ANY(%s::uuid[])) AND occurred_at <= %s "
        "ORDER BY origin, position",
        (key, lead_ids, instant),
    )
    envelopes = [
        {"origin": origin, "position": position, "event_id": event_id, "type": kind,
         "occurred_at": at.astimezone(UTC).isoformat(), "customer_id": None if lead_id else cid, "payload": payload}
        for origin, position, event_id, kind, at, cid, lead_id, payload in cur.fetchall()
    ]
    customers: dict[str, views.View] = {}
    views.fold_batch(customers, {}, envelopes)
    doc = customers.get(key)
    if doc is None:
        return None
    clock = instant.astimezone(UTC).isoformat()
    views.finish(doc, clock)
    # Built by PostgreSQL as the live answer's timeline is (readmodel.CUSTOMER_360_SQL), instants included.
    cur.execute(
        "SELECT coalesce(jsonb_agg(jsonb_build_object('origin', t.origin, 'position', t.position, "
        "'event_id', t.event_id, 'type', t.type, 'occurred_at', t.occurred_at, 'summary', t.summary) "
        "ORDER BY t.occurred_at DESC, t.origin, t.position DESC), '[]'::jsonb) "
        "FROM (SELECT origin, position, event_id, type, occurred_at, summary FROM timeline "
        "WHERE customer_id = %s AND occurred_at <= %s ORDER BY occurred_at DESC, origin, position DESC LIMIT %s) AS t",
        (key, instant, TIMELINE_PAGE),
    )
    timeline = cur.fetchone()[0]
    model = analytics_store.model_in_force(cur, instant)
    figures = (analytics.customer_analytics(analytics.facts_of(doc, config), model, config, as_of=instant)
               if model is not None else None)
    return {**doc, "timeline": timeline, "timeline_total": sum(doc["events"].values()), "analytics": figures,
            "as_of": clock}
