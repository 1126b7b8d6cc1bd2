"""Opportunities on a real event store: the same suite on the in-memory store and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

import pytest

from crm_contracts.errors import StaleVersionError
from crm_contracts.vocabulary.sales import OPEN_STAGES
from crm_sales.application import Opportunities, PipelineTotals, WinRate
from crm_sales.domain import (
    InvalidOpportunityDataError,
    Opportunity,
    OpportunityAlreadyOpenedError,
    OpportunityClosedError,
    OpportunityNotFoundError,
    StageProbabilities,
)

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
LINES = [
    {"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50, "unit_price": Decimal("240.00"),
     "discount": Decimal("10.00")},
    {"sku": "ONBOARD", "description": "Onboarding workshop", "quantity": 1, "unit_price": Decimal("1500.00")},
]


@pytest.fixture
def opportunities(event_store_env):
    app = Opportunities(env=event_store_env)
    yield app
    app.close()


def open_one(app: Opportunities, **overrides: Any) -> Opportunity:
    fields: dict[str, Any] = {"customer_id": uuid4(), "title": "50 CRM seats", "owner": "rep-wang-wei",
              "amount": Decimal("12000.00"), "currency": "CNY", "expected_close_date": date(2026, 12, 31), "at": T0}
    fields.update(overrides)
    return app.open(**fields)


def to_stage(app: Opportunities, opportunity_id: UUID, stage: str) -> None:
    """Walk an opportunity forward from prospecting to `stage`, one stage at a time."""
    for step in OPEN_STAGES[1 : OPEN_STAGES.index(stage) + 1]:
        app.move_to_stage(opportunity_id, step)


def won_one(app: Opportunities, **overrides) -> Opportunity:
    opportunity = open_one(app, **overrides)
    to_stage(app, opportunity.id, "proposal")
    quote = app.send_quote(opportunity.id, LINES).current_quote
    app.accept_quote(opportunity.id, quote.quote_id)
    return app.win(opportunity.id)


def test_open_then_load_round_trips_every_value(opportunities):
    lead_id = uuid4()
    opened = open_one(opportunities, lead_id=lead_id)
    loaded = opportunities.opportunity(opened.id)
    assert loaded.id == Opportunity.id_for_lead(lead_id)
    assert (loaded.customer_id, loaded.lead_id, loaded.amount, loaded.currency) == (
        opened.customer_id, lead_id, Decimal("12000.00"), "CNY"
    )
    assert (loaded.expected_close_date, loaded.stage, loaded.probability, loaded.version) == (
        date(2026, 12, 31), "prospecting", 10, 1
    )
    assert loaded.stage_history == [{"stage": "prospecting", "probability": 10, "at": T0}]


def test_a_won_opportunity_reloads_with_its_history_quotes_and_accepted_total(opportunities):
    opportunity = open_one(opportunities)
    to_stage(opportunities, opportunity.id, "negotiation")
    first = opportunities.send_quote(opportunity.id, LINES).current_quote
    opportunities.reject_quote(opportunity.id, first.quote_id, "price above budget")
    second = opportunities.send_quote(opportunity.id, LINES[:1]).current_quote
    opportunities.accept_quote(opportunity.id, second.quote_id)
    opportunities.win(opportunity.id, at=T0 + timedelta(days=20))
    loaded = opportunities.opportunity(opportunity.id)
    assert [h["stage"] for h in loaded.stage_history] == [
        "prospecting", "qualification", "proposal", "negotiation", "won"
    ]
    assert [(q.version, q.status) for q in loaded.quotes] == [(1, "superseded"), (2, "accepted")]
    assert loaded.quotes[0].rejection_reason == "price above budget"
    assert (loaded.amount, loaded.won_quote_id, loaded.closed_at) == (
        Decimal("10800.00"), second.quote_id, T0 + timedelta(days=20)
    )
    assert loaded.quotes[1].lines[0]["discount"] == Decimal("10.00")


def test_a_lead_opens_at_most_one_opportunity(opportunities):
    lead_id = uuid4()
    first = open_one(opportunities, lead_id=lead_id)
    with pytest.raises(OpportunityAlreadyOpenedError) as raised:
        open_one(opportunities, lead_id=lead_id, title="again")
    assert raised.value.details["existing_opportunity_id"] == str(first.id)
    assert opportunities.opportunity(first.id).title == "50 CRM seats"


def test_a_stale_expected_version_changes_nothing(opportunities):
    opportunity = open_one(opportunities)
    opportunities.change_amount(opportunity.id, Decimal("13000.00"), expected_version=1)
    with pytest.raises(StaleVersionError) as raised:
        opportunities.change_amount(opportunity.id, Decimal("14000.00"), expected_version=1)
    assert raised.value.details["current_version"] == 2
    assert opportunities.opportunity(opportunity.id).amount == Decimal("13000.00")


def test_concurrent_writers_at_one_version_leave_exactly_one_winner(opportunities):
    opportunity = open_one(opportunities)

    def reassign(i: int) -> str | None:
        try:
            opportunities.reassign(opportunity.id, f"rep-{i}", expected_version=1)
            return f"rep-{i}"
        except StaleVersionError:
            return None

    with ThreadPoolExecutor(8) as pool:
        winners = [w for w in pool.map(reassign, range(8)) if w]
    loaded = opportunities.opportunity(opportunity.id)
    assert len(winners) == 1
    assert (loaded.owner, loaded.version) == (winners[0], 2)


def test_an_unknown_opportunity_is_not_found(opportunities):
    with pytest.raises(OpportunityNotFoundError):
        opportunities.lose(uuid4(), "never existed")


def test_a_refused_command_saves_nothing(opportunities):
    opportunity = open_one(opportunities)
    with pytest.raises(InvalidOpportunityDataError):
        opportunities.change_amount(opportunity.id, Decimal("-5.00"))
    assert opportunities.opportunity(opportunity.id).version == 1


def test_a_closed_opportunity_stays_closed_after_reloading(opportunities):
    won = won_one(opportunities)
    lost = open_one(opportunities)
    opportunities.lose(lost.id, "budget cut")
    with pytest.raises(OpportunityClosedError):
        opportunities.move_to_stage(won.id, "negotiation")
    with pytest.raises(OpportunityClosedError):
        opportunities.change_expected_close_date(lost.id, date(2027, 3, 31))


def test_pipeline_forecast_and_win_rate_fold_the_whole_log(opportunities):
    a = open_one(opportunities, owner="rep-a", amount=Decimal("1000.00"), expected_close_date=date(2026, 12, 5))
    b = open_one(opportunities, owner="rep-b", amount=Decimal("333.33"), expected_close_date=date(2026, 12, 20))
    c = open_one(opportunities, owner="rep-a", amount=Decimal("500.00"), currency="EUR",
                 expected_close_date=date(2027, 1, 10))
    to_stage(opportunities, b.id, "proposal")
    opportunities.move_to_stage(a.id, "qualification", probability=40)
    opportunities.change_expected_close_date(c.id, date(2027, 2, 1))
    won_one(opportunities, owner="rep-a")
    lost = open_one(opportunities, owner="rep-b")
    opportunities.lose(lost.id, "no budget")
    lost_too = open_one(opportunities, owner="rep-a")
    opportunities.lose(lost_too.id, "went quiet")

    assert opportunities.pipeline() == [
        PipelineTotals("qualification", "CNY", 1, Decimal("1000.00"), Decimal("400.00")),
        PipelineTotals("proposal", "CNY", 1, Decimal("333.33"), Decimal("166.67")),
        PipelineTotals("prospecting", "EUR", 1, Decimal("500.00"), Decimal("50.00")),
    ]
    assert opportunities.forecast_by_month() == [
        PipelineTotals("2026-12", "CNY", 2, Decimal("1333.33"), Decimal("566.67")),
        PipelineTotals("2027-02", "EUR", 1, Decimal("500.00"), Decimal("50.00")),
    ]
    assert opportunities.forecast_by_rep() == [
        PipelineTotals("rep-a", "CNY", 1, Decimal("1000.00"), Decimal("400.00")),
        PipelineTotals("rep-a", "EUR", 1, Decimal("500.00"), Decimal("50.00")),
        PipelineTotals("rep-b", "CNY", 1, Decimal("333.33"), Decimal("166.67")),
    ]
    assert opportunities.win_rate() == WinRate(won=1, lost=2, rate=Decimal("0.3333"))
    assert opportunities.win_rate("rep-a") == WinRate(won=1, lost=1, rate=Decimal("0.5000"))
    assert opportunities.win_rate("rep-nobody") == WinRate(won=0, lost=0, rate=None)


def test_stage_probabilities_are_configured_on_the_application(event_store_env):
    class CautiousOpportunities(Opportunities):
        stage_probabilities = StageProbabilities(prospecting=5, qualification=10)

    app = CautiousOpportunities(env=event_store_env)
    try:
        opportunity = open_one(app, amount=Decimal("1000.00"))
        app.move_to_stage(opportunity.id, "qualification")
        assert app.opportunity(opportunity.id).probability == 10
        assert app.pipeline()[0].weighted_amount == Decimal("100.00")
    finally:
        app.close()


def test_an_opening_with_a_command_derived_id_redelivered_answers_the_first_opportunity(opportunities):
    opportunity_id = Opportunity.id_for_opening("caller:key-1")
    customer_id = uuid4()
    first = open_one(opportunities, customer_id=customer_id, opportunity_id=opportunity_id)
    opportunities.change_amount(first.id, Decimal("13000.00"))
    again = open_one(opportunities, customer_id=customer_id, opportunity_id=opportunity_id)
    assert (again.id, again.version, again.amount) == (opportunity_id, 2, Decimal("13000.00"))


def test_an_opening_from_a_lead_redelivered_answers_it_and_a_different_one_conflicts(opportunities):
    lead_id, customer_id = uuid4(), uuid4()
    command_id = Opportunity.id_for_opening("policy:lead")
    first = open_one(opportunities, lead_id=lead_id, customer_id=customer_id, opportunity_id=command_id)
    again = open_one(opportunities, lead_id=lead_id, customer_id=customer_id, opportunity_id=command_id)
    assert again.id == first.id == Opportunity.id_for_lead(lead_id)
    with pytest.raises(OpportunityAlreadyOpenedError):
        open_one(opportunities, lead_id=lead_id, customer_id=customer_id, opportunity_id=command_id, title="other")


def test_a_quote_sent_again_by_its_command_sends_no_second_version(opportunities):
    opportunity = open_one(opportunities)
    to_stage(opportunities, opportunity.id, "proposal")
    sent = opportunities.send_quote(opportunity.id, LINES, expected_version=3, command_id="caller:quote-1")
    again = opportunities.send_quote(opportunity.id, LINES, expected_version=3, command_id="caller:quote-1")
    assert [q.quote_id for q in again.quotes] == [sent.current_quote.quote_id] == [
        sent.quote_id_for("caller:quote-1")
    ]
    assert opportunities.opportunity(opportunity.id).version == 4
