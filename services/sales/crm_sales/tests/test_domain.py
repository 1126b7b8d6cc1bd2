"""The Opportunity aggregate and its quotes, alone: no store, no broker."""

from __future__ import annotations

import dataclasses
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

import pytest

from crm_contracts.vocabulary.sales import STAGES
from crm_sales.domain import (
    IllegalStageMoveError,
    InvalidOpportunityDataError,
    NoAcceptedQuoteError,
    Opportunity,
    OpportunityClosedError,
    QuoteNotFoundError,
    QuoteNotOpenError,
    QuoteTerms,
    QuotingStageError,
    StageProbabilities,
)

DEFAULTS = StageProbabilities()
T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
LINES = [
    {"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50, "unit_price": Decimal("240.00"),
     "discount": Decimal("10.00")},
    {"sku": "ONBOARD", "description": "Onboarding workshop", "quantity": 1, "unit_price": Decimal("1500.00")},
]


def an_opportunity(**overrides: Any) -> Opportunity:
    fields: dict[str, Any] = {
        "customer_id": uuid4(), "title": "50 CRM seats", "owner": "rep-wang-wei", "amount": Decimal("12000.00"),
        "currency": "CNY", "expected_close_date": date(2026, 12, 31), "probabilities": DEFAULTS, "at": T0,
    }
    fields.update(overrides)
    return Opportunity.open(**fields)


def in_proposal() -> Opportunity:
    opportunity = an_opportunity()
    opportunity.move_to("qualification", DEFAULTS)
    opportunity.move_to("proposal", DEFAULTS)
    return opportunity


def with_accepted_quote() -> Opportunity:
    opportunity = in_proposal()
    quote = opportunity.send_quote(LINES)
    opportunity.accept_quote(quote.quote_id)
    return opportunity


def test_opening_starts_in_prospecting_with_its_default_probability():
    opportunity = an_opportunity()
    assert (opportunity.stage, opportunity.probability, opportunity.lead_id) == ("prospecting", 10, None)
    assert opportunity.stage_history == [{"stage": "prospecting", "probability": 10, "at": T0}]
    assert [type(e).__name__ for e in opportunity.collect_events()] == ["Opened"]


def test_opening_from_a_lead_derives_the_id_from_the_lead():
    lead_id = uuid4()
    opportunity = an_opportunity(lead_id=lead_id)
    assert opportunity.lead_id == lead_id
    assert opportunity.id == Opportunity.id_for_lead(lead_id)
    assert an_opportunity().id != an_opportunity().id


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"customer_id": "not-a-uuid"}, "customer_id"),
        ({"lead_id": "lead-1"}, "lead_id"),
        ({"title": "  "}, "title"),
        ({"owner": ""}, "owner"),
        ({"owner": "x" * 501}, "owner"),
        ({"amount": Decimal("-1.00")}, "amount"),
        ({"amount": Decimal("1.005")}, "amount"),
        ({"amount": 100.0}, "amount"),
        ({"amount": Decimal("NaN")}, "amount"),
        ({"currency": "XXX"}, "currency"),
        ({"currency": "cny"}, "currency"),
        ({"expected_close_date": datetime(2026, 12, 31, tzinfo=UTC)}, "expected_close_date"),
        ({"expected_close_date": "2026-12-31"}, "expected_close_date"),
        ({"at": datetime(2026, 11, 2, 8, 0)}, "at"),
    ],
)
def test_opening_with_bad_data_names_the_field(overrides, field):
    with pytest.raises(InvalidOpportunityDataError) as raised:
        an_opportunity(**overrides)
    assert field in raised.value.details["fields"]


def test_stages_move_forward_one_at_a_time_with_their_default_probabilities_and_times():
    opportunity = an_opportunity()
    for day, stage in enumerate(("qualification", "proposal", "negotiation"), start=1):
        opportunity.move_to(stage, DEFAULTS, at=T0 + timedelta(days=day))
    assert [(h["stage"], h["probability"]) for h in opportunity.stage_history] == [
        ("prospecting", 10), ("qualification", 25), ("proposal", 50), ("negotiation", 75)
    ]
    assert opportunity.stage_history[-1]["at"] == T0 + timedelta(days=3)
    assert opportunity.probability == 75


def test_a_stage_cannot_be_skipped_but_can_fall_back():
    opportunity = an_opportunity()
    with pytest.raises(IllegalStageMoveError):
        opportunity.move_to("proposal", DEFAULTS)
    opportunity.move_to("qualification", DEFAULTS)
    opportunity.move_to("proposal", DEFAULTS)
    opportunity.move_to("prospecting", DEFAULTS)
    assert opportunity.stage == "prospecting"


@pytest.mark.parametrize("stage", ["won", "lost"])
def test_closed_stages_are_reached_only_by_winning_or_losing(stage):
    with pytest.raises(IllegalStageMoveError):
        an_opportunity().move_to(stage, DEFAULTS)


def test_an_unknown_stage_or_probability_is_invalid():
    with pytest.raises(InvalidOpportunityDataError):
        an_opportunity().move_to("closing", DEFAULTS)
    with pytest.raises(InvalidOpportunityDataError):
        an_opportunity().move_to("qualification", DEFAULTS, probability=101)


def test_a_move_may_set_its_own_probability_and_a_same_stage_move_revises_it():
    opportunity = an_opportunity()
    opportunity.collect_events()
    opportunity.move_to("qualification", DEFAULTS, probability=40)
    assert opportunity.probability == 40
    opportunity.move_to("qualification", DEFAULTS)
    opportunity.move_to("qualification", DEFAULTS, probability=40)
    assert len(opportunity.collect_events()) == 1
    opportunity.move_to("qualification", DEFAULTS, probability=30)
    (revised,) = opportunity.collect_events()
    assert (revised.from_stage, revised.to_stage, revised.probability) == ("qualification", "qualification", 30)


def test_stage_probabilities_cover_every_stage_and_are_configurable():
    assert [f.name for f in dataclasses.fields(StageProbabilities)] == list(STAGES)
    eager = StageProbabilities(prospecting=20)
    assert an_opportunity(probabilities=eager).probability == 20
    with pytest.raises(InvalidOpportunityDataError):
        StageProbabilities(proposal=120)


def test_forecast_facts_change_only_when_they_differ():
    opportunity = an_opportunity()
    opportunity.collect_events()
    opportunity.change_amount(Decimal("12000.00"))
    opportunity.change_expected_close_date(date(2026, 12, 31))
    opportunity.reassign(" rep-wang-wei ")
    assert opportunity.collect_events() == []
    opportunity.change_amount(Decimal("13500.00"))
    opportunity.change_expected_close_date(date(2027, 1, 31))
    opportunity.reassign("rep-zhao-lei")
    amount, close, owner = opportunity.collect_events()
    assert (amount.amount, amount.previous_amount, amount.currency) == (Decimal("13500.00"), Decimal("12000.00"), "CNY")
    assert close.previous_expected_close_date == date(2026, 12, 31)
    assert (owner.owner, owner.previous_owner) == ("rep-zhao-lei", "rep-wang-wei")
    assert opportunity.weighted_amount == Decimal("1350.00")


def test_a_quote_is_priced_with_decimal_cents():
    terms = QuoteTerms.price(LINES)
    assert [line["line_total"] for line in terms.lines] == [Decimal("10800.00"), Decimal("1500.00")]
    assert (terms.subtotal, terms.discount_total, terms.total) == (
        Decimal("13500.00"), Decimal("1200.00"), Decimal("12300.00")
    )


@pytest.mark.parametrize(
    ("quantity", "unit_price", "discount", "line_total"),
    [
        (1, "0.05", "50.00", "0.03"),  # 0.025 rounds half up
        (3, "0.10", "33.33", "0.20"),
        (7, "19.99", "0", "139.93"),
        (2, "10.00", "100", "0.00"),
    ],
)
def test_line_totals_round_half_up_to_cents(quantity, unit_price, discount, line_total):
    line = {"sku": "A", "description": "a", "quantity": quantity, "unit_price": Decimal(unit_price),
            "discount": Decimal(discount)}
    assert QuoteTerms.price([line]).total == Decimal(line_total)


@pytest.mark.parametrize(
    ("lines", "field"),
    [
        ([], "lines"),
        ("CRM-SEAT", "lines"),
        ([{**LINES[0], "quantity": 0}], "lines.0.quantity"),
        ([{**LINES[0], "quantity": True}], "lines.0.quantity"),
        ([{**LINES[0], "quantity": 1.5}], "lines.0.quantity"),
        ([{**LINES[0], "unit_price": Decimal("-0.01")}], "lines.0.unit_price"),
        ([{**LINES[0], "discount": Decimal("100.01")}], "lines.0.discount"),
        ([{**LINES[0], "discount": Decimal("1.005")}], "lines.0.discount"),
        ([{**LINES[0], "sku": " "}], "lines.0.sku"),
        ([{**LINES[0], "colour": "red"}], "lines.0.colour"),
        ([LINES[0], {**LINES[1], "sku": "CRM-SEAT"}], "lines.1.sku"),
        ([LINES[0], "line"], "lines.1"),
    ],
)
def test_bad_quote_lines_name_the_field(lines, field):
    with pytest.raises(InvalidOpportunityDataError) as raised:
        QuoteTerms.price(lines)
    assert field in raised.value.details["fields"]


def test_quotes_are_sent_only_in_proposal_or_negotiation():
    with pytest.raises(QuotingStageError):
        an_opportunity().send_quote(LINES)
    assert in_proposal().send_quote(LINES).status == "sent"


def test_a_new_quote_version_supersedes_the_previous_one():
    opportunity = in_proposal()
    first = opportunity.send_quote(LINES)
    opportunity.reject_quote(first.quote_id, "price above budget")
    second = opportunity.send_quote(LINES[:1])
    assert (first.version, second.version) == (1, 2)
    assert first.quote_id != second.quote_id
    assert (first.status, first.rejection_reason, second.status) == ("superseded", "price above budget", "sent")
    assert opportunity.current_quote is second
    with pytest.raises(QuoteNotOpenError):
        opportunity.accept_quote(first.quote_id)


def test_only_the_current_sent_quote_can_be_decided_once():
    opportunity = in_proposal()
    quote = opportunity.send_quote(LINES)
    with pytest.raises(QuoteNotFoundError):
        opportunity.accept_quote(uuid4())
    opportunity.accept_quote(quote.quote_id)
    with pytest.raises(QuoteNotOpenError):
        opportunity.reject_quote(quote.quote_id)
    with pytest.raises(QuoteNotOpenError):
        opportunity.accept_quote(quote.quote_id)


def test_winning_needs_an_accepted_current_quote():
    opportunity = an_opportunity()
    with pytest.raises(NoAcceptedQuoteError):
        opportunity.win(DEFAULTS)
    opportunity = in_proposal()
    opportunity.send_quote(LINES)
    with pytest.raises(NoAcceptedQuoteError):
        opportunity.win(DEFAULTS)
    opportunity = with_accepted_quote()
    opportunity.send_quote(LINES)  # a new version supersedes the accepted one
    with pytest.raises(NoAcceptedQuoteError):
        opportunity.win(DEFAULTS)


def test_winning_carries_the_accepted_quote_and_counts_its_total():
    opportunity = with_accepted_quote()
    quote = opportunity.current_quote
    opportunity.collect_events()
    won_at = T0 + timedelta(days=30)
    opportunity.win(DEFAULTS, at=won_at)
    (won,) = opportunity.collect_events()
    assert (won.quote_id, won.quote_version, won.lines, won.total) == (quote.quote_id, 1, quote.lines, quote.total)
    assert (won.subtotal, won.discount_total, won.from_stage) == (Decimal("13500.00"), Decimal("1200.00"), "proposal")
    assert (opportunity.stage, opportunity.probability, opportunity.amount) == ("won", 100, Decimal("12300.00"))
    assert (opportunity.won_quote_id, opportunity.closed_at) == (quote.quote_id, won_at)
    assert opportunity.stage_history[-1] == {"stage": "won", "probability": 100, "at": won_at}


def test_losing_needs_a_reason():
    opportunity = an_opportunity()
    with pytest.raises(InvalidOpportunityDataError):
        opportunity.lose("  ", DEFAULTS)
    opportunity.lose("chose a competitor on price", DEFAULTS)
    assert (opportunity.stage, opportunity.probability, opportunity.lost_reason) == (
        "lost", 0, "chose a competitor on price"
    )


CLOSED_COMMANDS = {
    "move": lambda o: o.move_to("negotiation", DEFAULTS),
    "amount": lambda o: o.change_amount(Decimal("1.00")),
    "close date": lambda o: o.change_expected_close_date(date(2027, 6, 30)),
    "reassign": lambda o: o.reassign("rep-zhao-lei"),
    "send quote": lambda o: o.send_quote(LINES),
    "accept quote": lambda o: o.accept_quote(o.current_quote.quote_id),
    "reject quote": lambda o: o.reject_quote(o.current_quote.quote_id),
    "win": lambda o: o.win(DEFAULTS),
    "lose": lambda o: o.lose("too late", DEFAULTS),
}


@pytest.mark.parametrize("close", ["win", "lose"])
@pytest.mark.parametrize("command", list(CLOSED_COMMANDS), ids=str)
def test_a_closed_opportunity_rejects_every_change(close, command):
    opportunity = with_accepted_quote()
    opportunity.win(DEFAULTS) if close == "win" else opportunity.lose("budget cut", DEFAULTS)
    opportunity.collect_events()
    version = opportunity.version
    with pytest.raises(OpportunityClosedError):
        CLOSED_COMMANDS[command](opportunity)
    assert (opportunity.version, opportunity.collect_events()) == (version, [])


def test_a_rejected_command_records_nothing():
    opportunity = in_proposal()
    opportunity.collect_events()
    with pytest.raises(InvalidOpportunityDataError):
        opportunity.send_quote([LINES[0], {**LINES[1], "quantity": -1}])
    assert (opportunity.quotes, opportunity.collect_events()) == ([], [])
