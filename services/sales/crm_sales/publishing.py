"""Sales domain events -> published integration events. The only place that translates.

Every Opportunity event is public but `CustomerForgotten` (the customer service published the erasure);
merge records (crm_runtime.rights.CustomerMerge) are internal."""

from __future__ import annotations

from crm_contracts import sales as contracts
from crm_contracts.integration import IntegrationEvent, Translator, integration_event
from crm_runtime.rights import customer_changed
from crm_sales.domain import Opportunity

translator = Translator(origin="sales")


@translator.translates(Opportunity.Opened)
def opportunity_opened(event: Opportunity.Opened) -> IntegrationEvent:
    return integration_event(
        contracts.OpportunityOpenedV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "lead_id": event.lead_id,
            "title": event.title,
            "owner": event.owner,
            "amount": event.amount,
            "currency": event.currency,
            "expected_close_date": event.expected_close_date,
            "stage": event.stage,
            "probability": event.probability,
            "opened_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.StageChanged)
def opportunity_stage_changed(event: Opportunity.StageChanged) -> IntegrationEvent:
    return integration_event(
        contracts.OpportunityStageChangedV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "from_stage": event.from_stage,
            "to_stage": event.to_stage,
            "probability": event.probability,
            "changed_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.AmountChanged)
def opportunity_amount_changed(event: Opportunity.AmountChanged) -> IntegrationEvent:
    return integration_event(
        contracts.OpportunityAmountChangedV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "amount": event.amount,
            "previous_amount": event.previous_amount,
            "currency": event.currency,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.ExpectedCloseDateChanged)
def opportunity_close_date_changed(event: Opportunity.ExpectedCloseDateChanged) -> IntegrationEvent:
    return integration_event(
        contracts.OpportunityCloseDateChangedV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "expected_close_date": event.expected_close_date,
            "previous_expected_close_date": event.previous_expected_close_date,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.Reassigned)
def opportunity_reassigned(event: Opportunity.Reassigned) -> IntegrationEvent:
    return integration_event(
        contracts.OpportunityReassignedV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "owner": event.owner,
            "previous_owner": event.previous_owner,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.QuoteSent)
def quote_sent(event: Opportunity.QuoteSent) -> IntegrationEvent:
    return integration_event(
        contracts.QuoteSentV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "quote_id": event.quote_id,
            "quote_version": event.quote_version,
            "supersedes_quote_id": event.supersedes_quote_id,
            "currency": event.currency,
            "lines": event.lines,
            "subtotal": event.subtotal,
            "discount_total": event.discount_total,
            "total": event.total,
            "sent_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.QuoteAccepted)
def quote_accepted(event: Opportunity.QuoteAccepted) -> IntegrationEvent:
    return integration_event(
        contracts.QuoteAcceptedV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "quote_id": event.quote_id,
            "quote_version": event.quote_version,
            "currency": event.currency,
            "total": event.total,
            "accepted_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.QuoteRejected)
def quote_rejected(event: Opportunity.QuoteRejected) -> IntegrationEvent:
    return integration_event(
        contracts.QuoteRejectedV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "quote_id": event.quote_id,
            "quote_version": event.quote_version,
            "reason": event.reason,
            "rejected_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.Won)
def opportunity_won(event: Opportunity.Won) -> IntegrationEvent:
    return integration_event(
        contracts.OpportunityWonV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "owner": event.owner,
            "from_stage": event.from_stage,
            "quote_id": event.quote_id,
            "quote_version": event.quote_version,
            "currency": event.currency,
            "lines": event.lines,
            "subtotal": event.subtotal,
            "discount_total": event.discount_total,
            "total": event.total,
            "won_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.Lost)
def opportunity_lost(event: Opportunity.Lost) -> IntegrationEvent:
    return integration_event(
        contracts.OpportunityLostV1,
        {
            "opportunity_id": event.originator_id,
            "customer_id": event.customer_id,
            "owner": event.owner,
            "from_stage": event.from_stage,
            "reason": event.reason,
            "amount": event.amount,
            "currency": event.currency,
            "lost_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Opportunity.CustomerRepointed, Opportunity.CustomerRestored)
def opportunity_customer_changed(
    event: Opportunity.CustomerRepointed | Opportunity.CustomerRestored,
) -> IntegrationEvent:
    """Opportunity.CustomerRepointed (a merge) and CustomerRestored (an unmerge) as
    `opportunity_customer_changed`: the opportunity follows its customer."""
    return customer_changed(contracts.OpportunityCustomerChangedV1, "opportunity_id", event, event.timestamp)
