"""The analytics on a seeded history (tests/support/history.py: 2,000 customers over two simulated years,
each drawn from a known behaviour), folded by the 360 view's own fold: are the figures sane?"""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from decimal import Decimal
from statistics import median
from typing import Any

import pytest

from crm_customer360 import analytics as a
from crm_customer360 import view as views
from tests.support.history import generate


@pytest.fixture(scope="module")
def history() -> Any:
    return generate(2000, seed=11)


@pytest.fixture(scope="module")
def facts(history: Any) -> list[a.CustomerFacts]:
    """Every customer's facts, folded by the view from the whole history."""
    customers: dict[str, Any] = {}
    views.fold_batch(customers, {}, history.envelopes)
    for doc in customers.values():
        views.finish(doc)
    return [a.facts_of(doc, a.AnalyticsConfig()) for doc in customers.values()]


@pytest.fixture(scope="module")
def base(history: Any, facts: list[a.CustomerFacts]) -> tuple[dict[str, str], dict[str, Any], dict[str, Any]]:
    """Who behaves how, every customer's analytics as of the end of the history, and the model."""
    config = a.AnalyticsConfig()
    model = a.estimate_model(facts, history.as_of, config)
    return history.behaviour, {f.customer_id: a.customer_analytics(f, model, config) for f in facts}, model


def by_behaviour(base: Any) -> dict[str, list[dict[str, Any]]]:
    behaviour, analytics, _ = base
    grouped: dict[str, list[dict[str, Any]]] = {}
    for cid, figures in analytics.items():
        grouped.setdefault(behaviour[cid], []).append(figures)
    return grouped


def test_loyal_customers_rank_high_on_lifetime_value_in_both_models(base):
    grouped = by_behaviour(base)
    for model in ("migration_clv", "retention_clv"):
        medians = {kind: median(Decimal(f["value"][model] or 0) for f in figures) for kind, figures in grouped.items()}
        assert max(medians, key=medians.__getitem__) == "loyal", (model, medians)
        ranked = sorted(base[1].items(), key=lambda item: Decimal(item[1]["value"][model] or 0), reverse=True)
        top = ranked[: len(ranked) // 5]
        loyal_in_top = sum(1 for cid, _ in top if base[0][cid] == "loyal")
        assert loyal_in_top >= 0.8 * len(grouped["loyal"]) or loyal_in_top >= 0.6 * len(top), (model, loyal_in_top)


def test_dormant_customers_are_at_risk_and_loyal_ones_are_not(base):
    grouped = by_behaviour(base)
    dormant = Counter(f["churn"]["risk"] for f in grouped["dormant"])
    loyal = Counter(f["churn"]["risk"] for f in grouped["loyal"])
    assert dormant["medium"] + dormant["high"] >= 0.9 * len(grouped["dormant"]), dormant
    assert loyal["low"] >= 0.95 * len(grouped["loyal"]), loyal
    assert all(f["churn"] is None for f in grouped["prospect"])  # never bought: nothing to lose


def test_every_loyalty_type_is_populated_and_each_behaviour_gets_its_own(base):
    grouped = by_behaviour(base)
    found = Counter(f["loyalty"]["type"] for f in base[1].values())
    assert set(a.LOYALTY_TYPES) <= set(found), found
    expected = {"loyal": "super_value", "inertia": "inertia", "monopoly": "monopoly", "incentive": "incentive",
                "dormant": "price", "price": "price"}
    for kind, loyalty in expected.items():
        share = sum(1 for f in grouped[kind] if f["loyalty"]["type"] == loyalty) / len(grouped[kind])
        assert share >= 0.8, (kind, loyalty, share)
    # satisfaction is not loyalty: inertia-loyal customers buy as often as super-value ones but say nothing
    assert all(f["loyalty"]["csi"] is None for f in grouped["inertia"])


def test_rfm_puts_loyal_customers_among_the_champions_and_dormant_ones_out(base):
    grouped = by_behaviour(base)
    assert sum(f["rfm"]["segment"] in ("champions", "loyal_customers") for f in grouped["loyal"]) \
        >= 0.95 * len(grouped["loyal"])
    assert not any(f["rfm"]["segment"] in ("champions", "new_customers") for f in grouped["dormant"])


def test_cross_sell_rules_find_the_products_bought_together(base):
    model = base[2]
    strongest = {(rule["if"], rule["then"]) for rule in model["rules"][:6]}
    assert {("ONBOARD-D", "CRM-SEAT"), ("DATA-MIGRATION", "API-PACK"), ("TRAINING", "ANALYTICS-ADDON")} <= strongest


def test_the_churn_rule_ranks_who_stops_buying_on_held_out_history(history, facts):
    """Judged half a year before the end (model and figures as of then), the rule's score ranks the buyers who
    then bought nothing more above those who did: ROC AUC (Mann-Whitney), 0.90 on this seed. The bar a
    prediction model would have to clear by a stated margin to replace the rule (ANALYTICS.md)."""
    config = a.AnalyticsConfig()
    split = history.as_of - timedelta(days=180)
    model = a.estimate_model(facts, split, config)
    stopped, stayed = [], []
    for f in facts:
        if not any(p.at <= split for p in f.purchases):
            continue
        score = a.customer_analytics(f, model, config, as_of=split)["churn"]["score"]
        (stayed if any(split < p.at <= history.as_of for p in f.purchases) else stopped).append(score)
    auc = sum((s > t) + 0.5 * (s == t) for s in stopped for t in stayed) / (len(stopped) * len(stayed))
    assert len(stopped) > 100 and len(stayed) > 100 and auc >= 0.85, auc
