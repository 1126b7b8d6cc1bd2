"""Marketing: the marketing service's commands (load, call, save) and queries."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
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
from crm_marketing.targeting import CAMPAIGN_CONSENT, SegmentMember, reachable_channels
from crm_runtime.crypto import DataKeys, PersonalFields
from crm_runtime.eventstore import ServiceApplication
from crm_runtime.rights import erasure_state_of, forget_subjects

A = TypeVar("A", bound=Aggregate)
#: How many merges a launch follows from a segment member to the customer that holds them now.
MAX_MERGE_HOPS = 20

#: The personal fields of a lead's events (a person's name and how to reach them, and the free text
#: written about them), sealed under the LEAD's own data key (crm_runtime.crypto: the lead is not a
#: customer yet, and may never become one), with what each reads as once that key is shredded. Role,
#: industry and company size stay in clear: categories that score the lead, naming nobody on their own.
LEAD_CONTACT = {"name": "", "email": None, "phone": None, "company": None}
PERSONAL_DATA: dict[type, PersonalFields] = {
    Lead.Captured: PersonalFields(LEAD_CONTACT),
    Lead.Converted: PersonalFields(LEAD_CONTACT),
    Lead.Graded: PersonalFields({"reason": None}),
    Lead.Qualified: PersonalFields({"note": None}),
    Lead.Disqualified: PersonalFields({"reason": ""}),
}


class Marketing(ServiceApplication):
    """Campaigns and the leads they bring in."""

    service = "marketing"
    scoring_rule = ScoringRule()
    personal_data: ClassVar[dict[type, PersonalFields]] = PERSONAL_DATA
    data_keys: DataKeys
    #: Campaign channel -> the consent channel it needs (None: none needed); crm_marketing.targeting.
    campaign_consent: Mapping[str, str | None] = CAMPAIGN_CONSENT
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
        segment_id: UUID | None = None,
    ) -> Campaign:
        """Plan a campaign for a target segment (marketing's criteria, or a saved segment of customer360
        by `segment_id`), on some channels, over a schedule, within a budget.

        With `campaign_id` (derived from the command's id), planning is idempotent: a command
        delivered twice answers the campaign its first delivery planned.
        """
        campaign = Campaign.plan(
            name, objective, segment, channels, starts_on, ends_on, budget, currency, campaign_id, segment_id
        )
        try:
            self.save(campaign)
        except IntegrityError:
            if campaign_id is None:
                raise
            return self.campaign(campaign_id)
        return campaign

    def launch_campaign(
        self,
        campaign_id: UUID,
        expected_version: int | None = None,
        members: Iterable[SegmentMember] | None = None,
        at: datetime | None = None,
    ) -> Campaign:
        """Launch a planned campaign: from now on it records responses and leads.

        A campaign targeting a saved segment reaches `members` (the segment's members now, with their
        consents) in the same save: each member's record notes the campaign and the channels consent
        allows (crm_marketing.targeting; a member no channel may contact is not reached at all), and
        the campaign counts them. Launching is once: a second launch is refused and reaches nobody."""
        when = at or datetime.now(UTC)
        given = list(members or [])

        def attempt() -> tuple[Campaign, list[Aggregate]]:
            campaign = self.campaign(campaign_id, expected_version)
            campaign.launch()
            if campaign.segment_id is None:
                return campaign, []
            reached: dict[UUID, CustomerAttribution] = {}
            counts = dict.fromkeys(campaign.channels, 0)
            for member in given:
                channels = reachable_channels(campaign.channels, member, self.campaign_consent)
                if not channels:
                    continue
                record = self._current_record(member.customer_id, reached)
                if record.customer_id in reached:
                    continue  # two members of one customer since merged: reached once
                if record.record_reach(campaign.id, campaign.segment_id, channels, when):
                    reached[record.customer_id] = record
                    for channel in channels:
                        counts[channel] += 1
            campaign.count_reached(counts)
            return campaign, list(reached.values())

        with self._campaign_writes:
            return self._execute(attempt, expected_version, f"campaign {campaign_id} or its members' records")

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
        """The leads that became this customer and the campaigns that reached them, if any."""
        return self._existing(CustomerAttribution.id_for(customer_id), CustomerAttribution)

    # --- a customer's rights (crm_runtime.rights: customer_erased, customer_merged, customer_unmerged) --

    def forget_customer(self, customer_id: UUID, request_id: str) -> None:
        """Erase what marketing holds about the customer: the data keys of every lead that became the
        customer (or was taken over from a customer merged into it) are shredded, then each lead records
        `Forgotten`, so its list row is written again from state that now reads redacted. Idempotent.

        The leads are those of the customer's record, complete when customer_erased arrives: every
        customer.lead_linked of the customer precedes it in the customer service's order."""
        lead_ids = self._lead_ids_of(customer_id)
        forget_subjects(self.data_keys, [customer_id, *lead_ids], request_id)
        for lead_id in lead_ids:
            if self._existing(lead_id, Lead) is not None:
                self._change(self.lead, lead_id, None, lambda lead: lead.forget(request_id))

    def erasure_state(self, customer_id: UUID) -> str:
        """"done" once the keys of the customer's leads are shredded (and CRM_DATA_KEY_TTL has passed),
        or when marketing never held data about the customer; "pending" otherwise."""
        return erasure_state_of(self.data_keys, [customer_id, *self._lead_ids_of(customer_id)])

    def absorb_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The customer was merged into `survivor_id`: its record hands its leads and reaches over to the
        survivor's record (so the survivor's paid orders count for the campaign that won either of
        them), and each of its leads moves to the survivor by an event remembering `merged_from` and
        `merge_id`. One save; a redelivered merge changes nothing."""
        if self.attribution(customer_id) is None:
            return  # marketing knows nothing of the customer: nothing to move

        def attempt() -> tuple[CustomerAttribution, list[Aggregate]]:
            absorbed = self.attribution(customer_id)
            assert absorbed is not None  # a customer's record is never removed
            survivor = self.attribution(survivor_id) or CustomerAttribution(customer_id=survivor_id)
            leads, reached = absorbed.hand_over(survivor_id, merge_id)
            survivor.take_over(customer_id, merge_id, leads, reached)
            moved = [lead for lead in (self._existing(lead_id, Lead) for lead_id, _ in leads) if lead is not None]
            for lead in moved:
                if lead.customer_id == customer_id:
                    lead.move_to_survivor(survivor_id, merge_id)
            return survivor, [absorbed, *moved]

        self._execute(attempt, None, f"the records of customers {customer_id} and {survivor_id}")

    def restore_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The merge was undone: exactly what it handed over goes back to the customer (leads moved
        back by events, reaches), what reached the survivor since stays with it. Idempotent."""
        if self.attribution(customer_id) is None or self.attribution(survivor_id) is None:
            return  # the merge moved nothing here

        def attempt() -> tuple[CustomerAttribution, list[Aggregate]]:
            absorbed, survivor = self.attribution(customer_id), self.attribution(survivor_id)
            assert absorbed is not None and survivor is not None  # a customer's record is never removed
            lead_ids = absorbed.take_back(merge_id)
            survivor.give_back(customer_id, merge_id)
            moved = [lead for lead in (self._existing(lead_id, Lead) for lead_id in lead_ids) if lead is not None]
            for lead in moved:
                lead.move_back(merge_id)
            return survivor, [absorbed, *moved]

        self._execute(attempt, None, f"the records of customers {customer_id} and {survivor_id}")

    def _current_record(self, customer_id: UUID, loaded: Mapping[UUID, CustomerAttribution]) -> CustomerAttribution:
        """The record of `customer_id`, or of the customer it has since been merged into (a segment's
        members were read just before a merge took effect), made when there is none yet."""
        for _hop in range(MAX_MERGE_HOPS):
            record = loaded.get(customer_id) or self.attribution(customer_id)
            if record is None:
                return CustomerAttribution(customer_id=customer_id)
            if record.merged_into is None:
                return record
            customer_id = record.merged_into
        raise StaleVersionError(f"customer {customer_id}: merges kept changing while reaching it; launch again")

    def _lead_ids_of(self, customer_id: UUID) -> list[UUID]:
        record = self.attribution(customer_id)
        return record.lead_ids if record is not None else []

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
