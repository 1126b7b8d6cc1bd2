"""The marketing service's lists (crm_runtime.listing): campaigns by status; leads by status,
campaign, grade and customer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm_marketing.domain import Campaign, Lead
from crm_runtime.listing import Listing, ListingKind

#: What `list_campaigns` filters on: status (an indexed column) and doc keys.
CAMPAIGN_FILTERS = ("status", "currency")
#: What `list_leads` filters on: status and customer (indexed columns; a lead has a customer once
#: converted or linked) and doc keys.
LEAD_FILTERS = ("status", "campaign_id", "grade", "customer_id", "channel")


def campaign_columns(campaign: Campaign) -> dict[str, Any]:
    return {"status": campaign.status}


def lead_columns(lead: Lead) -> dict[str, Any]:
    return {"status": lead.status, "customer_id": lead.customer_id}


def marketing_listing(
    campaign_view: Callable[[Campaign], dict[str, Any]], lead_view: Callable[[Lead], dict[str, Any]]
) -> Listing:
    """The lists of the `marketing` schema; items are the views' answers (what `get_campaign`/`get_lead` return)."""
    return Listing("marketing", {
        Campaign: ListingKind("campaigns", campaign_view, campaign_columns, CAMPAIGN_FILTERS),
        Lead: ListingKind("leads", lead_view, lead_columns, LEAD_FILTERS),
    })
