"""The 360 fold forgets an erased customer (customer.customer_erased) in any interleaving of origins: the
view keeps the anonymous facts (orders, amounts, stages) and no name, email, phone, address or free text
that could name the person, whether the other origins' events come before or after the erasure."""

from __future__ import annotations

import random
import uuid

from crm_customer360 import view as views
from crm_customer360.tests.test_view import CUSTOMER, Journey, day, fold, full_journey

LEAD = str(uuid.uuid4())


def erased_journey() -> list[dict]:
    journey = full_journey(Journey(), LEAD, [("12400.00", 20), ("99.99", 90)])
    journey.add("customer", "customer_erased", day(120), request_id="DSR-1", erased_at=day(120))
    return journey.events


def interleaving(events: list[dict], seed: int) -> list[dict]:
    """The events in a random order across origins, each origin's own order kept (as consumers see it)."""
    streams: dict[str, list[dict]] = {}
    for event in events:
        streams.setdefault(event["origin"], []).append(event)
    rng, merged = random.Random(seed), []
    while any(streams.values()):
        origin = rng.choice([o for o, s in streams.items() if s])
        merged.append(streams[origin].pop(0))
    return merged


def personal_values(events: list[dict]) -> set[str]:
    """Every name, email, phone and address line the journey's events carried."""
    found = set()
    for event in events:
        payload = event["payload"]
        for key in ("name", "email", "phone", "company", "subject"):
            if isinstance(payload.get(key), str) and len(payload[key]) > 3:
                found.add(payload[key])
    return found


def test_every_interleaving_forgets_the_person_and_gives_the_same_view():
    events = erased_journey()
    first = fold(events)[0][CUSTOMER]
    for seed in range(20):
        assert fold(interleaving(events, seed))[0][CUSTOMER] == first, seed
    assert first["profile"]["erased"] is True and first["profile"]["name"] is None
    assert first["addresses"] == {} and first["erased_at"] == day(120)
    assert first["orders"]["revenue"] and first["lifecycle_stage"]  # anonymous facts stay
    shown = repr(first)
    secrets = personal_values(events)
    assert secrets  # the journey did carry personal data
    for secret in secrets:
        assert secret not in shown, secret


def test_an_erased_customers_timeline_payloads_keep_no_personal_keys():
    for event in erased_journey():
        forgotten = views.forget_payload(event["payload"])
        assert not {"name", "email", "phone", "address", "recipient", "subject"} & set(forgotten)
        assert views.forgotten_summary(event["type"], event["payload"])
