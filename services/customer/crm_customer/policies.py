"""The customer service's reactions to other services' events (each applied once: crm_runtime.policy)."""

from __future__ import annotations

from typing import Any

from crm_contracts import marketing as marketing_contracts
from crm_contracts.fields import schema_of
from crm_customer.application import Customers
from crm_customer.domain import ConvertedLead
from crm_runtime.policy import Policies

policies = Policies("customer")


@policies.reacts_to("marketing", "lead_converted")
def handle_marketing_lead_converted(app: Customers, envelope: dict[str, Any]) -> None:
    """A converted lead becomes a customer, registered or linked (Customers.link_lead); the link is
    published as customer.lead_linked, on which sales opens the opportunity."""
    converted = schema_of(marketing_contracts.LeadConvertedV1).load(envelope["payload"])
    app.link_lead(
        ConvertedLead(
            lead_id=converted["lead_id"],
            customer_id=converted["customer_id"],
            campaign_id=converted["campaign_id"],
            name=converted["name"],
            email=converted["email"],
            phone=converted["phone"],
            company=converted["company"],
            channel=converted["channel"],
            estimated_amount=converted["estimated_amount"],
            currency=converted["currency"],
            expected_close_date=converted["expected_close_date"],
            sales_owner=converted["sales_owner"],
        )
    )
