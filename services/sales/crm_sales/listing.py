"""The sales service's lists (crm_runtime.listing): opportunities, by status, stage, owner and customer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm_contracts.vocabulary.sales import CLOSED_STAGES
from crm_runtime.listing import Listing, ListingKind
from crm_sales.domain import Opportunity

#: What `list_opportunities` filters on. `status` is "open", "won" or "lost" (the stage, with every
#: open stage counted as "open"); status, owner and customer are indexed columns, the rest doc keys.
OPPORTUNITY_FILTERS = ("status", "stage", "owner", "customer_id", "lead_id", "currency")


def opportunity_columns(opportunity: Opportunity) -> dict[str, Any]:
    status = opportunity.stage if opportunity.stage in CLOSED_STAGES else "open"
    return {"customer_id": opportunity.customer_id, "status": status, "owner": opportunity.owner}


def sales_listing(opportunity_view: Callable[[Opportunity], dict[str, Any]]) -> Listing:
    """The lists of the `sales` schema; items are `opportunity_view`'s answer (what `get_opportunity` returns)."""
    return Listing("sales", {
        Opportunity: ListingKind("opportunities", opportunity_view, opportunity_columns, OPPORTUNITY_FILTERS),
    })
