"""The 360° fold, alone: what each event does to the view, and that any interleaving of origins gives
the same view (which is what lets a rebuild equal the live view)."""

from __future__ import annotations

import uuid

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_customer360 import view as views

CUSTOMER = str(uuid.uuid4())


def envelope(origin, position, previous, type_, payload, at):
    return {
        "event_id": str(uuid.uuid4()), "type": type_, "version": 1, "origin": origin, "position": position,
        "previous": previous, "occurred_at": f"2026-11-{at:02d}T10:00:00+00:00", "customer_id": CUSTOMER,
        "correlation_id": None, "causation_id": None, "payload": payload,
    }


CUSTOMER_EVENTS = [
    envelope("customer", 1, 0, "customer_registered",
             {"customer_id": CUSTOMER, "name": "Li Na", "email": "li@example.com", "phone": None, "company": None,
              "source_channel": "web"}, 1),
    envelope("customer", 2, 1, "customer_consent_changed",
             {"customer_id": CUSTOMER, "channel": "email", "granted": True, "source": "web", "at": "2026-11-02"}, 2),
    envelope("customer", 3, 2, "customer_profile_changed",
             {"customer_id": CUSTOMER, "changes": {"company": "Acme"}}, 3),
    envelope("customer", 4, 3, "customer_graded",
             {"customer_id": CUSTOMER, "grade": "key", "scores": {"value": 5, "structure": 4, "loyalty": 4},
              "reason": None}, 4),
]
OTHER_EVENTS = [
    envelope("marketing", 1, 0, "lead_captured", {}, 5),
    envelope("sales", 7, 0, "opportunity_opened", {}, 6),
    envelope("order", 3, 0, "order_paid", {}, 7),
    envelope("order", 9, 3, "order_paid", {}, 8),
    envelope("loyalty", 2, 0, "points_earned", {}, 9),
]


def fold(events):
    state = None
    for event in events:
        state = views.apply(state, event)
    return state


def test_customer_events_build_the_profile_consents_and_grade():
    state = fold(CUSTOMER_EVENTS)
    assert state["profile"] == {"name": "Li Na", "email": "li@example.com", "phone": None, "company": "Acme",
                                "source_channel": "web"}
    assert state["consents"]["email"]["granted"] is True
    assert state["grade"]["grade"] == "key"
    assert state["lifecycle_stage"] == "prospect"
    assert state["last_activity_at"] == "2026-11-04T10:00:00+00:00"


def test_the_stage_is_the_furthest_reached_and_a_second_paid_order_makes_a_repeat_customer():
    state = fold(CUSTOMER_EVENTS + OTHER_EVENTS)
    assert state["lifecycle_stage"] == "repeat_customer"
    assert state["relationship_phase"] == "consolidation"
    assert state["events"] == {"customer": 4, "marketing": 1, "sales": 1, "order": 2, "loyalty": 1}


def test_an_event_from_another_service_may_arrive_before_registration():
    state = fold([OTHER_EVENTS[2], *CUSTOMER_EVENTS])
    assert state["profile"]["name"] == "Li Na"
    assert state["lifecycle_stage"] == "customer"
    assert state["first_seen_at"] == "2026-11-01T10:00:00+00:00"


def test_timeline_summaries_read_as_sentences():
    assert views.timeline_summary(CUSTOMER_EVENTS[0]) == "registered via web"
    assert views.timeline_summary(OTHER_EVENTS[4]) == "points earned"


@st.composite
def interleavings(draw):
    """The same per-origin streams, merged across origins in any order."""
    streams = {}
    for event in CUSTOMER_EVENTS + OTHER_EVENTS:
        streams.setdefault(event["origin"], []).append(event)
    merged = []
    while any(streams.values()):
        origin = draw(st.sampled_from(sorted(o for o, s in streams.items() if s)))
        merged.append(streams[origin].pop(0))
    return merged


@settings(max_examples=200)
@given(interleavings())
def test_any_interleaving_of_origins_gives_the_same_view(events):
    assert fold(events) == fold(CUSTOMER_EVENTS + OTHER_EVENTS)
