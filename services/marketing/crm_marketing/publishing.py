"""Marketing domain events -> published integration events. The only place that translates.

Campaign.LeadAttributed, QualifiedLeadCounted, ConversionCounted and RevenueAttributed, and
Lead.EngagementRecorded, stay inside the service: the first four restate a lead's own published event
on its campaign, and engagement reaches the outside world as the score it moves (lead_scored). So do
what marketing learns from others' events: Lead.CustomerLinked and CustomerAttribution (customer.lead_linked
said it first) and Campaign.OrderRevenueAttributed (order.order_paid); the campaign's results carry them.
What a customer's rights move stays inside too (the customer service published the merge, unmerge or
erasure first): Lead.MovedToSurvivor, MovedBack, Forgotten; CustomerAttribution.HandedOver, TakenBack,
TookOver, GaveBack. Campaign.SegmentTargeted and ReachedCounted are the campaign's own bookkeeping; each
member a launch reached is published, from that member's record (CustomerAttribution.Reached), as
campaign_member_reached carrying the customer id, so the campaign comes back into the 360 view.
"""

from __future__ import annotations

from crm_contracts import marketing as contracts
from crm_contracts.integration import IntegrationEvent, Translator, integration_event
from crm_marketing.domain import Campaign, CampaignResults, CustomerAttribution, Lead

translator = Translator(origin="marketing")


@translator.translates(Campaign.Planned)
def campaign_planned(event: Campaign.Planned) -> IntegrationEvent:
    return integration_event(
        contracts.CampaignPlannedV1,
        {
            "campaign_id": event.originator_id,
            "name": event.name,
            "objective": event.objective,
            "segment": event.segment,
            "channels": event.channels,
            "starts_on": event.starts_on,
            "ends_on": event.ends_on,
            "budget": event.budget,
            "currency": event.currency,
        },
    )


@translator.translates(Campaign.Launched)
def campaign_launched(event: Campaign.Launched) -> IntegrationEvent:
    return integration_event(
        contracts.CampaignLaunchedV1,
        {"campaign_id": event.originator_id, "name": event.name, "launched_at": event.timestamp},
    )


@translator.translates(Campaign.ResponseRecorded)
def campaign_response_recorded(event: Campaign.ResponseRecorded) -> IntegrationEvent:
    return integration_event(
        contracts.CampaignResponseRecordedV1,
        {"campaign_id": event.originator_id, "channel": event.channel, "count": event.count, "at": event.at},
    )


@translator.translates(Campaign.Closed)
def campaign_closed(event: Campaign.Closed) -> IntegrationEvent:
    # Cost per lead and ROI are derived the way the results query derives them: one formula.
    results = CampaignResults(
        responses=event.responses,
        leads=event.leads,
        qualified_leads=event.qualified_leads,
        conversions=event.conversions,
        attributed_revenue=event.attributed_revenue,
        cost=event.cost,
        currency=event.currency,
    )
    return integration_event(
        contracts.CampaignClosedV1,
        {
            "campaign_id": event.originator_id,
            "results": {
                **vars(results),
                "cost_per_lead": results.cost_per_lead,
                "roi_percent": results.roi_percent,
            },
        },
    )


@translator.translates(CustomerAttribution.Reached)
def campaign_member_reached(event: CustomerAttribution.Reached) -> IntegrationEvent:
    return integration_event(
        contracts.CampaignMemberReachedV1,
        {
            "campaign_id": event.campaign_id,
            "customer_id": event.customer_id,
            "segment_id": event.segment_id,
            "channels": event.channels,
            "reached_at": event.reached_at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Lead.Captured)
def lead_captured(event: Lead.Captured) -> IntegrationEvent:
    return integration_event(
        contracts.LeadCapturedV1,
        {
            "lead_id": event.originator_id,
            "campaign_id": event.campaign_id,
            "channel": event.channel,
            "name": event.name,
            "email": event.email,
            "phone": event.phone,
            "company": event.company,
            "company_size": event.company_size,
            "role": event.role,
            "industry": event.industry,
            "captured_at": event.captured_at,
        },
    )


@translator.translates(Lead.Graded)
def lead_graded(event: Lead.Graded) -> IntegrationEvent:
    return integration_event(
        contracts.LeadGradedV1, {"lead_id": event.originator_id, "grade": event.grade, "reason": event.reason}
    )


@translator.translates(Lead.Scored)
def lead_scored(event: Lead.Scored) -> IntegrationEvent:
    return integration_event(
        contracts.LeadScoredV1,
        {
            "lead_id": event.originator_id,
            "score": event.score,
            "fit": event.fit,
            "engagement": event.engagement,
            "scored_at": event.scored_at,
        },
    )


@translator.translates(Lead.Qualified)
def lead_qualified(event: Lead.Qualified) -> IntegrationEvent:
    return integration_event(
        contracts.LeadQualifiedV1,
        {
            "lead_id": event.originator_id,
            "campaign_id": event.campaign_id,
            "score": event.score,
            "grade": event.grade,
            "note": event.note,
        },
    )


@translator.translates(Lead.Disqualified)
def lead_disqualified(event: Lead.Disqualified) -> IntegrationEvent:
    return integration_event(
        contracts.LeadDisqualifiedV1,
        {"lead_id": event.originator_id, "campaign_id": event.campaign_id, "reason": event.reason},
    )


@translator.translates(Lead.Converted)
def lead_converted(event: Lead.Converted) -> IntegrationEvent:
    return integration_event(
        contracts.LeadConvertedV1,
        {
            "lead_id": event.originator_id,
            "customer_id": event.customer_id,
            "campaign_id": event.campaign_id,
            "name": event.name,
            "email": event.email,
            "phone": event.phone,
            "company": event.company,
            "channel": event.channel,
            "grade": event.grade,
            "score": event.score,
            "estimated_amount": event.estimated_amount,
            "currency": event.currency,
            "expected_close_date": event.expected_close_date,
            "sales_owner": event.sales_owner,
        },
        customer_id=event.customer_id,
    )
