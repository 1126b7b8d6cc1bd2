"""The marketing service's policies, fed by a PolicyInbox on the in-memory store and on PostgreSQL with
contract-shaped envelopes (tests.support.envelopes), each reaction applied exactly once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm_marketing.application import Marketing
from crm_marketing.domain import CustomerAttribution, Lead
from tests.support.envelopes import Stream, payload

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
CUSTOMER = uuid.UUID("3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e")


@pytest.fixture
def converted_lead(marketing: Marketing) -> Lead:
    """A lead of an active CNY campaign (budget 1000.00), converted with an estimate of 12000.00."""
    campaign = marketing.plan_campaign(
        "Spring retail push", "50 qualified retail leads", {"industries": ["retail"]}, ["email"],
        date(2027, 3, 1), date(2027, 4, 30), Decimal("1000.00"), "CNY",
    )
    marketing.launch_campaign(campaign.id)
    lead = marketing.capture_lead("web_form", "Zhang Min", "zhang.min@example.com", campaign_id=campaign.id, at=NOW)
    marketing.qualify_lead(lead.id)
    return marketing.convert_lead(lead.id, Decimal("12000.00"), "CNY")


@pytest.fixture
def order() -> Stream:
    return Stream("order")


def linked(lead: Lead, customer_id: uuid.UUID = CUSTOMER) -> dict[str, Any]:
    return payload("lead_linked", lead_id=lead.id, customer_id=customer_id, campaign_id=lead.campaign_id)


def paid(order_id: uuid.UUID, amount: str, customer_id: uuid.UUID = CUSTOMER, currency: str = "CNY") -> dict[str, Any]:
    return payload("order_paid", order_id=order_id, customer_id=customer_id, amount=amount, currency=currency)


def test_a_linked_lead_learns_its_customer_once_even_when_delivered_twice(marketing, inbox, customer, converted_lead):
    event = customer.publish("lead_linked", linked(converted_lead))
    first, again = inbox.receive([event]), inbox.receive([event])
    assert (first.applied, again.applied, again.duplicates) == (1, 0, 1)
    assert marketing.lead(converted_lead.id).customer_id == CUSTOMER
    attribution = marketing.attribution(CUSTOMER)
    assert attribution is not None and attribution.id == CustomerAttribution.id_for(CUSTOMER)
    assert attribution.source == (converted_lead.id, converted_lead.campaign_id)
    assert attribution.version == 2  # started and linked, in the reaction's one save


def test_a_paid_order_is_revenue_of_the_leads_campaign_once_per_order(marketing, inbox, customer, order,
                                                                        converted_lead):
    inbox.receive([customer.publish("lead_linked", linked(converted_lead))])
    first_order, second_order = uuid.uuid4(), uuid.uuid4()
    event = order.publish("order_paid", paid(first_order, "13500.00"))
    assert inbox.receive([event]).applied == 1
    assert inbox.receive([event]).duplicates == 1
    results = marketing.campaign_results(converted_lead.campaign_id)
    assert results.attributed_revenue == Decimal("13500.00")  # the real revenue replaced the estimate
    assert results.roi_percent == Decimal("1250.00")
    # The same order published again (a second event about it) is not counted twice; another order adds.
    inbox.receive([order.publish("order_paid", paid(first_order, "13500.00")),
                   order.publish("order_paid", paid(second_order, "500.00"))])
    assert marketing.campaign_results(converted_lead.campaign_id).attributed_revenue == Decimal("14000.00")
    assert marketing.campaign(converted_lead.campaign_id).order_ids == {first_order, second_order}


def test_an_order_of_a_customer_no_lead_became_is_only_tracked(marketing, inbox, order, converted_lead):
    campaign = marketing.campaign(converted_lead.campaign_id)
    stranger = paid(uuid.uuid4(), "99.00", customer_id=uuid.uuid4())
    assert inbox.receive([order.publish("order_paid", stranger)]).applied == 1
    assert marketing.tracked_position("order") == 1
    assert marketing.campaign(campaign.id).version == campaign.version
    assert marketing.campaign_results(campaign.id).attributed_revenue == Decimal("12000.00")


def test_an_order_in_another_currency_is_kept_apart_from_the_results(marketing, inbox, customer, order,
                                                                       converted_lead):
    inbox.receive([customer.publish("lead_linked", linked(converted_lead)),
                   order.publish("order_paid", paid(uuid.uuid4(), "800.00", currency="EUR"))])
    campaign = marketing.campaign(converted_lead.campaign_id)
    assert campaign.other_currency_revenue == {"EUR": Decimal("800.00")}
    assert campaign.results.attributed_revenue == Decimal("12000.00")


def test_a_customer_with_two_leads_keeps_the_first_campaigns_attribution(marketing, inbox, customer,
                                                                           converted_lead):
    later = uuid.uuid4()
    inbox.receive([customer.publish("lead_linked", linked(converted_lead)),
                   customer.publish("lead_linked", payload("lead_linked", lead_id=later, customer_id=CUSTOMER,
                                                           campaign_id=uuid.uuid4(), new_customer=False,
                                                           matched_by="email"))])
    attribution = marketing.attribution(CUSTOMER)
    assert [lead for lead, _ in attribution.leads] == [converted_lead.id, later]
    assert attribution.source == (converted_lead.id, converted_lead.campaign_id)
