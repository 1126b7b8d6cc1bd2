"""LoyaltyAccounts on a real event store: the same suite on the in-memory store and on PostgreSQL."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from crm_contracts.errors import StaleVersionError
from crm_loyalty.domain import Account, AccountNotFoundError, AlreadyEnrolledError, InsufficientPointsError
from crm_loyalty.tests.support import T0, days


@pytest.fixture
def customer_id(accounts) -> UUID:
    """A customer enrolled at T0."""
    customer = uuid4()
    accounts.enrol(customer, T0)
    return customer


def test_enrol_then_load(accounts, customer_id):
    account = accounts.account(customer_id)
    assert (account.customer_id, account.tier, account.balance, account.version) == (customer_id, "bronze", 0, 1)


def test_enrolling_twice_is_a_conflict(accounts, customer_id):
    with pytest.raises(AlreadyEnrolledError) as raised:
        accounts.enrol(customer_id, T0 + days(1))
    assert raised.value.details == {"customer_id": str(customer_id)}
    assert accounts.account(customer_id).version == 1


def test_concurrent_enrolments_of_one_customer_leave_exactly_one_account(accounts):
    customer = uuid4()

    def enrol(i: int) -> bool:
        try:
            accounts.enrol(customer, T0 + days(i))
        except AlreadyEnrolledError:
            return False
        return True

    with ThreadPoolExecutor(8) as pool:
        assert sum(pool.map(enrol, range(8))) == 1
    assert accounts.account(customer).version == 1


def test_the_same_order_paid_twice_earns_once(accounts, customer_id):
    order_id = uuid4()
    first = accounts.earn(customer_id, order_id, Decimal("800.00"), "CNY", T0, now=T0)
    again = accounts.earn(customer_id, order_id, Decimal("800.00"), "CNY", T0, now=T0 + days(1))
    loaded = accounts.account(customer_id)
    assert (first.version, again.version, loaded.version) == (2, 2, 2)
    assert loaded.balance == loaded.points_earned == 800


def test_earning_across_a_threshold_moves_the_tier_and_grants_its_benefit(accounts, customer_id):
    accounts.earn(customer_id, uuid4(), Decimal("1200.00"), "CNY", T0, now=T0)
    account = accounts.earn(customer_id, uuid4(), Decimal("100.00"), "CNY", T0 + days(1), now=T0 + days(1))
    loaded = accounts.account(customer_id)
    assert (loaded.tier, loaded.balance, loaded.version) == ("silver", 1200 + 125, account.version)
    assert [(b["level"], b["kind"]) for b in loaded.benefits] == [("financial", "discount")]


def test_redeeming_takes_oldest_points_first_and_never_goes_below_zero(accounts, customer_id):
    older, newer = uuid4(), uuid4()
    accounts.earn(customer_id, older, Decimal("200.00"), "CNY", T0, now=T0)
    accounts.earn(customer_id, newer, Decimal("300.00"), "CNY", T0 + days(1), now=T0 + days(1))
    with pytest.raises(InsufficientPointsError) as raised:
        accounts.redeem(customer_id, "TV", 501, now=T0 + days(2))
    assert raised.value.details["available_points"] == 500
    account, redemption_id = accounts.redeem(customer_id, "MUG", 250, now=T0 + days(2))
    loaded = accounts.account(customer_id)
    assert loaded.version == account.version == 4
    assert [(lot["order_id"], lot["remaining"]) for lot in loaded.lots] == [(older, 0), (newer, 250)]
    assert loaded.redemptions[0]["redemption_id"] == redemption_id


def test_expiry_and_review_bring_the_tier_down_with_time(accounts, customer_id):
    accounts.earn(customer_id, uuid4(), Decimal("6000.00"), "CNY", T0, now=T0)
    assert accounts.review_tier(customer_id, now=T0 + days(31)).tier == "bronze"
    account = accounts.expire(customer_id, now=T0 + days(60))
    loaded = accounts.account(customer_id)
    assert (loaded.balance, loaded.points_expired, loaded.tier) == (0, 6000, "bronze")
    assert loaded.version == account.version
    assert loaded.lots[0]["expired"] == 6000


def test_granting_a_benefit_is_kept(accounts, customer_id):
    _, benefit_id = accounts.grant_benefit(
        customer_id, "structural", "system_integration", "EDI link to the customer's ERP", now=T0
    )
    (benefit,) = accounts.account(customer_id).benefits
    assert (benefit["benefit_id"], benefit["level"], benefit["granted_at"]) == (benefit_id, "structural", T0)


def test_a_redemption_repeated_under_its_command_id_spends_the_points_once(accounts, customer_id):
    accounts.earn(customer_id, uuid4(), Decimal("300.00"), "CNY", T0, now=T0)
    first, redemption_id = accounts.redeem(customer_id, "MUG", 250, now=T0, expected_version=2, command_id="k:1")
    # The retry carries the version its caller saw before the first run: it still answers that run.
    again, again_id = accounts.redeem(customer_id, "MUG", 250, now=T0, expected_version=2, command_id="k:1")
    assert again_id == redemption_id == Account.id_for_redemption("k:1")
    loaded = accounts.account(customer_id)
    assert (loaded.balance, loaded.version, len(loaded.redemptions)) == (50, first.version, 1)


def test_a_racing_delivery_of_a_redemption_finds_its_entry_and_spends_nothing_more(accounts, customer_id):
    accounts.earn(customer_id, uuid4(), Decimal("300.00"), "CNY", T0, now=T0)
    winner = accounts.account(customer_id)
    winner.redeem(accounts.programme, "MUG", 250, T0, Account.id_for_redemption("k:1"))
    accounts.save(winner)  # stored without the command's marker: this delivery will run the command again
    account, redemption_id = accounts.redeem(customer_id, "MUG", 250, now=T0, command_id="k:1")
    assert redemption_id == Account.id_for_redemption("k:1")
    assert (account.balance, len(account.redemptions)) == (50, 1)


def test_a_benefit_grant_repeated_under_its_command_id_grants_once(accounts, customer_id):
    _, benefit_id = accounts.grant_benefit(customer_id, "social", "personal_call", "call", now=T0, command_id="k:1")
    _, again_id = accounts.grant_benefit(customer_id, "social", "personal_call", "call", now=T0, command_id="k:1")
    assert again_id == benefit_id == Account.id_for_benefit("k:1")
    assert len(accounts.account(customer_id).benefits) == 1


def test_a_stale_expected_version_changes_nothing(accounts, customer_id):
    accounts.earn(customer_id, uuid4(), Decimal("300.00"), "CNY", T0, now=T0, expected_version=1)
    with pytest.raises(StaleVersionError) as raised:
        accounts.redeem(customer_id, "MUG", 100, now=T0, expected_version=1)
    assert raised.value.details == {"current_version": 2}
    assert accounts.account(customer_id).balance == 300


def test_concurrent_earns_on_one_account_lose_races_as_stale_versions_and_count_once_retried(accounts, customer_id):
    def earn(order_id: UUID) -> None:
        while True:  # what a handler does with a stale version: reload and retry
            try:
                accounts.earn(customer_id, order_id, Decimal("100.00"), "CNY", T0, now=T0)
                return
            except StaleVersionError:
                continue

    order_ids = [uuid4() for _ in range(8)]
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(earn, order_ids + order_ids))  # each order paid twice, concurrently
    account = accounts.account(customer_id)
    assert account.balance == 800 and set(account.earned_orders) == set(order_ids)
    assert account.version == 1 + 8


def test_an_unknown_customer_has_no_account(accounts):
    with pytest.raises(AccountNotFoundError):
        accounts.earn(uuid4(), uuid4(), Decimal("10.00"), "CNY", T0, now=T0)
