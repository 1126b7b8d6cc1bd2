"""What marketing publishes: every domain event translated through its contract, read from the real feed."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.catalog import catalog
from crm_marketing.application import Marketing
from crm_marketing.domain import Campaign, CustomerAttribution, Lead
from crm_marketing.publishing import translator
from crm_marketing.targeting import SegmentMember
from crm_runtime.feed import EventFeed
from tests.support.publishing import assert_published_under_contracts, domain_event_classes

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
PUBLISHED = [
    "campaign_planned",
    "campaign_launched",
    "campaign_response_recorded",
    "lead_captured",
    "lead_scored",
    "lead_graded",
    "lead_scored",
    "lead_qualified",
    "lead_converted",
    "lead_captured",
    "lead_scored",
    "lead_disqualified",
    "campaign_closed",
    "campaign_planned",
    "campaign_launched",
    "campaign_member_reached",
]
#: Domain events that stay inside the service (see publishing.py for why).
INTERNAL = {
    Campaign.LeadAttributed,
    Campaign.QualifiedLeadCounted,
    Campaign.ConversionCounted,
    Campaign.RevenueAttributed,
    Campaign.OrderRevenueAttributed,
    Lead.EngagementRecorded,
    Lead.CustomerLinked,
    CustomerAttribution.Started,
    CustomerAttribution.LeadLinked,
    Campaign.SegmentTargeted,
    Campaign.ReachedCounted,
    Lead.MovedToSurvivor,
    Lead.MovedBack,
    Lead.Forgotten,
    CustomerAttribution.HandedOver,
    CustomerAttribution.TakenBack,
    CustomerAttribution.TookOver,
    CustomerAttribution.GaveBack,
}


@pytest.fixture
def marketing(event_store_env):
    app = Marketing(env=event_store_env)
    yield app
    app.close()


@pytest.fixture
def customer_id():
    return uuid4()


@pytest.fixture
def reached_id():
    return uuid4()


@pytest.fixture
def envelopes(marketing, customer_id, reached_id):
    """The feed after a campaign ran with one lead converted and one disqualified: every kind of event."""
    campaign = marketing.plan_campaign(
        "Spring retail push", "50 qualified retail leads", {"industries": ["retail"], "company_size_min": 50},
        ["email", "online"], date(2027, 3, 1), date(2027, 4, 30), Decimal("1000.00"), "CNY",
    )
    marketing.launch_campaign(campaign.id)
    marketing.record_response(campaign.id, "email", 25, at=NOW)
    won = marketing.capture_lead("web_form", "Zhang Min", "zhang.min@example.com", campaign_id=campaign.id,
                                 company="Bright Retail", company_size=250, role="Head of Purchasing",
                                 industry="retail", at=NOW)
    marketing.grade_lead(won.id, "key", "chain of 40 stores")
    marketing.record_engagement(won.id, "reply", at=NOW, now=NOW + timedelta(hours=1))
    marketing.qualify_lead(won.id, "budget confirmed")
    marketing.convert_lead(won.id, Decimal("3000.00"), "CNY", expected_close_date=date(2027, 6, 30),
                           sales_owner="rep-wang-wei", customer_id=customer_id)
    lost = marketing.capture_lead("event", "Li Lei", phone="+86 10 5555 0100", campaign_id=campaign.id, at=NOW)
    marketing.disqualify_lead(lost.id, "student project, no budget")
    marketing.close_campaign(campaign.id, Decimal("800.00"))
    loyal = marketing.plan_campaign("Thank you", "keep loyal customers", {}, ["email"], date(2027, 5, 1),
                                    date(2027, 5, 31), Decimal("100.00"), "CNY", segment_id=uuid4())
    marketing.launch_campaign(loyal.id, members=[SegmentMember(reached_id, {"email": True})], at=NOW)
    return EventFeed(marketing, translator).events_since(0, 1000)


def test_every_published_event_is_in_the_feed_in_order(envelopes):
    assert [e["type"] for e in envelopes] == PUBLISHED
    assert all(e["origin"] == "marketing" for e in envelopes)


def test_every_payload_validates_against_its_contract(envelopes):
    assert_published_under_contracts(envelopes, "marketing")


def test_only_a_converted_lead_and_a_reached_member_carry_a_customer(envelopes, customer_id, reached_id):
    with_customer = [(e["type"], e["customer_id"]) for e in envelopes if e["customer_id"] is not None]
    assert with_customer == [("lead_converted", str(customer_id)), ("campaign_member_reached", str(reached_id))]
    (converted,) = (e["payload"] for e in envelopes if e["type"] == "lead_converted")
    assert converted["customer_id"] == str(customer_id)
    assert {k: converted[k] for k in ("name", "email", "company", "estimated_amount", "currency", "grade")} == {
        "name": "Zhang Min", "email": "zhang.min@example.com", "company": "Bright Retail",
        "estimated_amount": "3000.00", "currency": "CNY", "grade": "key",
    }
    assert converted["expected_close_date"] == "2027-06-30"


def test_campaign_closed_publishes_the_results_at_closing(envelopes):
    (closed,) = (e["payload"] for e in envelopes if e["type"] == "campaign_closed")
    assert closed["results"] == {
        "responses": 25, "leads": 2, "qualified_leads": 1, "conversions": 1, "attributed_revenue": "3000.00",
        "cost": "800.00", "currency": "CNY", "cost_per_lead": "400.00", "roi_percent": "275.00",
    }


def test_every_domain_event_is_either_published_or_declared_internal():
    domain_events = domain_event_classes(Campaign, Lead, CustomerAttribution)
    published = set(translator.published_classes)
    assert published.isdisjoint(INTERNAL)
    assert domain_events == published | INTERNAL


def test_the_feed_covers_every_marketing_contract(envelopes):
    assert {e["type"] for e in envelopes} == {c.type for c in catalog if c.origin == "marketing"}
