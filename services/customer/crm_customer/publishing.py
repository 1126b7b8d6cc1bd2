"""Customer domain events -> published integration events. The only place that translates."""

from __future__ import annotations

from crm_contracts import customer as contracts
from crm_contracts.integration import IntegrationEvent, Translator, integration_event
from crm_customer.domain import Customer

translator = Translator(origin="customer")


@translator.translates(Customer.Registered)
def customer_registered(event: Customer.Registered) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerRegisteredV1,
        {
            "customer_id": event.originator_id,
            "name": event.name,
            "email": event.email,
            "phone": event.phone,
            "company": event.company,
            "source_channel": event.source_channel,
        },
        customer_id=event.originator_id,
    )


@translator.translates(Customer.ProfileChanged)
def customer_profile_changed(event: Customer.ProfileChanged) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerProfileChangedV1,
        {"customer_id": event.originator_id, "changes": event.changes},
        customer_id=event.originator_id,
    )


@translator.translates(Customer.ConsentRecorded)
def customer_consent_changed(event: Customer.ConsentRecorded) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerConsentChangedV1,
        {
            "customer_id": event.originator_id,
            "channel": event.channel,
            "granted": event.granted,
            "source": event.source,
            "at": event.at,
        },
        customer_id=event.originator_id,
    )


@translator.translates(Customer.CreditRatingChanged)
def customer_credit_rating_changed(event: Customer.CreditRatingChanged) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerCreditRatingChangedV1,
        {"customer_id": event.originator_id, "rating": event.rating, "limit": event.limit, "reason": event.reason},
        customer_id=event.originator_id,
    )


@translator.translates(Customer.AddressChanged)
def customer_address_changed(event: Customer.AddressChanged) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerAddressChangedV1,
        {"customer_id": event.originator_id, "kind": event.kind, "address": event.address, "default": event.default,
         "changed_at": event.at},
        customer_id=event.originator_id,
    )


@translator.translates(Customer.Graded)
def customer_graded(event: Customer.Graded) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerGradedV1,
        {"customer_id": event.originator_id, "grade": event.grade, "scores": event.scores, "reason": event.reason},
        customer_id=event.originator_id,
    )


@translator.translates(Customer.LeadLinked)
def customer_lead_linked(event: Customer.LeadLinked) -> IntegrationEvent:
    return integration_event(
        contracts.LeadLinkedV1,
        {
            "lead_id": event.lead_id,
            "customer_id": event.originator_id,
            "campaign_id": event.campaign_id,
            "new_customer": event.new_customer,
            "matched_by": event.matched_by,
            "name": event.name,
            "company": event.company,
            "estimated_amount": event.estimated_amount,
            "currency": event.currency,
            "expected_close_date": event.expected_close_date,
            "sales_owner": event.sales_owner,
        },
        customer_id=event.originator_id,
    )


@translator.translates(Customer.Erased)
def customer_erased(event: Customer.Erased) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerErasedV1,
        {"customer_id": event.originator_id, "request_id": event.request_id, "erased_at": event.at},
        customer_id=event.originator_id,
    )


@translator.translates(Customer.Merged)
def customer_merged(event: Customer.Merged) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerMergedV1,
        {"customer_id": event.originator_id, "survivor_id": event.survivor_id, "merge_id": event.merge_id,
         "merged_at": event.at},
        customer_id=event.originator_id,
    )


@translator.translates(Customer.Unmerged)
def customer_unmerged(event: Customer.Unmerged) -> IntegrationEvent:
    return integration_event(
        contracts.CustomerUnmergedV1,
        {"customer_id": event.originator_id, "survivor_id": event.survivor_id, "merge_id": event.merge_id,
         "unmerged_at": event.at},
        customer_id=event.originator_id,
    )
