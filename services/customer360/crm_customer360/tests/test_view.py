"""The 360° fold, alone: what each event does to the view, each rule of the stages, and that any
interleaving of the six origins gives the same views and leads (which is what lets a rebuild equal the
live view). Payloads come from the contracts' recorded samples (tests/support/envelopes.py)."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from crm_contracts.catalog import load_all
from crm_contracts.customer360 import Customer360Schema
from crm_customer360 import view as views
from tests.support.envelopes import Stream, payload

load_all()  # every contract module registers its events (and samples) in the catalog

CUSTOMER = str(uuid.uuid4())
LEAD = str(uuid.uuid4())
CAMPAIGN = str(uuid.uuid4())


def day(n: int, month: int = 1, year: int = 2027) -> str:
    """An instant `n` days after the first of `month` (n may run past the month's end)."""
    from datetime import UTC, datetime, timedelta

    return (datetime(year, month, 1, 10, tzinfo=UTC) + timedelta(days=n - 1)).isoformat()


class Journey:
    """One customer's events, each origin's stream chained as its relay would chain it."""

    def __init__(self, customer_id: str = CUSTOMER) -> None:
        self.customer_id = customer_id
        self.streams: dict[str, Stream] = {}
        self.events: list[dict[str, Any]] = []

    def add(self, origin: str, event_type: str, at: str, **fields: Any) -> dict[str, Any]:
        data = payload(event_type, **fields)
        if "customer_id" in data or origin != "marketing":
            data["customer_id"] = fields.get("customer_id", self.customer_id)
        envelope = self.streams.setdefault(origin, Stream(origin)).publish(event_type, data, occurred_at=at)
        self.events.append(envelope)
        return envelope


def fold(events: list[dict[str, Any]], clock: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Customers and leads after `events`, one envelope per batch, each touched view finished."""
    customers: dict[str, Any] = {}
    leads: dict[str, Any] = {}
    for event in events:
        for cid in views.fold_batch(customers, leads, [event]):
            views.finish(customers[cid], clock)
    return customers, leads


def view_of(events: list[dict[str, Any]], clock: str | None = None) -> dict[str, Any]:
    return fold(events, clock)[0][CUSTOMER]


def registered(journey: Journey, at: str = day(1)) -> None:
    journey.add("customer", "customer_registered", at, name="Li Na", email="li@example.com", source_channel="web")


def order(journey: Journey, order_id: str, amount: str, placed: str, paid: str | None) -> None:
    journey.add("order", "order_placed", placed, order_id=order_id, total=amount, currency="CNY", placed_at=placed)
    if paid:
        journey.add("order", "order_paid", paid, order_id=order_id, amount=amount, currency="CNY", paid_at=paid)


# --- what each event does ------------------------------------------------------------------------

def test_customer_events_build_the_profile_consents_grade_and_addresses():
    j = Journey()
    registered(j)
    j.add("customer", "customer_consent_changed", day(2))
    j.add("customer", "customer_profile_changed", day(3), changes={"company": "Acme"})
    j.add("customer", "customer_graded", day(4))
    j.add("customer", "customer_address_changed", day(5))
    state = view_of(j.events)
    assert state["profile"]["company"] == "Acme" and state["profile"]["name"] == "Li Na"
    assert state["consents"]["email"]["granted"] is True
    assert state["grade"]["grade"] == "key"
    assert state["addresses"]["shipping"]["city"] == "Beijing"
    assert (state["lifecycle_stage"], state["relationship_phase"]) == ("prospect", "breakthrough")
    assert state["last_activity_at"] == day(5)


def test_opportunities_give_the_open_pipeline_and_won_revenue_per_owner():
    j, first, second, third = Journey(), str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    j.add("sales", "opportunity_opened", day(1), opportunity_id=first, amount="1000.00", owner="rep-a")
    j.add("sales", "opportunity_opened", day(1), opportunity_id=second, amount="2000.50", owner="rep-b")
    j.add("sales", "opportunity_opened", day(1), opportunity_id=third, amount="50.00", owner="rep-a")
    j.add("sales", "opportunity_amount_changed", day(2), opportunity_id=second, amount="2500.50")
    j.add("sales", "opportunity_reassigned", day(2), opportunity_id=second, owner="rep-c")
    j.add("sales", "quote_sent", day(3), opportunity_id=first, total="990.00")
    j.add("sales", "opportunity_won", day(4), opportunity_id=first, owner="rep-a", total="990.00")
    j.add("sales", "opportunity_lost", day(4), opportunity_id=third, owner="rep-a")
    pipeline = view_of(j.events)["pipeline"]
    assert pipeline["open_total"] == {"CNY": "2500.50"}
    assert pipeline["won_total"] == {"CNY": "990.00"}
    assert pipeline["won_by_owner"] == {"rep-a": {"CNY": "990.00"}}
    assert pipeline["owners"] == ["rep-a", "rep-c"]
    assert pipeline["opportunities"][first]["quote"]["status"] == "sent"
    assert (pipeline["opportunities"][third]["status"], view_of(j.events)["lifecycle_stage"]) == ("lost", "opportunity")


def test_orders_give_revenue_outstanding_balance_and_the_last_order_in_decimal_strings():
    j, first, second = Journey(), str(uuid.uuid4()), str(uuid.uuid4())
    order(j, first, "100.10", day(1), day(2))
    j.add("order", "order_refunded", day(3), order_id=first, refunded_total="0.20")
    order(j, second, "0.20", day(4), None)
    j.add("order", "order_payment_recorded", day(5), order_id=second, paid_total="0.05")
    orders = view_of(j.events)["orders"]
    assert orders["revenue"] == {"CNY": "99.95"}  # 100.10 - 0.20 + 0.05, in Decimal: no float drift
    assert orders["outstanding"] == {"CNY": "0.15"}
    assert orders["last_order"]["order_id"] == second and orders["last_order"]["status"] == "placed"
    assert orders["by_id"][first]["refunded"] == "0.20"


def test_a_cancelled_order_owes_nothing():
    j, order_id = Journey(), str(uuid.uuid4())
    order(j, order_id, "300.00", day(1), None)
    j.add("order", "order_cancelled", day(2), order_id=order_id, amount_paid="0.00")
    orders = view_of(j.events)["orders"]
    assert orders["outstanding"] == {} and orders["by_id"][order_id]["status"] == "cancelled"


def test_cases_give_open_cases_sla_breaches_complaints_and_the_csi():
    j, first, second = Journey(), str(uuid.uuid4()), str(uuid.uuid4())
    j.add("service", "case_opened", day(1), case_id=first)
    j.add("service", "case_sla_breached", day(2), case_id=first)
    j.add("service", "complaint_registered", day(2), case_id=first)
    j.add("service", "case_opened", day(3), case_id=second)
    j.add("service", "case_resolved", day(4), case_id=second)
    j.add("service", "survey_completed", day(5), case_id=second, score=4)
    j.add("service", "survey_answered", day(6), survey_id=str(uuid.uuid4()), subject_id=str(uuid.uuid4()), score=5)
    service = view_of(j.events)["service"]
    assert (service["open_cases"], service["sla_breaches"]) == (1, 1)
    assert service["complaints"] == {"total": 1, "unresolved": 1}
    assert service["satisfaction"] == {"csi": "87.5", "responses": 2}  # mean 4.5 on 1-5 -> 87.5 on 0-100
    j.add("service", "complaint_resolved", day(7), case_id=first)
    assert view_of(j.events)["service"]["complaints"] == {"total": 1, "unresolved": 0}


def test_loyalty_shows_tier_balance_and_the_points_expiring_soon():
    j, old, new = Journey(), str(uuid.uuid4()), str(uuid.uuid4())
    j.add("loyalty", "loyalty_account_enrolled", day(1))
    j.add("loyalty", "points_earned", day(1), order_id=old, points=100, balance=100, earned_at=day(1),
          expires_at=day(60))
    j.add("loyalty", "points_earned", day(2), order_id=new, points=50, balance=150, earned_at=day(2),
          expires_at=day(400))
    j.add("loyalty", "points_redeemed", day(3), points=30, balance=120)  # oldest first: 70 of the old lot left
    j.add("loyalty", "tier_changed", day(3), to_tier="silver")
    loyalty = view_of(j.events)["loyalty"]
    assert (loyalty["tier"], loyalty["balance"]) == ("silver", 120)
    assert loyalty["points_expiring"] == 70 and loyalty["next_expiry_at"] == day(60)
    j.add("loyalty", "points_expired", day(60), points=70, balance=50,
          lots=[{"order_id": old, "earned_at": day(1), "points": 70}])
    assert view_of(j.events)["loyalty"]["points_expiring"] == 0


def test_timeline_summaries_read_as_sentences():
    j = Journey()
    registered(j)
    assert views.timeline_summary(j.events[0]) == "registered via web"
    assert views.timeline_summary(j.add("loyalty", "points_earned", day(2), points=15)) == "earned 15 points"


def test_every_published_event_type_is_known_and_summarised_from_its_sample():
    """A new event type in the catalog fails here until the view decides what it does."""
    for contract in load_all():
        assert contract.type in views.KNOWN_EVENTS, f"{contract.type} is not handled by the 360 view"
        if contract.type not in views.NOT_ABOUT_A_CUSTOMER:
            assert views.TIMELINE_SUMMARIES[contract.type].format(**contract.sample)  # every field it names exists


def test_an_unknown_event_type_is_counted_and_changes_nothing_else():
    j = Journey()
    registered(j)
    before = view_of(j.events)
    j.add("loyalty", "customer_registered", day(2))  # a known payload shape...
    j.events[-1]["type"] = "points_gifted"  # ...under a type this view has never heard of
    j.events.append({**j.events[-1], "customer_id": None, "position": 9, "previous": 1})  # and one about nobody
    after = view_of(j.events)
    assert after["events"] == {"customer": 1, "loyalty": 1}
    assert {k: v for k, v in after.items() if k not in ("events", "last_activity_at", "stage_as_of")} == \
        {k: v for k, v in before.items() if k not in ("events", "last_activity_at", "stage_as_of")}


def test_the_whole_answer_validates_against_the_contract():
    customers, _ = fold(full_journey(Journey(), LEAD, [("700.00", 1), ("12.34", 40)]).events)
    doc = customers[CUSTOMER]
    assert Customer360Schema().validate({**doc, "timeline": [], "timeline_total": 0}) == {}


# --- leads reach the customer ----------------------------------------------------------------------

def lead_events(j: Journey, lead_id: str) -> None:
    j.add("marketing", "lead_captured", day(1), lead_id=lead_id, campaign_id=CAMPAIGN, captured_at=day(1))
    j.add("marketing", "lead_scored", day(2), lead_id=lead_id, score=61)
    j.add("marketing", "lead_qualified", day(3), lead_id=lead_id, campaign_id=CAMPAIGN, score=61, grade="key")
    j.add("marketing", "lead_converted", day(4), lead_id=lead_id, campaign_id=CAMPAIGN, customer_id=None, score=61)


def test_lead_events_before_the_link_reach_the_customer_whichever_arrives_first():
    j = Journey()
    lead_events(j, LEAD)
    linked = j.add("customer", "lead_linked", day(5), lead_id=LEAD, campaign_id=CAMPAIGN)
    marketing = [e for e in j.events if e["origin"] == "marketing"]
    link_last = fold(marketing + [linked])
    link_first = fold([linked] + marketing)
    assert link_last == link_first
    customer = link_last[0][CUSTOMER]
    assert customer["marketing"]["leads"][LEAD]["status"] == "converted"
    assert (customer["marketing"]["lead_score"], customer["marketing"]["lead_grade"]) == (61, "key")
    assert customer["marketing"]["campaigns"] == [CAMPAIGN]
    assert customer["events"] == {"customer": 1, "marketing": 4}
    assert (customer["first_seen_at"], customer["lifecycle_stage"]) == (day(1), "qualified_lead")


def test_a_lead_links_once():
    j, other = Journey(), str(uuid.uuid4())
    lead_events(j, LEAD)
    j.add("customer", "lead_linked", day(5), lead_id=LEAD)
    j.add("customer", "lead_linked", day(6), lead_id=LEAD, customer_id=other)
    customers, leads = fold(j.events)
    assert leads[LEAD]["customer_id"] == CUSTOMER and customers[other]["marketing"]["leads"] == {}


def test_a_lead_never_linked_stays_a_lead():
    j = Journey()
    lead_events(j, LEAD)
    customers, leads = fold(j.events)
    assert customers == {} and leads[LEAD]["events"] == 4 and leads[LEAD]["customer_id"] is None


# --- stages ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(("paid_orders", "stage", "phase"), [
    (1, "customer", "consolidation"), (2, "repeat_customer", "consolidation"),
    (views.LOYAL_MIN_PAID_ORDERS, "loyal", "harvest"),
])
def test_paid_orders_climb_the_ladder(paid_orders, stage, phase):
    j = Journey()
    for n in range(paid_orders):
        order(j, str(uuid.uuid4()), "10.00", day(1 + n), day(1 + n))
    state = view_of(j.events)
    assert (state["lifecycle_stage"], state["relationship_phase"], state["paid_orders"]) == (stage, phase, paid_orders)


def test_dormant_for_the_at_risk_threshold_is_at_risk_and_for_the_churn_threshold_churned():
    j = Journey()
    order(j, str(uuid.uuid4()), "10.00", day(1), day(1))
    quiet = view_of(j.events, clock=day(1 + views.AT_RISK_AFTER_DAYS - 1))
    assert quiet["lifecycle_stage"] == "customer"
    dormant = view_of(j.events, clock=day(1 + views.AT_RISK_AFTER_DAYS))
    assert (dormant["lifecycle_stage"], dormant["relationship_phase"]) == ("at_risk", "dormancy")
    assert f"no order for {views.AT_RISK_AFTER_DAYS} days" in dormant["stage_reasons"]
    churned = view_of(j.events, clock=day(1 + views.CHURNED_AFTER_DAYS))
    assert (churned["lifecycle_stage"], churned["relationship_phase"]) == ("churned", "pause")
    assert churned["stage_reached"] == "customer" and churned["stage_as_of"] == day(1 + views.CHURNED_AFTER_DAYS)


def test_the_stage_is_as_of_the_newest_event_when_the_clock_is_behind():
    j = Journey()
    order(j, str(uuid.uuid4()), "10.00", day(1), day(1))
    j.add("customer", "customer_graded", day(1 + views.CHURNED_AFTER_DAYS))  # a year later, no order
    state = view_of(j.events, clock=day(2))
    assert state["stage_as_of"] == day(1 + views.CHURNED_AFTER_DAYS) and state["lifecycle_stage"] == "churned"


def test_an_unresolved_complaint_puts_a_customer_at_risk():
    j, case = Journey(), str(uuid.uuid4())
    order(j, str(uuid.uuid4()), "10.00", day(1), day(1))
    j.add("service", "case_opened", day(2), case_id=case)
    j.add("service", "complaint_registered", day(2), case_id=case)
    assert view_of(j.events)["stage_reasons"] == ["unresolved complaint"]
    j.add("service", "case_closed", day(3), case_id=case, is_complaint=True)
    assert view_of(j.events)["lifecycle_stage"] == "customer"


def test_spend_falling_by_more_than_half_puts_a_customer_at_risk():
    j = Journey()
    window = views.SPEND_WINDOW_DAYS
    order(j, str(uuid.uuid4()), "1000.00", day(10), day(10))
    order(j, str(uuid.uuid4()), "400.00", day(10 + window), day(10 + window))
    state = view_of(j.events, clock=day(20 + window))
    assert (state["lifecycle_stage"], state["stage_reasons"]) == ("at_risk", ["spend falling in CNY"])
    j2 = Journey()
    order(j2, str(uuid.uuid4()), "1000.00", day(10), day(10))
    order(j2, str(uuid.uuid4()), "600.00", day(10 + window), day(10 + window))
    assert view_of(j2.events, clock=day(20 + window))["lifecycle_stage"] == "repeat_customer"


def test_a_churned_customer_who_buys_again_is_won_back():
    j = Journey()
    order(j, str(uuid.uuid4()), "10.00", day(1), day(1))
    order(j, str(uuid.uuid4()), "10.00", day(2 + views.CHURNED_AFTER_DAYS), day(2 + views.CHURNED_AFTER_DAYS))
    state = view_of(j.events)
    assert (state["lifecycle_stage"], state["relationship_phase"], state["stage_reached"]) == \
        ("won_back", "consolidation", "repeat_customer")


# --- any interleaving of the six origins -----------------------------------------------------------

def full_journey(j: Journey, lead_id: str, orders: list[tuple[str, int]]) -> Journey:
    """Every origin, each event type at least once, for one customer who came from `lead_id`."""
    opportunity, case, account = str(uuid.uuid4()), str(uuid.uuid4()), str(uuid.uuid4())
    lead_events(j, lead_id)
    j.add("marketing", "campaign_launched", day(1), campaign_id=CAMPAIGN)  # about no customer
    registered(j, day(4))
    j.add("customer", "lead_linked", day(4), lead_id=lead_id, campaign_id=CAMPAIGN)
    j.add("customer", "customer_credit_rating_changed", day(5))
    j.add("sales", "opportunity_opened", day(5), opportunity_id=opportunity, lead_id=lead_id, amount=orders[0][0])
    j.add("sales", "opportunity_stage_changed", day(6), opportunity_id=opportunity)
    j.add("sales", "quote_sent", day(6), opportunity_id=opportunity, total=orders[0][0])
    j.add("sales", "quote_accepted", day(7), opportunity_id=opportunity, total=orders[0][0])
    j.add("sales", "opportunity_won", day(7), opportunity_id=opportunity, total=orders[0][0])
    j.add("loyalty", "loyalty_account_enrolled", day(8), account_id=account)
    balance = 0
    for amount, at in orders:
        order_id = str(uuid.uuid4())
        order(j, order_id, amount, day(at), day(at + 2))
        j.add("order", "order_shipped", day(at + 1), order_id=order_id)
        j.add("order", "order_delivered", day(at + 2), order_id=order_id)
        points = int(Decimal(amount))
        balance += points
        j.add("loyalty", "points_earned", day(at + 2), account_id=account, order_id=order_id, points=points,
              balance=balance, earned_at=day(at + 2), expires_at=day(at + 300))
    j.add("order", "order_return_recorded", day(orders[-1][1] + 5), order_id=order_id, refunded_total="1.00")
    j.add("loyalty", "points_taken_back", day(orders[-1][1] + 5), account_id=account, order_id=order_id, points=1,
          balance=balance - 1, lots=[{"order_id": order_id, "earned_at": day(orders[-1][1] + 2), "points": 1}])
    j.add("service", "case_opened", day(9), case_id=case)
    j.add("service", "complaint_registered", day(9), case_id=case)
    j.add("service", "case_sla_breached", day(10), case_id=case)
    j.add("service", "complaint_resolved", day(11), case_id=case)
    j.add("service", "case_closed", day(11), case_id=case, is_complaint=True)
    j.add("service", "survey_completed", day(12), case_id=case, score=3)
    j.add("loyalty", "tier_changed", day(13))["type"] = "points_gifted"  # a type newer than this view
    return j


@st.composite
def journeys(draw):
    """A journey with drawn amounts and order dates, its origins merged in any order, cut into any batches."""
    amounts = st.decimals(min_value="0.01", max_value="99999.99", places=2).map(str)
    orders = draw(st.lists(st.tuples(amounts, st.integers(1, 800)), min_size=1, max_size=3))
    j = full_journey(Journey(), str(uuid.UUID(int=draw(st.integers(1, 2**64)))), orders)
    streams: dict[str, list[dict[str, Any]]] = {}
    for event in j.events:
        streams.setdefault(event["origin"], []).append(event)
    merged = []
    while any(streams.values()):
        origin = draw(st.sampled_from(sorted(o for o, s in streams.items() if s)))
        merged.append(streams[origin].pop(0))
    cuts = sorted(draw(st.sets(st.integers(1, len(merged) - 1), max_size=6)))
    batches = [merged[a:b] for a, b in zip([0, *cuts], [*cuts, len(merged)], strict=True)]
    clock = draw(st.none() | st.integers(1, 1200).map(day))
    return j.events, batches, clock


def fold_in_batches(batches: list[list[dict[str, Any]]], clock: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    customers: dict[str, Any] = {}
    leads: dict[str, Any] = {}
    for batch in batches:
        for cid in views.fold_batch(customers, leads, batch):
            views.finish(customers[cid], clock)
    return customers, leads


@settings(max_examples=150, deadline=None)
@given(journeys())
def test_any_interleaving_and_batching_of_the_six_origins_gives_the_same_views(drawn):
    in_order, batches, clock = drawn
    assert fold_in_batches(batches, clock) == fold_in_batches([in_order], clock)
