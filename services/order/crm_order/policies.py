"""The order service's reactions to other services' events (each applied once: crm_runtime.policy)."""

from __future__ import annotations

from typing import Any

from crm_contracts import customer as customer_contracts
from crm_contracts import sales as sales_contracts
from crm_contracts.fields import schema_of
from crm_order.application import Orders
from crm_runtime.policy import Policies
from crm_runtime.rights import react_to_customer_rights

policies = Policies("order")
#: customer_erased, customer_merged, customer_unmerged: Orders.forget_customer, absorb_customer, restore_customer.
react_to_customer_rights(policies)


@policies.reacts_to("sales", "opportunity_won")
def handle_sales_opportunity_won(app: Orders, envelope: dict[str, Any]) -> None:
    """A won opportunity becomes an order of its accepted quote's lines (one order per opportunity)."""
    won = schema_of(sales_contracts.OpportunityWonV1).load(envelope["payload"])
    app.place_from_won_opportunity(won["opportunity_id"], won["customer_id"], won["quote_id"], won["currency"],
                                   won["lines"], won["won_at"])


@policies.reacts_to("customer", "customer_address_changed")
def handle_customer_customer_address_changed(app: Orders, envelope: dict[str, Any]) -> None:
    """A customer's default addresses are kept, so an order without a ship-to address can take one."""
    changed = schema_of(customer_contracts.CustomerAddressChangedV1).load(envelope["payload"])
    app.record_customer_address(changed["customer_id"], changed["kind"], changed["address"], changed["default"],
                                changed["changed_at"])


@policies.reacts_to("customer", "customer_credit_rating_changed")
def handle_customer_customer_credit_rating_changed(app: Orders, envelope: dict[str, Any]) -> None:
    """A customer's credit limit is kept, so orders above it are flagged."""
    rated = schema_of(customer_contracts.CustomerCreditRatingChangedV1).load(envelope["payload"])
    app.record_customer_credit(rated["customer_id"], rated["rating"], rated["limit"])
