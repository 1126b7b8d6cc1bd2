"""The sales service's reactions to other services' events (each applied once: crm_runtime.policy)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from crm_contracts import customer as customer_contracts
from crm_contracts.fields import schema_of
from crm_runtime.policy import Policies
from crm_runtime.rights import react_to_customer_rights
from crm_sales.application import Opportunities
from crm_sales.domain import MAX_TEXT

policies = Policies("sales")
#: customer_erased, customer_merged, customer_unmerged: Opportunities.forget_customer, absorb_customer,
#: restore_customer.
react_to_customer_rights(policies)

#: The owner of an opportunity whose lead named no sales rep: a queue the sales manager assigns from.
DEFAULT_OWNER = "unassigned"
#: A lead that gave no expected close date is expected to close this long after it became a customer.
DEFAULT_CLOSE_AFTER = timedelta(days=90)


@policies.reacts_to("customer", "lead_linked")
def handle_customer_lead_linked(app: Opportunities, envelope: dict[str, Any]) -> None:
    """A converted lead became a customer: open its opportunity for that customer, once per lead.

    What the lead left null gets a documented default, derived from the event (never from the clock),
    so every replay opens the same opportunity: owner DEFAULT_OWNER, close date DEFAULT_CLOSE_AFTER
    after the event occurred. Opened at the event's time; titled by the lead's company and name."""
    linked = schema_of(customer_contracts.LeadLinkedV1).load(envelope["payload"])
    occurred_at = occurred(envelope)
    app.open_from_lead(
        linked["lead_id"],
        linked["customer_id"],
        title_for(linked["name"], linked["company"]),
        linked["sales_owner"] or DEFAULT_OWNER,
        linked["estimated_amount"],
        linked["currency"],
        linked["expected_close_date"] or (occurred_at + DEFAULT_CLOSE_AFTER).date(),
        occurred_at,
    )


def title_for(name: str, company: str | None) -> str:
    """An opportunity's title from its lead: "Bright Retail (Zhang Min)", or the name alone."""
    title = f"{company} ({name})" if company else name
    return title[:MAX_TEXT]


def occurred(envelope: dict[str, Any]) -> datetime:
    """When the event occurred, as the envelope says (an ISO string on the wire)."""
    value = envelope["occurred_at"]
    return value if isinstance(value, datetime) else datetime.fromisoformat(value)
