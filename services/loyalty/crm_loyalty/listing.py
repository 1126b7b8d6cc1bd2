"""The loyalty service's lists (crm_runtime.listing): accounts, by tier and customer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from crm_loyalty.domain import Account
from crm_runtime.listing import Listing, ListingKind

#: What `list_accounts` filters on: the customer (an indexed column) and doc keys.
ACCOUNT_FILTERS = ("tier", "customer_id", "currency")


def account_columns(account: Account) -> dict[str, Any]:
    return {"customer_id": account.customer_id}


def loyalty_listing(account_view: Callable[[Account], dict[str, Any]]) -> Listing:
    """The lists of the `loyalty` schema; items are `account_view`'s answer (what `get` returns)."""
    return Listing("loyalty", {Account: ListingKind("accounts", account_view, account_columns, ACCOUNT_FILTERS)})
