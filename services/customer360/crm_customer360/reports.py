"""Reports for managers over the 360 views (analytical CRM's "presentation", seed 004): the funnel by
lifecycle stage with conversion per month of entry, satisfaction by department and agent group, SLA
compliance, sales reps judged by revenue and their customers' satisfaction (seed 003), and cohort
retention. Each is a table — named columns, one dict per row — built in one pass over finished views
(pure functions of them), so the gateway can answer it as JSON or CSV.

Pipeline, forecast and campaign ROI are the sales and marketing services' own figures (the gateway's
reports route tabulates them): the view does not hold campaign costs, and one piece of code computes the
pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from decimal import Decimal
from itertools import pairwise
from typing import Any

from crm_customer360 import view as views

Table = dict[str, Any]

#: The stages of the ladder a customer walks, in order (view.STAGES): the funnel's steps.
LADDER = views.STAGES
#: Months after the first purchase that cohort retention follows.
COHORT_MONTHS = 24


def table(report: str, as_of: str | None, columns: list[str], rows: list[dict[str, Any]]) -> Table:
    return {"report": report, "as_of": as_of, "columns": columns, "rows": rows}


def funnel(docs: Iterable[views.View], as_of: str | None = None) -> Table:
    """Customers who reached at least each stage, per month of their first event, and the conversion from
    the stage before (reached this / reached the one before, to four places)."""
    counts: dict[str, list[int]] = {}
    for doc in docs:
        month = (doc.get("first_seen_at") or "")[:7] or "unknown"
        reached = doc.get("stage_reached")
        if reached not in LADDER:
            continue
        for cohort in (month, "all"):
            row = counts.setdefault(cohort, [0] * len(LADDER))
            for step in range(LADDER.index(reached) + 1):
                row[step] += 1
    rows = []
    for month in sorted(counts, key=lambda m: (m == "all", m)):
        for step, stage in enumerate(LADDER):
            reached = counts[month][step]
            before = counts[month][step - 1] if step else None
            rows.append({"entry_month": month, "stage": stage, "customers": reached,
                         "conversion": _share(reached, before) if before is not None else None})
    return table("funnel", as_of, ["entry_month", "stage", "customers", "conversion"], rows)


def satisfaction(docs: Iterable[views.View], as_of: str | None = None) -> Table:
    """CSI (0-100, the view's satisfaction_index) of surveyed cases per department and agent group."""
    scores: dict[tuple[str, str], list[int]] = {}
    cases: dict[tuple[str, str], int] = {}
    for doc in docs:
        service = doc["service"]
        for case_id, case in service["cases"].items():
            group = (case.get("department") or "unrouted", case.get("group") or "unassigned")
            cases[group] = cases.get(group, 0) + 1
            score = service["scores"].get(str(case_id))
            if score is not None:
                scores.setdefault(group, []).append(score)
    rows = [{"department": department, "agent_group": group, "cases": cases[(department, group)],
             "responses": len(scores.get((department, group), [])),
             "csi": views.satisfaction_index(scores.get((department, group), []))}
            for department, group in sorted(cases)]
    return table("satisfaction", as_of, ["department", "agent_group", "cases", "responses", "csi"], rows)


def sla(docs: Iterable[views.View], as_of: str | None = None) -> Table:
    """Cases per department and priority, those that missed a deadline, and the share that kept every one."""
    seen: dict[tuple[str, str], list[int]] = {}
    for doc in docs:
        for case in doc["service"]["cases"].values():
            counts = seen.setdefault((case.get("department") or "unrouted", case.get("priority") or "unclassified"),
                                     [0, 0])
            counts[0] += 1
            counts[1] += bool(case.get("sla_breaches"))
    rows = [{"department": department, "priority": priority, "cases": total, "breached": breached,
             "compliance": _share(total - breached, total)}
            for (department, priority), (total, breached) in sorted(seen.items())]
    return table("sla", as_of, ["department", "priority", "cases", "breached", "compliance"], rows)


def reps(docs: Iterable[views.View], as_of: str | None = None) -> Table:
    """Each sales rep's won revenue (per currency) beside the satisfaction of the customers they won (003)."""
    won: dict[tuple[str, str], Decimal] = {}
    customers: dict[str, int] = {}
    scores: dict[str, list[int]] = {}
    for doc in docs:
        customer_scores = list(doc["service"]["scores"].values())
        for owner, totals in doc["pipeline"]["won_by_owner"].items():
            customers[owner] = customers.get(owner, 0) + 1
            scores.setdefault(owner, []).extend(customer_scores)
            for currency, amount in totals.items():
                won[(owner, currency)] = won.get((owner, currency), Decimal(0)) + Decimal(amount)
    rows = [{"owner": owner or "unassigned", "currency": currency, "won_revenue": str(amount),
             "customers": customers[owner], "responses": len(scores[owner]),
             "customer_csi": views.satisfaction_index(scores[owner])}
            for (owner, currency), amount in sorted(won.items())]
    return table("reps", as_of, ["owner", "currency", "won_revenue", "customers", "responses", "customer_csi"], rows)


def cohorts(docs: Iterable[views.View], as_of: str | None = None) -> Table:
    """Cohort retention: customers by month of first paid order, and the share who bought in each month after."""
    cohort_sizes: dict[str, int] = {}
    active: dict[tuple[str, int], int] = {}
    for doc in docs:
        paid = sorted(datetime.fromisoformat(o["paid_at"]) for o in doc["orders"]["by_id"].values() if o.get("paid_at"))
        if not paid:
            continue
        first = paid[0]
        cohort = f"{first.year:04d}-{first.month:02d}"
        cohort_sizes[cohort] = cohort_sizes.get(cohort, 0) + 1
        months = {(at.year - first.year) * 12 + at.month - first.month for at in paid}
        for month in months:
            if month <= COHORT_MONTHS:
                active[(cohort, month)] = active.get((cohort, month), 0) + 1
    rows = [{"cohort": cohort, "months_after": month, "customers": size, "active": active.get((cohort, month), 0),
             "retention": _share(active.get((cohort, month), 0), size)}
            for cohort, size in sorted(cohort_sizes.items()) for month in range(COHORT_MONTHS + 1)
            if _reachable(cohort, month, as_of)]
    return table("cohorts", as_of, ["cohort", "months_after", "customers", "active", "retention"], rows)


#: Upper bounds of the CLV distribution's buckets (reporting currency); the last bucket is open.
CLV_BUCKETS = (Decimal(0), Decimal(100), Decimal(1_000), Decimal(10_000), Decimal(100_000))


def analytics_summary(figures: Iterable[dict[str, Any]], as_of: str | None = None) -> Table:
    """The base by its analytics (customer_analytics docs): the distribution of migration-model CLV, the RFM
    grid (R by FM = round-half-up((F + M) / 2)) and loyalty type by churn risk; one row per cell counted."""
    counts: dict[tuple[str, str, str], int] = {}

    def count(measure: str, row: str, column: str) -> None:
        counts[(measure, row, column)] = counts.get((measure, row, column), 0) + 1

    for f in figures:
        clv = f["value"]["migration_clv"]
        if clv is not None:
            count("clv_distribution", _bucket(Decimal(clv)), f["currency"])
        if f["rfm"] is not None:
            count("rfm_grid", f"R{f['rfm']['r']}", f"FM{(f['rfm']['f'] + f['rfm']['m'] + 1) // 2}")
        if f["loyalty"]["type"] is not None and f["churn"] is not None:
            count("loyalty_by_churn_risk", f["loyalty"]["type"], f["churn"]["risk"])
    rows = [{"measure": measure, "row": row, "column": column, "customers": n}
            for (measure, row, column), n in sorted(counts.items())]
    return table("analytics", as_of, ["measure", "row", "column", "customers"], rows)


def _bucket(clv: Decimal) -> str:
    """"0" for no future value, then "low-high" (low included), then "100000+"."""
    if clv <= 0:
        return "0"
    for low, high in pairwise(CLV_BUCKETS):
        if clv < high:
            return f"{low}-{high}"
    return f"{CLV_BUCKETS[-1]}+"


#: The reports built from the views, by name.
BUILDERS: dict[str, Callable[[Iterable[views.View], str | None], Table]] = {
    "funnel": funnel, "satisfaction": satisfaction, "sla": sla, "reps": reps, "cohorts": cohorts,
}


def _reachable(cohort: str, months_after: int, as_of: str | None) -> bool:
    """Whether `months_after` the cohort's month has begun by `as_of` (later months are not known yet)."""
    if as_of is None:
        return True
    year, month = int(cohort[:4]), int(cohort[5:7])
    now = datetime.fromisoformat(as_of)
    return (now.year - year) * 12 + now.month - month >= months_after


def _share(part: int, whole: int | None) -> str | None:
    if not whole:
        return None
    return str((Decimal(part) / Decimal(whole)).quantize(Decimal("0.0001")))
