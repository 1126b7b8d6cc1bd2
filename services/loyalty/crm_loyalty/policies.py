"""The loyalty service's reactions to other services' events (each applied once: crm_runtime.policy)."""

from __future__ import annotations

from typing import Any

from crm_contracts import order as order_contracts
from crm_contracts.fields import schema_of
from crm_loyalty.application import LoyaltyAccounts
from crm_runtime.policy import Policies
from crm_runtime.rights import react_to_customer_rights

policies = Policies("loyalty")
#: customer_erased, customer_merged, customer_unmerged -> forget_customer, absorb_customer, restore_customer.
react_to_customer_rights(policies)

#: The reversal id of the refund a cancellation after payment makes (one per order).
CANCELLATION = "cancellation"


@policies.reacts_to("order", "order_paid")
def handle_order_order_paid(app: LoyaltyAccounts, envelope: dict[str, Any]) -> None:
    """A paid order earns its points; the customer is enrolled on their first one."""
    paid = schema_of(order_contracts.OrderPaidV1).load(envelope["payload"])
    app.earn_on_paid_order(paid["customer_id"], paid["order_id"], paid["amount"], paid["currency"], paid["paid_at"])


@policies.reacts_to("order", "order_refunded")
def handle_order_order_refunded(app: LoyaltyAccounts, envelope: dict[str, Any]) -> None:
    """An order cancelled after payment gives back what it paid, and with it the points it earned."""
    refunded = schema_of(order_contracts.OrderRefundedV1).load(envelope["payload"])
    app.take_back_points(refunded["customer_id"], refunded["order_id"], CANCELLATION, refunded["amount"],
                         refunded["currency"], refunded["refunded_at"])


@policies.reacts_to("order", "order_return_recorded")
def handle_order_order_return_recorded(app: LoyaltyAccounts, envelope: dict[str, Any]) -> None:
    """Goods returned with a refund take back the points that refund's share of the order earned."""
    returned = schema_of(order_contracts.OrderReturnRecordedV1).load(envelope["payload"])
    app.take_back_points(returned["customer_id"], returned["order_id"], f"return:{returned['return_id']}",
                         returned["refund"], returned["currency"], returned["returned_at"])
