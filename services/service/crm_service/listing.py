"""The service (after-sales) context's lists (crm_runtime.listing): cases and FAQ articles."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm_runtime.listing import Listing, ListingKind
from crm_service.domain import Case, FaqArticle

#: What `list_cases` filters on: status, customer and the assigned agent (indexed columns; `agent`
#: is the `owner` column) and doc keys. `status` is open, resolved or closed.
CASE_FILTERS = ("status", "customer_id", "agent", "priority", "department", "channel", "group", "escalated_to",
                "complaint_stage", "complaint_category")
#: What `list_faqs` filters on: status (an indexed column) and department (a doc key).
FAQ_FILTERS = ("status", "department")


def case_columns(case: Case) -> dict[str, Any]:
    return {"customer_id": case.customer_id, "status": case.status, "owner": case.agent}


def faq_columns(article: FaqArticle) -> dict[str, Any]:
    return {"status": article.status}


def service_listing(
    case_view: Callable[[Case], dict[str, Any]], faq_view: Callable[[FaqArticle], dict[str, Any]]
) -> Listing:
    """The lists of the `service` schema; items are the views' answers (what `get_case`/`get_faq` return)."""
    return Listing("service", {
        Case: ListingKind("cases", case_view, case_columns, CASE_FILTERS, aliases={"agent": "owner"}),
        FaqArticle: ListingKind("faqs", faq_view, faq_columns, FAQ_FILTERS),
    })
