"""Analytical CRM on the 360° view: lifetime value, RFM, loyalty type, churn risk, relationship measures
and cross-sell, as pure functions of finished views and an instant. No database, no framework.

Why here and not in a sibling service: every figure is a function of the 360° documents this service
already folds (and of nothing else), must be rebuilt with them and be stored beside them at the same
instant; a second read-side service would fold the same six feeds a second time to get the same facts.

Two levels, both computed *as of* an instant that is stored with them (never the wall clock inside):

- the **model** of the customer base (`estimate_model`): RFM quintile cut points, retention rates per
  cohort, purchase probabilities per recency cell (the migration model), the typical purchase interval,
  association rules over co-purchased products. It is a function of every customer's facts and the
  instant T it is estimated as of (purchases after T are ignored), refreshed on a schedule;
- the **customer's analytics** (`customer_analytics`): a function of one customer's facts, the model, and
  the instant A = max(model instant, the customer's newest event) — recomputed whenever the customer's
  events arrive or the model is refreshed.

So a rebuild that folds the same events and holds the same model computes the same figures. Formulas,
thresholds and worked examples are in services/customer360/ANALYTICS.md; every default below is
configurable (`AnalyticsConfig.from_settings`, environment variables `ANALYTICS_*`).

Money is Decimal, converted into one reporting currency (`currency`) at configured rates; an order in
a currency without a rate is left out of the analytics (and counted in `unconverted`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from itertools import combinations
from typing import Any

Model = dict[str, Any]
View = dict[str, Any]

#: Units of the reporting currency per unit of each currency (indicative; replace with your own).
DEFAULT_EXCHANGE_RATES: dict[str, Decimal] = {
    "CNY": Decimal("1"), "USD": Decimal("7.10"), "EUR": Decimal("7.70"), "GBP": Decimal("9.00"),
    "HKD": Decimal("0.91"), "JPY": Decimal("0.048"),
}

#: The named RFM segments on the grid of the recency score R and FM = round-half-up((F + M) / 2).
#: Each entry: (segment, R scores, FM scores). Every (R, FM) pair of 1..5 x 1..5 falls in exactly one.
RFM_SEGMENTS: tuple[tuple[str, frozenset[int], frozenset[int]], ...] = (
    ("champions", frozenset({4, 5}), frozenset({4, 5})),
    ("potential_loyalists", frozenset({4, 5}), frozenset({2, 3})),
    ("new_customers", frozenset({5}), frozenset({1})),
    ("promising", frozenset({4}), frozenset({1})),
    ("loyal_customers", frozenset({3}), frozenset({4, 5})),
    ("need_attention", frozenset({3}), frozenset({3})),
    ("about_to_sleep", frozenset({3}), frozenset({1, 2})),
    ("cannot_lose_them", frozenset({1, 2}), frozenset({5})),
    ("at_risk", frozenset({1, 2}), frozenset({3, 4})),
    ("hibernating", frozenset({1, 2}), frozenset({2})),
    ("lost", frozenset({1, 2}), frozenset({1})),
)
LOYALTY_TYPES = ("super_value", "incentive", "monopoly", "inertia", "price")
CHURN_RISKS = ("low", "medium", "high")

_CENT = Decimal("0.01")
_RATIO = Decimal("0.0001")


@dataclass(frozen=True)
class AnalyticsConfig:
    """Every rate, threshold and weight of the analytics (defaults documented in ANALYTICS.md)."""

    currency: str = "CNY"
    exchange_rates: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_EXCHANGE_RATES))
    # --- lifetime value (Dwyer 1997) ---
    #: One period t of both models, in days.
    period_days: int = 90
    #: How many periods ahead lifetime value counts.
    horizon_periods: int = 12
    #: Yearly discount rate; per period (1 + d) ** (period_days / 365) - 1.
    discount_rate: Decimal = Decimal("0.10")
    #: Gross margin as a share of net revenue (the platform records no costs).
    margin_rate: Decimal = Decimal("0.30")
    #: Retention rate when neither the cohort nor the base has enough history.
    default_retention: Decimal = Decimal("0.50")
    #: Purchase probability per recency cell 1..K (the last cell is "K or more periods ago") when the base
    #: has too little history for a cell.
    default_purchase_probabilities: tuple[Decimal, ...] = (
        Decimal("0.50"), Decimal("0.30"), Decimal("0.15"), Decimal("0.08"), Decimal("0.03"))
    #: Observations a rate needs before it is trusted over its fallback.
    min_observations: int = 20
    #: How many past periods the estimation looks back over.
    lookback_periods: int = 8
    # --- loyalty type ---
    attachment_weight_satisfaction: Decimal = Decimal("0.6")
    attachment_weight_engagement: Decimal = Decimal("0.4")
    attachment_complaint_penalty: Decimal = Decimal("0.15")
    attachment_unresolved_penalty: Decimal = Decimal("0.15")
    #: Attachment at or above this is "high".
    attachment_high: Decimal = Decimal("0.6")
    #: Paid orders, the newest within `repeat_within_days`, that make repeat purchase "high".
    repeat_min_orders: int = 3
    repeat_within_days: int = 180
    #: Orders with a discounted line at or above this share make an incentive-loyal customer.
    incentive_min_share: Decimal = Decimal("0.6")
    #: CSI below this (with complaints) is "dissatisfied": buying on anyway reads as monopoly loyalty.
    dissatisfied_below_csi: Decimal = Decimal("50")
    # --- churn risk ---
    typical_interval_days: int = 90
    churn_overdue_points: tuple[tuple[Decimal, int], ...] = (
        (Decimal("3"), 45), (Decimal("2"), 30), (Decimal("1.5"), 15))
    churn_unresolved_complaint_points: int = 20
    churn_complaint_points: int = 5
    churn_complaint_points_max: int = 10
    churn_sla_breach_points: int = 5
    churn_sla_breach_points_max: int = 15
    churn_falling_spend_points: int = 20
    churn_low_satisfaction_points: int = 10
    spend_window_days: int = 180
    spend_fall_ratio: Decimal = Decimal("0.5")
    churn_medium_from: int = 25
    churn_high_from: int = 50
    # --- cross-sell ---
    min_support: Decimal = Decimal("0.01")
    min_confidence: Decimal = Decimal("0.2")
    min_pair_count: int = 3
    max_rules: int = 200
    max_suggestions: int = 3

    @classmethod
    def from_settings(cls, setting: Callable[[str, str], str]) -> AnalyticsConfig:
        """The defaults, each overridden by `ANALYTICS_<FIELD>` where set (e.g. ANALYTICS_MARGIN_RATE=0.25).

        Rates are "USD=7.10,EUR=7.70" (ANALYTICS_EXCHANGE_RATES, else LOYALTY_EXCHANGE_RATES), tuples are
        comma-separated, the overdue points "3:45,2:30,1.5:15".
        """
        changes: dict[str, Any] = {}
        defaults = cls()
        for item in fields(cls):
            raw = setting(f"ANALYTICS_{item.name.upper()}", "")
            if item.name == "exchange_rates":
                raw = raw or setting("LOYALTY_EXCHANGE_RATES", "")
                if raw:
                    changes[item.name] = {**DEFAULT_EXCHANGE_RATES, **_rates(raw)}
                continue
            if not raw:
                continue
            current = getattr(defaults, item.name)
            try:
                if item.name == "churn_overdue_points":
                    changes[item.name] = tuple(
                        (Decimal(r), int(p)) for r, p in (part.split(":") for part in raw.split(",")))
                elif isinstance(current, tuple):
                    changes[item.name] = tuple(Decimal(part) for part in raw.split(","))
                elif isinstance(current, bool) or isinstance(current, str):
                    changes[item.name] = raw.strip()
                elif isinstance(current, int):
                    changes[item.name] = int(raw)
                else:
                    changes[item.name] = Decimal(raw)
            except (ValueError, InvalidOperation):
                raise ValueError(f"ANALYTICS_{item.name.upper()}: {raw!r} is not valid") from None
        return replace(defaults, **changes)

    @property
    def period(self) -> timedelta:
        return timedelta(days=self.period_days)

    @property
    def discount_per_period(self) -> Decimal:
        """(1 + yearly rate) ** (period_days / 365) - 1, to 6 places."""
        rate = (1 + self.discount_rate) ** (Decimal(self.period_days) / Decimal(365)) - 1
        return rate.quantize(Decimal("0.000001"), rounding=ROUND_HALF_UP)


def _rates(text: str) -> dict[str, Decimal]:
    rates = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        currency, _, rate = item.partition("=")
        rates[currency.strip().upper()] = Decimal(rate.strip())
    return rates


# --- facts: what the analytics read of a finished view --------------------------------------------

@dataclass(frozen=True)
class Purchase:
    """One paid order, net of refunds, in the reporting currency."""

    order_id: str
    at: datetime
    net: Decimal
    skus: tuple[str, ...] = ()
    discounted: bool = False


@dataclass(frozen=True)
class CustomerFacts:
    """The facts of one customer's view the analytics need (`facts_of`)."""

    customer_id: str
    purchases: tuple[Purchase, ...] = ()
    last_activity_at: datetime | None = None
    first_seen_at: datetime | None = None
    csi: Decimal | None = None
    survey_responses: int = 0
    surveys_requested: int = 0
    lead_score: int | None = None
    complaints: int = 0
    unresolved_complaints: int = 0
    sla_breaches: int = 0
    channels: tuple[str, ...] = ()
    origins: tuple[str, ...] = ()
    unconverted: int = 0


def facts_of(view: View, config: AnalyticsConfig) -> CustomerFacts:
    """The facts of a finished 360° view: paid orders (net, converted), service and marketing signals."""
    purchases, unconverted = [], 0
    for order_id, order in sorted(view["orders"]["by_id"].items()):
        if not order.get("paid_at") or order.get("currency") is None:
            continue
        rate = config.exchange_rates.get(order["currency"])
        if rate is None:
            unconverted += 1
            continue
        net = (_dec(order.get("paid")) - _dec(order.get("refunded"))) * rate
        if net <= 0:
            continue  # refunded in full: not a purchase
        purchases.append(Purchase(order_id, _at(order["paid_at"]), net, tuple(order.get("skus") or ()),
                                  bool(order.get("discounted"))))
    purchases.sort(key=lambda p: (p.at, p.order_id))
    service = view["service"]
    csi = service["satisfaction"]["csi"]
    channels = {view["profile"].get("source_channel")}
    channels |= {lead.get("channel") for lead in view["marketing"]["leads"].values()}
    channels |= {case.get("channel") for case in service["cases"].values()}
    return CustomerFacts(
        customer_id=view["customer_id"],
        purchases=tuple(purchases),
        last_activity_at=_at(view["last_activity_at"]) if view.get("last_activity_at") else None,
        first_seen_at=_at(view["first_seen_at"]) if view.get("first_seen_at") else None,
        csi=Decimal(csi) if csi is not None else None,
        survey_responses=service["satisfaction"]["responses"],
        surveys_requested=max(len(service["surveys"]), service["satisfaction"]["responses"]),
        lead_score=view["marketing"].get("lead_score"),
        complaints=service["complaints"]["total"],
        unresolved_complaints=service["complaints"]["unresolved"],
        sla_breaches=service["sla_breaches"],
        channels=tuple(sorted(c for c in channels if c)),
        origins=tuple(sorted(origin for origin, n in view["events"].items() if n)),
        unconverted=unconverted,
    )


def _until(facts: CustomerFacts, instant: datetime) -> list[Purchase]:
    return [p for p in facts.purchases if p.at <= instant]


# --- the formulas, each on its own (ANALYTICS.md works an example of each) ----------------------

def retention_clv(margin: Decimal, retention: Decimal, discount: Decimal, horizon: int) -> Decimal:
    """Dwyer's customer retention model (lost for good): sum over t = 1..horizon of m r^t / (1 + d)^t."""
    return sum((margin * retention**t / (1 + discount) ** t for t in range(1, horizon + 1)), Decimal(0))


def migration_clv(margin: Decimal, probabilities: tuple[Decimal, ...], cell: int, discount: Decimal,
                  horizon: int) -> Decimal:
    """Dwyer's customer migration model (always a share): a customer in recency `cell` (1 = bought in the
    current period) buys next period with the cell's probability; a buyer moves to cell 1, a non-buyer one
    cell on (the last cell keeps its own). Sum over t of margin x P(buy in t) / (1 + d)^t."""
    cells = len(probabilities)
    state = [Decimal(0)] * cells
    state[min(cell, cells) - 1] = Decimal(1)
    value = Decimal(0)
    for t in range(1, horizon + 1):
        buying = [share * p for share, p in zip(state, probabilities, strict=True)]
        bought = sum(buying, Decimal(0))
        value += margin * bought / (1 + discount) ** t
        moved = [Decimal(0)] * cells
        moved[0] = bought
        for j in range(cells):
            target = min(j + 1, cells - 1)
            moved[target] += state[j] - buying[j]
        state = moved
    return value


@lru_cache(maxsize=1024)
def _retention_factor(retention: Decimal, discount: Decimal, horizon: int) -> Decimal:
    """The retention model's value per unit of margin (both models are linear in the margin): once per model."""
    return retention_clv(Decimal(1), retention, discount, horizon)


@lru_cache(maxsize=1024)
def _migration_factor(probabilities: tuple[Decimal, ...], cell: int, discount: Decimal, horizon: int) -> Decimal:
    """The migration model's value per unit of margin from `cell`: once per model and cell."""
    return migration_clv(Decimal(1), probabilities, cell, discount, horizon)


def quintile_cuts(values: Iterable[Decimal | int]) -> list[Decimal]:
    """The 20th, 40th, 60th and 80th percentiles by nearest rank (the value at rank ceil(q n))."""
    ordered = sorted(Decimal(v) for v in values)
    if not ordered:
        return []
    return [ordered[math.ceil(q * len(ordered) / 5) - 1] for q in (1, 2, 3, 4)]


def quintile_score(value: Decimal | int, cuts: list[Decimal], higher_is_better: bool = True) -> int:
    """1..5: one more than the number of cut points the value beats (strictly)."""
    value = Decimal(value)
    return 1 + sum(1 for cut in cuts if (value > cut if higher_is_better else value < cut))


def rfm_segment(r: int, f: int, m: int) -> str:
    """The named segment of an RFM score (RFM_SEGMENTS: on R and FM = round-half-up((F + M) / 2))."""
    fm = (f + m + 1) // 2
    for name, rs, fms in RFM_SEGMENTS:
        if r in rs and fm in fms:
            return name
    raise ValueError(f"no RFM segment for R={r}, FM={fm}")  # the table covers the grid: a bug


def attachment(facts: CustomerFacts, config: AnalyticsConfig) -> Decimal:
    """0..1: weighted satisfaction and engagement, less penalties per complaint (more when unresolved).

    satisfaction = CSI / 100 (0.5 with no survey answered); engagement = mean of the survey answer rate and
    the newest lead's score / 100, those known (0.5 when neither is)."""
    satisfaction = facts.csi / 100 if facts.csi is not None else Decimal("0.5")
    signals = []
    if facts.surveys_requested:
        signals.append(Decimal(facts.survey_responses) / Decimal(facts.surveys_requested))
    if facts.lead_score is not None:
        signals.append(Decimal(facts.lead_score) / 100)
    engagement = sum(signals, Decimal(0)) / len(signals) if signals else Decimal("0.5")
    value = (config.attachment_weight_satisfaction * satisfaction + config.attachment_weight_engagement * engagement
             - config.attachment_complaint_penalty * facts.complaints
             - config.attachment_unresolved_penalty * facts.unresolved_complaints)
    return min(max(value, Decimal(0)), Decimal(1)).quantize(_RATIO, rounding=ROUND_HALF_UP)


def association_rules(baskets: Iterable[Iterable[str]], config: AnalyticsConfig) -> list[dict[str, Any]]:
    """Rules "bought A -> buys B" over customers' baskets (every SKU a customer bought): support = share
    of baskets with A and B, confidence = that / share with A, lift = confidence / share with B. Kept
    where the pair occurs min_pair_count times, support >= min_support, confidence >= min_confidence;
    strongest first (confidence, lift, support, then names), at most max_rules."""
    baskets = [frozenset(b) for b in baskets]
    n = len(baskets)
    if not n:
        return []
    single: Counter[str] = Counter()
    pairs: Counter[tuple[str, str]] = Counter()
    for basket in baskets:
        single.update(basket)
        pairs.update(combinations(sorted(basket), 2))
    rules: list[dict[str, Any]] = []
    for (a, b), both in pairs.items():
        if both < config.min_pair_count:
            continue
        support = Decimal(both) / n
        if support < config.min_support:
            continue
        for first, then in ((a, b), (b, a)):
            confidence = Decimal(both) / single[first]
            if confidence < config.min_confidence:
                continue
            lift = confidence / (Decimal(single[then]) / n)
            rules.append({"if": first, "then": then, "count": both, "support": _ratio(support),
                          "confidence": _ratio(confidence), "lift": _ratio(lift)})
    rules.sort(key=lambda r: (-Decimal(r["confidence"]), -Decimal(r["lift"]), -Decimal(r["support"]),
                              r["if"], r["then"]))
    return rules[: config.max_rules]


# --- the model of the base ------------------------------------------------------------------------

def cohort_of(first_purchase: datetime) -> str:
    """A customer's cohort: the (UTC) year of their first paid order."""
    return str(first_purchase.year)


def recency_cell(purchases: list[Purchase], end: datetime, config: AnalyticsConfig, cells: int) -> int | None:
    """1 + whole periods between the newest purchase at or before `end` and `end`, at most `cells`."""
    before = [p.at for p in purchases if p.at <= end]
    if not before:
        return None
    return min(cells, 1 + (end - max(before)) // config.period)


def estimate_model(all_facts: Iterable[CustomerFacts], as_of: datetime, config: AnalyticsConfig) -> Model:
    """The model of the base as of `as_of` (purchases after it ignored): see the module docstring."""
    customers = sorted(((f.customer_id, _until(f, as_of)) for f in all_facts), key=lambda item: item[0])
    buyers = [(cid, purchases) for cid, purchases in customers if purchases]
    period = config.period
    cells = len(config.default_purchase_probabilities)
    ends = [as_of - k * period for k in range(1, config.lookback_periods + 1)]  # ends of past periods
    # Retention: of those who bought in the period ending at `end`, the share who bought in the next one.
    retained: dict[str, list[int]] = {}
    moved = [[0, 0] for _ in range(cells)]  # per recency cell: [customers in the cell, of them bought next]
    intervals: list[Decimal] = []
    for _, purchases in buyers:
        cohort = cohort_of(purchases[0].at)
        for end in ends:
            cell = recency_cell(purchases, end, config, cells)
            if cell is None:
                continue
            bought_next = any(end < p.at <= end + period for p in purchases)
            moved[cell - 1][0] += 1
            moved[cell - 1][1] += bought_next
            if cell == 1:
                counts = retained.setdefault(cohort, [0, 0])
                counts[0] += 1
                counts[1] += bought_next
        if len(purchases) >= 2:
            intervals.append(_mean_interval(purchases))
    pooled = [sum(c[0] for c in retained.values()), sum(c[1] for c in retained.values())]
    base_rate = (_ratio(Decimal(pooled[1]) / pooled[0]) if pooled[0] >= config.min_observations
                 else _ratio(config.default_retention))
    by_cohort = {cohort: {"rate": (_ratio(Decimal(kept) / seen) if seen >= config.min_observations else base_rate),
                          "observations": seen, "estimated": seen >= config.min_observations}
                 for cohort, (seen, kept) in sorted(retained.items())}
    probabilities = [
        {"cell": j + 1, "probability": (_ratio(Decimal(bought) / seen) if seen >= config.min_observations
                                        else _ratio(config.default_purchase_probabilities[j])),
         "observations": seen, "estimated": seen >= config.min_observations}
        for j, (seen, bought) in enumerate(moved)]
    recency = [(as_of - purchases[-1].at).days for _, purchases in buyers]
    frequency = [len(purchases) for _, purchases in buyers]
    monetary = [sum((p.net for p in purchases), Decimal(0)) for _, purchases in buyers]
    typical = (_median(intervals).quantize(Decimal(1), rounding=ROUND_HALF_UP)
               if len(intervals) >= config.min_observations else Decimal(config.typical_interval_days))
    return {
        "as_of": as_of.isoformat(),
        "currency": config.currency,
        "customers": len(customers),
        "buyers": len(buyers),
        "period_days": config.period_days,
        "horizon_periods": config.horizon_periods,
        "discount_per_period": str(config.discount_per_period),
        "margin_rate": str(config.margin_rate),
        "retention": {"base": base_rate, "observations": pooled[0], "by_cohort": by_cohort},
        "migration": probabilities,
        "typical_interval_days": int(typical),
        "rfm_cuts": {"recency_days": [int(c) for c in quintile_cuts(recency)],
                     "frequency": [int(c) for c in quintile_cuts(frequency)],
                     "monetary": [_money(c) for c in quintile_cuts(monetary)]},
        "rules": association_rules(({sku for p in purchases for sku in p.skus} for _, purchases in buyers), config),
    }


# --- one customer ---------------------------------------------------------------------------------

def instant_of(facts: CustomerFacts, model: Model) -> datetime:
    """The instant a customer's analytics are computed as of: the model's, or the newest event if later."""
    model_at = _at(model["as_of"])
    if facts.last_activity_at is not None and facts.last_activity_at > model_at:
        return facts.last_activity_at
    return model_at


def customer_analytics(facts: CustomerFacts, model: Model, config: AnalyticsConfig,
                       as_of: datetime | None = None) -> dict[str, Any]:
    """Every figure of one customer as of `as_of` (default `instant_of`), against the base's `model`."""
    instant = as_of if as_of is not None else instant_of(facts, model)
    purchases = _until(facts, instant)
    historic = sum((p.net for p in purchases), Decimal(0))
    answer: dict[str, Any] = {
        "as_of": instant.isoformat(),
        "model_as_of": model["as_of"],
        "currency": config.currency,
        "value": _value(purchases, historic, instant, model, config),
        "rfm": _rfm(purchases, historic, instant, model),
        "loyalty": _loyalty(facts, purchases, instant, config),
        "churn": _churn(facts, purchases, instant, model, config),
        "relationship": _relationship(facts, purchases, instant),
        "cross_sell": _cross_sell(purchases, model, config),
        "unconverted_orders": facts.unconverted,
    }
    return answer


def _value(purchases: list[Purchase], historic: Decimal, instant: datetime, model: Model,
           config: AnalyticsConfig) -> dict[str, Any]:
    value: dict[str, Any] = {"historic": _money(historic), "historic_margin": _money(historic * config.margin_rate),
                             "retention_clv": None, "migration_clv": None, "margin_per_period": None,
                             "retention_rate": None, "cohort": None, "recency_cell": None,
                             "period_days": model["period_days"], "horizon_periods": model["horizon_periods"]}
    if not purchases:
        return value
    period = timedelta(days=model["period_days"])
    tenure = max(1, math.ceil((instant - purchases[0].at) / period))
    margin = historic * Decimal(model["margin_rate"]) / tenure
    cohort = cohort_of(purchases[0].at)
    found = model["retention"]["by_cohort"].get(cohort)
    retention = Decimal(found["rate"] if found else model["retention"]["base"])
    probabilities = tuple(Decimal(cell["probability"]) for cell in model["migration"])
    cell = min(len(probabilities), 1 + (instant - purchases[-1].at) // period)
    discount = Decimal(model["discount_per_period"])
    horizon = model["horizon_periods"]
    # Lost for good: a customer who did not buy in the current period has left; no future value.
    kept = margin * _retention_factor(retention, discount, horizon) if cell == 1 else Decimal(0)
    value.update(retention_clv=_money(kept),
                 migration_clv=_money(margin * _migration_factor(probabilities, cell, discount, horizon)),
                 margin_per_period=_money(margin), retention_rate=str(retention), cohort=cohort, recency_cell=cell)
    return value


def _rfm(purchases: list[Purchase], historic: Decimal, instant: datetime, model: Model) -> dict[str, Any] | None:
    cuts = model["rfm_cuts"]
    if not purchases or not cuts["frequency"]:
        return None
    recency = (instant - purchases[-1].at).days
    r = quintile_score(recency, [Decimal(c) for c in cuts["recency_days"]], higher_is_better=False)
    f = quintile_score(len(purchases), [Decimal(c) for c in cuts["frequency"]])
    m = quintile_score(historic, [Decimal(c) for c in cuts["monetary"]])
    return {"recency_days": recency, "frequency": len(purchases), "monetary": _money(historic),
            "r": r, "f": f, "m": m, "score": f"{r}{f}{m}", "segment": rfm_segment(r, f, m)}


def _loyalty(facts: CustomerFacts, purchases: list[Purchase], instant: datetime,
             config: AnalyticsConfig) -> dict[str, Any]:
    attached = attachment(facts, config)
    recent = bool(purchases) and (instant - purchases[-1].at).days <= config.repeat_within_days
    repeat_high = len(purchases) >= config.repeat_min_orders and recent
    promotion = (Decimal(sum(p.discounted for p in purchases)) / len(purchases)) if purchases else Decimal(0)
    dissatisfied = facts.complaints > 0 or (facts.csi is not None and facts.csi < config.dissatisfied_below_csi)
    high = attached >= config.attachment_high
    kind, reason = loyalty_type(len(purchases), high, repeat_high, promotion, dissatisfied, config)
    return {"type": kind, "reason": reason, "attachment": str(attached), "attachment_level": "high" if high else "low",
            "repeat_purchase": "high" if repeat_high else "low", "promotion_share": _ratio(promotion),
            "dissatisfied": dissatisfied, "csi": str(facts.csi) if facts.csi is not None else None}


def loyalty_type(paid_orders: int, attachment_high: bool, repeat_high: bool, promotion_share: Decimal,
                 dissatisfied: bool, config: AnalyticsConfig) -> tuple[str | None, str]:
    """The loyalty type (seed 001) and why, the first rule that holds, in this order."""
    if paid_orders < 2:
        return None, "fewer than two purchases: too early to judge loyalty"
    if attachment_high and repeat_high:
        return "super_value", "high attachment and high repeat purchase"
    if promotion_share >= config.incentive_min_share:
        return "incentive", "buys mostly when there is a promotion"
    if repeat_high and dissatisfied:
        return "monopoly", "keeps buying despite complaints or low satisfaction: no alternative"
    if repeat_high:
        return "inertia", "keeps buying out of habit, little attachment"
    return "price", "does not come back regularly: held only by the offer of the day"


def _churn(facts: CustomerFacts, purchases: list[Purchase], instant: datetime, model: Model,
           config: AnalyticsConfig) -> dict[str, Any] | None:
    if not purchases:
        return None
    days_since = Decimal((instant - purchases[-1].at).total_seconds()) / 86400
    own = _mean_interval(purchases) if len(purchases) >= 2 else None
    expected = max(own if own is not None else Decimal(model["typical_interval_days"]), Decimal(1))
    score, reasons = 0, []
    overdue = days_since / expected
    for ratio, points in config.churn_overdue_points:
        if overdue >= ratio:
            score += points
            reasons.append(f"last purchase {int(days_since)} days ago, {overdue:.1f}x the usual {int(expected)} days")
            break
    if facts.unresolved_complaints:
        score += config.churn_unresolved_complaint_points
        reasons.append(f"{facts.unresolved_complaints} unresolved complaint(s)")
    if facts.complaints:
        score += min(config.churn_complaint_points * facts.complaints, config.churn_complaint_points_max)
        reasons.append(f"{facts.complaints} complaint(s)")
    if facts.sla_breaches:
        score += min(config.churn_sla_breach_points * facts.sla_breaches, config.churn_sla_breach_points_max)
        reasons.append(f"{facts.sla_breaches} missed service deadline(s)")
    window = timedelta(days=config.spend_window_days)
    recent = sum((p.net for p in purchases if instant - window < p.at), Decimal(0))
    before = sum((p.net for p in purchases if instant - 2 * window < p.at <= instant - window), Decimal(0))
    if before > 0 and recent < before * config.spend_fall_ratio:
        score += config.churn_falling_spend_points
        reasons.append(f"spend fell from {_money(before)} to {_money(recent)} over {config.spend_window_days} days")
    if facts.csi is not None and facts.csi < config.dissatisfied_below_csi:
        score += config.churn_low_satisfaction_points
        reasons.append(f"satisfaction {facts.csi} of 100")
    score = min(score, 100)
    risk = "high" if score >= config.churn_high_from else "medium" if score >= config.churn_medium_from else "low"
    return {"risk": risk, "score": score, "reasons": reasons, "days_since_last_purchase": int(days_since),
            "expected_interval_days": int(expected.quantize(Decimal(1), rounding=ROUND_HALF_UP))}


def _relationship(facts: CustomerFacts, purchases: list[Purchase], instant: datetime) -> dict[str, Any]:
    since = facts.first_seen_at or (purchases[0].at if purchases else None)
    products = sorted({sku for p in purchases for sku in p.skus})
    return {
        "length_days": (instant - since).days if since else 0,
        "depth": {"paid_orders": len(purchases), "products": len(products), "share_of_wallet": None},
        "breadth": {"channels": list(facts.channels), "products": products, "services": list(facts.origins)},
    }


def _cross_sell(purchases: list[Purchase], model: Model, config: AnalyticsConfig) -> list[dict[str, Any]]:
    bought = {sku for p in purchases for sku in p.skus}
    suggestions: dict[str, dict[str, Any]] = {}
    for rule in model["rules"]:  # strongest first: the first rule naming a product speaks for it
        if rule["if"] in bought and rule["then"] not in bought and rule["then"] not in suggestions:
            suggestions[rule["then"]] = {"sku": rule["then"], "because": rule["if"],
                                         "confidence": rule["confidence"], "lift": rule["lift"]}
    return list(suggestions.values())[: config.max_suggestions]


# --- small helpers ---------------------------------------------------------------------------------

def _mean_interval(purchases: list[Purchase]) -> Decimal:
    """Mean days between consecutive purchases (at least two)."""
    span = Decimal((purchases[-1].at - purchases[0].at).total_seconds()) / 86400
    return span / (len(purchases) - 1)


def _median(values: list[Decimal]) -> Decimal:
    ordered = sorted(values)
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _dec(amount: Any) -> Decimal:
    try:
        return Decimal(str(amount)) if amount is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _money(amount: Decimal) -> str:
    return str(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def _ratio(value: Decimal) -> str:
    return str(value.quantize(_RATIO, rounding=ROUND_HALF_UP))
