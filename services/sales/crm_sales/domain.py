"""Opportunities and their quotes as event-sourced aggregates. Pure: no framework, no driver.

Selling (DOMAIN.md "Sales"): an opportunity is opened for a customer, or from a converted lead, and
worked through prospecting -> qualification -> proposal -> negotiation until it is won (with an
accepted quote, which order turns into an order) or lost (with a reason).

Decisions a reader needs:
- A Quote is an entity inside the Opportunity aggregate, not an aggregate of its own. Every rule that
  involves a quote also involves its opportunity: a quote is sent only while the opportunity is open
  and in a quoting stage, a new version supersedes the previous one, winning needs the current version
  accepted, and a closed opportunity freezes its quotes. Kept in one aggregate these rules are checked
  against one consistent state and saved in one version-checked write; as two aggregates, a win could
  race a new quote version and carry a superseded quote into the order. Quotes per opportunity are
  few, so the aggregate stays small.
- Each quote version has its own id (derived from the opportunity id and the version number) because
  order refers to the exact quote it was created from. Quote lines are priced like order lines: a
  whole quantity, a unit price in cents, a discount as a percentage of the gross, each line total
  rounded half-up to cents; the quote total is the sum of the line totals.
- Probabilities are whole percentages. Every stage has a default (StageProbabilities, configurable);
  a stage move may give its own, and moving to the current stage with a new probability revises it.
- Winning sets the amount to the accepted quote's total: from then on the opportunity counts what the
  customer accepted, not the estimate.
- Times are given by the caller (default: now, UTC), so stage history is exact on replay and testable.
- Every domain event carries `customer_id` so publishing needs nothing but the event itself.
- A customer's rights (crm_runtime.rights). Personal, and sealed by the application under the data
  key of the customer the opportunity was opened for, wherever merges take it (the events after the
  opening name that customer as `opened_for`; those stored before sealing carry none): the title (an
  opportunity opened from a lead is titled by the lead's company and contact name, "Bright Retail
  (Zhang Min)", so every title is treated as naming a person), the reason a customer gave for
  rejecting a quote, and the reason the deal was lost (free text). Not
  personal: quote lines (products and prices), amounts, dates, stages, the owner (a sales rep's id).
  An opportunity is a crm_runtime.rights.CustomerOwnedRecord: a merge re-points it, quotes included,
  to the survivor by `CustomerRepointed`
  (remembering `merged_from` and `merge_id`; later events carry the survivor), an unmerge gives it
  back by `CustomerRestored`; an erasure marks it `CustomerForgotten`: its later reasons are recorded
  redacted, and every other command goes on.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from datetime import UTC, date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from eventsourcing.domain import event

from crm_contracts.errors import ConflictError, InvalidRequestError, NotFoundError, RuleViolationError
from crm_contracts.vocabulary.money import MAX_LINE_AMOUNT
from crm_contracts.vocabulary.sales import (
    CLOSED_STAGES,
    CURRENCIES,
    MAX_DISCOUNT_PERCENT,
    MONEY_PLACES,
    OPEN_STAGES,
    QUOTE_LINE_FIELDS,
    QUOTE_STAGES,
    STAGE_MOVES,
)
from crm_runtime.rights import CustomerOwnedRecord

#: Opportunities opened from a lead get an id derived from it, so opening twice from one lead collides.
OPPORTUNITY_FROM_LEAD_NAMESPACE = uuid.UUID("9c4e2f7a-1b3d-4a6e-8f20-7d5c3b1a9e64")
QUOTE_NAMESPACE = uuid.UUID("2e8b6d14-7f0a-4c39-b5e1-63a9d0c4f287")
#: Ids derived from command ids: a redelivered command makes the same id again and collides or is recognised.
OPPORTUNITY_FROM_COMMAND_NAMESPACE = uuid.UUID("71c3e9a0-5d28-4b6f-a814-0c9e2f7b3d56")
QUOTE_FROM_COMMAND_NAMESPACE = uuid.UUID("a9f2064e-3b71-4e8c-95d0-d7186c4b2e3a")
#: The facts an opening records, compared to recognise a redelivered opening from a lead.
OPENING_FACTS = ("customer_id", "lead_id", "title", "owner", "amount", "currency", "expected_close_date")
CENT = Decimal(1).scaleb(-MONEY_PLACES)
ZERO = Decimal("0.00")
HUNDRED = Decimal(100)
MAX_TEXT = 500


class OpportunityNotFoundError(NotFoundError):
    """No opportunity has this id."""


class QuoteNotFoundError(NotFoundError):
    """The opportunity has no quote with this id."""

    def __init__(self, quote_id: uuid.UUID) -> None:
        super().__init__(f"quote {quote_id} not found", quote_id=str(quote_id))


class OpportunityAlreadyOpenedError(ConflictError):
    """An opportunity was already opened from this lead."""

    def __init__(self, lead_id: uuid.UUID, opportunity_id: uuid.UUID) -> None:
        super().__init__(
            f"lead {lead_id} already became opportunity {opportunity_id}",
            existing_opportunity_id=str(opportunity_id),
            fields={"lead_id": ["already became an opportunity"]},
        )


class InvalidOpportunityDataError(InvalidRequestError):
    """A command's input breaks a rule of form; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


class OpportunityClosedError(RuleViolationError):
    """The opportunity is won or lost: it takes no further changes."""

    def __init__(self, command: str, stage: str) -> None:
        super().__init__(f"cannot {command}: the opportunity is {stage}", stage=stage, command=command)


class IllegalStageMoveError(RuleViolationError):
    """The stage machine does not allow this move."""

    def __init__(self, from_stage: str, to_stage: str, why: str) -> None:
        super().__init__(
            f"cannot move from {from_stage} to {to_stage}: {why}", from_stage=from_stage, to_stage=to_stage
        )


class QuotingStageError(RuleViolationError):
    """Quotes are sent only in the proposal and negotiation stages."""

    def __init__(self, stage: str) -> None:
        super().__init__(
            f"cannot send a quote in stage {stage}: move to {' or '.join(QUOTE_STAGES)} first", stage=stage
        )


class QuoteNotOpenError(RuleViolationError):
    """Only the current quote version, while sent and undecided, can be accepted or rejected."""

    def __init__(self, quote_id: uuid.UUID, status: str) -> None:
        super().__init__(
            f"quote {quote_id} is {status}: only the current, sent version can be accepted or rejected",
            quote_id=str(quote_id),
            status=status,
        )


class NoAcceptedQuoteError(RuleViolationError):
    """Winning needs the current quote version to be accepted."""

    def __init__(self, status: str | None) -> None:
        have = f"the current quote is {status}" if status else "no quote was sent"
        super().__init__(f"cannot win without an accepted quote: {have}", quote_status=status)


@dataclass(frozen=True)
class StageProbabilities:
    """The default win probability, in whole percent, of each stage; configurable per application."""

    prospecting: int = 10
    qualification: int = 25
    proposal: int = 50
    negotiation: int = 75
    won: int = 100
    lost: int = 0

    def __post_init__(self) -> None:
        for stage in (f.name for f in fields(self)):
            check_probability(getattr(self, stage), stage)

    def for_stage(self, stage: str) -> int:
        """The default probability of `stage`."""
        return int(getattr(self, stage))


@dataclass(frozen=True)
class QuoteTerms:
    """Priced quote lines and their totals, all Decimal in cents."""

    lines: list[dict[str, Any]]
    subtotal: Decimal
    discount_total: Decimal
    total: Decimal

    @classmethod
    def price(cls, lines: Sequence[Mapping[str, Any]]) -> QuoteTerms:
        """Check quote lines and compute each line's total and the quote's totals."""
        priced = price_lines(lines)
        subtotal = sum((line["quantity"] * line["unit_price"] for line in priced), ZERO)
        total = sum((line["line_total"] for line in priced), ZERO)
        return cls(lines=priced, subtotal=subtotal, discount_total=subtotal - total, total=total)


@dataclass
class Quote:
    """One version of a quote: an entity inside the Opportunity aggregate (the module says why)."""

    quote_id: uuid.UUID
    version: int
    lines: list[dict[str, Any]]
    subtotal: Decimal
    discount_total: Decimal
    total: Decimal
    sent_at: datetime
    status: str = "sent"
    decided_at: datetime | None = None
    rejection_reason: str | None = None


class Opportunity(CustomerOwnedRecord):
    """A chance to sell to one customer, worked through the stages until it is won or lost."""

    @classmethod
    def create_id(cls, lead_id: uuid.UUID | None) -> uuid.UUID:
        """A new id, or the one derived from the lead the opportunity comes from."""
        return cls.id_for_lead(lead_id) if lead_id is not None else uuid.uuid4()

    @staticmethod
    def id_for_lead(lead_id: uuid.UUID) -> uuid.UUID:
        """The id of the opportunity opened from `lead_id`: one lead, one opportunity."""
        return uuid.uuid5(OPPORTUNITY_FROM_LEAD_NAMESPACE, str(lead_id))

    @staticmethod
    def id_for_opening(command_id: str) -> uuid.UUID:
        """The id of the opportunity opened (without a lead) by command `command_id`: the same for every delivery."""
        return uuid.uuid5(OPPORTUNITY_FROM_COMMAND_NAMESPACE, command_id)

    def quote_id_for(self, command_id: str) -> uuid.UUID:
        """The id of the quote version sent by command `command_id` on this opportunity."""
        return uuid.uuid5(QUOTE_FROM_COMMAND_NAMESPACE, f"{self.id}/{command_id}")

    def opened_alike(self, other: Opportunity) -> bool:
        """Whether `other` records the same opening facts (compare both at version 1)."""
        return all(getattr(self, fact) == getattr(other, fact) for fact in OPENING_FACTS)

    @event("Opened")
    def __init__(
        self,
        customer_id: uuid.UUID,
        lead_id: uuid.UUID | None,
        title: str,
        owner: str,
        amount: Decimal,
        currency: str,
        expected_close_date: date,
        stage: str,
        probability: int,
        at: datetime,
    ) -> None:
        self.customer_id = customer_id
        #: Whose data key seals the opportunity's personal fields, wherever merges take it.
        self.opened_for = customer_id
        self.lead_id = lead_id
        self.title = title
        self.owner = owner
        self.amount = amount
        self.currency = currency
        self.expected_close_date = expected_close_date
        self.stage = stage
        self.probability = probability
        self.stage_history: list[dict[str, Any]] = [{"stage": stage, "probability": probability, "at": at}]
        self.quotes: list[Quote] = []
        self.opened_at = at
        self.closed_at: datetime | None = None
        self.lost_reason: str | None = None
        self.won_quote_id: uuid.UUID | None = None
        #: The merges that re-pointed this opportunity, oldest first, each {"merge_id", "merged_from"}.
        self.merges: list[dict[str, Any]] = []
        self.customer_forgotten = False

    @classmethod
    def open(
        cls,
        customer_id: uuid.UUID,
        title: str,
        owner: str,
        amount: Decimal,
        currency: str,
        expected_close_date: date,
        probabilities: StageProbabilities,
        lead_id: uuid.UUID | None = None,
        at: datetime | None = None,
        opportunity_id: uuid.UUID | None = None,
    ) -> Opportunity:
        """Open an opportunity for a customer, or from a converted lead (give its id).

        Its id derives from the lead when there is one (one lead, one opportunity); else it is
        `opportunity_id` when given (derived from the command, so a redelivery collides), else new.
        """
        check_uuid(customer_id, "customer_id")
        if lead_id is not None:
            check_uuid(lead_id, "lead_id")
        check_currency(currency)
        opening: dict[str, Any] = {
            "customer_id": customer_id,
            "lead_id": lead_id,
            "title": check_text(title, "title"),
            "owner": check_text(owner, "owner"),
            "amount": check_amount(amount, "amount"),
            "currency": currency,
            "expected_close_date": check_date(expected_close_date, "expected_close_date"),
            "stage": OPEN_STAGES[0],
            "probability": probabilities.for_stage(OPEN_STAGES[0]),
            "at": check_time(at),
        }
        if lead_id is None and opportunity_id is not None:
            return cls._create(cls.Opened, id=opportunity_id, **opening)  # type: ignore[attr-defined,no-any-return]
        return cls(**opening)

    # --- derived state ---------------------------------------------------------------------------

    @property
    def is_closed(self) -> bool:
        """Won or lost."""
        return self.stage in CLOSED_STAGES

    @property
    def current_quote(self) -> Quote | None:
        """The latest quote version; every earlier one is superseded."""
        return self.quotes[-1] if self.quotes else None

    @property
    def weighted_amount(self) -> Decimal:
        """The amount times the win probability, in cents: what the pipeline expects to bring in."""
        return (self.amount * self.probability / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP)

    def has_quote(self, quote_id: uuid.UUID) -> bool:
        """Whether a quote version with this id was sent."""
        return any(quote.quote_id == quote_id for quote in self.quotes)

    def quote(self, quote_id: uuid.UUID) -> Quote:
        """The quote version with this id."""
        for quote in self.quotes:
            if quote.quote_id == quote_id:
                return quote
        raise QuoteNotFoundError(quote_id)

    # --- stages ----------------------------------------------------------------------------------

    def move_to(
        self, stage: str, probabilities: StageProbabilities, probability: int | None = None, at: datetime | None = None
    ) -> None:
        """Move to another open stage (forward one, or back), with its default or a given probability."""
        self.check_open("change stage")
        if stage in CLOSED_STAGES:
            raise IllegalStageMoveError(self.stage, stage, "win or lose the opportunity instead")
        if stage not in OPEN_STAGES:
            raise InvalidOpportunityDataError("stage", f"must be one of {', '.join(OPEN_STAGES)}")
        if probability is not None:
            check_probability(probability, "probability")
        if stage == self.stage:
            # Same stage: only a revised probability is news.
            if probability is None or probability == self.probability:
                return
        elif stage not in STAGE_MOVES[self.stage]:
            raise IllegalStageMoveError(self.stage, stage, "stages move forward one at a time")
        new_probability = probabilities.for_stage(stage) if probability is None else probability
        self._stage_changed(self.customer_id, self.stage, stage, new_probability, check_time(at))

    @event("StageChanged")
    def _stage_changed(
        self, customer_id: uuid.UUID, from_stage: str, to_stage: str, probability: int, at: datetime
    ) -> None:
        self._enter(to_stage, probability, at)

    def _enter(self, stage: str, probability: int, at: datetime) -> None:
        self.stage = stage
        self.probability = probability
        self.stage_history.append({"stage": stage, "probability": probability, "at": at})

    # --- forecast facts --------------------------------------------------------------------------

    def change_amount(self, amount: Decimal) -> None:
        """Revise the estimated amount (in the opportunity's currency)."""
        self.check_open("change the amount")
        check_amount(amount, "amount")
        if amount != self.amount:
            self._amount_changed(self.customer_id, amount, self.amount, self.currency)

    @event("AmountChanged")
    def _amount_changed(
        self, customer_id: uuid.UUID, amount: Decimal, previous_amount: Decimal, currency: str
    ) -> None:
        self.amount = amount

    def change_expected_close_date(self, expected_close_date: date) -> None:
        """Move the date the opportunity is expected to close (it drives the forecast by month)."""
        self.check_open("change the expected close date")
        check_date(expected_close_date, "expected_close_date")
        if expected_close_date != self.expected_close_date:
            self._expected_close_date_changed(self.customer_id, expected_close_date, self.expected_close_date)

    @event("ExpectedCloseDateChanged")
    def _expected_close_date_changed(
        self, customer_id: uuid.UUID, expected_close_date: date, previous_expected_close_date: date
    ) -> None:
        self.expected_close_date = expected_close_date

    def reassign(self, owner: str) -> None:
        """Hand the opportunity to another sales rep."""
        self.check_open("reassign")
        owner = check_text(owner, "owner")
        if owner != self.owner:
            self._reassigned(self.customer_id, owner, self.owner)

    @event("Reassigned")
    def _reassigned(self, customer_id: uuid.UUID, owner: str, previous_owner: str) -> None:
        self.owner = owner

    # --- quotes ----------------------------------------------------------------------------------

    def send_quote(
        self, lines: Sequence[Mapping[str, Any]], at: datetime | None = None, quote_id: uuid.UUID | None = None
    ) -> Quote:
        """Send a new quote version; it supersedes the previous one, whatever its status. With
        `quote_id` (derived from the command), a redelivered command answers the version it sent."""
        if quote_id is not None and self.has_quote(quote_id):
            return self.quote(quote_id)
        self.check_open("send a quote")
        if self.stage not in QUOTE_STAGES:
            raise QuotingStageError(self.stage)
        terms = QuoteTerms.price(lines)
        version = len(self.quotes) + 1
        previous = self.current_quote
        self._quote_sent(
            customer_id=self.customer_id,
            quote_id=quote_id or uuid.uuid5(QUOTE_NAMESPACE, f"{self.id}/{version}"),
            quote_version=version,
            supersedes_quote_id=previous.quote_id if previous else None,
            currency=self.currency,
            lines=terms.lines,
            subtotal=terms.subtotal,
            discount_total=terms.discount_total,
            total=terms.total,
            at=check_time(at),
        )
        return self.quotes[-1]

    @event("QuoteSent")
    def _quote_sent(
        self,
        customer_id: uuid.UUID,
        quote_id: uuid.UUID,
        quote_version: int,
        supersedes_quote_id: uuid.UUID | None,
        currency: str,
        lines: list[dict[str, Any]],
        subtotal: Decimal,
        discount_total: Decimal,
        total: Decimal,
        at: datetime,
    ) -> None:
        if self.quotes:
            self.quotes[-1].status = "superseded"
        self.quotes.append(
            Quote(quote_id, quote_version, [dict(line) for line in lines], subtotal, discount_total, total, at)
        )

    def accept_quote(self, quote_id: uuid.UUID, at: datetime | None = None) -> None:
        """Record that the customer accepted the current quote version."""
        self.check_open("accept a quote")
        quote = self._undecided(quote_id)
        self._quote_accepted(
            self.customer_id, quote.quote_id, quote.version, self.currency, quote.total, check_time(at)
        )

    @event("QuoteAccepted")
    def _quote_accepted(
        self,
        customer_id: uuid.UUID,
        quote_id: uuid.UUID,
        quote_version: int,
        currency: str,
        total: Decimal,
        at: datetime,
    ) -> None:
        self._decide(quote_id, "accepted", at, None)

    def reject_quote(self, quote_id: uuid.UUID, reason: str | None = None, at: datetime | None = None) -> None:
        """Record that the customer rejected the current quote version (a new version may follow)."""
        self.check_open("reject a quote")
        quote = self._undecided(quote_id)
        if reason is not None:
            reason = self._personal(check_text(reason, "reason"), None)
        self._quote_rejected(self.customer_id, quote.quote_id, quote.version, reason, check_time(at),
                             opened_for=self.opened_for)

    @event("QuoteRejected")
    def _quote_rejected(
        self, customer_id: uuid.UUID, quote_id: uuid.UUID, quote_version: int, reason: str | None, at: datetime,
        opened_for: uuid.UUID | None = None,
    ) -> None:
        self._decide(quote_id, "rejected", at, reason)

    def _undecided(self, quote_id: uuid.UUID) -> Quote:
        quote = self.quote(quote_id)
        if quote is not self.current_quote or quote.status != "sent":
            raise QuoteNotOpenError(quote_id, quote.status)
        return quote

    def _decide(self, quote_id: uuid.UUID, status: str, at: datetime, reason: str | None) -> None:
        quote = self.quote(quote_id)
        quote.status = status
        quote.decided_at = at
        quote.rejection_reason = reason

    # --- closing ---------------------------------------------------------------------------------

    def win(self, probabilities: StageProbabilities, at: datetime | None = None) -> None:
        """Close as won; needs the current quote accepted, whose lines and totals the order takes."""
        self.check_open("win")
        quote = self.current_quote
        if quote is None or quote.status != "accepted":
            raise NoAcceptedQuoteError(quote.status if quote else None)
        self._won(
            customer_id=self.customer_id,
            owner=self.owner,
            from_stage=self.stage,
            probability=probabilities.for_stage("won"),
            quote_id=quote.quote_id,
            quote_version=quote.version,
            currency=self.currency,
            lines=[dict(line) for line in quote.lines],
            subtotal=quote.subtotal,
            discount_total=quote.discount_total,
            total=quote.total,
            at=check_time(at),
        )

    @event("Won")
    def _won(
        self,
        customer_id: uuid.UUID,
        owner: str,
        from_stage: str,
        probability: int,
        quote_id: uuid.UUID,
        quote_version: int,
        currency: str,
        lines: list[dict[str, Any]],
        subtotal: Decimal,
        discount_total: Decimal,
        total: Decimal,
        at: datetime,
    ) -> None:
        self._enter("won", probability, at)
        self.amount = total
        self.won_quote_id = quote_id
        self.closed_at = at

    def lose(self, reason: str, probabilities: StageProbabilities, at: datetime | None = None) -> None:
        """Close as lost, saying why."""
        self.check_open("lose")
        reason = self._personal(check_text(reason, "reason"), "")
        self._lost(
            customer_id=self.customer_id,
            owner=self.owner,
            from_stage=self.stage,
            probability=probabilities.for_stage("lost"),
            reason=reason,
            amount=self.amount,
            currency=self.currency,
            at=check_time(at),
            opened_for=self.opened_for,
        )

    @event("Lost")
    def _lost(
        self,
        customer_id: uuid.UUID,
        owner: str,
        from_stage: str,
        probability: int,
        reason: str,
        amount: Decimal,
        currency: str,
        at: datetime,
        opened_for: uuid.UUID | None = None,
    ) -> None:
        self._enter("lost", probability, at)
        self.lost_reason = reason
        self.closed_at = at

    def check_open(self, command: str) -> None:
        """A won or lost opportunity takes no further command."""
        if self.is_closed:
            raise OpportunityClosedError(command, self.stage)


def price_lines(lines: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Check quote lines and compute each line's total: quantity x unit price less the discount."""
    if isinstance(lines, (str, bytes)) or not isinstance(lines, Sequence) or not lines:
        raise InvalidOpportunityDataError("lines", "must be a non-empty list")
    priced: list[dict[str, Any]] = []
    seen: set[str] = set()
    for index, line in enumerate(lines):
        field = f"lines.{index}"
        if not isinstance(line, Mapping):
            raise InvalidOpportunityDataError(field, "must be an object")
        unknown = set(line) - set(QUOTE_LINE_FIELDS)
        if unknown:
            raise InvalidOpportunityDataError(f"{field}.{sorted(unknown)[0]}", "is not a line field")
        sku = check_text(line.get("sku"), f"{field}.sku")
        # Order keys its lines by SKU, so a quote that becomes an order must not repeat one.
        if sku in seen:
            raise InvalidOpportunityDataError(f"{field}.sku", "appears on another line of this quote")
        seen.add(sku)
        quantity = line.get("quantity")
        if isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1:
            raise InvalidOpportunityDataError(f"{field}.quantity", "must be a whole number of at least 1")
        unit_price = check_amount(line.get("unit_price"), f"{field}.unit_price")
        discount = line.get("discount", ZERO)
        if (
            not isinstance(discount, Decimal)
            or not discount.is_finite()
            or not 0 <= discount <= MAX_DISCOUNT_PERCENT
            or discount != discount.quantize(CENT)
        ):
            raise InvalidOpportunityDataError(
                f"{field}.discount", f"must be a Decimal percent from 0 to {MAX_DISCOUNT_PERCENT}, in hundredths"
            )
        gross = quantity * unit_price
        if gross > MAX_LINE_AMOUNT:
            reason = f"quantity × unit price must not exceed {MAX_LINE_AMOUNT}"
            raise InvalidOpportunityDataError(f"{field}.quantity", reason)
        priced.append(
            {
                "sku": sku,
                "description": check_text(line.get("description"), f"{field}.description"),
                "quantity": quantity,
                "unit_price": unit_price,
                "discount": discount,
                "line_total": (gross * (HUNDRED - discount) / HUNDRED).quantize(CENT, rounding=ROUND_HALF_UP),
            }
        )
    return priced


def check_uuid(value: Any, field: str) -> None:
    """An id is a UUID, never its string."""
    if not isinstance(value, uuid.UUID):
        raise InvalidOpportunityDataError(field, "must be a UUID")


def check_text(value: Any, field: str) -> str:
    """Non-blank text of at most MAX_TEXT characters, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise InvalidOpportunityDataError(field, "must not be blank")
    if len(value.strip()) > MAX_TEXT:
        raise InvalidOpportunityDataError(field, f"must be at most {MAX_TEXT} characters")
    return value.strip()


def check_currency(currency: Any) -> None:
    """An active ISO 4217 code, upper case."""
    if currency not in CURRENCIES:
        raise InvalidOpportunityDataError("currency", "must be an active ISO 4217 code, e.g. CNY, EUR, USD")


def check_amount(amount: Any, field: str) -> Decimal:
    """Money is a finite, non-negative Decimal in cents: never a float, never finer than the wire carries."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise InvalidOpportunityDataError(field, "must be a Decimal amount")
    if amount < 0:
        raise InvalidOpportunityDataError(field, "must not be negative")
    if amount != amount.quantize(CENT):
        raise InvalidOpportunityDataError(field, f"must have at most {MONEY_PLACES} decimal places")
    return amount


def check_probability(probability: Any, field: str) -> None:
    """A whole percentage, 0 to 100."""
    if isinstance(probability, bool) or not isinstance(probability, int) or not 0 <= probability <= 100:
        raise InvalidOpportunityDataError(field, "must be a whole percentage from 0 to 100")


def check_date(value: Any, field: str) -> date:
    """A calendar date, not a datetime."""
    # A datetime is a date too, but a close date with a time of day would not survive the wire.
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidOpportunityDataError(field, "must be a date")
    return value


def check_time(at: datetime | None) -> datetime:
    """When a command happened: given, or now; always timezone-aware."""
    if at is None:
        return datetime.now(UTC)
    if not isinstance(at, datetime) or at.tzinfo is None:
        raise InvalidOpportunityDataError("at", "must be a timezone-aware datetime")
    return at

