"""The analytics (crm_customer360.analytics) in the 360 read model: the base's models with the instant each
was estimated as of, one row of figures per customer, and the queries on them.

When figures change, and why a rebuild equals the live view:
- `refresh(cur, as_of)` (a leader timer, or the admin endpoint) estimates the model of the whole base as
  of `as_of` from every customer's view, stores it (`analytics_model`, one row per instant: the history of
  models, so the 360 view as of a past date is judged against the model then in force) and recomputes
  every customer's row against it;
- `apply(cur, docs)` (readmodel.apply_batch, in the same transaction as the customers' views) recomputes
  the rows of the customers whose events arrived, against the newest model;
- a rebuild copies the live models (`take_live_models`, as it copies the view's clock) and recomputes
  every row from the rebuilt views: each row is a pure function of the customer's view and the newest
  model, so it equals the live one.
Before the first refresh there is no model and no row (the 360 view's `analytics` is null).

Locks: `refresh` takes the view's clock FOR UPDATE, which every apply_batch takes FOR SHARE first, so a
refresh never interleaves with a batch (no row is computed against a model that a concurrent refresh
replaced); lock order as in readmodel: tracking, clock, then rows.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from crm_contracts.vocabulary.marketing import CAMPAIGN_CONSENT_DEFAULT, campaign_consent_mapping
from crm_customer360 import analytics
from crm_customer360 import view as views
from crm_runtime import config as settings

#: The analytics' configuration, from ANALYTICS_* settings (analytics.AnalyticsConfig.from_settings).
CONFIG = analytics.AnalyticsConfig.from_settings(settings.setting)

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS analytics_model (
    as_of timestamptz PRIMARY KEY,
    model jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS customer_analytics (
    customer_id uuid PRIMARY KEY,
    as_of timestamptz NOT NULL,
    model_as_of timestamptz NOT NULL,
    rfm_segment text,
    loyalty_type text,
    churn_risk text,
    churn_score integer,
    retention_clv numeric,
    migration_clv numeric,
    historic_value numeric NOT NULL,
    doc jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS customer_analytics_rfm ON customer_analytics (rfm_segment);
CREATE INDEX IF NOT EXISTS customer_analytics_loyalty ON customer_analytics (loyalty_type);
CREATE INDEX IF NOT EXISTS customer_analytics_churn ON customer_analytics (churn_risk);
CREATE INDEX IF NOT EXISTS customer_analytics_clv ON customer_analytics (migration_clv);
"""
_PAGE = 1000


def create_tables(cur: Any) -> None:
    """Migration: the analytics tables, in the schema on the search_path (live view or rebuild)."""
    cur.execute(TABLES_DDL)


def newest_model(cur: Any) -> analytics.Model | None:
    cur.execute("SELECT model FROM analytics_model ORDER BY as_of DESC LIMIT 1")
    row = cur.fetchone()
    return row[0] if row else None


def model_in_force(cur: Any, instant: datetime) -> analytics.Model | None:
    """The newest model estimated at or before `instant` (the one a view as of `instant` is judged by)."""
    cur.execute("SELECT model FROM analytics_model WHERE as_of <= %s ORDER BY as_of DESC LIMIT 1", (instant,))
    row = cur.fetchone()
    return row[0] if row else None


def apply(cur: Any, docs: Mapping[str, views.View], config: analytics.AnalyticsConfig = CONFIG) -> None:
    """Recompute the rows of these customers (finished views, keyed by id) against the newest model."""
    model = newest_model(cur) if docs else None
    if model is None:
        return
    _upsert(cur, [_row(cid, analytics.customer_analytics(analytics.facts_of(doc, config), model, config))
                  for cid, doc in sorted(docs.items())])


def refresh(cur: Any, as_of: datetime, config: analytics.AnalyticsConfig = CONFIG) -> dict[str, Any]:
    """Estimate the base's model as of `as_of` (never before the newest one), store it, recompute every row."""
    cur.execute("SELECT as_of FROM view_clock FOR UPDATE")  # no batch applies meanwhile (module docstring)
    cur.execute("SELECT max(as_of) FROM analytics_model")
    newest = cur.fetchone()[0]
    instant = max(as_of, newest).astimezone(UTC) if newest is not None else as_of.astimezone(UTC)
    facts = list(_all_facts(cur, config))
    model = analytics.estimate_model(facts, instant, config)
    cur.execute("INSERT INTO analytics_model (as_of, model) VALUES (%s, %s) "
                "ON CONFLICT (as_of) DO UPDATE SET model = EXCLUDED.model", (instant, Json(model)))
    _recompute(cur, facts, model, config)
    return {"as_of": model["as_of"], "customers": model["customers"], "buyers": model["buyers"]}


def take_live_models(cur: Any, live_schema: str, config: analytics.AnalyticsConfig = CONFIG) -> None:
    """In a rebuilt view (search_path), hold the live view's models and recompute every row; a no-op if equal."""
    cur.execute(sql.SQL("SELECT as_of, model FROM {}.analytics_model ORDER BY as_of").format(
        sql.Identifier(live_schema)))
    live = cur.fetchall()
    cur.execute("SELECT as_of, model FROM analytics_model ORDER BY as_of")
    if cur.fetchall() == live:
        return
    cur.execute("DELETE FROM analytics_model")
    if live:
        execute_values(cur, "INSERT INTO analytics_model (as_of, model) VALUES %s",
                       [(at, Json(model)) for at, model in live])
        _recompute(cur, list(_all_facts(cur, config)), live[-1][1], config)


def _recompute(cur: Any, facts: list[analytics.CustomerFacts], model: analytics.Model,
               config: analytics.AnalyticsConfig) -> None:
    for start in range(0, len(facts), _PAGE):
        _upsert(cur, [_row(f.customer_id, analytics.customer_analytics(f, model, config))
                      for f in facts[start:start + _PAGE]])
    cur.execute("DELETE FROM customer_analytics a WHERE NOT EXISTS "
                "(SELECT 1 FROM customer_view v WHERE v.customer_id = a.customer_id AND v.doc <> '{}'::jsonb)")


def _all_facts(cur: Any, config: analytics.AnalyticsConfig) -> Iterator[analytics.CustomerFacts]:
    """The facts of every customer's view (facts are small; views are not: they are read a page at a time)."""
    return (analytics.facts_of(doc, config) for doc in all_views(cur))


def all_views(cur: Any, page: int = _PAGE) -> Iterator[views.View]:
    """Every customer's finished view, in id order, read a page at a time (for a pass over the whole base)."""
    for cid, doc in _docs_by_id(cur, "customer_view", page):
        if doc:  # a placeholder ({}) is a row another transaction is filling
            yield {**views.empty_view(cid), **doc}


def all_figures(cur: Any, page: int = _PAGE) -> Iterator[dict[str, Any]]:
    """Every customer's stored figures, in id order, a page at a time."""
    return (doc for _, doc in _docs_by_id(cur, "customer_analytics", page))


def _docs_by_id(cur: Any, table: str, page: int) -> Iterator[tuple[str, Any]]:
    """(customer_id, doc) of every row of `table`, in id order, read `page` rows at a time (keyset paging:
    each read starts after the last id the one before it saw)."""
    after = None
    while True:
        cur.execute(sql.SQL("SELECT customer_id::text, doc FROM {} "
                            "WHERE %(after)s::uuid IS NULL OR customer_id > %(after)s::uuid "
                            "ORDER BY customer_id LIMIT %(page)s").format(sql.Identifier(table)),
                    {"after": after, "page": page})
        found = cur.fetchall()
        if not found:
            return
        yield from found
        after = found[-1][0]


def _row(customer_id: str, figures: dict[str, Any]) -> tuple[Any, ...]:
    rfm, churn, value = figures["rfm"], figures["churn"], figures["value"]
    return (customer_id, figures["as_of"], figures["model_as_of"], rfm["segment"] if rfm else None,
            figures["loyalty"]["type"], churn["risk"] if churn else None, churn["score"] if churn else None,
            value["retention_clv"], value["migration_clv"], value["historic"], Json(figures))


def _upsert(cur: Any, rows: list[tuple[Any, ...]]) -> None:
    if rows:
        execute_values(
            cur,
            "INSERT INTO customer_analytics (customer_id, as_of, model_as_of, rfm_segment, loyalty_type, churn_risk, "
            "churn_score, retention_clv, migration_clv, historic_value, doc) VALUES %s ON CONFLICT (customer_id) "
            "DO UPDATE SET as_of = EXCLUDED.as_of, model_as_of = EXCLUDED.model_as_of, "
            "rfm_segment = EXCLUDED.rfm_segment, loyalty_type = EXCLUDED.loyalty_type, "
            "churn_risk = EXCLUDED.churn_risk, churn_score = EXCLUDED.churn_score, "
            "retention_clv = EXCLUDED.retention_clv, migration_clv = EXCLUDED.migration_clv, "
            "historic_value = EXCLUDED.historic_value, doc = EXCLUDED.doc",
            rows, page_size=_PAGE)


def of_customer(cur: Any, customer_id: str) -> dict[str, Any] | None:
    """One customer's stored figures, or None before the first refresh."""
    cur.execute("SELECT doc FROM customer_analytics WHERE customer_id = %s", (customer_id,))
    row = cur.fetchone()
    return row[0] if row else None


#: The consent channel a campaign channel needs (DOMAIN.md: consent per channel); empty: none needed. A
#: campaign channel missing here targets nobody (crm_contracts.vocabulary.marketing).
CAMPAIGN_CONSENT = campaign_consent_mapping(settings.setting("CAMPAIGN_CONSENT_CHANNELS", CAMPAIGN_CONSENT_DEFAULT))

#: Filters on the view's own columns and document (customer_view v), beside the analytics' (customer_analytics a).
_VIEW_FILTERS = {
    "lifecycle_stage": "v.lifecycle_stage = {}",
    "consent": "(v.doc -> 'consents' -> {} ->> 'granted') = 'true'",
    "tier": "v.doc -> 'loyalty' ->> 'tier' = {}",
    "grade": "v.doc -> 'grade' ->> 'grade' = {}",
}


def query(cur: Any, filters: Mapping[str, Any], page: int, page_size: int) -> dict[str, Any]:
    """Customers whose figures and view match every filter given (rfm_segment, loyalty_type, churn_risk,
    clv_min and clv_max on the migration-model CLV; lifecycle_stage, consent channel granted, tier, grade),
    highest migration CLV first, a page at a time."""
    clauses, params = [], {}
    for name in ("rfm_segment", "loyalty_type", "churn_risk"):
        if filters.get(name) is not None:
            clauses.append(sql.SQL("a.{} = {}").format(sql.Identifier(name), sql.Placeholder(name)))
            params[name] = filters[name]
    for name, operator in (("clv_min", ">="), ("clv_max", "<=")):
        if filters.get(name) is not None:
            clauses.append(sql.SQL("a.migration_clv {} {}").format(sql.SQL(operator), sql.Placeholder(name)))
            params[name] = Decimal(str(filters[name]))
    channel = filters.get("campaign_channel")
    if channel is not None and channel not in CAMPAIGN_CONSENT:
        clauses.append(sql.SQL("FALSE"))  # a channel nobody decided about reaches no one
    elif channel is not None and CAMPAIGN_CONSENT[channel] is not None:
        clauses.append(sql.SQL(_VIEW_FILTERS["consent"]).format(sql.Placeholder("campaign_consent")))
        params["campaign_consent"] = CAMPAIGN_CONSENT[channel]
    for name, clause in _VIEW_FILTERS.items():
        if filters.get(name) is not None:
            clauses.append(sql.SQL(clause).format(sql.Placeholder(name)))
            params[name] = filters[name]
    where = sql.SQL(" AND ").join(clauses) if clauses else sql.SQL("TRUE")
    matches = sql.SQL("FROM customer_analytics a JOIN customer_view v USING (customer_id) WHERE {}").format(where)
    cur.execute(sql.SQL("SELECT count(*) {}").format(matches), params)
    total = cur.fetchone()[0]
    cur.execute(sql.SQL(
        "SELECT a.customer_id::text, v.name, v.email, v.lifecycle_stage, a.as_of, a.rfm_segment, a.loyalty_type, "
        "a.churn_risk, a.retention_clv, a.migration_clv, a.historic_value {} "
        "ORDER BY a.migration_clv DESC NULLS LAST, a.customer_id LIMIT %(limit)s OFFSET %(offset)s"
    ).format(matches), {**params, "limit": page_size, "offset": (page - 1) * page_size})
    items = [{"customer_id": cid, "name": name, "email": email, "lifecycle_stage": stage,
              "as_of": at.astimezone(UTC).isoformat(), "rfm_segment": rfm, "loyalty_type": kind, "churn_risk": risk,
              "retention_clv": _money(kept), "migration_clv": _money(migrating), "historic_value": _money(historic)}
             for cid, name, email, stage, at, rfm, kind, risk, kept, migrating, historic in cur.fetchall()]
    model = newest_model(cur)
    return {"items": items, "page": page, "page_size": page_size, "total": total,
            "model_as_of": model["as_of"] if model else None}


def _money(amount: Decimal | None) -> str | None:
    return None if amount is None else str(amount)
