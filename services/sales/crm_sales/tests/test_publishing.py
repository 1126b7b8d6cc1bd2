"""What sales publishes: every domain event translated through its contract, read from the real feed."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_runtime.feed import EventFeed
from crm_sales.application import Opportunities
from crm_sales.domain import Opportunity
from crm_sales.publishing import translator
from tests.support.publishing import assert_published_under_contracts, domain_event_classes

LINES = [
    {"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50, "unit_price": Decimal("240.00"),
     "discount": Decimal("10.00")},
    {"sku": "ONBOARD", "description": "Onboarding workshop", "quantity": 1, "unit_price": Decimal("1500.00")},
]
PUBLISHED = [
    "opportunity_opened",
    "opportunity_stage_changed",
    "opportunity_stage_changed",
    "opportunity_amount_changed",
    "opportunity_close_date_changed",
    "opportunity_reassigned",
    "quote_sent",
    "quote_rejected",
    "quote_sent",
    "quote_accepted",
    "opportunity_won",
    "opportunity_opened",
    "opportunity_lost",
]


@pytest.fixture
def opportunities(event_store_env):
    app = Opportunities(env=event_store_env)
    yield app
    app.close()


@pytest.fixture
def customer_id():
    return uuid4()


@pytest.fixture
def envelopes(opportunities, customer_id):
    """The feed after one opportunity was worked to won and another lost: every kind of event once."""
    won = opportunities.open(customer_id, "50 CRM seats", "rep-wang-wei", Decimal("12000.00"), "CNY",
                             date(2026, 12, 31), lead_id=uuid4())
    opportunities.move_to_stage(won.id, "qualification")
    opportunities.move_to_stage(won.id, "proposal")
    opportunities.change_amount(won.id, Decimal("13500.00"))
    opportunities.change_expected_close_date(won.id, date(2027, 1, 31))
    opportunities.reassign(won.id, "rep-zhao-lei")
    first = opportunities.send_quote(won.id, LINES).current_quote
    opportunities.reject_quote(won.id, first.quote_id, "price above budget")
    second = opportunities.send_quote(won.id, LINES).current_quote
    opportunities.accept_quote(won.id, second.quote_id)
    opportunities.win(won.id)
    lost = opportunities.open(customer_id, "Support add-on", "rep-wang-wei", Decimal("800.00"), "CNY",
                              date(2026, 12, 15))
    opportunities.lose(lost.id, "chose a competitor on price")
    return EventFeed(opportunities, translator).events_since(0, 1000)


def test_every_event_is_published_in_order_under_its_contract(envelopes, customer_id):
    assert [e["type"] for e in envelopes] == PUBLISHED
    assert_published_under_contracts(envelopes, "sales")
    for envelope in envelopes:
        assert envelope["customer_id"] == envelope["payload"]["customer_id"] == str(customer_id)


def test_the_won_event_carries_the_accepted_quote_for_order(envelopes):
    by_type = {}
    for envelope in envelopes:
        by_type.setdefault(envelope["type"], []).append(envelope["payload"])
    accepted = by_type["quote_accepted"][0]
    sent = next(p for p in by_type["quote_sent"] if p["quote_id"] == accepted["quote_id"])
    (won,) = by_type["opportunity_won"]
    assert (won["quote_id"], won["quote_version"]) == (accepted["quote_id"], 2)
    assert sent["supersedes_quote_id"] == by_type["quote_rejected"][0]["quote_id"]
    assert won["lines"] == sent["lines"]
    assert (won["subtotal"], won["discount_total"], won["total"]) == ("13500.00", "1200.00", "12300.00")
    assert won["lines"][0] == {"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50,
                               "unit_price": "240.00", "discount": "10.00", "line_total": "10800.00"}


def test_every_domain_event_of_an_opportunity_has_a_translation():
    domain_events = domain_event_classes(Opportunity)
    # All but the erasure's mark (customer.customer_erased said it already).
    assert domain_events - {Opportunity.CustomerForgotten} == set(translator.published_classes)
