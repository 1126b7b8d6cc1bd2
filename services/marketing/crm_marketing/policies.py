"""The marketing service's reactions to other services' events (each applied once: crm_runtime.policy)."""

from __future__ import annotations

from typing import Any

from crm_contracts import customer as customer_contracts
from crm_contracts import order as order_contracts
from crm_contracts.fields import schema_of
from crm_marketing.application import Marketing
from crm_runtime.policy import Policies
from crm_runtime.rights import react_to_customer_rights

policies = Policies("marketing")


@policies.reacts_to("customer", "lead_linked")
def handle_customer_lead_linked(app: Marketing, envelope: dict[str, Any]) -> None:
    """A converted lead became a customer: the lead and the customer's attribution record learn it."""
    linked = schema_of(customer_contracts.LeadLinkedV1).load(envelope["payload"])
    app.link_customer(linked["lead_id"], linked["customer_id"], linked["campaign_id"])


@policies.reacts_to("order", "order_paid")
def handle_order_order_paid(app: Marketing, envelope: dict[str, Any]) -> None:
    """A paid order is revenue of the campaign whose lead became its customer (once per order); the
    order of a customer no campaign brought changes nothing."""
    paid = schema_of(order_contracts.OrderPaidV1).load(envelope["payload"])
    app.attribute_order(paid["customer_id"], paid["order_id"], paid["amount"], paid["currency"])


# customer_erased, customer_merged, customer_unmerged: Marketing.forget_customer, absorb_customer, restore_customer.
react_to_customer_rights(policies)
