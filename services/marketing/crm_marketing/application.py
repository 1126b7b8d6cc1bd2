"""Marketing: the marketing service's commands (load, call, save) and queries."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import StaleVersionError
from crm_contracts.vocabulary.marketing import LEAD_STATUSES
from crm_marketing.domain import (
    Campaign,
    CampaignNotFoundError,
    CampaignResults,
    InvalidLeadDataError,
    Lead,
    LeadNotFoundError,
    ScoringRule,
)
from crm_runtime.eventstore import ServiceApplication

A = TypeVar("A", bound=Aggregate)




class Marketing(ServiceApplication):
    """Campaigns and the leads they bring in."""

    service = "marketing"
    scoring_rule = ScoringRule()
    #: How often a command without an expected version is retried after losing a race: several leads
    #: of one campaign qualifying at once all change the campaign, and each retry sees the winner.
    command_attempts = 10


    # --- campaigns ------------------------------------------------------------------------------

    def plan_campaign(
        self,
        name: str,
        objective: str,
        segment: Mapping[str, Any],
        channels: Iterable[str],
        starts_on: date,
        ends_on: date,
        budget: Decimal,
        currency: str,
    ) -> Campaign:
        """Plan a campaign for a target segment, on some channels, over a schedule, within a budget."""
        campaign = Campaign.plan(name, objective, segment, channels, starts_on, ends_on, budget, currency)
        self.save(campaign)
        return campaign

    def launch_campaign(self, campaign_id: UUID, expected_version: int | None = None) -> Campaign:
        """Launch a planned campaign: from now on it records responses and leads."""
        return self._change_campaign(campaign_id, expected_version, lambda c: c.launch())

    def record_response(
        self,
        campaign_id: UUID,
        channel: str,
        count: int = 1,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Campaign:
        """Count responses an active campaign drew on one of its channels."""
        when = at or datetime.now(UTC)
        return self._change_campaign(campaign_id, expected_version, lambda c: c.record_response(channel, count, when))

    def close_campaign(
        self, campaign_id: UUID, actual_cost: Decimal | None = None, expected_version: int | None = None
    ) -> Campaign:
        """Close a campaign with what it actually cost (its budget when not given)."""
        return self._change_campaign(campaign_id, expected_version, lambda c: c.close(actual_cost))

    def attribute_revenue(
        self, campaign_id: UUID, lead_id: UUID, amount: Decimal, currency: str, expected_version: int | None = None
    ) -> Campaign:
        """Replace a converted lead's estimated revenue with what it really brought."""
        return self._change_campaign(
            campaign_id, expected_version, lambda c: c.attribute_revenue(lead_id, amount, currency)
        )

    # --- leads ----------------------------------------------------------------------------------

    def capture_lead(
        self,
        channel: str,
        name: str,
        email: str | None = None,
        phone: str | None = None,
        *,
        campaign_id: UUID | None = None,
        company: str | None = None,
        company_size: int | None = None,
        role: str | None = None,
        industry: str | None = None,
        at: datetime | None = None,
    ) -> Lead:
        """Capture a lead from a channel, counted by its campaign (which must be active) and scored at once."""
        captured_at = at or datetime.now(UTC)

        def capture() -> tuple[Lead, list[Aggregate]]:
            lead = Lead.capture(
                channel,
                name,
                email,
                phone,
                captured_at,
                campaign_id=campaign_id,
                company=company,
                company_size=company_size,
                role=role,
                industry=industry,
            )
            lead.rescore(self.scoring_rule, captured_at)
            campaign = self._campaign_of(lead)
            if campaign is not None:
                campaign.attribute_lead(lead.id)
            return lead, [campaign] if campaign else []

        return self._execute(capture, None, "the lead's campaign")

    def record_engagement(
        self,
        lead_id: UUID,
        kind: str,
        at: datetime | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> Lead:
        """Record an open, a visit or a reply, and score the lead again as of `now`."""
        when = at or datetime.now(UTC)

        def engage(lead: Lead) -> None:
            lead.record_engagement(kind, when)
            lead.rescore(self.scoring_rule, now or when)

        return self._change_lead(lead_id, expected_version, engage)

    def rescore_lead(self, lead_id: UUID, now: datetime | None = None) -> Lead:
        """Score the lead again as of `now`: engagement decays, so scores fall while a lead is quiet."""
        when = now or datetime.now(UTC)
        return self._change_lead(lead_id, None, lambda lead: lead.rescore(self.scoring_rule, when))

    def grade_lead(
        self, lead_id: UUID, grade: str, reason: str | None = None, expected_version: int | None = None
    ) -> Lead:
        """Grade the lead as a seed, ordinary or key prospect."""
        return self._change_lead(lead_id, expected_version, lambda lead: lead.assign_grade(grade, reason))

    def qualify_lead(self, lead_id: UUID, note: str | None = None, expected_version: int | None = None) -> Lead:
        """Qualify the lead; its campaign counts it as a qualified lead."""

        def qualify(lead: Lead, campaign: Campaign | None) -> None:
            lead.qualify(note)
            if campaign is not None:
                campaign.count_qualified(lead.id)

        return self._change_lead_and_campaign(lead_id, expected_version, qualify)

    def disqualify_lead(self, lead_id: UUID, reason: str, expected_version: int | None = None) -> Lead:
        """Disqualify the lead for a reason."""
        return self._change_lead(lead_id, expected_version, lambda lead: lead.disqualify(reason))

    def convert_lead(
        self,
        lead_id: UUID,
        estimated_amount: Decimal,
        currency: str,
        *,
        expected_close_date: date | None = None,
        sales_owner: str | None = None,
        customer_id: UUID | None = None,
        expected_version: int | None = None,
    ) -> Lead:
        """Hand a qualified lead to sales; its campaign counts the conversion and the estimated revenue."""

        def convert(lead: Lead, campaign: Campaign | None) -> None:
            lead.convert(estimated_amount, currency, expected_close_date, sales_owner, customer_id)
            if campaign is not None:
                campaign.count_conversion(lead.id, estimated_amount, currency)

        return self._change_lead_and_campaign(lead_id, expected_version, convert)

    # --- queries --------------------------------------------------------------------------------

    def campaign(self, campaign_id: UUID, expected_version: int | None = None) -> Campaign:
        """Load a campaign; with `expected_version`, insist it is the current version."""
        return self._load(campaign_id, expected_version, Campaign, CampaignNotFoundError)

    def lead(self, lead_id: UUID, expected_version: int | None = None) -> Lead:
        """Load a lead; with `expected_version`, insist it is the current version."""
        return self._load(lead_id, expected_version, Lead, LeadNotFoundError)

    def campaign_results(self, campaign_id: UUID) -> CampaignResults:
        """Responses, leads, qualified leads, conversions, revenue, cost per lead and ROI of a campaign."""
        return self.campaign(campaign_id).results

    def leads_of_campaign(self, campaign_id: UUID, status: str | None = None) -> list[Lead]:
        """The leads a campaign brought in, oldest first; only those in `status` when given."""
        if status is not None and status not in LEAD_STATUSES:
            raise InvalidLeadDataError("status", f"must be one of {', '.join(LEAD_STATUSES)}")
        leads = [self.lead(lead_id) for lead_id in self.campaign(campaign_id).lead_ids]
        return [lead for lead in leads if status is None or lead.status == status]

    # --- load, call, save -----------------------------------------------------------------------

    def _load(self, aggregate_id: UUID, expected_version: int | None, cls: type[A], missing: type[Exception]) -> A:
        kind = cls.__name__.lower()
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            aggregate = None
        # One store holds both kinds: a campaign's id is no lead's id, and the other way round.
        if not isinstance(aggregate, cls):
            raise missing(f"{kind} {aggregate_id} not found", **{f"{kind}_id": str(aggregate_id)})
        if expected_version is not None and aggregate.version != expected_version:
            raise StaleVersionError(
                f"{kind} {aggregate_id} is at version {aggregate.version}, not {expected_version}",
                current_version=aggregate.version,
            )
        return aggregate

    def _campaign_of(self, lead: Lead) -> Campaign | None:
        return self.campaign(lead.campaign_id) if lead.campaign_id is not None else None

    def _change_campaign(
        self, campaign_id: UUID, expected_version: int | None, change: Callable[[Campaign], object]
    ) -> Campaign:
        def attempt() -> tuple[Campaign, list[Aggregate]]:
            campaign = self.campaign(campaign_id, expected_version)
            change(campaign)
            return campaign, []

        return self._execute(attempt, expected_version, f"campaign {campaign_id}")

    def _change_lead(self, lead_id: UUID, expected_version: int | None, change: Callable[[Lead], object]) -> Lead:
        def attempt() -> tuple[Lead, list[Aggregate]]:
            lead = self.lead(lead_id, expected_version)
            change(lead)
            return lead, []

        return self._execute(attempt, expected_version, f"lead {lead_id}")

    def _change_lead_and_campaign(
        self, lead_id: UUID, expected_version: int | None, change: Callable[[Lead, Campaign | None], None]
    ) -> Lead:
        def attempt() -> tuple[Lead, list[Aggregate]]:
            lead = self.lead(lead_id, expected_version)
            campaign = self._campaign_of(lead)
            change(lead, campaign)
            return lead, [campaign] if campaign else []

        return self._execute(attempt, expected_version, f"lead {lead_id} or its campaign")

    def _execute(
        self, attempt: Callable[[], tuple[A, list[Aggregate]]], expected_version: int | None, what: str
    ) -> A:
        """Run a command and save what it changed in one transaction.

        Losing a race to another writer means the command ran on old state. With an expected version
        the caller asked for exactly that state: StaleVersionError. Without one, the command runs
        again on fresh state, where the winner's change decides (a lead converted meanwhile now
        answers LeadClosedError, say).
        """
        for _ in range(self.command_attempts):
            primary, others = attempt()
            try:
                self.save(primary, *others)
            except IntegrityError:
                if expected_version is not None:
                    break
                continue
            return primary
        raise StaleVersionError(f"{what} was changed concurrently; reload it and retry")
