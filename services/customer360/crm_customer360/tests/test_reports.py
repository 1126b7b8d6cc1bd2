"""The managers' reports over finished views, each against a small base counted by hand."""

from __future__ import annotations

from typing import Any

from crm_customer360 import reports
from crm_customer360 import view as views


def customer(n: int, stage: str, first_seen: str = "2027-01-05T10:00:00+00:00", **parts: Any) -> dict[str, Any]:
    doc = views.empty_view(f"00000000-0000-4000-8000-{n:012d}")
    doc.update(stage_reached=stage, first_seen_at=first_seen)
    for path, value in parts.items():
        section, _, field = path.partition("__")
        doc[section][field] = value
    return doc


def case(department: str, group: str, priority: str, breaches: int = 0) -> dict[str, Any]:
    return {"department": department, "group": group, "priority": priority, "sla_breaches": breaches}


def test_funnel_counts_who_reached_each_stage_and_the_conversion_per_entry_month():
    docs = [customer(1, "prospect"), customer(2, "lead"), customer(3, "opportunity"), customer(4, "customer"),
            customer(5, "repeat_customer", "2027-02-01T00:00:00+00:00")]
    rows = {(r["entry_month"], r["stage"]): r for r in reports.funnel(docs)["rows"]}
    january = [rows[("2027-01", stage)]["customers"] for stage in reports.LADDER]
    assert january == [4, 3, 2, 2, 1, 0, 0]  # qualified_lead is passed on the way to opportunity
    assert rows[("2027-01", "lead")]["conversion"] == "0.7500"  # 3 of 4
    assert rows[("2027-01", "customer")]["conversion"] == "0.5000"
    assert rows[("2027-01", "repeat_customer")]["conversion"] == "0.0000"
    assert rows[("2027-01", "prospect")]["conversion"] is None
    assert [rows[("all", stage)]["customers"] for stage in reports.LADDER] == [5, 4, 3, 3, 2, 1, 0]
    assert rows[("all", "loyal")]["conversion"] == "0.0000"


def test_satisfaction_and_sla_compliance_by_department():
    first = customer(1, "customer", service__cases={"c1": case("sales", "g1", "ordinary"),
                                                    "c2": case("sales", "g1", "special", breaches=2)},
                     service__scores={"c1": 5, "c2": 2})
    second = customer(2, "customer", service__cases={"c3": case("sales", "g1", "ordinary", breaches=1),
                                                     "c4": case("finance", "g2", "ordinary")},
                      service__scores={"c4": 4})
    rows = reports.satisfaction([first, second])["rows"]
    # sales/g1: scores 5 and 2 -> mean 3.5 -> (3.5 - 1) / 4 x 100 = 62.5; finance/g2: 4 -> 75.0
    assert rows == [{"department": "finance", "agent_group": "g2", "cases": 1, "responses": 1, "csi": "75.0"},
                    {"department": "sales", "agent_group": "g1", "cases": 3, "responses": 2, "csi": "62.5"}]
    sla = reports.sla([first, second])["rows"]
    assert sla == [
        {"department": "finance", "priority": "ordinary", "cases": 1, "breached": 0, "compliance": "1.0000"},
        {"department": "sales", "priority": "ordinary", "cases": 2, "breached": 1, "compliance": "0.5000"},
        {"department": "sales", "priority": "special", "cases": 1, "breached": 1, "compliance": "0.0000"},
    ]


def test_reps_are_judged_by_revenue_and_their_customers_satisfaction():
    docs = [customer(1, "customer", pipeline__won_by_owner={"rep-a": {"CNY": "100.00"}}, service__scores={"x": 5}),
            customer(2, "customer", pipeline__won_by_owner={"rep-a": {"CNY": "50.50"}, "rep-b": {"USD": "7.00"}},
                     service__scores={"y": 1})]
    assert reports.reps(docs)["rows"] == [
        {"owner": "rep-a", "currency": "CNY", "won_revenue": "150.50", "customers": 2, "responses": 2,
         "customer_csi": "50.0"},
        {"owner": "rep-b", "currency": "USD", "won_revenue": "7.00", "customers": 1, "responses": 1,
         "customer_csi": "0.0"},
    ]


def test_cohort_retention_by_month_of_first_purchase():
    def paid(*dates: str) -> dict[str, Any]:
        return {f"o{n}": {"paid_at": f"{d}T10:00:00+00:00"} for n, d in enumerate(dates)}

    docs = [customer(1, "customer", orders__by_id=paid("2027-01-10", "2027-02-03")),
            customer(2, "customer", orders__by_id=paid("2027-01-20", "2027-03-01")),
            customer(3, "customer", orders__by_id=paid("2027-02-14")), customer(4, "prospect")]
    rows = reports.cohorts(docs, "2027-03-15T00:00:00+00:00")["rows"]
    assert [(r["cohort"], r["months_after"], r["customers"], r["active"], r["retention"]) for r in rows] == [
        ("2027-01", 0, 2, 2, "1.0000"), ("2027-01", 1, 2, 1, "0.5000"), ("2027-01", 2, 2, 1, "0.5000"),
        ("2027-02", 0, 1, 1, "1.0000"), ("2027-02", 1, 1, 0, "0.0000"),
    ]  # months not begun by the as-of instant are left out


def test_the_base_by_its_analytics_clv_buckets_rfm_grid_and_loyalty_by_churn_risk():
    def figures(clv: str | None, rfm: tuple[int, int, int] | None, loyalty: str | None, risk: str | None) -> dict:
        return {"currency": "CNY", "value": {"migration_clv": clv},
                "rfm": {"r": rfm[0], "f": rfm[1], "m": rfm[2]} if rfm else None,
                "loyalty": {"type": loyalty}, "churn": {"risk": risk} if risk else None}

    rows = reports.analytics_summary([
        figures("0.00", (1, 1, 2), "price", "high"), figures("99.99", (5, 4, 5), "super_value", "low"),
        figures("100.00", (5, 5, 4), "super_value", "low"), figures("250000.00", (3, 2, 1), None, "medium"),
        figures(None, None, None, None),
    ])["rows"]
    assert [(r["measure"], r["row"], r["column"], r["customers"]) for r in rows] == [
        ("clv_distribution", "0", "CNY", 1), ("clv_distribution", "0-100", "CNY", 1),
        ("clv_distribution", "100-1000", "CNY", 1), ("clv_distribution", "100000+", "CNY", 1),
        ("loyalty_by_churn_risk", "price", "high", 1), ("loyalty_by_churn_risk", "super_value", "low", 2),
        ("rfm_grid", "R1", "FM2", 1), ("rfm_grid", "R3", "FM2", 1), ("rfm_grid", "R5", "FM5", 2),
    ]  # FM = (F + M + 1) // 2: (1, 2) -> 2, (2, 1) -> 2, (4, 5) and (5, 4) -> 5
