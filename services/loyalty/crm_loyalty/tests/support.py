"""Builders shared by the loyalty tests: a small programme, an enrolled account, replay from events."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from crm_loyalty.domain import Account, Programme, Tier, TierBenefit

T0 = datetime(2026, 1, 1, 9, 0, tzinfo=UTC)

#: Small numbers so a few orders move tiers: silver from 1,000, gold from 5,000, platinum from 20,000;
#: spend counts for 30 days, points are valid for 60.
PROGRAMME = Programme(
    currency="CNY",
    tiers=(
        Tier("bronze", Decimal("0"), Decimal("1")),
        Tier("silver", Decimal("1000"), Decimal("1.25")),
        Tier("gold", Decimal("5000"), Decimal("1.5")),
        Tier("platinum", Decimal("20000"), Decimal("2")),
    ),
    spend_window=timedelta(days=30),
    points_valid_for=timedelta(days=60),
    tier_benefits=(
        TierBenefit("silver", "financial", "discount", "5% off every order"),
        TierBenefit("gold", "social", "personal_advisor", "a named advisor"),
        TierBenefit("platinum", "structural", "dedicated_account_manager", "a dedicated account manager"),
    ),
)


def days(n: float) -> timedelta:
    """`n` days, for reading times as T0 + days(30)."""
    return timedelta(days=n)


def an_account(customer_id: UUID | None = None, at: datetime = T0) -> Account:
    """An account enrolled at `at` in PROGRAMME, its enrolment event already collected."""
    account = Account.enrol(customer_id or uuid4(), PROGRAMME, at)
    account.collect_events()
    return account


def state(account: Account) -> dict[str, Any]:
    """What an account knows, for comparing two accounts."""
    return {
        name: getattr(account, name)
        for name in ("id", "version", "customer_id", "currency", "tier", "lots", "spends", "earned_orders",
                     "redemptions", "benefits", "points_earned", "points_redeemed", "points_expired",
                     "earnings", "points_taken_back", "points_owed")
    }


def replay(events: list[Any]) -> Account:
    """The account rebuilt from its events alone."""
    account = None
    for domain_event in events:
        account = domain_event.mutate(account)
    assert account is not None
    return account
