"""Marketing: the marketing service's commands (load, call, save) and queries."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import CrmError, StaleVersionError
from crm_contracts.vocabulary.marketing import LEAD_STATUSES
from crm_marketing.domain import (
    Campaign,
    CampaignNotFoundError,
    CampaignResults,
    CustomerAttribution,
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
    #: How often a command is retried after losing a race (with a growing random pause): several leads
    #: of one campaign qualifying at once all change the campaign, and each retry sees the winner.
    command_attempts = 30

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Every lead of a campaign also changes the campaign (its counters): within one process these
        # commands take turns instead of racing; replicas still race, and retry (_execute).
        self._campaign_writes = threading.Lock()

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
        campaign_id: UUID | None = None,
    ) -> Campaign:
        """Plan a campaign for a target segment, on some channels, over a schedule, within a budget.

        With `campaign_id` (derived from the command's id), planning is idempotent: a command
        delivered twice answers the campaign its first delivery planned.
        """
        campaign = Campaign.plan(name, objective, segment, channels, starts_on, ends_on, budget, currency, campaign_id)
        try:
            self.save(campaign)
        except IntegrityError:
            if campaign_id is None:
                raise
            return self.campaign(campaign_id)
        return campaign

    def launch_campaign(self, campaign_id: UUID, expected_version: int | None = None) -> Campaign:
        """Launch a planned campaign: from now on it records responses and leads."""
        return self._change(self.campaign, campaign_id, expected_version, lambda c: c.launch())

    def record_response(
        self,
        campaign_id: UUID,
        channel: str,
        count: int = 1,
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Campaign:
        """Count responses an active campaign drew on one of its channels; a redelivered command
        (same `command_id`) answers the campaign without counting them again."""
        when = at or datetime.now(UTC)

        def record(campaign: Campaign) -> None:
            response_id = campaign.response_id_for(command_id) if command_id else None
            campaign.record_response(channel, count, when, response_id)

        def recorded(campaign: Campaign) -> bool:
            return command_id is not None and campaign.response_id_for(command_id) in campaign.response_ids

        return self._change(self.campaign, campaign_id, expected_version, record, recorded)

    def close_campaign(
        self, campaign_id: UUID, actual_cost: Decimal | None = None, expected_version: int | None = None
    ) -> Campaign:
        """Close a campaign with what it actually cost (its budget when not given)."""
        return self._change(self.campaign, campaign_id, expected_version, lambda c: c.close(actual_cost))

    def attribute_revenue(
        self, campaign_id: UUID, lead_id: UUID, amount: Decimal, currency: str, expected_version: int | None = None
    ) -> Campaign:
        """Replace a converted lead's estimated revenue with what it really brought."""
        return self._change(
            self.campaign, campaign_id, expected_version, lambda c: c.attribute_revenue(lead_id, amount, currency)
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
        lead_id: UUID | None = None,
    ) -> Lead:
        """Capture a lead from a channel, counted by its campaign (which must be active) and scored at once.

        With `lead_id` (derived from the command's id), capturing is idempotent: a command delivered
        twice answers the lead its first delivery captured (even if its campaign has closed since).
        """
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
                lead_id=lead_id,
            )
            lead.rescore(self.scoring_rule, captured_at)
            campaign = self._campaign_of(lead)
            if campaign is not None:
                campaign.attribute_lead(lead.id)
            return lead, [campaign] if campaign else []

        if lead_id is None:
            with self._campaign_writes:
                return self._execute(capture, None, "the lead's campaign")
        try:
            with self._campaign_writes:
                return self._execute(capture, None, "the lead's campaign", lambda: self._existing(lead_id, Lead))
        except CrmError:
            first = self._existing(lead_id, Lead)
            if first is None:
                raise
            return first

    def record_engagement(
        self,
        lead_id: UUID,
        kind: str,
        at: datetime | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Lead:
        """Record an open, a visit or a reply, and score the lead again as of `now`; a redelivered
        command (same `command_id`) answers the lead without recording it again."""
        when = at or datetime.now(UTC)

        def engage(lead: Lead) -> None:
            lead.record_engagement(kind, when, lead.engagement_id_for(command_id) if command_id else None)
            lead.rescore(self.scoring_rule, now or when)

        def recorded(lead: Lead) -> bool:
            return command_id is not None and lead.engagement_id_for(command_id) in lead.engagement_ids

        return self._change(self.lead, lead_id, expected_version, engage, recorded)

    def rescore_lead(self, lead_id: UUID, now: datetime | None = None, expected_version: int | None = None) -> Lead:
        """Score the lead again as of `now`: engagement decays, so scores fall while a lead is quiet."""
        when = now or datetime.now(UTC)
        return self._change(self.lead, lead_id, expected_version, lambda lead: lead.rescore(self.scoring_rule, when))

    def grade_lead(
        self, lead_id: UUID, grade: str, reason: str | None = None, expected_version: int | None = None
    ) -> Lead:
        """Grade the lead as a seed, ordinary or key prospect."""
        return self._change(self.lead, lead_id, expected_version, lambda lead: lead.assign_grade(grade, reason))

    def qualify_lead(self, lead_id: UUID, note: str | None = None, expected_version: int | None = None) -> Lead:
        """Qualify the lead; its campaign counts it as a qualified lead."""

        def qualify(lead: Lead, campaign: Campaign | None) -> None:
            lead.qualify(note)
            if campaign is not None:
                campaign.count_qualified(lead.id)

        return self._change_lead_and_campaign(lead_id, expected_version, qualify)

    def disqualify_lead(self, lead_id: UUID, reason: str, expected_version: int | None = None) -> Lead:
        """Disqualify the lead for a reason."""
        return self._change(self.lead, lead_id, expected_version, lambda lead: lead.disqualify(reason))

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

    # --- what became of converted leads (policies) -----------------------------------------------

    def link_customer(self, lead_id: UUID, customer_id: UUID, campaign_id: UUID | None) -> CustomerAttribution:
        """Learn which customer a converted lead became (customer.lead_linked), in one save: the lead
        records its customer, and the customer's attribution record lists the lead and its campaign.
        Learning it again changes nothing."""

        def attempt() -> tuple[CustomerAttribution, list[Aggregate]]:
            attribution = self.attribution(customer_id) or CustomerAttribution(customer_id=customer_id)
            attribution.link_lead(lead_id, campaign_id)
            lead = self._existing(lead_id, Lead)
            if lead is not None:
                lead.link_customer(customer_id)
            return attribution, [lead] if lead is not None else []

        return self._execute(attempt, None, f"the attribution of customer {customer_id}")

    def attribute_order(
        self, customer_id: UUID, order_id: UUID, amount: Decimal, currency: str
    ) -> Campaign | None:
        """Count a paid order (order.order_paid) as revenue of the campaign whose lead became this
        customer, once per order; None (and nothing saved) for a customer no campaign's lead became."""
        attribution = self.attribution(customer_id)
        source = attribution.source if attribution is not None else None
        if source is None:
            return None
        lead_id, campaign_id = source
        return self._change(
            self.campaign,
            campaign_id,
            None,
            lambda campaign: campaign.attribute_order(order_id, lead_id, amount, currency),
            lambda campaign: order_id in campaign.order_ids,
        )

    def attribution(self, customer_id: UUID) -> CustomerAttribution | None:
        """The leads that became this customer, if any did."""
        return self._existing(CustomerAttribution.id_for(customer_id), CustomerAttribution)

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
        self._check_version(aggregate, expected_version)
        return aggregate

    @staticmethod
    def _check_version(aggregate: Aggregate, expected_version: int | None) -> None:
        """With `expected_version`, insist the aggregate is at that version."""
        if expected_version is not None and aggregate.version != expected_version:
            kind = type(aggregate).__name__.lower()
            raise StaleVersionError(
                f"{kind} {aggregate.id} is at version {aggregate.version}, not {expected_version}",
                current_version=aggregate.version,
            )

    def _existing(self, aggregate_id: UUID, cls: type[A]) -> A | None:
        """The aggregate of this kind with this id, if it exists."""
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None
        return aggregate if isinstance(aggregate, cls) else None

    def _campaign_of(self, lead: Lead) -> Campaign | None:
        return self.campaign(lead.campaign_id) if lead.campaign_id is not None else None

    def _change(
        self,
        load: Callable[[UUID], A],
        aggregate_id: UUID,
        expected_version: int | None,
        change: Callable[[A], object],
        done: Callable[[A], bool] | None = None,
    ) -> A:
        """Load (a campaign or a lead), change, save; `done` recognises one an earlier delivery of the
        command changed already: it is the answer, whatever its version now."""

        def attempt() -> tuple[A, list[Aggregate]]:
            aggregate = load(aggregate_id)
            if done is not None and done(aggregate):
                return aggregate, []
            self._check_version(aggregate, expected_version)
            change(aggregate)
            return aggregate, []

        return self._execute(attempt, expected_version, f"{load.__name__} {aggregate_id}")

    def _change_lead_and_campaign(
        self, lead_id: UUID, expected_version: int | None, change: Callable[[Lead, Campaign | None], None]
    ) -> Lead:
        def attempt() -> tuple[Lead, list[Aggregate]]:
            lead = self.lead(lead_id, expected_version)
            campaign = self._campaign_of(lead)
            change(lead, campaign)
            return lead, [campaign] if campaign else []

        with self._campaign_writes:
            return self._execute(attempt, expected_version, f"lead {lead_id} or its campaign")

    def _execute(
        self,
        attempt: Callable[[], tuple[A, list[Aggregate]]],
        expected_version: int | None,
        what: str,
        created: Callable[[], A | None] | None = None,
    ) -> A:
        """Run a command and save what it changed in one transaction.

        Losing a race to another writer means the command ran on old state: it runs again on fresh
        state (after a short, growing, random pause), where the winner's change decides. The attempt
        itself checks the expected version: when the race was lost on the aggregate the caller named,
        that is StaleVersionError; when it was lost on another one the command also changes (the
        lead's campaign, which every lead of the campaign updates), the retry simply succeeds. A lead
        converted meanwhile now answers LeadClosedError, say. A creating command passes `created`:
        when the save collides because an earlier delivery of the command created the aggregate, that
        aggregate is the answer.
        """
        for attempt_number in range(1, self.command_attempts + 1):
            primary, others = attempt()
            if not primary.pending_events and not any(other.pending_events for other in others):
                return primary  # nothing changed (a redelivery, or a score that stayed): nothing to save
            try:
                self.save(primary, *others)
            except IntegrityError:
                first = created() if created is not None else None
                if first is not None:
                    return first
                time.sleep(random.uniform(0, 0.01 * attempt_number))  # noqa: S311 - jitter, not security
                continue
            return primary
        raise StaleVersionError(f"{what} was changed concurrently; reload it and retry")
