"""The marketing nameko service: RPC commands and queries, thin adapters over Marketing."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from crm_contracts import marketing as contracts
from crm_contracts.errors import InvalidRequestError, ServiceError
from crm_contracts.fields import schema_of
from crm_contracts.vocabulary.marketing import OPEN_LEAD_STATUSES
from crm_marketing.application import Marketing
from crm_marketing.domain import Campaign, Lead
from crm_marketing.listing import marketing_listing
from crm_marketing.policies import policies
from crm_marketing.publishing import translator
from crm_marketing.targeting import members_of_segment
from crm_runtime import config
from crm_runtime.listing import Listing
from crm_runtime.nameko.client import ServiceClient
from crm_runtime.nameko.dependencies import EventSourcedApplication, PolicyConsumer, PostgresCursor
from crm_runtime.nameko.leader import leader_timer, sweep
from crm_runtime.nameko.listing import ListingProjection
from crm_runtime.nameko.rights import CustomerRightsService
from crm_runtime.nameko.rpc import aggregate_id, rpc
from crm_runtime.nameko.service import EventSourcedService

_campaign = contracts.CampaignSchema()
_results = contracts.CampaignResultsSchema()
_lead = contracts.LeadSchema()


def campaign_key(campaign_id: str) -> UUID:
    """The campaign id argument of a call, checked (a non-UUID is `invalid`, not a crash)."""
    return aggregate_id(campaign_id, "campaign_id")


def lead_key(lead_id: str) -> UUID:
    """The lead id argument of a call, checked (a non-UUID is `invalid`, not a crash)."""
    return aggregate_id(lead_id, "lead_id")


def checked_segment(customer360: Any, segment_id: UUID) -> None:
    """A saved segment a campaign is to target must exist in customer360: else `invalid`, naming segment_id."""
    try:
        customer360.get_segment(str(segment_id))
    except ServiceError as error:
        if error.code != "not_found":
            raise
        raise InvalidRequestError(f"segment_id: no saved segment {segment_id}",
                                  fields={"segment_id": ["no saved segment has this id"]}) from None


def campaign_view(campaign: Campaign) -> dict[str, Any]:
    """A campaign as the RPC answer: the contract's CampaignSchema, JSON-ready, with its results so far."""
    return _campaign.dump(campaign)


def lead_view(lead: Lead) -> dict[str, Any]:
    """A lead as the RPC answer: the contract's LeadSchema, JSON-ready."""
    return _lead.dump(lead)


class MarketingService(CustomerRightsService, EventSourcedService):
    """Campaigns (plan, launch, responses, close, results) and leads (capture to conversion).

    Every command takes `command_id` (one client shape); it decides the id of what a command creates
    (a campaign, a lead, a count of responses, an engagement), so a redelivery answers its first
    outcome and counts nothing twice. A campaign may target a saved segment of customer360: launching
    it asks customer360 for the segment's members and reaches those consent allows (`erasure_status`,
    from CustomerRightsService, tells where a customer's erasure stands here).
    """

    name = "marketing"
    translator = translator
    application: Marketing = EventSourcedApplication(Marketing, translator)  # type: ignore[assignment]
    reactions = PolicyConsumer(policies)
    customer360 = ServiceClient("customer360", timeout_setting="MARKETING_SEGMENT_TIMEOUT", default_timeout=60.0)

    # --- campaigns ------------------------------------------------------------------------------

    @rpc
    def plan_campaign(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Plan; a `command_id` makes a redelivered or retried call answer the first campaign planned."""
        plan = schema_of(contracts.PlanCampaignRequest).load(payload)
        plan["segment"] = plan["segment"] or {}
        if plan["segment_id"] is not None:
            checked_segment(self.customer360, plan["segment_id"])
        campaign_id = Campaign.id_for_plan(command_id) if command_id else None
        return campaign_view(self.application.plan_campaign(**plan, campaign_id=campaign_id))

    @rpc
    def get_campaign(self, campaign_id: str) -> dict[str, Any]:
        return campaign_view(self.application.campaign(campaign_key(campaign_id)))

    @rpc
    def launch_campaign(
        self, campaign_id: str, expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        """Launch; a campaign targeting a saved segment reaches its members now, consent allowing. The
        members are asked of customer360 before anything is saved: if it cannot answer, nothing changes."""
        key = campaign_key(campaign_id)
        campaign = self.application.campaign(key, expected_version)
        members = None
        if campaign.segment_id is not None and campaign.status == "planned":
            members = members_of_segment(
                self.customer360, campaign.segment_id, campaign.channels, self.application.campaign_consent
            )
        return campaign_view(self.application.launch_campaign(key, expected_version, members))

    @rpc
    def record_response(
        self, campaign_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Count responses; a redelivered `command_id` answers the campaign without counting them twice."""
        response = schema_of(contracts.RecordResponseRequest).load(payload)
        campaign = self.application.record_response(
            campaign_key(campaign_id), **response, expected_version=expected_version, command_id=command_id
        )
        return campaign_view(campaign)

    @rpc
    def close_campaign(
        self, campaign_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        closing = schema_of(contracts.CloseCampaignRequest).load(payload)
        return campaign_view(
            self.application.close_campaign(campaign_key(campaign_id), **closing, expected_version=expected_version)
        )

    @rpc
    def attribute_revenue(
        self, campaign_id: str, lead_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Replace a converted lead's estimated revenue with what it really brought (the order_paid policy)."""
        revenue = schema_of(contracts.AttributeRevenueRequest).load(payload)
        campaign = self.application.attribute_revenue(
            campaign_key(campaign_id), lead_key(lead_id), **revenue, expected_version=expected_version
        )
        return campaign_view(campaign)

    @rpc
    def campaign_results(self, campaign_id: str) -> dict[str, Any]:
        return _results.dump(self.application.campaign_results(campaign_key(campaign_id)))

    @rpc
    def campaign_leads(self, campaign_id: str, status: str | None = None) -> list[dict[str, Any]]:
        """The leads a campaign brought in, oldest first; only those in `status` when given."""
        return [lead_view(lead) for lead in self.application.leads_of_campaign(campaign_key(campaign_id), status)]

    # --- leads ----------------------------------------------------------------------------------

    @rpc
    def capture_lead(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Capture; a `command_id` makes a redelivered or retried call answer the first lead captured."""
        captured = schema_of(contracts.CaptureLeadRequest).load(payload)
        lead_id = Lead.id_for_capture(command_id) if command_id else None
        return lead_view(self.application.capture_lead(**captured, lead_id=lead_id))

    @rpc
    def get_lead(self, lead_id: str) -> dict[str, Any]:
        return lead_view(self.application.lead(lead_key(lead_id)))

    @rpc
    def record_engagement(
        self, lead_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Record an engagement; a redelivered `command_id` answers the lead without recording it twice."""
        engagement = schema_of(contracts.RecordEngagementRequest).load(payload)
        lead = self.application.record_engagement(
            lead_key(lead_id), **engagement, expected_version=expected_version, command_id=command_id
        )
        return lead_view(lead)

    @rpc
    def rescore_lead(
        self, lead_id: str, expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        return lead_view(self.application.rescore_lead(lead_key(lead_id), expected_version=expected_version))

    @rpc
    def grade_lead(
        self, lead_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        grading = schema_of(contracts.GradeLeadRequest).load(payload)
        return lead_view(self.application.grade_lead(lead_key(lead_id), **grading, expected_version=expected_version))

    @rpc
    def qualify_lead(
        self, lead_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        qualifying = schema_of(contracts.QualifyLeadRequest).load(payload)
        return lead_view(
            self.application.qualify_lead(lead_key(lead_id), **qualifying, expected_version=expected_version)
        )

    @rpc
    def disqualify_lead(
        self, lead_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        disqualifying = schema_of(contracts.DisqualifyLeadRequest).load(payload)
        return lead_view(
            self.application.disqualify_lead(lead_key(lead_id), **disqualifying, expected_version=expected_version)
        )

    @rpc
    def convert_lead(
        self, lead_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        conversion = schema_of(contracts.ConvertLeadRequest).load(payload)
        return lead_view(
            self.application.convert_lead(lead_key(lead_id), **conversion, expected_version=expected_version)
        )


    # --- lists: eventually consistent (milliseconds behind commands), newest change first -------------
    # Filters are equality on the fields named; pages answer {"items", "page", "page_size", "total",
    # "total_exact"} (crm_runtime.listing); an item is what the matching get answers.

    db = PostgresCursor("marketing")
    listing: Listing = ListingProjection(marketing_listing(campaign_view, lead_view))  # type: ignore[assignment]

    @rpc
    def list_campaigns(
        self, filters: dict[str, str] | None = None, page: int = 1, page_size: int = 20
    ) -> dict[str, Any]:
        """Campaigns: one page, filters status, currency."""
        return self.listing.query(self.db, "campaigns", filters, page, page_size)

    @rpc
    def list_leads(
        self, filters: dict[str, str] | None = None, page: int = 1, page_size: int = 20
    ) -> dict[str, Any]:
        """Leads: one page, filters status, campaign_id, grade, customer_id, channel."""
        return self.listing.query(self.db, "leads", filters, page, page_size)

    # --- periodic work, in one replica (crm_runtime.nameko.leader) ------------------------------------

    @leader_timer(interval=float(config.setting("LEAD_RESCORE_INTERVAL", "3600")))
    def rescore_open_leads(self) -> None:
        """Score open leads again: engagement decays while a lead is quiet (a score is recorded only
        when it changed, so a second run changes nothing)."""
        for status in OPEN_LEAD_STATUSES:
            leads = [lead_id for lead_id, _ in self.listing.rows(self.db, "leads", {"status": status})]
            sweep("lead rescore", leads, self.application.rescore_lead)
