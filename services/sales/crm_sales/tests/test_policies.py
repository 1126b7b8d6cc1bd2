"""The sales service's policies, fed by a PolicyInbox on the in-memory store and on PostgreSQL with
contract-shaped envelopes (tests.support.envelopes), each reaction applied exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

from crm_sales.domain import Opportunity
from crm_sales.policies import DEFAULT_OWNER
from tests.support.envelopes import payload

LEAD = uuid.UUID("7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d")
CUSTOMER = uuid.UUID("3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e")


def test_a_linked_lead_opens_its_opportunity_once_even_when_delivered_twice(opportunities, inbox, customer):
    event = customer.publish("lead_linked", payload("lead_linked"))
    first, again = inbox.receive([event]), inbox.receive([event])
    assert (first.applied, again.applied, again.duplicates) == (1, 0, 1)
    opened = opportunities.opportunity(Opportunity.id_for_lead(LEAD))
    assert (opened.customer_id, opened.lead_id, opened.title, opened.owner) == (
        CUSTOMER, LEAD, "Bright Retail (Zhang Min)", "rep-wang-wei"
    )
    assert (opened.amount, opened.currency) == (Decimal("12000.00"), "CNY")
    assert opened.expected_close_date == date(2027, 6, 30)
    assert opened.opened_at == datetime(2027, 3, 10, 12, 0, tzinfo=UTC)  # when the link occurred, not now
    assert len(opportunities.all_opportunities()) == 1


def test_a_lead_linked_again_is_done_already(opportunities, inbox, customer):
    inbox.receive([customer.publish("lead_linked", payload("lead_linked"))])
    outcome = inbox.receive([customer.publish("lead_linked", payload("lead_linked", sales_owner="rep-li"))])
    assert outcome.applied == 1 and opportunities.tracked_position("customer") == 2
    assert [o.owner for o in opportunities.all_opportunities()] == ["rep-wang-wei"]
    assert opportunities.opportunity(Opportunity.id_for_lead(LEAD)).version == 1


def test_an_opportunity_opened_by_hand_from_the_lead_counts_as_done(opportunities, inbox, customer):
    by_hand = opportunities.open(CUSTOMER, "Bright Retail", "rep-li", Decimal("9000.00"), "CNY", date(2027, 5, 1),
                                 lead_id=LEAD)
    assert inbox.receive([customer.publish("lead_linked", payload("lead_linked"))]).applied == 1
    assert [(o.id, o.owner) for o in opportunities.all_opportunities()] == [(by_hand.id, "rep-li")]


def test_what_the_lead_left_null_gets_the_documented_defaults(opportunities, inbox, customer):
    data = payload("lead_linked", expected_close_date=None, sales_owner=None, company=None)
    inbox.receive([customer.publish("lead_linked", data, occurred_at="2027-03-10T23:30:00+00:00")])
    opened = opportunities.opportunity(Opportunity.id_for_lead(LEAD))
    assert (opened.title, opened.owner, opened.expected_close_date) == ("Zhang Min", DEFAULT_OWNER, date(2027, 6, 8))


def test_sales_takes_the_customer_from_the_link_never_guessing(opportunities, inbox, customer):
    linked_to = uuid.uuid4()
    inbox.receive([customer.publish("lead_linked", payload("lead_linked", customer_id=linked_to, new_customer=False,
                                                           matched_by="email"))])
    assert opportunities.opportunity(Opportunity.id_for_lead(LEAD)).customer_id == linked_to


def test_other_customer_events_only_move_the_position(opportunities, inbox, customer):
    inbox.receive([customer.publish("customer_registered", payload("customer_registered")),
                   customer.publish("lead_linked", payload("lead_linked"))])
    assert opportunities.tracked_position("customer") == 2
    assert len(opportunities.all_opportunities()) == 1
