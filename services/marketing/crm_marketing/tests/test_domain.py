"""The Campaign and Lead aggregates and the scoring rule, alone: no store, no broker."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.errors import RuleViolationError
from crm_marketing.domain import (
    Campaign,
    CampaignMismatchError,
    CampaignResults,
    CampaignStatusError,
    InvalidCampaignDataError,
    InvalidLeadDataError,
    Lead,
    LeadClosedError,
    LeadNotConvertedError,
    LeadNotInCampaignError,
    LeadNotQualifiedError,
    LeadStatusError,
    ScoringRule,
)

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)


def a_campaign(**overrides):
    fields = {
        "name": " Spring retail push ",
        "objective": "50 qualified retail leads",
        "segment": {"industries": ["retail"], "company_size_min": 50},
        "channels": ["email", "online", "email"],
        "starts_on": date(2027, 3, 1),
        "ends_on": date(2027, 4, 30),
        "budget": Decimal("24000.00"),
        "currency": "CNY",
    }
    fields.update(overrides)
    return Campaign.plan(**fields)


def an_active_campaign(**overrides):
    campaign = a_campaign(**overrides)
    campaign.launch()
    return campaign


def a_lead(**overrides):
    fields = {"channel": "web_form", "name": "Zhang Min", "email": " Zhang.Min@Example.com", "phone": None,
              "captured_at": NOW - timedelta(days=1)}
    fields.update(overrides)
    return Lead.capture(**fields)


def a_qualified_lead(**overrides):
    lead = a_lead(**overrides)
    lead.qualify(None)
    return lead


# --- campaigns ----------------------------------------------------------------------------------

def test_planning_records_one_event_with_a_clean_plan():
    campaign = a_campaign()
    assert (campaign.name, campaign.status, campaign.channels) == ("Spring retail push", "planned", ("email", "online"))
    assert [type(e).__name__ for e in campaign.collect_events()] == ["Planned"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"name": " "}, "name"),
        ({"objective": ""}, "objective"),
        ({"channels": []}, "channels"),
        ({"channels": ["carrier pigeon"]}, "channels"),
        ({"ends_on": date(2027, 2, 28)}, "ends_on"),
        ({"budget": Decimal("-1")}, "budget"),
        ({"budget": Decimal("1.005")}, "budget"),
        ({"currency": "XYZ"}, "currency"),
        ({"segment": {}}, "segment"),
        ({"segment": {"star_sign": ["leo"]}}, "segment"),
        ({"segment": {"industries": "retail"}}, "segment"),
        ({"segment": {"industries": ["retail", " "]}}, "segment"),
        ({"segment": {"company_size_min": -5}}, "segment"),
        ({"segment": {"grades": ["platinum"]}}, "segment"),
        ({"segment": {"company_size_min": 500, "company_size_max": 50}}, "segment"),
    ],
)
def test_a_bad_plan_names_the_field(overrides, field):
    with pytest.raises(InvalidCampaignDataError) as raised:
        a_campaign(**overrides)
    assert field in raised.value.details["fields"]


def test_a_campaign_is_launched_once_and_closed_once():
    campaign = a_campaign()
    campaign.launch()
    with pytest.raises(CampaignStatusError):
        campaign.launch()
    campaign.close(None)
    assert campaign.status == "closed"
    for command in (campaign.launch, lambda: campaign.close(None)):
        with pytest.raises(CampaignStatusError) as raised:
            command()
        assert raised.value.details["status"] == "closed"


def test_a_plan_can_be_dropped_without_launching():
    campaign = a_campaign()
    campaign.close(Decimal("0.00"))
    assert campaign.status == "closed" and campaign.results.cost == Decimal("0.00")


def test_responses_are_counted_per_channel_of_an_active_campaign_only():
    campaign = a_campaign()
    with pytest.raises(CampaignStatusError):
        campaign.record_response("email", 1, NOW)
    campaign.launch()
    campaign.record_response("email", 20, NOW)
    campaign.record_response("online", 5, NOW)
    campaign.record_response("email", 1, NOW)
    assert campaign.responses == {"email": 21, "online": 5}
    assert campaign.results.responses == 26


@pytest.mark.parametrize(
    ("channel", "count", "at", "field"),
    [
        ("email", 0, NOW, "count"),
        ("email", True, NOW, "count"),
        ("email", 1, datetime(2027, 3, 10, 12, 0), "at"),
    ],
)
def test_a_bad_response_names_the_field(channel, count, at, field):
    campaign = an_active_campaign()
    with pytest.raises(InvalidCampaignDataError) as raised:
        campaign.record_response(channel, count, at)
    assert field in raised.value.details["fields"]


def test_a_response_on_a_channel_the_campaign_does_not_use_is_a_rule_violation():
    # "telephone" is a channel; only not one of this campaign's: its state refuses it (409, not 422).
    campaign = an_active_campaign()
    with pytest.raises(CampaignMismatchError) as raised:
        campaign.record_response("telephone", 1, NOW)
    assert isinstance(raised.value, RuleViolationError)
    assert "channel" in raised.value.details["fields"]


def test_results_count_each_lead_once_and_derive_cost_per_lead_and_roi():
    campaign = an_active_campaign(budget=Decimal("1000.00"))
    first, second, third = uuid4(), uuid4(), uuid4()
    for lead_id in (first, second, third, first):
        campaign.attribute_lead(lead_id)
    campaign.count_qualified(first)
    campaign.count_qualified(first)
    campaign.count_conversion(first, Decimal("2500.00"), "CNY")
    campaign.count_conversion(first, Decimal("9999.00"), "CNY")
    campaign.count_conversion(second, Decimal("500.00"), "CNY")
    results = campaign.results
    assert (results.leads, results.qualified_leads, results.conversions) == (3, 2, 2)
    assert results.attributed_revenue == Decimal("3000.00")
    assert results.cost_per_lead == Decimal("333.33")
    assert results.roi_percent == Decimal("200.00")


def test_results_of_a_campaign_without_leads_or_cost_have_no_ratios():
    results = CampaignResults(0, 0, 0, 0, Decimal("0.00"), Decimal("0.00"), "CNY")
    assert (results.cost_per_lead, results.roi_percent) == (None, None)


def test_a_campaign_counts_only_its_own_leads_in_its_own_currency():
    campaign = an_active_campaign()
    stranger = uuid4()
    with pytest.raises(LeadNotInCampaignError):
        campaign.count_qualified(stranger)
    with pytest.raises(LeadNotInCampaignError):
        campaign.count_conversion(stranger, Decimal("1.00"), "CNY")
    own = uuid4()
    campaign.attribute_lead(own)
    with pytest.raises(CampaignMismatchError) as raised:
        campaign.count_conversion(own, Decimal("1.00"), "EUR")
    assert "currency" in raised.value.details["fields"]


def test_a_closed_campaign_takes_no_new_leads_but_still_counts_its_own_maturing():
    campaign = an_active_campaign()
    own = uuid4()
    campaign.attribute_lead(own)
    campaign.close(Decimal("20000.00"))
    with pytest.raises(CampaignStatusError):
        campaign.attribute_lead(uuid4())
    campaign.count_conversion(own, Decimal("30000.00"), "CNY")
    assert campaign.results.conversions == 1
    assert campaign.results.roi_percent == Decimal("50.00")


def test_closing_carries_the_results_at_closing():
    campaign = an_active_campaign(budget=Decimal("100.00"))
    lead_id = uuid4()
    campaign.attribute_lead(lead_id)
    campaign.record_response("email", 3, NOW)
    campaign.collect_events()
    campaign.close(Decimal("80.00"))
    (closed,) = campaign.collect_events()
    assert (closed.cost, closed.responses, closed.leads, closed.conversions, closed.currency) == (
        Decimal("80.00"), 3, 1, 0, "CNY"
    )


def test_revenue_attribution_replaces_the_estimate_of_a_converted_lead_only():
    campaign = an_active_campaign()
    converted, open_lead = uuid4(), uuid4()
    campaign.attribute_lead(converted)
    campaign.attribute_lead(open_lead)
    campaign.count_conversion(converted, Decimal("1000.00"), "CNY")
    campaign.attribute_revenue(converted, Decimal("1500.00"), "CNY")
    assert campaign.results.attributed_revenue == Decimal("1500.00")
    with pytest.raises(LeadNotConvertedError):
        campaign.attribute_revenue(open_lead, Decimal("1.00"), "CNY")
    campaign.collect_events()
    campaign.attribute_revenue(converted, Decimal("1500.00"), "CNY")
    assert campaign.collect_events() == []


# --- leads --------------------------------------------------------------------------------------

def test_capturing_normalises_and_records_one_event():
    lead = a_lead(campaign_id=None, phone=" ", company=" Bright Retail ")
    assert (lead.email, lead.phone, lead.company, lead.status) == ("zhang.min@example.com", None, "Bright Retail",
                                                                  "captured")
    assert [type(e).__name__ for e in lead.collect_events()] == ["Captured"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"name": " "}, "name"),
        ({"email": None, "phone": None}, "email"),
        ({"email": " ", "phone": ""}, "email"),
        ({"company_size": -1}, "company_size"),
        ({"captured_at": datetime(2027, 3, 10)}, "captured_at"),
    ],
)
def test_capturing_bad_data_names_the_field(overrides, field):
    with pytest.raises(InvalidLeadDataError) as raised:
        a_lead(**overrides)
    assert field in raised.value.details["fields"]


def test_a_lead_is_graded_on_the_customer_levels():
    lead = a_lead()
    lead.assign_grade("key", "chain of 40 stores")
    assert lead.grade == "key"
    with pytest.raises(InvalidLeadDataError):
        lead.assign_grade("platinum", None)


def test_a_lead_moves_captured_qualified_converted():
    lead = a_lead(campaign_id=uuid4())
    lead.assign_grade("ordinary", None)
    lead.qualify("budget confirmed")
    lead.convert(Decimal("12000.00"), "CNY", date(2027, 6, 30), "rep-wang-wei", None)
    assert (lead.status, lead.estimated_amount, lead.currency, lead.customer_id) == (
        "converted", Decimal("12000.00"), "CNY", None
    )
    converted = lead.collect_events()[-1]
    assert (converted.name, converted.email, converted.campaign_id, converted.grade) == (
        "Zhang Min", "zhang.min@example.com", lead.campaign_id, "ordinary"
    )


def test_conversion_needs_a_qualified_lead():
    lead = a_lead()
    with pytest.raises(LeadNotQualifiedError):
        lead.convert(Decimal("1.00"), "CNY", None, None, None)
    assert lead.status == "captured"


@pytest.mark.parametrize("end", ["convert", "disqualify"])
def test_a_converted_or_disqualified_lead_cannot_be_converted_again(end):
    lead = a_qualified_lead()
    if end == "convert":
        lead.convert(Decimal("1.00"), "CNY", None, None, uuid4())
    else:
        lead.disqualify("no budget")
    lead.collect_events()
    with pytest.raises(LeadClosedError) as raised:
        lead.convert(Decimal("1.00"), "CNY", None, None, None)
    assert raised.value.code == "conflict"
    assert raised.value.details["status"] == lead.status
    for command in (lambda: lead.qualify(None), lambda: lead.disqualify("x"), lambda: lead.assign_grade("key", None),
                    lambda: lead.record_engagement("open", NOW), lambda: lead.rescore(ScoringRule(), NOW)):
        with pytest.raises(LeadClosedError):
            command()
    assert lead.collect_events() == []


def test_qualifying_twice_is_a_rule_violation_and_disqualifying_needs_a_reason():
    lead = a_qualified_lead()
    with pytest.raises(LeadStatusError):
        lead.qualify(None)
    with pytest.raises(InvalidLeadDataError):
        lead.disqualify("  ")
    assert lead.status == "qualified"


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [(Decimal("-1.00"), "CNY", "estimated_amount"), (Decimal("1.001"), "CNY", "estimated_amount"),
     (Decimal("1.00"), "ABC", "currency")],
)
def test_a_bad_conversion_names_the_field_and_converts_nothing(amount, currency, field):
    lead = a_qualified_lead()
    with pytest.raises(InvalidLeadDataError) as raised:
        lead.convert(amount, currency, None, None, None)
    assert field in raised.value.details["fields"]
    assert lead.status == "qualified"


# --- scoring ------------------------------------------------------------------------------------

def test_fit_combines_company_size_role_and_industry():
    rule = ScoringRule()
    assert rule.fit(250, "Head of Purchasing", "Retail") == 15 + 10 + 10
    assert rule.fit(5000, "CEO", "technology") == 50
    assert rule.fit(None, None, None) == 0
    assert rule.fit(5, "intern", "arts") == 0


def test_engagement_decays_by_half_life_and_future_engagement_does_not_count():
    rule = ScoringRule(half_life_days=10)
    assert rule.engagement([("reply", NOW)], NOW) == 8
    assert rule.engagement([("reply", NOW - timedelta(days=10))], NOW) == 4
    assert rule.engagement([("reply", NOW - timedelta(days=20))], NOW) == 2
    assert rule.engagement([("reply", NOW + timedelta(days=1))], NOW) == 0


def test_a_lead_scores_at_capture_rises_with_engagement_and_falls_as_it_decays():
    lead = a_lead(company_size=250, role="Purchasing Manager", industry="retail")
    rule = ScoringRule()
    assert lead.rescore(rule, NOW) is True
    assert (lead.score, lead.fit, lead.engagement) == (33, 33, 0)
    for kind in ("reply", "reply", "visit"):
        lead.record_engagement(kind, NOW)
    lead.rescore(rule, NOW)
    assert lead.score == 33 + 19
    lead.rescore(rule, NOW + timedelta(days=30))
    assert lead.score == 33 + 10
    lead.collect_events()
    assert lead.rescore(rule, NOW + timedelta(days=30)) is False
    assert lead.collect_events() == []


def test_the_scoring_rule_is_configurable_and_refuses_nonsense():
    assert ScoringRule(industry_points=(("arts", 40),)).fit(None, None, "Arts") == 40
    assert ScoringRule(max_fit=10).fit(5000, "CEO", "technology") == 10
    with pytest.raises(ValueError):
        ScoringRule(half_life_days=0)
    with pytest.raises(ValueError):
        ScoringRule(role_points=(("ceo", -1),))


def test_engagement_needs_a_known_kind_and_an_aware_time():
    lead = a_lead()
    with pytest.raises(InvalidLeadDataError):
        lead.record_engagement("like", NOW)
    with pytest.raises(InvalidLeadDataError):
        lead.record_engagement("open", datetime(2027, 3, 10))
