"""A seeded history of a customer base: a few thousand customers over two simulated years, as the envelopes
the six services would publish (registrations, consents, orders with lines, payments, surveys, cases,
complaints, SLA breaches), each customer drawn from a behaviour whose analytics are known in advance.

Used to check that the analytics are sane on a realistic base (loyal customers rank high on lifetime
value, dormant ones are at risk, every loyalty type is populated) at the level of the pure fold, in
seconds; `python -m tests.support.history 3000` prints the counts of a generated base.
"""

from __future__ import annotations

import random
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from crm_contracts.catalog import load_all
from tests.support.envelopes import Stream, payload

START = datetime(2025, 1, 1, 9, tzinfo=UTC)
END = datetime(2027, 1, 1, tzinfo=UTC)
#: Behaviours and their share of the base. Each says what its analytics should show.
BEHAVIOURS = {
    "loyal": 0.15,        # buys every month or so, satisfied, answers surveys: super-value, high CLV
    "inertia": 0.12,      # buys regularly, never answers a survey: inertia
    "monopoly": 0.08,     # buys regularly despite complaints and low scores: monopoly
    "incentive": 0.10,    # buys when there is a discount: incentive
    "price": 0.10,        # two purchases a year apart: price
    "dormant": 0.15,      # bought in the first year, nothing for the last nine months: at risk
    "one_off": 0.15,      # one purchase
    "prospect": 0.15,     # registered, never bought
}
#: Products, and the one each is often bought with (the cross-sell the rules should find).
PARTNERS = {"CRM-SEAT": "ONBOARD-D", "API-PACK": "DATA-MIGRATION", "ANALYTICS-ADDON": "TRAINING",
            "SUPPORT-PLUS": None, "MOBILE-APP": None}


@dataclass
class History:
    """The envelopes of a generated base, in each origin's publishing order, and who behaves how."""

    envelopes: list[dict[str, Any]] = field(default_factory=list)
    behaviour: dict[str, str] = field(default_factory=dict)
    as_of: datetime = END


def generate(customers: int = 3000, seed: int = 7) -> History:
    """A base of `customers`, the same for the same seed."""
    load_all()
    rnd = random.Random(seed)
    raw: list[tuple[datetime, str, str, dict[str, Any]]] = []
    history = History()
    names = list(BEHAVIOURS)
    weights = [BEHAVIOURS[n] for n in names]
    for n in range(customers):
        cid = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        kind = rnd.choices(names, weights)[0]
        history.behaviour[cid] = kind
        _customer(rnd, raw, cid, kind, n)
    raw.sort(key=lambda item: (item[0], item[1], item[2]))
    streams: dict[str, Stream] = {}
    for at, origin, kind, data in raw:
        stream = streams.setdefault(origin, Stream(origin))
        history.envelopes.append(stream.publish(kind, data, occurred_at=at.isoformat()))
    return history


def _customer(rnd: random.Random, raw: list, cid: str, kind: str, n: int) -> None:
    def add(when: datetime, origin: str, event: str, **fields: Any) -> None:
        raw.append((when, origin, event, payload(event, customer_id=cid, **fields)))

    joined = START + timedelta(days=rnd.uniform(0, 150))
    add(joined, "customer", "customer_registered", name=f"Customer {n}", email=f"c{n}@example.com",
        phone=None, source_channel=rnd.choice(["web", "phone", "email", "event"]))
    for channel in ("email", "sms", "phone", "post"):
        if rnd.random() < 0.6:
            add(joined, "customer", "customer_consent_changed", channel=channel, granted=True, at=joined.isoformat())
    days = (END - joined).days
    if kind == "loyal":
        dates = _every(rnd, joined, END, 25, 45)
    elif kind in ("inertia", "monopoly"):
        dates = _every(rnd, joined, END, 30, 55)
    elif kind == "incentive":
        dates = _every(rnd, joined, END, 40, 90)
    elif kind == "price":
        first = joined + timedelta(days=rnd.uniform(0, 60))
        dates = [first, END - timedelta(days=rnd.uniform(20, 150))]
    elif kind == "dormant":
        dates = _every(rnd, joined, END - timedelta(days=300), 40, 80)[:6]
    elif kind == "one_off":
        dates = [joined + timedelta(days=rnd.uniform(0, days - 1))]
    else:
        dates = []
    low, high = (2000, 6000) if kind == "loyal" else (500, 3000)
    for at in dates:
        order = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        discounted = (kind == "incentive" and rnd.random() < 0.85) or rnd.random() < 0.05
        lines = _lines(rnd, discounted, low, high)
        total = sum((Decimal(line["line_total"]) for line in lines), Decimal(0))
        add(at, "order", "order_placed", order_id=order, currency="CNY", lines=lines, total=str(total),
            placed_at=at.isoformat(), opportunity_id=None)
        paid = at + timedelta(days=rnd.uniform(1, 5))
        add(paid, "order", "order_paid", order_id=order, currency="CNY", amount=str(total), paid_at=paid.isoformat())
        survey = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        add(paid, "service", "survey_requested", survey_id=survey, subject="order", subject_id=order,
            requested_at=paid.isoformat())
        score = {"loyal": rnd.choice([4, 5, 5]), "monopoly": rnd.choice([1, 2, 2]),
                 "incentive": rnd.choice([3, 4]), "dormant": rnd.choice([2, 3, 4])}.get(kind, rnd.choice([3, 4]))
        answers = {"loyal": 0.9, "inertia": 0.0, "monopoly": 0.7, "incentive": 0.3}.get(kind, 0.3)
        if rnd.random() < answers:
            answered = paid + timedelta(days=1)
            add(answered, "service", "survey_answered", survey_id=survey, subject="order", subject_id=order,
                score=score, answered_at=answered.isoformat(), comment=None)
    if kind == "monopoly" or (kind == "dormant" and rnd.random() < 0.3):
        for _ in range(rnd.randint(1, 2)):
            case = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
            at = END - timedelta(days=rnd.uniform(10, 200))
            add(at, "service", "case_opened", case_id=case, channel=rnd.choice(["email", "phone", "web_form"]),
                opened_at=at.isoformat(), subject="Complaint: late delivery")
            add(at, "service", "complaint_registered", case_id=case, registered_at=at.isoformat())
            if rnd.random() < 0.5:
                add(at + timedelta(hours=30), "service", "case_sla_breached", case_id=case,
                    detected_at=(at + timedelta(hours=30)).isoformat())
            if rnd.random() < 0.5:
                add(at + timedelta(days=3), "service", "complaint_resolved", case_id=case,
                    resolved_at=(at + timedelta(days=3)).isoformat())


def _every(rnd: random.Random, start: datetime, end: datetime, low: float, high: float) -> list[datetime]:
    dates, at = [], start + timedelta(days=rnd.uniform(0, low))
    while at < end - timedelta(days=2):
        dates.append(at)
        at += timedelta(days=rnd.uniform(low, high))
    return dates


def _lines(rnd: random.Random, discounted: bool, low: int, high: int) -> list[dict[str, Any]]:
    first = rnd.choice(list(PARTNERS))
    skus, partner = [first], PARTNERS[first]
    if partner and rnd.random() < 0.6:
        skus.append(partner)
    lines = []
    for sku in skus:
        price = Decimal(rnd.randrange(low, high, 10)) / len(skus)
        discount = Decimal(rnd.choice([10, 15, 20])) if discounted else Decimal(0)
        total = (price * (100 - discount) / 100).quantize(Decimal("0.01"))
        lines.append({"sku": sku, "description": sku.lower(), "quantity": 1, "unit_price": str(price.quantize(
            Decimal("0.01"))), "discount": str(discount), "line_total": str(total)})
    return lines


if __name__ == "__main__":
    generated = generate(int(sys.argv[1]) if len(sys.argv) > 1 else 3000)
    counts: dict[str, int] = {}
    for kind in generated.behaviour.values():
        counts[kind] = counts.get(kind, 0) + 1
    print(f"{len(generated.envelopes)} envelopes, {len(generated.behaviour)} customers: {counts}")
