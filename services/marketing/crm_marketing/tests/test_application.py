"""Marketing on a real event store: the same suite on the in-memory store and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.errors import StaleVersionError
from crm_marketing.application import Marketing
from crm_marketing.domain import (
    Campaign,
    CampaignMismatchError,
    CampaignNotFoundError,
    CampaignStatusError,
    InvalidLeadDataError,
    Lead,
    LeadClosedError,
    LeadNotFoundError,
)

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)


@pytest.fixture
def marketing(event_store_env):
    app = Marketing(env=event_store_env)
    yield app
    app.close()


@pytest.fixture
def campaign_id(marketing):
    """An active campaign with a budget of 1000.00 CNY, reaching retailers by email and online."""
    campaign = marketing.plan_campaign(
        "Spring retail push", "50 qualified retail leads", {"industries": ["retail"]}, ["email", "online"],
        date(2027, 3, 1), date(2027, 4, 30), Decimal("1000.00"), "CNY",
    )
    marketing.launch_campaign(campaign.id, expected_version=1)
    return campaign.id


def capture(marketing, campaign_id, name="Zhang Min", **overrides):
    fields = {"email": f"{name.lower().replace(' ', '.')}@example.com", "campaign_id": campaign_id, "at": NOW}
    fields.update(overrides)
    return marketing.capture_lead("web_form", name, **fields)


def test_plan_launch_then_load_with_dates_and_money_intact(marketing, campaign_id):
    loaded = marketing.campaign(campaign_id)
    assert (loaded.status, loaded.version, loaded.channels) == ("active", 2, ("email", "online"))
    assert (loaded.starts_on, loaded.ends_on) == (date(2027, 3, 1), date(2027, 4, 30))
    assert loaded.budget == Decimal("1000.00")
    assert loaded.segment == {"industries": ["retail"]}


def test_a_captured_lead_is_scored_at_once_and_counted_by_its_campaign(marketing, campaign_id):
    lead = capture(marketing, campaign_id, company_size=250, role="Purchasing Manager", industry="retail")
    loaded = marketing.lead(lead.id)
    assert (loaded.status, loaded.score, loaded.captured_at, loaded.campaign_id) == ("captured", 33, NOW, campaign_id)
    assert marketing.campaign(campaign_id).lead_ids == [lead.id]
    assert marketing.campaign_results(campaign_id).leads == 1


def test_a_lead_needs_an_active_campaign_and_nothing_is_saved_otherwise(marketing, campaign_id):
    planned = marketing.plan_campaign(
        "Later", "later", {"regions": ["North"]}, ["email"], date(2027, 5, 1), date(2027, 5, 31),
        Decimal("10.00"), "CNY",
    )
    with pytest.raises(CampaignStatusError):
        capture(marketing, planned.id)
    with pytest.raises(CampaignNotFoundError):
        capture(marketing, uuid4())
    assert marketing.campaign(planned.id).lead_ids == []
    assert marketing.recorder.max_notification_id() == 3  # two Planned, one Launched


def test_engagement_raises_the_score_and_quiet_time_lowers_it(marketing, campaign_id):
    lead = capture(marketing, campaign_id)
    marketing.record_engagement(lead.id, "reply", at=NOW, now=NOW)
    marketing.record_engagement(lead.id, "visit", at=NOW, now=NOW)
    assert marketing.lead(lead.id).score == 11
    marketing.rescore_lead(lead.id, now=NOW + timedelta(days=60))
    assert marketing.lead(lead.id).score == 3


def test_campaign_results_follow_its_leads_through_qualification_and_conversion(marketing, campaign_id):
    won, lost, fresh = (capture(marketing, campaign_id, name) for name in ("Won Lead", "Lost Lead", "Fresh Lead"))
    marketing.record_response(campaign_id, "email", 40, at=NOW)
    marketing.grade_lead(won.id, "key", "chain of 40 stores")
    marketing.qualify_lead(won.id, "budget confirmed")
    marketing.qualify_lead(lost.id)
    marketing.disqualify_lead(lost.id, "no budget after all")
    customer_id = uuid4()
    converted = marketing.convert_lead(
        won.id, Decimal("3000.00"), "CNY", expected_close_date=date(2027, 6, 30), sales_owner="rep-wang-wei",
        customer_id=customer_id,
    )
    assert (converted.status, converted.customer_id) == ("converted", customer_id)
    results = marketing.campaign_results(campaign_id)
    assert (results.responses, results.leads, results.qualified_leads, results.conversions) == (40, 3, 2, 1)
    assert (results.attributed_revenue, results.cost_per_lead, results.roi_percent) == (
        Decimal("3000.00"), Decimal("333.33"), Decimal("200.00")
    )
    assert [lead.id for lead in marketing.leads_of_campaign(campaign_id)] == [won.id, lost.id, fresh.id]
    assert [lead.id for lead in marketing.leads_of_campaign(campaign_id, "converted")] == [won.id]
    assert [lead.id for lead in marketing.leads_of_campaign(campaign_id, "disqualified")] == [lost.id]
    assert [lead.id for lead in marketing.leads_of_campaign(campaign_id, "captured")] == [fresh.id]
    with pytest.raises(InvalidLeadDataError):
        marketing.leads_of_campaign(campaign_id, "asleep")


def test_a_converted_lead_cannot_be_converted_again_and_its_campaign_counts_it_once(marketing, campaign_id):
    lead = capture(marketing, campaign_id)
    marketing.qualify_lead(lead.id)
    marketing.convert_lead(lead.id, Decimal("500.00"), "CNY")
    with pytest.raises(LeadClosedError):
        marketing.convert_lead(lead.id, Decimal("500.00"), "CNY")
    assert marketing.campaign_results(campaign_id).conversions == 1


def test_a_conversion_in_another_currency_than_the_campaign_changes_nothing(marketing, campaign_id):
    lead = capture(marketing, campaign_id)
    marketing.qualify_lead(lead.id)
    with pytest.raises(CampaignMismatchError):
        marketing.convert_lead(lead.id, Decimal("500.00"), "EUR")
    assert marketing.lead(lead.id).status == "qualified"
    assert marketing.campaign_results(campaign_id).conversions == 0


def test_a_lead_without_a_campaign_lives_on_its_own(marketing):
    lead = marketing.capture_lead("referral", "Li Lei", phone="+86 10 5555 0100", at=NOW)
    marketing.qualify_lead(lead.id)
    marketing.convert_lead(lead.id, Decimal("800.00"), "USD")
    assert marketing.lead(lead.id).status == "converted"


def test_closing_uses_the_actual_cost_and_late_conversions_still_count(marketing, campaign_id):
    lead = capture(marketing, campaign_id)
    marketing.close_campaign(campaign_id, Decimal("400.00"))
    with pytest.raises(CampaignStatusError):
        capture(marketing, campaign_id, "Too Late")
    marketing.qualify_lead(lead.id)
    marketing.convert_lead(lead.id, Decimal("1000.00"), "CNY")
    marketing.attribute_revenue(campaign_id, lead.id, Decimal("1200.00"), "CNY")
    results = marketing.campaign_results(campaign_id)
    assert (results.cost, results.conversions, results.attributed_revenue, results.roi_percent) == (
        Decimal("400.00"), 1, Decimal("1200.00"), Decimal("200.00")
    )


def test_a_stale_expected_version_changes_nothing(marketing, campaign_id):
    lead = capture(marketing, campaign_id)
    marketing.grade_lead(lead.id, "seed", expected_version=lead.version)
    with pytest.raises(StaleVersionError) as raised:
        marketing.grade_lead(lead.id, "key", expected_version=lead.version)
    assert raised.value.details["current_version"] == lead.version + 1
    assert marketing.lead(lead.id).grade == "seed"
    with pytest.raises(StaleVersionError):
        marketing.close_campaign(campaign_id, expected_version=1)
    assert marketing.campaign(campaign_id).status == "active"


def test_unknown_ids_are_not_found_and_a_campaign_is_no_lead(marketing, campaign_id):
    with pytest.raises(LeadNotFoundError):
        marketing.qualify_lead(uuid4())
    with pytest.raises(LeadNotFoundError):
        marketing.lead(campaign_id)
    with pytest.raises(CampaignNotFoundError):
        marketing.campaign_results(uuid4())


def test_concurrent_conversions_of_one_lead_leave_exactly_one(marketing, campaign_id):
    lead = capture(marketing, campaign_id)
    marketing.qualify_lead(lead.id)

    def convert(_):
        try:
            marketing.convert_lead(lead.id, Decimal("100.00"), "CNY")
            return True
        except LeadClosedError:
            return False

    with ThreadPoolExecutor(6) as pool:
        outcomes = list(pool.map(convert, range(6)))
    assert outcomes.count(True) == 1
    assert marketing.campaign_results(campaign_id).conversions == 1


def test_concurrent_captures_for_one_campaign_are_all_counted(marketing, campaign_id):
    with ThreadPoolExecutor(6) as pool:
        leads = list(pool.map(lambda i: capture(marketing, campaign_id, f"Racer {i}"), range(6)))
    assert sorted(marketing.campaign(campaign_id).lead_ids) == sorted(lead.id for lead in leads)


def test_a_plan_with_a_command_derived_id_redelivered_answers_the_first_campaign(marketing):
    campaign_id = Campaign.id_for_plan("caller:key-1")
    plan = ("Spring", "leads", {"industries": ["retail"]}, ["email"], date(2027, 3, 1), date(2027, 4, 30),
            Decimal("10.00"), "CNY")
    first = marketing.plan_campaign(*plan, campaign_id=campaign_id)
    marketing.launch_campaign(campaign_id)
    again = marketing.plan_campaign(*plan, campaign_id=campaign_id)
    assert (again.id, again.version, again.status) == (first.id, 2, "active")


def test_a_capture_with_a_command_derived_id_redelivered_answers_the_first_lead(marketing, campaign_id):
    lead_id = Lead.id_for_capture("caller:lead-1")
    first = capture(marketing, campaign_id, lead_id=lead_id)
    again = capture(marketing, campaign_id, lead_id=lead_id)
    assert again.id == first.id == lead_id
    assert marketing.campaign(campaign_id).lead_ids == [lead_id]


def test_responses_and_engagements_of_one_command_count_once(marketing, campaign_id):
    marketing.record_response(campaign_id, "email", 5, NOW, command_id="r1")
    marketing.record_response(campaign_id, "email", 5, NOW, expected_version=1, command_id="r1")
    assert marketing.campaign_results(campaign_id).responses == 5
    lead = capture(marketing, campaign_id)
    marketing.record_engagement(lead.id, "reply", NOW, command_id="e1")
    marketing.record_engagement(lead.id, "reply", NOW, command_id="e1")
    assert len(marketing.lead(lead.id).engagements) == 1
