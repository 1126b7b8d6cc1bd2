"""The analytics formulas against the worked examples of services/customer360/ANALYTICS.md, each number
computed by hand there; then the figures of one customer read from a folded 360 view."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal as D
from typing import Any

import pytest

from crm_contracts.analytics import CustomerAnalyticsSchema
from crm_contracts.catalog import load_all
from crm_customer360 import analytics as a
from crm_customer360 import view as views
from tests.support.envelopes import Stream, payload

load_all()

T = datetime(2027, 7, 1, tzinfo=UTC)
P = (D("0.6"), D("0.3"), D("0.15"), D("0.05"))


def bought(order_id: str, days_before: int, amount: str, skus: tuple[str, ...] = (),
           discounted: bool = False) -> a.Purchase:
    return a.Purchase(order_id, T - timedelta(days=days_before), D(amount), skus, discounted)


# --- lifetime value: Dwyer's two models ------------------------------------------------------------

def test_retention_model_worked_example():
    # 300 x (0.6/1.1 + 0.36/1.21 + 0.216/1.331) = 163.64 + 89.26 + 48.69
    assert round(a.retention_clv(D(300), D("0.6"), D("0.1"), 3), 2) == D("301.58")


def test_migration_model_worked_example_from_the_first_cell():
    # t=1: P(buy) 0.6; t=2: 0.6*0.6 + 0.4*0.3 = 0.48; t=3: 0.48*0.6 + 0.24*0.3 + 0.28*0.15 = 0.402
    # 300 x (0.6/1.1 + 0.48/1.21 + 0.402/1.331) = 163.64 + 119.01 + 90.61
    assert round(a.migration_clv(D(300), P, 1, D("0.1"), 3), 2) == D("373.25")


def test_migration_model_worked_example_from_the_third_cell():
    # t=1: 0.15; t=2: 0.15*0.6 + 0.85*0.05 = 0.1325; t=3: 0.1325*0.6 + 0.06*0.3 + 0.8075*0.05 = 0.137875
    assert round(a.migration_clv(D(300), P, 3, D("0.1"), 3), 2) == D("104.84")


def test_the_longer_ago_the_last_purchase_the_lower_the_migration_value():
    values = [a.migration_clv(D(100), P, cell, D("0.02"), 12) for cell in (1, 2, 3, 4)]
    assert values == sorted(values, reverse=True) and values[0] > values[-1] > 0


def test_discount_per_period_is_the_yearly_rate_compounded_over_the_period():
    assert a.AnalyticsConfig().discount_per_period == D("0.023779")  # 1.10 ** (90/365) - 1
    assert a.AnalyticsConfig(period_days=365).discount_per_period == D("0.100000")


# --- RFM -----------------------------------------------------------------------------------------------

def test_quintile_cuts_by_nearest_rank_and_scores():
    cuts = a.quintile_cuts(range(100, 1001, 100))
    assert cuts == [D(200), D(400), D(600), D(800)]
    assert [a.quintile_score(v, cuts) for v in range(100, 1001, 100)] == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    # recency: fewer days is better
    assert [a.quintile_score(days, [D(10), D(20), D(20), D(150)], higher_is_better=False)
            for days in (5, 10, 15, 20, 150, 400)] == [5, 4, 4, 2, 1, 1]


def test_every_rfm_score_has_exactly_one_named_segment():
    for r in range(1, 6):
        for fm in range(1, 6):
            assert sum(1 for _, rs, fms in a.RFM_SEGMENTS if r in rs and fm in fms) == 1, (r, fm)


@pytest.mark.parametrize(("r", "f", "m", "segment"), [
    (5, 5, 5, "champions"), (4, 4, 3, "champions"), (5, 2, 3, "potential_loyalists"), (5, 1, 1, "new_customers"),
    (4, 1, 1, "promising"), (3, 4, 5, "loyal_customers"), (3, 3, 3, "need_attention"), (3, 1, 2, "about_to_sleep"),
    (2, 5, 4, "cannot_lose_them"), (1, 3, 3, "at_risk"), (1, 2, 1, "hibernating"), (1, 1, 1, "lost"),
])
def test_named_rfm_segments(r, f, m, segment):
    assert a.rfm_segment(r, f, m) == segment


# --- loyalty type ----------------------------------------------------------------------------------

def test_attachment_worked_example():
    facts = a.CustomerFacts("c", csi=D("75.0"), survey_responses=1, surveys_requested=2, lead_score=80,
                            complaints=1, unresolved_complaints=1)
    # 0.6 x 0.75 + 0.4 x mean(0.5, 0.8) - 0.15 - 0.15 = 0.45 + 0.26 - 0.30
    assert a.attachment(facts, a.AnalyticsConfig()) == D("0.4100")
    assert a.attachment(a.CustomerFacts("c"), a.AnalyticsConfig()) == D("0.5000")  # nothing known: neutral


@pytest.mark.parametrize(("orders", "attached", "repeat", "promotion", "dissatisfied", "expected"), [
    (1, True, False, D(0), False, None),
    (5, True, True, D(0), False, "super_value"),
    (5, True, True, D(1), False, "super_value"),
    (3, False, False, D("0.6"), False, "incentive"),
    (5, False, True, D("0.2"), True, "monopoly"),
    (5, False, True, D("0.2"), False, "inertia"),
    (2, False, False, D(0), False, "price"),
    (2, True, False, D(0), False, "price"),
])
def test_loyalty_type_rules(orders, attached, repeat, promotion, dissatisfied, expected):
    assert a.loyalty_type(orders, attached, repeat, promotion, dissatisfied, a.AnalyticsConfig())[0] == expected


# --- churn risk ---------------------------------------------------------------------------------------

def test_churn_risk_worked_example():
    facts = a.CustomerFacts("c", purchases=(bought("1", 150, "100"), bought("2", 120, "100"), bought("3", 90, "100")),
                            complaints=1, unresolved_complaints=1, sla_breaches=1)
    model = {"as_of": T.isoformat(), "typical_interval_days": 60}
    churn = a._churn(facts, list(facts.purchases), T, model, a.AnalyticsConfig())
    # 90 days since the last purchase = 3 x the own 30-day rhythm: 45; unresolved complaint 20; one
    # complaint 5; one SLA breach 5 -> 75, high
    assert (churn["score"], churn["risk"], churn["expected_interval_days"]) == (75, "high", 30)
    assert len(churn["reasons"]) == 4


def test_churn_risk_falling_spend_and_the_base_rhythm_for_a_single_purchase():
    config = a.AnalyticsConfig()
    falling = a.CustomerFacts(
        "c", purchases=(bought("1", 300, "1000"), bought("2", 250, "1000"), bought("3", 30, "300")))
    churn = a._churn(falling, list(falling.purchases), T, {"typical_interval_days": 90}, config)
    # before window (180-360 days ago) 2000, last 180 days 300 < 1000: falling, 20; 30 days vs 135: 0
    assert (churn["score"], churn["risk"]) == (20, "low")
    single = a.CustomerFacts("c", purchases=(bought("1", 200, "50"),))
    churn = a._churn(single, list(single.purchases), T, {"typical_interval_days": 90}, config)
    # 200 days is 2.2 x the base's 90-day rhythm: 30; its spend (50, 180-360 days ago) fell to 0: 20
    assert (churn["score"], churn["risk"], churn["expected_interval_days"]) == (50, "high", 90)


# --- cross-sell ----------------------------------------------------------------------------------------

def test_association_rules_worked_example():
    baskets = [{"A", "B"}, {"A", "B"}, {"A", "B", "C"}, {"A"}, {"B", "C"}, {"C"}]
    rules = a.association_rules(baskets, a.AnalyticsConfig(min_pair_count=2))
    assert [(r["if"], r["then"], r["support"], r["confidence"], r["lift"]) for r in rules] == [
        ("A", "B", "0.5000", "0.7500", "1.1250"),  # 3 of 6 baskets; 3 of the 4 with A; 0.75 / (4/6)
        ("B", "A", "0.5000", "0.7500", "1.1250"),
        ("C", "B", "0.3333", "0.6667", "1.0000"),
        ("B", "C", "0.3333", "0.5000", "1.0000"),
    ]  # A and C together once only: under min_pair_count


# --- the model of a small base, and one customer against it ----------------------------------------

SMALL = a.AnalyticsConfig(lookback_periods=2, min_observations=1, horizon_periods=2, min_pair_count=1)
X = a.CustomerFacts("x", (bought("x1", 170, "100", ("A", "B")), bought("x2", 100, "100", ("A",)),
                          bought("x3", 10, "100", ("C",))))
Y = a.CustomerFacts("y", (bought("y1", 150, "200", ("A", "B")),))
Z = a.CustomerFacts("z", (bought("z1", 20, "50", ("B",)),))


def test_model_of_a_small_base_worked_example():
    model = a.estimate_model([Z, X, Y], T, SMALL)
    # At the end of the period before (T - 90 days) X (last bought 10 days earlier) and Y (60 days) sit in
    # cell 1; X bought again in the next period, Y did not: retention 1/2, cell 1 probability 1/2.
    assert model["retention"] == {"base": "0.5000", "observations": 2,
                                  "by_cohort": {"2027": {"rate": "0.5000", "observations": 2, "estimated": True}}}
    assert [c["probability"] for c in model["migration"]] == ["0.5000", "0.3000", "0.1500", "0.0800", "0.0300"]
    assert model["typical_interval_days"] == 80  # X: 160 days over two intervals
    assert model["rfm_cuts"] == {"recency_days": [10, 20, 20, 150], "frequency": [1, 1, 1, 3],
                                 "monetary": ["50.00", "200.00", "200.00", "300.00"]}


def test_one_customer_against_the_small_base_worked_example():
    model = a.estimate_model([X, Y, Z], T, SMALL)
    x = a.customer_analytics(X, model, SMALL)
    # margin = 300 x 0.30 / 2 periods of tenure = 45; retention: 45 x (0.5/1.023779 + 0.25/1.023779^2)
    assert x["value"] == {"historic": "300.00", "historic_margin": "90.00", "retention_clv": "32.71",
                          "migration_clv": "39.15", "margin_per_period": "45.00", "retention_rate": "0.5000",
                          "cohort": "2027", "recency_cell": 1, "period_days": 90, "horizon_periods": 2}
    assert (x["rfm"]["score"], x["rfm"]["segment"]) == ("444", "champions")
    y = a.customer_analytics(Y, model, SMALL)
    # Y last bought 150 days ago: cell 2, lost for good in the retention model; migration 8.79 + 7.30
    assert (y["value"]["retention_clv"], y["value"]["migration_clv"]) == ("0.00", "16.09")
    assert (y["rfm"]["score"], y["rfm"]["segment"]) == ("112", "hibernating")
    assert y["cross_sell"] == [{"sku": "C", "because": "A", "confidence": "0.5000", "lift": "1.5000"}]
    assert CustomerAnalyticsSchema().validate(x) == {} and CustomerAnalyticsSchema().validate(y) == {}


def test_the_figures_are_as_of_the_model_or_the_customers_newest_event():
    model = a.estimate_model([X, Y, Z], T, SMALL)
    later = T + timedelta(days=3)
    assert a.customer_analytics(X, model, SMALL)["as_of"] == T.isoformat()
    assert a.customer_analytics(a.CustomerFacts("x", X.purchases, last_activity_at=later), model, SMALL)["as_of"] \
        == later.isoformat()
    # a purchase after the instant asked for does not count
    assert a.customer_analytics(X, model, SMALL, as_of=T - timedelta(days=50))["rfm"]["frequency"] == 2


# --- from a folded view -------------------------------------------------------------------------------

def test_facts_of_a_folded_view_convert_currencies_and_leave_refunds_and_unknown_currencies_out():
    customer, streams = str(uuid.uuid4()), {origin: Stream(origin) for origin in ("customer", "order", "service")}
    events = []

    def add(origin: str, kind: str, at: datetime, **fields: Any) -> None:
        events.append(streams[origin].publish(kind, payload(kind, customer_id=customer, **fields),
                                              occurred_at=at.isoformat()))

    add("customer", "customer_registered", T - timedelta(days=400), source_channel="web")
    for n, (currency, amount, refunded) in enumerate([("CNY", "100.00", None), ("USD", "10.00", None),
                                                      ("XYZ", "5.00", None), ("CNY", "50.00", "50.00")]):
        order, at = str(uuid.uuid4()), T - timedelta(days=300 - 50 * n)
        add("order", "order_placed", at, order_id=order, currency=currency, total=amount)
        add("order", "order_paid", at, order_id=order, currency=currency, amount=amount, paid_at=at.isoformat())
        if refunded:
            add("order", "order_refunded", at, order_id=order, refunded_total=refunded, currency=currency)
    add("service", "case_opened", T - timedelta(days=20), case_id=str(uuid.uuid4()), channel="phone")
    customers: dict = {}
    views.fold_batch(customers, {}, events)
    doc = customers[customer]
    views.finish(doc)
    facts = a.facts_of(doc, a.AnalyticsConfig())
    assert [p.net for p in facts.purchases] == [D("100.00"), D("71.0000")]  # USD at 7.10; refunded one gone
    assert facts.unconverted == 1
    assert facts.purchases[0].skus == ("CRM-PRO-1Y", "ONBOARD-D") and facts.purchases[0].discounted
    assert facts.channels == ("phone", "web")


# --- the service's edge: the instant a view is asked as of ----------------------------------------------

@pytest.mark.parametrize("given", ["2027-03-01T00:00:00", "not an instant", "2999-01-01T00:00:00+00:00"])
def test_a_view_as_of_a_naive_or_future_instant_is_refused(given):
    from crm_contracts.errors import InvalidRequestError
    from crm_customer360.service import _past

    with pytest.raises(InvalidRequestError):
        _past(given)
    assert _past("2026-03-01T00:00:00+08:00") == datetime(2026, 2, 28, 16, tzinfo=UTC)
