"""Property tests of the Opportunity's invariants under random commands (hypothesis, no store).

The state machine fires random commands, valid and invalid, at one opportunity and checks after
every step that it is in a legal state, that a rejected command changed nothing, and that replaying
its events rebuilds exactly the same state.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal
from typing import Any
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from crm_contracts.errors import CrmError
from crm_contracts.vocabulary.sales import CLOSED_STAGES, OPEN_STAGES, STAGE_MOVES, STAGES
from crm_sales.domain import Opportunity, QuoteTerms, StageProbabilities

DEFAULTS = StageProbabilities()
cents = st.integers(min_value=0, max_value=10**9).map(lambda c: Decimal(c).scaleb(-2))
percents = st.integers(min_value=0, max_value=10_000).map(lambda c: Decimal(c).scaleb(-2))
line = st.fixed_dictionaries(
    {
        "sku": st.text(alphabet="ABCDEFGHIJ-0123456789", min_size=1, max_size=8),
        "description": st.just("item"),
        "quantity": st.integers(min_value=1, max_value=10_000),
        "unit_price": cents,
        "discount": percents,
    }
)
quote_lines = st.lists(line, min_size=1, max_size=6, unique_by=lambda li: li["sku"])
# Mostly valid input, sometimes not: invalid commands must be refused without a trace.
any_lines = st.one_of(quote_lines, quote_lines.map(lambda ls: [*ls, {**ls[0], "quantity": 0}]))
any_amount = st.one_of(cents, st.just(Decimal("-1.00")), st.just(Decimal("0.001")))


@given(quote_lines)
def test_quote_totals_are_the_sum_of_their_lines_and_never_negative(lines):
    terms = QuoteTerms.price(lines)
    assert terms.total == sum(li["line_total"] for li in terms.lines)
    assert terms.subtotal == sum(li["quantity"] * li["unit_price"] for li in terms.lines)
    assert terms.subtotal - terms.discount_total == terms.total
    assert terms.total >= 0 and terms.discount_total >= 0
    for priced in terms.lines:
        assert 0 <= priced["line_total"] <= priced["quantity"] * priced["unit_price"]
        assert priced["line_total"] == priced["line_total"].quantize(Decimal("0.01"))


class OpportunityMachine(RuleBasedStateMachine):
    """One opportunity under a random sequence of commands."""

    def __init__(self) -> None:
        super().__init__()
        self.opportunity = Opportunity.open(
            uuid4(), "deal", "rep-a", Decimal("1000.00"), "EUR", date(2026, 12, 31), DEFAULTS
        )
        self.events: list[Any] = list(self.opportunity.collect_events())
        self.closed_at_version: int | None = None

    def attempt(self, command: Any) -> None:
        """Run a command; if the domain refuses it, nothing may have changed."""
        before = self.fingerprint(self.opportunity)
        try:
            command()
        except CrmError:
            assert self.fingerprint(self.opportunity) == before
            assert self.opportunity.collect_events() == []
        else:
            self.events.extend(self.opportunity.collect_events())

    @staticmethod
    def fingerprint(o: Opportunity) -> tuple[Any, ...]:
        quotes = [(q.quote_id, q.status, q.total, q.decided_at) for q in o.quotes]
        return (o.version, o.stage, o.probability, o.amount, o.expected_close_date, o.owner,
                len(o.stage_history), quotes, o.lost_reason, o.won_quote_id, o.closed_at)

    @rule()
    def advance(self) -> None:
        stage = self.opportunity.stage
        following = OPEN_STAGES[OPEN_STAGES.index(stage) + 1 :] if stage in OPEN_STAGES else ()
        self.attempt(lambda: self.opportunity.move_to(following[0] if following else stage, DEFAULTS))

    @rule(stage=st.sampled_from([*STAGES, "closing"]), probability=st.one_of(st.none(), st.integers(-5, 105)))
    def move(self, stage: str, probability: int | None) -> None:
        self.attempt(lambda: self.opportunity.move_to(stage, DEFAULTS, probability))

    @rule(amount=any_amount)
    def change_amount(self, amount: Decimal) -> None:
        self.attempt(lambda: self.opportunity.change_amount(amount))

    @rule(days=st.integers(-400, 400))
    def change_expected_close_date(self, days: int) -> None:
        self.attempt(lambda: self.opportunity.change_expected_close_date(date(2026, 12, 31) + timedelta(days=days)))

    @rule(owner=st.sampled_from(["rep-a", "rep-b", " "]))
    def reassign(self, owner: str) -> None:
        self.attempt(lambda: self.opportunity.reassign(owner))

    @rule(lines=any_lines)
    def send_quote(self, lines: list[dict[str, Any]]) -> None:
        self.attempt(lambda: self.opportunity.send_quote(lines))

    @rule(pick=st.sampled_from([-1, -1, -1, 0, 1, 5]))
    def accept_quote(self, pick: int) -> None:
        self.attempt(lambda: self.opportunity.accept_quote(self.quote_id(pick)))

    @rule(pick=st.sampled_from([-1, 0, 1, 5]), reason=st.sampled_from([None, "too dear", " "]))
    def reject_quote(self, pick: int, reason: str | None) -> None:
        self.attempt(lambda: self.opportunity.reject_quote(self.quote_id(pick), reason))

    @rule()
    def win(self) -> None:
        self.attempt(lambda: self.opportunity.win(DEFAULTS))

    @rule()
    def customer_signs(self) -> None:
        # Accept-then-win as one step too, so that random runs reach "won" often enough to matter.
        self.accept_quote(-1)
        self.win()

    # Mostly blank reasons: a valid loss ends the run, and the machine should get to win too.
    @rule(reason=st.sampled_from(["lost to a competitor", "", " ", "  ", "\t", "\n"]))
    def lose(self, reason: str) -> None:
        self.attempt(lambda: self.opportunity.lose(reason, DEFAULTS))

    def quote_id(self, pick: int) -> Any:
        """A quote of this opportunity by index (negative: from the end), or an unknown id."""
        quotes = self.opportunity.quotes
        return quotes[pick].quote_id if -len(quotes) <= pick < len(quotes) else uuid4()

    @invariant()
    def stage_is_legal_and_history_follows_the_machine(self) -> None:
        o = self.opportunity
        assert o.stage in STAGES
        assert (o.stage_history[-1]["stage"], o.stage_history[-1]["probability"]) == (o.stage, o.probability)
        assert 0 <= o.probability <= 100
        for before, after in zip(o.stage_history, o.stage_history[1:]):
            assert before["stage"] in OPEN_STAGES
            assert after["stage"] in (*STAGE_MOVES[before["stage"]], before["stage"], *CLOSED_STAGES)

    @invariant()
    def a_closed_opportunity_never_changes_again(self) -> None:
        if self.opportunity.is_closed and self.closed_at_version is None:
            self.closed_at_version = self.opportunity.version
        if self.closed_at_version is not None:
            assert self.opportunity.version == self.closed_at_version

    @invariant()
    def only_the_latest_quote_is_current_and_totals_add_up(self) -> None:
        quotes = self.opportunity.quotes
        assert all(q.status == "superseded" for q in quotes[:-1])
        assert not quotes or quotes[-1].status in ("sent", "accepted", "rejected")
        for q in quotes:
            assert q.total == sum(li["line_total"] for li in q.lines) >= 0

    @invariant()
    def won_only_with_an_accepted_quote(self) -> None:
        o = self.opportunity
        if o.stage == "won":
            assert o.current_quote is not None and o.current_quote.status == "accepted"
            assert (o.won_quote_id, o.amount) == (o.current_quote.quote_id, o.current_quote.total)
        if o.stage == "lost":
            assert o.lost_reason and o.lost_reason.strip()

    @invariant()
    def replaying_the_events_rebuilds_the_same_state(self) -> None:
        rebuilt: Any = None
        for domain_event in self.events:
            rebuilt = domain_event.mutate(rebuilt)
        assert self.fingerprint(rebuilt) == self.fingerprint(self.opportunity)
        assert rebuilt.stage_history == self.opportunity.stage_history


OpportunityMachine.TestCase.settings = settings(max_examples=150, stateful_step_count=40, deadline=None)
TestOpportunityMachine = OpportunityMachine.TestCase
