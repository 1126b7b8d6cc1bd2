"""The service context's reactions to events (each applied once: crm_runtime.policy)."""

from __future__ import annotations

from typing import Any

from crm_contracts import order as order_contracts
from crm_contracts import service as service_contracts
from crm_contracts.fields import schema_of
from crm_runtime.policy import Policies
from crm_runtime.rights import react_to_customer_rights
from crm_service.application import ServiceDesk

policies = Policies("service")
#: customer_erased, customer_merged, customer_unmerged -> forget_customer, absorb_customer, restore_customer.
react_to_customer_rights(policies)


@policies.reacts_to("order", "order_delivered")
def handle_order_order_delivered(app: ServiceDesk, envelope: dict[str, Any]) -> None:
    """The delivery that completes an order asks the customer for a satisfaction survey (once per order);
    partial deliveries ask nothing."""
    delivered = schema_of(order_contracts.OrderDeliveredV1).load(envelope["payload"])
    if delivered["fully_delivered"]:
        app.request_survey("order", delivered["order_id"], delivered["customer_id"], delivered["delivered_at"])


@policies.reacts_to("service", "case_closed")
def handle_service_case_closed(app: ServiceDesk, envelope: dict[str, Any]) -> None:
    """A closed case asks for a satisfaction survey (once per case, even if it is reopened and closed again)."""
    closed = schema_of(service_contracts.CaseClosedV1).load(envelope["payload"])
    app.request_survey("case", closed["case_id"], closed["customer_id"], closed["closed_at"])
