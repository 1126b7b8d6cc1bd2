"""Invariants under random command sequences (hypothesis): a lead's status only moves along allowed
paths and a refused command records nothing; a score stays in 0..100; a campaign's results count
every lead once, with conversions <= qualified leads <= leads."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from crm_contracts.errors import CrmError
from crm_contracts.vocabulary.marketing import ENGAGEMENT_KINDS, LEAD_GRADES, LEAD_MOVES, LEAD_STATUSES, MAX_SCORE
from crm_marketing.application import Marketing
from crm_marketing.domain import Lead, ScoringRule

START = datetime(2027, 3, 1, tzinfo=UTC)
times = st.integers(min_value=0, max_value=400 * 24).map(lambda hours: START + timedelta(hours=hours))
points = st.integers(min_value=0, max_value=200)
rules = st.builds(
    ScoringRule,
    company_size_points=st.lists(st.tuples(st.integers(0, 10_000), points), max_size=4).map(tuple),
    role_points=st.lists(st.tuples(st.sampled_from(["ceo", "manager", "head", "intern"]), points), max_size=4).map(
        tuple
    ),
    industry_points=st.lists(st.tuples(st.sampled_from(["retail", "technology"]), points), max_size=3).map(tuple),
    max_fit=st.integers(0, 150),
    engagement_points=st.lists(st.tuples(st.sampled_from(ENGAGEMENT_KINDS), points), max_size=3).map(tuple),
    max_engagement=st.integers(0, 150),
    half_life_days=st.floats(min_value=0.01, max_value=3650),
)
lead_commands = st.one_of(
    st.tuples(st.just("qualify"), st.none()),
    st.tuples(st.just("disqualify"), st.sampled_from(["no budget", " "])),
    st.tuples(st.just("convert"), st.sampled_from([Decimal("100.00"), Decimal("-1.00")])),
    st.tuples(st.just("grade"), st.sampled_from([*LEAD_GRADES, "platinum"])),
    st.tuples(st.just("engage"), st.tuples(st.sampled_from([*ENGAGEMENT_KINDS, "like"]), times)),
    st.tuples(st.just("score"), times),
)


def run(lead: Lead, command: str, argument: Any, rule: ScoringRule) -> None:
    if command == "qualify":
        lead.qualify(None)
    elif command == "disqualify":
        lead.disqualify(argument)
    elif command == "convert":
        lead.convert(argument, "CNY", None, None, None)
    elif command == "grade":
        lead.assign_grade(argument, None)
    elif command == "engage":
        lead.record_engagement(*argument)
    else:
        lead.rescore(rule, argument)


@settings(max_examples=200, deadline=None)
@given(commands=st.lists(lead_commands, max_size=30), rule=rules)
def test_a_lead_only_moves_along_allowed_paths_and_refused_commands_record_nothing(commands, rule):
    lead = Lead.capture("web_form", "Zhang Min", "zhang.min@example.com", None, START)
    lead.collect_events()
    for command, argument in commands:
        before = lead.status
        try:
            run(lead, command, argument, rule)
        except CrmError:
            assert lead.collect_events() == []
            assert lead.status == before
            continue
        lead.collect_events()
        assert lead.status in LEAD_STATUSES
        assert lead.status == before or lead.status in LEAD_MOVES[before]
        assert lead.score is None or 0 <= lead.score <= MAX_SCORE
    if lead.status in ("converted", "disqualified"):
        assert not lead.is_open


@settings(max_examples=300, deadline=None)
@given(
    rule=rules,
    company_size=st.none() | st.integers(0, 1_000_000),
    role=st.none() | st.sampled_from(["CEO", "Purchasing Manager", "intern", "Head of IT"]),
    industry=st.none() | st.sampled_from(["retail", "Technology", "arts"]),
    engagements=st.lists(st.tuples(st.sampled_from(ENGAGEMENT_KINDS), times), max_size=200),
    now=times,
)
def test_a_score_stays_within_its_range_and_is_the_sum_of_its_capped_parts(
    rule, company_size, role, industry, engagements, now
):
    scored = rule.score(company_size, role, industry, engagements, now)
    assert 0 <= scored.score <= MAX_SCORE
    assert 0 <= scored.fit <= rule.max_fit
    assert 0 <= scored.engagement <= rule.max_engagement
    assert scored.score == min(MAX_SCORE, scored.fit + scored.engagement)


@settings(max_examples=300, deadline=None)
@given(
    engagements=st.lists(st.tuples(st.sampled_from(ENGAGEMENT_KINDS), times), max_size=50),
    now=times,
    later=st.integers(0, 1000),
)
def test_without_new_engagement_the_engagement_part_never_rises(engagements, now, later):
    rule = ScoringRule(max_engagement=10_000)
    past = [(kind, at) for kind, at in engagements if at <= now]
    assert rule.engagement(past, now + timedelta(days=later)) <= rule.engagement(past, now)


campaign_commands = st.lists(
    st.tuples(st.sampled_from(["capture", "qualify", "disqualify", "convert", "close"]), st.integers(0, 5)),
    max_size=25,
)


@settings(max_examples=40, deadline=None)
@given(commands=campaign_commands)
def test_campaign_results_never_count_a_lead_twice(commands):
    marketing = Marketing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    campaign = marketing.plan_campaign(
        "Spring", "leads", {"industries": ["retail"]}, ["email"], date(2027, 3, 1), date(2027, 4, 30),
        Decimal("1000.00"), "CNY",
    )
    marketing.launch_campaign(campaign.id)
    leads = []
    for command, index in commands:
        try:
            if command == "capture":
                leads.append(marketing.capture_lead("email", f"Lead {len(leads)}", f"l{len(leads)}@x.com",
                                                    campaign_id=campaign.id, at=START).id)
            elif command == "close":
                marketing.close_campaign(campaign.id)
            elif leads:
                lead_id = leads[index % len(leads)]
                if command == "qualify":
                    marketing.qualify_lead(lead_id)
                elif command == "disqualify":
                    marketing.disqualify_lead(lead_id, "no fit")
                else:
                    marketing.convert_lead(lead_id, Decimal("100.00"), "CNY")
        except CrmError:
            pass
    results = marketing.campaign_results(campaign.id)
    statuses = [marketing.lead(lead_id).status for lead_id in leads]
    assert results.leads == len(leads) == len(set(marketing.campaign(campaign.id).lead_ids))
    assert results.conversions == statuses.count("converted")
    assert results.attributed_revenue == Decimal("100.00") * results.conversions
    assert results.conversions <= results.qualified_leads <= results.leads
    assert results.qualified_leads >= statuses.count("qualified") + statuses.count("converted")
    marketing.close()
