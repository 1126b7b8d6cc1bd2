"""Campaigns and leads as event-sourced aggregates. Pure: no framework, no driver."""

from __future__ import annotations

import math
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate, event

from crm_contracts.errors import ConflictError, InvalidRequestError, NotFoundError, RuleViolationError
from crm_contracts.vocabulary.marketing import (
    CAMPAIGN_CHANNELS,
    CURRENCIES,
    ENGAGEMENT_KINDS,
    LEAD_CHANNELS,
    LEAD_GRADES,
    LEAD_MOVES,
    MAX_SCORE,
    MONEY_PLACES,
    OPEN_LEAD_STATUSES,
    SEGMENT_CRITERIA,
)
from crm_runtime.rights import KeptPerCustomer

CENT = Decimal(1).scaleb(-MONEY_PLACES)
#: Namespaces of the ids derived from command ids: a redelivered command makes the same id again.
CAMPAIGN_PLAN_NAMESPACE = uuid.UUID("6f3a9c21-4b8e-4d17-a2c5-90e1b7d4f368")
LEAD_CAPTURE_NAMESPACE = uuid.UUID("b84d0e52-1c6f-4a93-8e27-d5f03a6c91b4")
RESPONSE_NAMESPACE = uuid.UUID("3d7c1a96-e25b-4f08-b9d4-6a2e8f15c730")
ENGAGEMENT_NAMESPACE = uuid.UUID("e0a5b38f-7d12-4c6e-91f4-2b8c6d03a57e")
#: A customer's attribution record has an id derived from the customer's: one per customer.
CUSTOMER_ATTRIBUTION_NAMESPACE = uuid.UUID("4a7e2c90-b35d-4f18-8d6a-e19c07b5f243")
SECONDS_PER_DAY = 86_400
#: Segment criteria that bound the company size; every other criterion lists accepted values.
SIZE_CRITERIA = ("company_size_min", "company_size_max")


# --- errors -------------------------------------------------------------------------------------

class CampaignNotFoundError(NotFoundError):
    """No campaign has this id."""


class LeadNotFoundError(NotFoundError):
    """No lead has this id."""


class InvalidMarketingDataError(InvalidRequestError):
    """A command's input breaks a rule; names the field and the reason."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


class InvalidCampaignDataError(InvalidMarketingDataError):
    """A campaign command's input breaks a rule."""


class InvalidLeadDataError(InvalidMarketingDataError):
    """A lead command's input breaks a rule."""


class CampaignMismatchError(RuleViolationError):
    """A well-formed value the campaign itself rules out: a channel it does not use, a currency not its own."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


class CampaignStatusError(RuleViolationError):
    """The campaign's status does not allow the command (launching a closed campaign, say)."""

    def __init__(self, campaign_id: UUID, status: str, command: str, allowed: Iterable[str]) -> None:
        super().__init__(
            f"campaign {campaign_id} is {status}: {command} needs a campaign that is {' or '.join(allowed)}",
            campaign_id=str(campaign_id),
            status=status,
        )


class LeadNotInCampaignError(RuleViolationError):
    """The campaign was asked to count a lead it never brought in."""

    def __init__(self, campaign_id: UUID, lead_id: UUID) -> None:
        super().__init__(
            f"lead {lead_id} was not captured by campaign {campaign_id}",
            campaign_id=str(campaign_id),
            lead_id=str(lead_id),
        )


class LeadNotConvertedError(RuleViolationError):
    """Revenue can only be attributed to a lead the campaign converted."""

    def __init__(self, campaign_id: UUID, lead_id: UUID) -> None:
        super().__init__(
            f"lead {lead_id} of campaign {campaign_id} is not converted: no revenue to attribute",
            campaign_id=str(campaign_id),
            lead_id=str(lead_id),
        )


class LeadClosedError(ConflictError):
    """The lead is already converted or disqualified: nothing more happens to it."""

    def __init__(self, lead_id: UUID, status: str, command: str) -> None:
        super().__init__(
            f"lead {lead_id} is already {status}: cannot {command} it",
            lead_id=str(lead_id),
            status=status,
        )


class LeadStatusError(RuleViolationError):
    """The lead's (open) status does not allow the command."""

    def __init__(self, lead_id: UUID, status: str, command: str) -> None:
        super().__init__(f"lead {lead_id} is {status}: cannot {command} it", lead_id=str(lead_id), status=status)


class LeadNotQualifiedError(LeadStatusError):
    """Only a qualified lead is handed over to sales (DOMAIN.md)."""


# --- checks -------------------------------------------------------------------------------------

def check_text(error: type[InvalidMarketingDataError], field: str, value: str | None) -> str:
    """`value` stripped; it must not be blank."""
    if value is None or not value.strip():
        raise error(field, "must not be blank")
    return value.strip()


def check_optional_text(value: str | None) -> str | None:
    """`value` stripped, or None when it is absent or blank."""
    return (value.strip() or None) if value is not None else None


def check_money(error: type[InvalidMarketingDataError], field: str, amount: Decimal) -> Decimal:
    """A non-negative Decimal amount in whole cents (the wire carries two places; never round silently)."""
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise error(field, "must be a decimal amount")
    if amount < 0:
        raise error(field, "must not be negative")
    if amount != amount.quantize(CENT):
        raise error(field, f"must have at most {MONEY_PLACES} decimal places")
    return amount.quantize(CENT)


def check_currency(error: type[InvalidMarketingDataError], currency: str) -> str:
    if currency not in CURRENCIES:
        raise error("currency", "must be an ISO 4217 currency code")
    return currency


def check_aware(error: type[InvalidMarketingDataError], field: str, at: datetime) -> datetime:
    # Engagement decays by age, so every time must be comparable: naive times are refused.
    if at.tzinfo is None or at.utcoffset() is None:
        raise error(field, "must be a time with a timezone")
    return at


def check_segment(segment: Mapping[str, Any]) -> dict[str, Any]:
    """A target segment: at least one known criterion (one-to-one marketing, DOMAIN.md), lists of values
    or company size bounds."""
    if not segment:
        raise InvalidCampaignDataError("segment", "must name at least one criterion")
    unknown = sorted(set(segment) - set(SEGMENT_CRITERIA))
    if unknown:
        raise InvalidCampaignDataError("segment", f"{unknown[0]} is not a criterion ({', '.join(SEGMENT_CRITERIA)})")
    checked: dict[str, Any] = {}
    for criterion, value in segment.items():
        if criterion in SIZE_CRITERIA:
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise InvalidCampaignDataError("segment", f"{criterion} must be a non-negative whole number")
            checked[criterion] = value
        else:
            if isinstance(value, str) or not isinstance(value, Iterable):
                raise InvalidCampaignDataError("segment", f"{criterion} must be a list of values")
            given = list(value)
            values = [v.strip() for v in given if isinstance(v, str) and v.strip()]
            if not values or len(values) != len(given):
                raise InvalidCampaignDataError("segment", f"{criterion} must list non-blank values")
            if criterion == "grades" and not set(values) <= set(LEAD_GRADES):
                raise InvalidCampaignDataError("segment", f"grades must be among {', '.join(LEAD_GRADES)}")
            checked[criterion] = values
    if checked.get("company_size_min", 0) > checked.get("company_size_max", math.inf):
        raise InvalidCampaignDataError("segment", "company_size_min must not exceed company_size_max")
    return checked


def normalise_email(email: str | None) -> str | None:
    return (email.strip().lower() or None) if email is not None else None


# --- results and scoring ------------------------------------------------------------------------

@dataclass(frozen=True)
class CampaignResults:
    """The effect of one campaign (DOMAIN.md): responses, leads, conversions, revenue and return."""

    responses: int
    leads: int
    qualified_leads: int
    conversions: int
    attributed_revenue: Decimal
    cost: Decimal
    currency: str

    @property
    def cost_per_lead(self) -> Decimal | None:
        """The cost divided by the leads brought in; None before the first lead."""
        if not self.leads:
            return None
        return (self.cost / self.leads).quantize(CENT, ROUND_HALF_UP)

    @property
    def roi_percent(self) -> Decimal | None:
        """Return on investment, (revenue - cost) / cost in percent; None for a campaign that cost nothing."""
        if not self.cost:
            return None
        return ((self.attributed_revenue - self.cost) * 100 / self.cost).quantize(CENT, ROUND_HALF_UP)


@dataclass(frozen=True)
class LeadScore:
    """A lead's score and the two parts it was made of."""

    score: int
    fit: int
    engagement: int


@dataclass(frozen=True)
class ScoringRule:
    """How a lead is scored: fit (company size, role, industry) plus engagement (opens, visits, replies)
    that decays with a half-life, capped so the score stays within 0..MAX_SCORE. All configurable."""

    #: (at least this many employees, points), largest first; the first bound reached counts.
    company_size_points: tuple[tuple[int, int], ...] = ((1000, 20), (200, 15), (50, 10), (10, 5))
    #: (word in the role, points); the best matching word counts.
    role_points: tuple[tuple[str, int], ...] = (
        ("chief", 15), ("ceo", 15), ("cto", 15), ("cfo", 15), ("cio", 15), ("owner", 15), ("founder", 15),
        ("vp", 12), ("president", 12), ("director", 12), ("head", 10), ("manager", 8), ("lead", 5),
    )
    #: (industry, points), matched case-insensitively.
    industry_points: tuple[tuple[str, int], ...] = (
        ("technology", 15), ("manufacturing", 15), ("retail", 10), ("finance", 10), ("healthcare", 10),
        ("logistics", 8), ("education", 5),
    )
    max_fit: int = 50
    #: Points per engagement when fresh; each halves every `half_life_days`.
    engagement_points: tuple[tuple[str, int], ...] = (("open", 1), ("visit", 3), ("reply", 8))
    max_engagement: int = 50
    half_life_days: float = 30.0

    def __post_init__(self) -> None:
        if self.half_life_days <= 0:
            raise ValueError("half_life_days must be positive")
        if self.max_fit < 0 or self.max_engagement < 0:
            raise ValueError("max_fit and max_engagement must not be negative")
        tables = (self.company_size_points, self.role_points, self.industry_points, self.engagement_points)
        if any(points < 0 for table in tables for _, points in table):
            raise ValueError("points must not be negative")

    def fit(self, company_size: int | None, role: str | None, industry: str | None) -> int:
        """Fit points for a lead's company size, role and industry, at most `max_fit`."""
        size = next((p for at_least, p in self.company_size_points if (company_size or 0) >= at_least), 0)
        words = set((role or "").lower().replace(",", " ").replace("/", " ").split())
        role_points = max((p for word, p in self.role_points if word in words), default=0)
        industry_key = (industry or "").strip().lower()
        industry_points = next((p for name, p in self.industry_points if name == industry_key), 0)
        return min(self.max_fit, size + role_points + industry_points)

    def engagement(self, engagements: Iterable[tuple[str, datetime]], now: datetime) -> int:
        """Engagement points as of `now`, each decayed by its age; later engagements do not count yet."""
        points = dict(self.engagement_points)
        decayed = math.fsum(
            points.get(kind, 0) * 0.5 ** ((now - at).total_seconds() / SECONDS_PER_DAY / self.half_life_days)
            for kind, at in engagements
            if at <= now
        )
        return min(self.max_engagement, round(decayed))

    def score(
        self,
        company_size: int | None,
        role: str | None,
        industry: str | None,
        engagements: Iterable[tuple[str, datetime]],
        now: datetime,
    ) -> LeadScore:
        """The lead's score as of `now`."""
        fit = self.fit(company_size, role, industry)
        engagement = self.engagement(engagements, now)
        return LeadScore(min(MAX_SCORE, fit + engagement), fit, engagement)


# --- aggregates ---------------------------------------------------------------------------------

class Campaign(Aggregate):
    """A marketing campaign: its plan, the responses it drew and the results of the leads it brought."""

    @event("Planned")
    def __init__(
        self,
        name: str,
        objective: str,
        segment: dict[str, Any],
        channels: list[str],
        starts_on: date,
        ends_on: date,
        budget: Decimal,
        currency: str,
    ) -> None:
        self.name = name
        self.objective = objective
        self.segment = dict(segment)
        self.channels = tuple(channels)
        self.starts_on = starts_on
        self.ends_on = ends_on
        self.budget = budget
        self.currency = currency
        self.status = "planned"
        self.responses: dict[str, int] = {}
        self.response_ids: set[UUID] = set()
        self.lead_ids: list[UUID] = []
        self.qualified_ids: set[UUID] = set()
        self.converted_ids: set[UUID] = set()
        self.revenue: dict[UUID, Decimal] = {}
        #: Leads whose revenue is real (paid orders, or set by hand), no longer the estimate.
        self.actual_revenue_ids: set[UUID] = set()
        self.order_ids: set[UUID] = set()
        #: Paid orders in another currency than the campaign's: kept, not summed into its results.
        self.other_currency_revenue: dict[str, Decimal] = {}
        self.actual_cost: Decimal | None = None
        #: The saved segment of customer360 the campaign targets instead of `segment`'s criteria, if any.
        self.segment_id: UUID | None = None
        #: Customers reached at launch, per campaign channel (each customer's record says which).
        self.reached: dict[str, int] = {}

    @classmethod
    def plan(
        cls,
        name: str,
        objective: str,
        segment: Mapping[str, Any],
        channels: Iterable[str],
        starts_on: date,
        ends_on: date,
        budget: Decimal,
        currency: str,
        campaign_id: UUID | None = None,
        segment_id: UUID | None = None,
    ) -> Campaign:
        """Plan a campaign; every part of the plan is checked before anything is recorded. With
        `campaign_id` (derived from the command), a redelivered command collides with its first run.

        The audience is either marketing's own criteria (`segment`: prospects by industry, region...)
        or a saved segment of customer360 (`segment_id`), which then replaces the criteria: its members
        are reached at launch (`reach`). Not both."""
        name = check_text(InvalidCampaignDataError, "name", name)
        objective = check_text(InvalidCampaignDataError, "objective", objective)
        chosen = list(dict.fromkeys(channels))  # a channel named twice is one channel
        if not chosen:
            raise InvalidCampaignDataError("channels", "must name at least one channel")
        for channel in chosen:
            if channel not in CAMPAIGN_CHANNELS:
                raise InvalidCampaignDataError("channels", f"must be among {', '.join(CAMPAIGN_CHANNELS)}")
        if ends_on < starts_on:
            raise InvalidCampaignDataError("ends_on", "must not be before starts_on")
        if segment_id is not None and segment:
            raise InvalidCampaignDataError("segment", "give either criteria or a saved segment (segment_id), not both")
        plan: dict[str, Any] = {
            "name": name,
            "objective": objective,
            "segment": check_segment(segment) if segment_id is None else {},
            "channels": chosen,
            "starts_on": starts_on,
            "ends_on": ends_on,
            "budget": check_money(InvalidCampaignDataError, "budget", budget),
            "currency": check_currency(InvalidCampaignDataError, currency),
        }
        campaign = cls(**plan) if campaign_id is None else cls._create(  # type: ignore[attr-defined]
            cls.Planned, id=campaign_id, **plan
        )
        if segment_id is not None:
            campaign._segment_targeted(segment_id)
        return campaign

    @event("SegmentTargeted")
    def _segment_targeted(self, segment_id: UUID) -> None:
        self.segment_id = segment_id

    @staticmethod
    def id_for_plan(command_id: str) -> UUID:
        """The id a campaign planned by command `command_id` gets: the same for every delivery."""
        return uuid.uuid5(CAMPAIGN_PLAN_NAMESPACE, command_id)

    def response_id_for(self, command_id: str) -> UUID:
        """The id of the responses counted by command `command_id` on this campaign."""
        return uuid.uuid5(RESPONSE_NAMESPACE, f"{self.id}/{command_id}")

    def launch(self) -> None:
        self._check_status("launch", "planned")
        self._launched(self.name)

    @event("Launched")
    def _launched(self, name: str) -> None:
        self.status = "active"

    def count_reached(self, reached: Mapping[str, int]) -> None:
        """Count the customers of its segment the launch reached, per channel (at launch, in its save)."""
        if self.segment_id is None:
            raise CampaignMismatchError("segment_id", "the campaign targets no saved segment")
        self._reached_counted(self.segment_id, dict(reached))

    @event("ReachedCounted")
    def _reached_counted(self, segment_id: UUID, reached: dict[str, int]) -> None:
        self.reached = dict(reached)

    def record_response(self, channel: str, count: int, at: datetime, response_id: UUID | None = None) -> None:
        """Count responses the campaign drew on one of its channels; responses with a `response_id`
        already counted (a redelivered command) are not counted again."""
        if response_id is not None and response_id in self.response_ids:
            return
        self._check_status("record responses of", "active")
        if channel not in self.channels:
            raise CampaignMismatchError("channel", f"must be one of its channels: {', '.join(self.channels)}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise InvalidCampaignDataError("count", "must be a whole number of at least 1")
        self._response_recorded(channel, count, check_aware(InvalidCampaignDataError, "at", at), response_id)

    @event("ResponseRecorded")
    def _response_recorded(self, channel: str, count: int, at: datetime, response_id: UUID | None = None) -> None:
        self.responses[channel] = self.responses.get(channel, 0) + count
        if response_id is not None:
            self.response_ids.add(response_id)

    def attribute_lead(self, lead_id: UUID) -> None:
        """Count a lead the campaign brought in; a lead is counted once however often it is attributed."""
        self._check_status("attribute leads to", "active")
        if lead_id not in self.lead_ids:
            self._lead_attributed(lead_id)

    @event("LeadAttributed")
    def _lead_attributed(self, lead_id: UUID) -> None:
        self.lead_ids.append(lead_id)

    # Qualifications and conversions are counted after the campaign closed too: leads it brought in
    # keep maturing, and their results belong to it. Only new responses and leads stop at closing.

    def count_qualified(self, lead_id: UUID) -> None:
        """Count one of its leads as qualified, once; a lead disqualified later stays counted as having
        qualified, as results measure what the campaign achieved."""
        self._check_own(lead_id)
        if lead_id not in self.qualified_ids:
            self._qualified_lead_counted(lead_id)

    @event("QualifiedLeadCounted")
    def _qualified_lead_counted(self, lead_id: UUID) -> None:
        self.qualified_ids.add(lead_id)

    def count_conversion(self, lead_id: UUID, estimated_amount: Decimal, currency: str) -> None:
        """Count one of its leads as converted, once, attributing its estimated amount as revenue."""
        self._check_own(lead_id)
        self._check_currency(currency)
        if lead_id not in self.converted_ids:
            amount = check_money(InvalidCampaignDataError, "estimated_amount", estimated_amount)
            self._conversion_counted(lead_id, amount)

    @event("ConversionCounted")
    def _conversion_counted(self, lead_id: UUID, estimated_amount: Decimal) -> None:
        self.qualified_ids.add(lead_id)
        self.converted_ids.add(lead_id)
        self.revenue[lead_id] = estimated_amount

    def attribute_revenue(self, lead_id: UUID, amount: Decimal, currency: str) -> None:
        """Replace a converted lead's estimate with the revenue it really brought (a won deal, say)."""
        self._check_own(lead_id)
        self._check_currency(currency)
        if lead_id not in self.converted_ids:
            raise LeadNotConvertedError(self.id, lead_id)
        amount = check_money(InvalidCampaignDataError, "amount", amount)
        if self.revenue.get(lead_id) != amount:
            self._revenue_attributed(lead_id, amount)

    @event("RevenueAttributed")
    def _revenue_attributed(self, lead_id: UUID, amount: Decimal) -> None:
        self.revenue[lead_id] = amount
        self.actual_revenue_ids.add(lead_id)

    def attribute_order(self, order_id: UUID, lead_id: UUID, amount: Decimal, currency: str) -> None:
        """Count a paid order of the customer one of its converted leads became, once per order: the
        lead's first paid order replaces its estimate, later ones add to it. An order in another
        currency is kept apart (other_currency_revenue), as results are in the campaign's currency."""
        if order_id in self.order_ids:
            return
        self._check_own(lead_id)
        if lead_id not in self.converted_ids:
            raise LeadNotConvertedError(self.id, lead_id)
        amount = check_money(InvalidCampaignDataError, "amount", amount)
        self._order_revenue_attributed(order_id, lead_id, amount, currency)

    @event("OrderRevenueAttributed")
    def _order_revenue_attributed(self, order_id: UUID, lead_id: UUID, amount: Decimal, currency: str) -> None:
        self.order_ids.add(order_id)
        if currency != self.currency:
            self.other_currency_revenue[currency] = self.other_currency_revenue.get(currency, Decimal("0.00")) + amount
            return
        if lead_id not in self.actual_revenue_ids:
            self.actual_revenue_ids.add(lead_id)
            self.revenue[lead_id] = Decimal("0.00")
        self.revenue[lead_id] += amount

    def close(self, actual_cost: Decimal | None) -> None:
        """Close the campaign (a plan may be dropped unlaunched); its cost defaults to the budget."""
        self._check_status("close", "planned", "active")
        cost = self.budget if actual_cost is None else check_money(InvalidCampaignDataError, "cost", actual_cost)
        results = self._results(cost)
        self._closed(
            cost,
            results.responses,
            results.leads,
            results.qualified_leads,
            results.conversions,
            results.attributed_revenue,
            results.currency,
        )

    @event("Closed")
    def _closed(
        self,
        cost: Decimal,
        responses: int,
        leads: int,
        qualified_leads: int,
        conversions: int,
        attributed_revenue: Decimal,
        currency: str,
    ) -> None:
        # The results at closing travel in the event so that campaign_closed can publish them.
        self.status = "closed"
        self.actual_cost = cost

    @property
    def results(self) -> CampaignResults:
        """The results so far; the cost is the budget until the campaign closes with its actual cost."""
        return self._results(self.budget if self.actual_cost is None else self.actual_cost)

    def _results(self, cost: Decimal) -> CampaignResults:
        return CampaignResults(
            responses=sum(self.responses.values()),
            leads=len(self.lead_ids),
            qualified_leads=len(self.qualified_ids),
            conversions=len(self.converted_ids),
            attributed_revenue=sum(self.revenue.values(), Decimal("0.00")),
            cost=cost,
            currency=self.currency,
        )

    def _check_status(self, command: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise CampaignStatusError(self.id, self.status, command, allowed)

    def _check_own(self, lead_id: UUID) -> None:
        if lead_id not in self.lead_ids:
            raise LeadNotInCampaignError(self.id, lead_id)

    def _check_currency(self, currency: str) -> None:
        # Revenue is summed and set against the budget, so it must be in the budget's currency.
        if currency != self.currency:
            raise CampaignMismatchError("currency", f"must be the campaign's currency {self.currency}")


class Lead(Aggregate):
    """A prospect captured from a channel: graded, scored, qualified, then converted or disqualified."""

    @event("Captured")
    def __init__(
        self,
        campaign_id: UUID | None,
        channel: str,
        name: str,
        email: str | None,
        phone: str | None,
        company: str | None,
        company_size: int | None,
        role: str | None,
        industry: str | None,
        captured_at: datetime,
    ) -> None:
        self.campaign_id = campaign_id
        self.channel = channel
        self.name = name
        self.email = email
        self.phone = phone
        self.company = company
        self.company_size = company_size
        self.role = role
        self.industry = industry
        self.captured_at = captured_at
        self.status = "captured"
        self.grade: str | None = None
        self.score: int | None = None
        self.fit: int | None = None
        self.engagement: int | None = None
        self.engagements: list[tuple[str, datetime]] = []
        self.engagement_ids: set[UUID] = set()
        self.disqualification_reason: str | None = None
        self.customer_id: UUID | None = None
        self.estimated_amount: Decimal | None = None
        self.currency: str | None = None
        #: merge id -> the customer this lead belonged to before that merge re-pointed it.
        self.merged_from: dict[str, UUID] = {}
        #: Whether the lead's customer was erased here (its data key shredded: it reads redacted).
        self.forgotten = False

    @classmethod
    def capture(
        cls,
        channel: str,
        name: str,
        email: str | None,
        phone: str | None,
        captured_at: datetime,
        *,
        campaign_id: UUID | None = None,
        company: str | None = None,
        company_size: int | None = None,
        role: str | None = None,
        industry: str | None = None,
        lead_id: UUID | None = None,
    ) -> Lead:
        """Capture a lead; it must be reachable by email or phone. With `lead_id` (derived from the
        command), a redelivered command collides with its first run."""
        if channel not in LEAD_CHANNELS:
            raise InvalidLeadDataError("channel", f"must be one of {', '.join(LEAD_CHANNELS)}")
        name = check_text(InvalidLeadDataError, "name", name)
        email, phone = normalise_email(email), check_optional_text(phone)
        if email is None and phone is None:
            raise InvalidLeadDataError("email", "give an email or a phone number to reach the lead by")
        if company_size is not None and (isinstance(company_size, bool) or company_size < 0):
            raise InvalidLeadDataError("company_size", "must be a non-negative whole number")
        captured: dict[str, Any] = {
            "campaign_id": campaign_id,
            "channel": channel,
            "name": name,
            "email": email,
            "phone": phone,
            "company": check_optional_text(company),
            "company_size": company_size,
            "role": check_optional_text(role),
            "industry": check_optional_text(industry),
            "captured_at": check_aware(InvalidLeadDataError, "captured_at", captured_at),
        }
        if lead_id is None:
            return cls(**captured)
        return cls._create(cls.Captured, id=lead_id, **captured)  # type: ignore[attr-defined]

    @staticmethod
    def id_for_capture(command_id: str) -> UUID:
        """The id a lead captured by command `command_id` gets: the same for every delivery."""
        return uuid.uuid5(LEAD_CAPTURE_NAMESPACE, command_id)

    def engagement_id_for(self, command_id: str) -> UUID:
        """The id of the engagement recorded by command `command_id` on this lead."""
        return uuid.uuid5(ENGAGEMENT_NAMESPACE, f"{self.id}/{command_id}")

    @property
    def is_open(self) -> bool:
        return self.status in OPEN_LEAD_STATUSES

    def record_engagement(self, kind: str, at: datetime, engagement_id: UUID | None = None) -> None:
        """Record an open, a visit or a reply; it counts towards the score until it decays. An
        engagement whose `engagement_id` is recorded already (a redelivered command) is not recorded again."""
        if engagement_id is not None and engagement_id in self.engagement_ids:
            return
        self._check_open("record engagement of")
        if kind not in ENGAGEMENT_KINDS:
            raise InvalidLeadDataError("kind", f"must be one of {', '.join(ENGAGEMENT_KINDS)}")
        self._engagement_recorded(kind, check_aware(InvalidLeadDataError, "at", at), engagement_id)

    @event("EngagementRecorded")
    def _engagement_recorded(self, kind: str, at: datetime, engagement_id: UUID | None = None) -> None:
        self.engagements.append((kind, at))
        if engagement_id is not None:
            self.engagement_ids.add(engagement_id)

    def rescore(self, rule: ScoringRule, now: datetime) -> bool:
        """Score the lead as of `now`; records a new score only when it changed. True when it did."""
        self._check_open("score")
        check_aware(InvalidLeadDataError, "now", now)
        scored = rule.score(self.company_size, self.role, self.industry, self.engagements, now)
        if scored.score == self.score:
            return False
        self._scored(scored.score, scored.fit, scored.engagement, now)
        return True

    @event("Scored")
    def _scored(self, score: int, fit: int, engagement: int, scored_at: datetime) -> None:
        self.score = score
        self.fit = fit
        self.engagement = engagement

    def assign_grade(self, grade: str, reason: str | None) -> None:
        """Grade the lead as a seed, ordinary or key prospect (DOMAIN.md)."""
        self._check_open("grade")
        if grade not in LEAD_GRADES:
            raise InvalidLeadDataError("grade", f"must be one of {', '.join(LEAD_GRADES)}")
        self._graded(grade, check_optional_text(reason))

    @event("Graded")
    def _graded(self, grade: str, reason: str | None) -> None:
        self.grade = grade

    def qualify(self, note: str | None) -> None:
        """Qualify the lead: it is worth handing to sales."""
        self._check_move("qualified", "qualify")
        self._qualified(self.campaign_id, self.score, self.grade, check_optional_text(note))

    @event("Qualified")
    def _qualified(self, campaign_id: UUID | None, score: int | None, grade: str | None, note: str | None) -> None:
        self.status = "qualified"

    def disqualify(self, reason: str) -> None:
        """Disqualify the lead for a reason; it is closed for good."""
        reason = check_text(InvalidLeadDataError, "reason", reason)
        self._check_move("disqualified", "disqualify")
        self._disqualified(self.campaign_id, reason)

    @event("Disqualified")
    def _disqualified(self, campaign_id: UUID | None, reason: str) -> None:
        self.status = "disqualified"
        self.disqualification_reason = reason

    def convert(
        self,
        estimated_amount: Decimal,
        currency: str,
        expected_close_date: date | None,
        sales_owner: str | None,
        customer_id: UUID | None,
    ) -> None:
        """Hand the qualified lead to sales: the event carries what customer and sales need."""
        self._check_move("converted", "convert")
        amount = check_money(InvalidLeadDataError, "estimated_amount", estimated_amount)
        self._converted(
            customer_id,
            self.campaign_id,
            self.name,
            self.email,
            self.phone,
            self.company,
            self.channel,
            self.grade,
            self.score,
            amount,
            check_currency(InvalidLeadDataError, currency),
            expected_close_date,
            check_optional_text(sales_owner),
        )

    @event("Converted")
    def _converted(
        self,
        customer_id: UUID | None,
        campaign_id: UUID | None,
        name: str,
        email: str | None,
        phone: str | None,
        company: str | None,
        channel: str,
        grade: str | None,
        score: int | None,
        estimated_amount: Decimal,
        currency: str,
        expected_close_date: date | None,
        sales_owner: str | None,
    ) -> None:
        self.status = "converted"
        self.customer_id = customer_id
        self.estimated_amount = estimated_amount
        self.currency = currency

    def link_customer(self, customer_id: UUID) -> None:
        """Record the customer this converted lead became (customer.lead_linked); once."""
        if self.customer_id != customer_id:
            self._customer_linked(customer_id)

    @event("CustomerLinked")
    def _customer_linked(self, customer_id: UUID) -> None:
        self.customer_id = customer_id

    def move_to_survivor(self, survivor_id: UUID, merge_id: str) -> None:
        """Its customer was merged into `survivor_id` (customer.customer_merged): the lead now belongs
        to the survivor, remembering whose it was; once per merge."""
        if self.customer_id is None or self.customer_id == survivor_id or merge_id in self.merged_from:
            return
        self._moved_to_survivor(survivor_id, self.customer_id, merge_id)

    @event("MovedToSurvivor")
    def _moved_to_survivor(self, customer_id: UUID, merged_from: UUID, merge_id: str) -> None:
        self.customer_id = customer_id
        self.merged_from[merge_id] = merged_from

    def move_back(self, merge_id: str) -> None:
        """The merge was undone (customer.customer_unmerged): the lead goes back to the customer it
        belonged to before it; a lead that merge did not move stays where it is."""
        if merge_id in self.merged_from:
            self._moved_back(self.merged_from[merge_id], merge_id)

    @event("MovedBack")
    def _moved_back(self, customer_id: UUID, merge_id: str) -> None:
        self.customer_id = customer_id
        del self.merged_from[merge_id]

    def forget(self, request_id: str) -> None:
        """Note that its customer was erased (the data key is shredded already): saving this event makes
        the lead's list row be written again from its state, which now reads redacted. Once."""
        if not self.forgotten:
            self._forgotten(request_id)

    @event("Forgotten")
    def _forgotten(self, request_id: str) -> None:
        self.forgotten = True

    def _check_open(self, command: str) -> None:
        if not self.is_open:
            raise LeadClosedError(self.id, self.status, command)

    def _check_move(self, to: str, command: str) -> None:
        self._check_open(command)
        if to not in LEAD_MOVES[self.status]:
            if to == "converted":
                raise LeadNotQualifiedError(self.id, self.status, command)
            raise LeadStatusError(self.id, self.status, command)


#: A lead that became a customer, with the campaign it came from (None: from no campaign).
LinkedLead = tuple[UUID, UUID | None]


class CustomerAttribution(KeptPerCustomer, Aggregate):
    """What marketing knows of one customer, learnt from others' events; its id is derived from the
    customer's. Which leads (and their campaigns) became the customer (customer.lead_linked): a paid
    order of the customer counts for the campaign of the first lead linked that came from a campaign,
    the one that won the customer (first touch). Which campaigns reached the customer (a launch to a
    saved segment), on which channels. And what merges moved: an absorbed customer's record hands its
    leads and reaches to the survivor's, which takes them over; an unmerge gives exactly those back."""

    id_namespace = CUSTOMER_ATTRIBUTION_NAMESPACE

    @event("Started")
    def __init__(self, customer_id: UUID) -> None:
        self.customer_id = customer_id
        self.leads: list[LinkedLead] = []
        #: campaign id -> the channels it reached the customer on.
        self.reached: dict[UUID, tuple[str, ...]] = {}
        #: merge id -> (survivor, leads handed over, reaches handed over): this customer was absorbed.
        self.handed_over: dict[str, tuple[UUID, list[LinkedLead], dict[UUID, tuple[str, ...]]]] = {}
        #: "merge id/absorbed customer" -> (leads, campaigns) taken over from it that were not here before.
        self.taken_over: dict[str, tuple[list[UUID], list[UUID]]] = {}

    def link_lead(self, lead_id: UUID, campaign_id: UUID | None) -> None:
        """Record a lead that became this customer; a lead is recorded once."""
        if lead_id not in self.lead_ids:
            self._lead_linked(lead_id, campaign_id)

    @event("LeadLinked")
    def _lead_linked(self, lead_id: UUID, campaign_id: UUID | None) -> None:
        self.leads.append((lead_id, campaign_id))

    @property
    def lead_ids(self) -> list[UUID]:
        """The leads this customer holds now (its own, and those taken over from customers merged into it)."""
        return [lead for lead, _ in self.leads]

    @property
    def source(self) -> tuple[UUID, UUID] | None:
        """(lead, campaign) the customer's revenue is attributed to; None when no lead came from a campaign."""
        return next(((lead, campaign) for lead, campaign in self.leads if campaign is not None), None)

    def record_reach(self, campaign_id: UUID, segment_id: UUID, channels: Iterable[str], at: datetime) -> bool:
        """A campaign reached the customer on `channels` (published: the 360 view shows it); once per
        campaign. True when recorded now."""
        if campaign_id in self.reached:
            return False
        self._reached(campaign_id, self.customer_id, segment_id, list(channels), at)
        return True

    @event("Reached")
    def _reached(
        self, campaign_id: UUID, customer_id: UUID, segment_id: UUID, channels: list[str], reached_at: datetime
    ) -> None:
        self.reached[campaign_id] = tuple(channels)

    def hand_over(self, survivor_id: UUID, merge_id: str) -> tuple[list[LinkedLead], dict[UUID, tuple[str, ...]]]:
        """This customer was merged into `survivor_id`: its leads and reaches now belong to the survivor
        (answered, for the survivor's record to take over); once per merge."""
        if merge_id not in self.handed_over:
            self._handed_over(survivor_id, merge_id, [list(pair) for pair in self.leads],
                              {str(campaign): list(channels) for campaign, channels in self.reached.items()})
        _, leads, reached = self.handed_over[merge_id]
        return leads, reached

    @event("HandedOver")
    def _handed_over(self, survivor_id: UUID, merge_id: str, leads: list[list[Any]],
                     reached: dict[str, list[str]]) -> None:
        moved = [(UUID(str(lead)), UUID(str(campaign)) if campaign else None) for lead, campaign in leads]
        reaches = {UUID(campaign): tuple(channels) for campaign, channels in reached.items()}
        self.handed_over[merge_id] = (survivor_id, moved, reaches)
        self.leads = [pair for pair in self.leads if pair not in moved]
        self.reached = {c: ch for c, ch in self.reached.items() if c not in reaches}

    @property
    def merged_into(self) -> UUID | None:
        """The customer this one is merged into now (a merge not undone), or None."""
        return next((survivor for survivor, _, _ in self.handed_over.values()), None)

    def take_back(self, merge_id: str) -> list[UUID]:
        """The merge was undone: what it handed over is this customer's again (answers those leads)."""
        if merge_id not in self.handed_over:
            return []
        leads = [lead for lead, _ in self.handed_over[merge_id][1]]
        self._taken_back(merge_id)
        return leads

    @event("TakenBack")
    def _taken_back(self, merge_id: str) -> None:
        _, leads, reached = self.handed_over.pop(merge_id)
        self.leads = [*leads, *(pair for pair in self.leads if pair not in leads)]
        self.reached = {**reached, **self.reached}

    def take_over(self, merged_from: UUID, merge_id: str, leads: list[LinkedLead],
                  reached: Mapping[UUID, tuple[str, ...]]) -> None:
        """Take over the leads and reaches of customer `merged_from`, merged into this one; once per
        merge and absorbed customer. Only what was not here already is taken (and later given back)."""
        if f"{merge_id}/{merged_from}" in self.taken_over:
            return
        new_leads = [[str(lead), str(campaign) if campaign else None] for lead, campaign in leads
                     if lead not in self.lead_ids]
        new_reaches = {str(campaign): list(channels) for campaign, channels in reached.items()
                       if campaign not in self.reached}
        self._took_over(merged_from, merge_id, new_leads, new_reaches)

    @event("TookOver")
    def _took_over(self, merged_from: UUID, merge_id: str, leads: list[list[Any]],
                   reached: dict[str, list[str]]) -> None:
        taken = [(UUID(str(lead)), UUID(str(campaign)) if campaign else None) for lead, campaign in leads]
        self.leads.extend(taken)
        self.reached.update({UUID(campaign): tuple(channels) for campaign, channels in reached.items()})
        self.taken_over[f"{merge_id}/{merged_from}"] = ([lead for lead, _ in taken], [UUID(c) for c in reached])

    def give_back(self, merged_from: UUID, merge_id: str) -> None:
        """The merge of `merged_from` was undone: drop exactly what was taken over from it; what came to
        this customer since stays."""
        if f"{merge_id}/{merged_from}" in self.taken_over:
            self._gave_back(merged_from, merge_id)

    @event("GaveBack")
    def _gave_back(self, merged_from: UUID, merge_id: str) -> None:
        leads, campaigns = self.taken_over.pop(f"{merge_id}/{merged_from}")
        self.leads = [pair for pair in self.leads if pair[0] not in leads]
        self.reached = {c: ch for c, ch in self.reached.items() if c not in campaigns}
