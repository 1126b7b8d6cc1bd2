"""Opportunities: the sales service's commands (load, call, save) and pipeline queries."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import StaleVersionError
from crm_contracts.vocabulary.sales import OPEN_STAGES
from crm_runtime.crypto import DataKeys, PersonalFields
from crm_runtime.eventstore import ServiceApplication
from crm_runtime.rights import (
    ErasureState,
    erasure_state_of,
    forget_records,
    forget_subjects,
    refusing_erased_customers,
    repoint_records,
    restore_records,
    save_changed,
    subjects_of,
    survivor_path,
)
from crm_sales.domain import (
    ZERO,
    Opportunity,
    OpportunityAlreadyOpenedError,
    OpportunityNotFoundError,
    StageProbabilities,
)

#: Notifications read from the log per page while folding it for a query.
FOLD_PAGE = 1000
RATE_PLACES = Decimal("0.0001")

#: The personal fields of sales' events, sealed (crm_runtime.crypto) under the data key of the customer the
#: opportunity was opened for, with what each reads as once that key is shredded (domain.py says why
#: these): the title, the reason a quote was rejected, the reason the deal was lost. Amounts, dates,
#: stages and quote lines stay clear.
PERSONAL_DATA: dict[type, PersonalFields] = {
    Opportunity.Opened: PersonalFields({"title": ""}, subject="customer_id"),
    Opportunity.QuoteRejected: PersonalFields({"reason": None}, subject="opened_for"),
    Opportunity.Lost: PersonalFields({"reason": ""}, subject="opened_for"),
}
#: The events that say whose an opportunity is from then on (each carries its `customer_id`).
OPPORTUNITY_OWNER_EVENTS = (Opportunity.Opened, Opportunity.CustomerRepointed, Opportunity.CustomerRestored)


@dataclass(frozen=True)
class PipelineTotals:
    """Open opportunities grouped by one key (a stage, a close month, a rep) in one currency."""

    key: str
    currency: str
    count: int
    amount: Decimal
    weighted_amount: Decimal


@dataclass(frozen=True)
class WinRate:
    """Closed opportunities: how many were won and lost, and the share won (None before any closed)."""

    won: int
    lost: int
    rate: Decimal | None


class Opportunities(ServiceApplication):
    """The sales pipeline: opportunities and their quotes."""

    service = "sales"
    stage_probabilities = StageProbabilities()
    personal_data: ClassVar[dict[type, PersonalFields]] = PERSONAL_DATA
    data_keys: DataKeys

    # --- commands --------------------------------------------------------------------------------

    def open(
        self,
        customer_id: UUID,
        title: str,
        owner: str,
        amount: Decimal,
        currency: str,
        expected_close_date: date,
        lead_id: UUID | None = None,
        at: datetime | None = None,
        opportunity_id: UUID | None = None,
    ) -> Opportunity:
        """Open an opportunity; from a lead at most once (its id derives from the lead's).

        With `opportunity_id` (derived from the command's id), opening is idempotent: a command
        delivered twice answers the opportunity its first delivery opened. From a lead, the id is the
        lead's, so a redelivery is recognised by the same opening facts; another opening from that
        lead is a conflict.
        """
        opportunity = Opportunity.open(
            customer_id, title, owner, amount, currency, expected_close_date, self.stage_probabilities, lead_id, at,
            opportunity_id,
        )
        self._follow_merges(opportunity)
        try:
            with refusing_erased_customers():
                self.save(opportunity)
        except IntegrityError:
            if opportunity_id is not None and (lead_id is None or self._opened_alike(opportunity)):
                return self.opportunity(opportunity.id)
            if lead_id is None:
                raise
            raise OpportunityAlreadyOpenedError(lead_id, opportunity.id) from None
        return opportunity

    def open_from_lead(
        self,
        lead_id: UUID,
        customer_id: UUID,
        title: str,
        owner: str,
        amount: Decimal,
        currency: str,
        expected_close_date: date,
        at: datetime,
    ) -> Opportunity:
        """Open the opportunity a converted lead brings (customer.lead_linked), once per lead: one
        already opened from this lead, by any command, is the answer and nothing is saved. One save."""
        opened = self._opened_from(lead_id)
        if opened is not None:
            return opened
        opportunity = Opportunity.open(
            customer_id, title, owner, amount, currency, expected_close_date, self.stage_probabilities, lead_id, at
        )
        self._follow_merges(opportunity)
        try:
            with refusing_erased_customers():
                self.save(opportunity)
        except IntegrityError:
            opened = self._opened_from(lead_id)  # a racing delivery opened it first
            if opened is None:
                raise
            return opened
        return opportunity

    def _follow_merges(self, opportunity: Opportunity) -> None:
        """An opportunity of a customer merged into another is re-pointed along the merges (each step
        undoable) in the save at hand: opened for the absorbed id (a command racing the merge), or
        committed while the merge's reaction was looking for the opportunities to re-point (caught by
        the next command on it)."""
        opportunity.follow_merges(survivor_path(self.repository, opportunity.customer_id))

    def _opened_from(self, lead_id: UUID) -> Opportunity | None:
        try:
            opportunity: Opportunity = self.repository.get(Opportunity.id_for_lead(lead_id))
        except AggregateNotFoundError:
            return None
        return opportunity

    def _opened_alike(self, opening: Opportunity) -> bool:
        """Whether the stored opportunity with this opening's id was opened with the same facts."""
        first: Opportunity = self.repository.get(opening.id, version=Opportunity.INITIAL_VERSION)
        return first.opened_alike(opening)

    def move_to_stage(
        self,
        opportunity_id: UUID,
        stage: str,
        probability: int | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Opportunity:
        """Move to another open stage, with the stage's default probability unless one is given."""
        return self._change(
            opportunity_id, expected_version, lambda o: o.move_to(stage, self.stage_probabilities, probability, at)
        )

    def change_amount(self, opportunity_id: UUID, amount: Decimal, expected_version: int | None = None) -> Opportunity:
        """Revise the estimated amount."""
        return self._change(opportunity_id, expected_version, lambda o: o.change_amount(amount))

    def change_expected_close_date(
        self, opportunity_id: UUID, expected_close_date: date, expected_version: int | None = None
    ) -> Opportunity:
        """Move the expected close date."""
        return self._change(
            opportunity_id, expected_version, lambda o: o.change_expected_close_date(expected_close_date)
        )

    def reassign(self, opportunity_id: UUID, owner: str, expected_version: int | None = None) -> Opportunity:
        """Hand the opportunity to another sales rep."""
        return self._change(opportunity_id, expected_version, lambda o: o.reassign(owner))

    def send_quote(
        self,
        opportunity_id: UUID,
        lines: Sequence[Mapping[str, Any]],
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Opportunity:
        """Send a new quote version (it supersedes the previous one): the opportunity's `current_quote`.

        With `command_id`, the quote's id derives from it: a redelivered command answers the
        opportunity with the version it sent, whatever happened since, and sends none again.
        """

        def send(opportunity: Opportunity) -> None:
            opportunity.send_quote(lines, at, opportunity.quote_id_for(command_id) if command_id else None)

        def sent(opportunity: Opportunity) -> bool:
            return command_id is not None and opportunity.has_quote(opportunity.quote_id_for(command_id))

        return self._change(opportunity_id, expected_version, send, sent)

    def accept_quote(
        self, opportunity_id: UUID, quote_id: UUID, at: datetime | None = None, expected_version: int | None = None
    ) -> Opportunity:
        """Record the customer's acceptance of the current quote version."""
        return self._change(opportunity_id, expected_version, lambda o: o.accept_quote(quote_id, at))

    def reject_quote(
        self,
        opportunity_id: UUID,
        quote_id: UUID,
        reason: str | None = None,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Opportunity:
        """Record the customer's rejection of the current quote version."""
        return self._change(opportunity_id, expected_version, lambda o: o.reject_quote(quote_id, reason, at))

    def win(self, opportunity_id: UUID, at: datetime | None = None, expected_version: int | None = None) -> Opportunity:
        """Close as won with the accepted quote (order creates the order from the published event)."""
        return self._change(opportunity_id, expected_version, lambda o: o.win(self.stage_probabilities, at))

    def lose(
        self, opportunity_id: UUID, reason: str, at: datetime | None = None, expected_version: int | None = None
    ) -> Opportunity:
        """Close as lost, with the reason."""
        return self._change(opportunity_id, expected_version, lambda o: o.lose(reason, self.stage_probabilities, at))

    def opportunity(self, opportunity_id: UUID, expected_version: int | None = None) -> Opportunity:
        """Load an opportunity; with `expected_version`, insist it is the current version."""
        try:
            opportunity: Opportunity = self.repository.get(opportunity_id)
        except AggregateNotFoundError:
            raise OpportunityNotFoundError(
                f"opportunity {opportunity_id} not found", opportunity_id=str(opportunity_id)
            ) from None
        check_version(opportunity, expected_version)
        return opportunity

    def _change(
        self,
        opportunity_id: UUID,
        expected_version: int | None,
        command: Callable[[Opportunity], object],
        done: Callable[[Opportunity], bool] | None = None,
    ) -> Opportunity:
        """Load, call, save. A domain error leaves nothing saved; losing a race is a stale version.
        `done` recognises an opportunity an earlier delivery of the command changed: it is the answer."""
        opportunity = self.opportunity(opportunity_id)
        if done is not None and done(opportunity):
            return opportunity
        check_version(opportunity, expected_version)
        command(opportunity)
        self._follow_merges(opportunity)
        try:
            with refusing_erased_customers():  # erased, and the forgetting not applied here yet
                self.save(opportunity)
        except IntegrityError:
            raise StaleVersionError(
                f"opportunity {opportunity_id} was changed concurrently; reload it and retry"
            ) from None
        return opportunity

    # --- the customer's rights (crm_runtime.rights): erasure, merge, unmerge ---------------------------

    def forget_customer(self, customer_id: UUID, request_id: str) -> None:
        """The customer_erased policy's command: shred the data keys of the customer and of everyone
        merged into them, then mark forgotten, in one save, each of their opportunities (with those
        re-pointed from them to a survivor, when an absorbed customer is erased on its own), so the
        listing re-projects them from state that now reads redacted. Idempotent."""
        subjects = subjects_of(self.repository, customer_id)
        forget_subjects(self.data_keys, subjects, request_id)
        save_changed(self, forget_records(self, subjects, request_id, OPPORTUNITY_OWNER_EVENTS, self.opportunity))

    def erasure_state(self, customer_id: UUID) -> ErasureState:
        """"done" once the keys of the customer (and of everyone merged into them) are shredded and the
        key cache's time has passed; "done" for a customer sales never heard of."""
        return erasure_state_of(self.data_keys, subjects_of(self.repository, customer_id))

    def absorb_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The customer_merged policy's command: every opportunity of `customer_id` (quotes included, open
        or closed) becomes the survivor's by an event remembering where it came from, with the merge
        noted, in one save. Found in the event store itself, so one opened just before the merge is not
        missed; one opened for `customer_id` after it follows the merge as it is opened. Idempotent."""
        repoint_records(self, customer_id, survivor_id, merge_id, OPPORTUNITY_OWNER_EVENTS, self.opportunity)

    def restore_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The customer_unmerged policy's command: every opportunity the merge re-pointed goes back to
        `customer_id`; those opened for the survivor since stay the survivor's. Idempotent."""
        restore_records(self, customer_id, survivor_id, merge_id, OPPORTUNITY_OWNER_EVENTS, self.opportunity)

    # --- queries ---------------------------------------------------------------------------------

    def pipeline(self) -> list[PipelineTotals]:
        """Open opportunities by stage (in pipeline order) and currency: count, amount, weighted amount."""
        order = {stage: index for index, stage in enumerate(OPEN_STAGES)}
        rows = _totals(self._open_opportunities(), lambda o: o.stage)
        return sorted(rows, key=lambda row: (row.currency, order[row.key]))

    def forecast_by_month(self) -> list[PipelineTotals]:
        """Open opportunities by expected close month ("YYYY-MM") and currency, weighted by probability."""
        return _totals(self._open_opportunities(), lambda o: o.expected_close_date.strftime("%Y-%m"))

    def forecast_by_rep(self) -> list[PipelineTotals]:
        """Open opportunities by owning sales rep and currency, weighted by probability."""
        return _totals(self._open_opportunities(), lambda o: o.owner)

    def win_rate(self, owner: str | None = None) -> WinRate:
        """The share of closed opportunities that were won, for everyone or for one rep."""
        closed = [o for o in self.all_opportunities() if o.is_closed and owner in (None, o.owner)]
        won = sum(1 for o in closed if o.stage == "won")
        lost = len(closed) - won
        rate = (Decimal(won) / len(closed)).quantize(RATE_PLACES, rounding=ROUND_HALF_UP) if closed else None
        return WinRate(won=won, lost=lost, rate=rate)

    def all_opportunities(self) -> list[Opportunity]:
        """Every opportunity's current state, replayed from this application's notification log.

        An event store has no index of its aggregates, and the read model that will answer these
        queries comes in a later issue. Until then each query folds the whole log: every event in
        commit order, applied with the aggregate's own event classes, so a query can never disagree
        with the aggregates. The cost is honest and linear: every stored event is read and decoded
        on every query, and every opportunity is held in memory. Fine for a pipeline of thousands;
        not for millions.
        """
        states: dict[UUID, Any] = {}
        position = 0
        while True:
            notifications = self.recorder.select_notifications(
                start=position, limit=FOLD_PAGE, inclusive_of_start=False
            )
            for notification in notifications:
                domain_event = self.mapper.to_domain_event(notification)
                states[domain_event.originator_id] = domain_event.mutate(states.get(domain_event.originator_id))
                position = notification.id
            if len(notifications) < FOLD_PAGE:
                return [state for state in states.values() if isinstance(state, Opportunity)]

    def _open_opportunities(self) -> list[Opportunity]:
        return [o for o in self.all_opportunities() if not o.is_closed]


def check_version(opportunity: Opportunity, expected_version: int | None) -> None:
    """With `expected_version`, insist the opportunity is at that version."""
    if expected_version is not None and opportunity.version != expected_version:
        raise StaleVersionError(
            f"opportunity {opportunity.id} is at version {opportunity.version}, not {expected_version}",
            current_version=opportunity.version,
        )


def _totals(opportunities: Iterable[Opportunity], key: Callable[[Opportunity], str]) -> list[PipelineTotals]:
    """Group opportunities by `key` and currency (amounts in different currencies never add up)."""
    groups: dict[tuple[str, str], list[Opportunity]] = defaultdict(list)
    for opportunity in opportunities:
        groups[(key(opportunity), opportunity.currency)].append(opportunity)
    return [
        PipelineTotals(
            key=group_key,
            currency=currency,
            count=len(members),
            amount=sum((o.amount for o in members), ZERO),
            # Each opportunity's weighted amount is rounded first, so every grouping adds up alike.
            weighted_amount=sum((o.weighted_amount for o in members), ZERO),
        )
        for (group_key, currency), members in sorted(groups.items())
    ]
