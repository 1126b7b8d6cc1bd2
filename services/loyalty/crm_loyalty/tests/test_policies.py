"""The loyalty service's policies, driven through a PolicyInbox with contract-shaped envelopes, on the
in-memory store and on PostgreSQL: a paid order earns once (in any currency); a cancellation after
payment and a return each take their points back once, what was spent becoming a debt."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from crm_loyalty.application import LoyaltyAccounts
from crm_loyalty.policies import policies
from crm_loyalty.tests.conftest import SmallProgrammeAccounts
from crm_runtime.policy import PolicyInbox
from tests.support.envelopes import Stream, payload


@pytest.fixture
def accounts(event_store_env: dict[str, str]) -> Iterator[LoyaltyAccounts]:
    """The loyalty application (small test programme) on a fresh store, closed afterwards."""
    app = SmallProgrammeAccounts(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def inbox(accounts: LoyaltyAccounts) -> PolicyInbox:
    return PolicyInbox(accounts, policies, fetch=None)


def paid(customer_id: UUID, order_id: UUID, amount: str = "1000.00", currency: str = "CNY") -> dict:
    return payload("order_paid", customer_id=customer_id, order_id=order_id, amount=amount, currency=currency)


def test_a_paid_order_earns_once_even_when_delivered_twice(accounts: LoyaltyAccounts, inbox: PolicyInbox) -> None:
    customer_id, order_id = uuid4(), uuid4()
    event = Stream("order").publish("order_paid", paid(customer_id, order_id, "100.00", "USD"))
    assert inbox.receive([event]).applied == 1
    assert inbox.receive([event]).duplicates == 1
    account = accounts.account(customer_id)
    assert (account.points_earned, account.balance) == (710, 710)  # 100 USD at the programme's 7.10


def test_a_return_takes_back_its_points_once_and_spent_points_become_a_debt(
    accounts: LoyaltyAccounts, inbox: PolicyInbox
) -> None:
    customer_id, order_id = uuid4(), uuid4()
    orders = Stream("order")
    inbox.receive([orders.publish("order_paid", paid(customer_id, order_id, "800.00"))])
    accounts.redeem(customer_id, "VOUCHER", 700, now=accounts.account(customer_id).enrolled_at)
    returned = orders.publish("order_return_recorded", payload(
        "order_return_recorded", customer_id=customer_id, order_id=order_id, return_id="RMA-1", refund="400.00",
        currency="CNY"))
    outcome = inbox.receive([returned, returned])
    assert (outcome.applied, outcome.duplicates, outcome.failed) == (1, 1, [])
    account = accounts.account(customer_id)
    assert (account.balance, account.points_owed, account.points_taken_back) == (0, 300, 100)

    # The same return again, under another event (a resent return id): nothing more is taken.
    resent = orders.publish("order_return_recorded", returned["payload"])
    assert inbox.receive([resent]).applied == 1
    assert accounts.account(customer_id).points_owed == 300

    # The next order's points settle the debt first.
    inbox.receive([orders.publish("order_paid", paid(customer_id, uuid4(), "500.00"))])
    account = accounts.account(customer_id)
    assert (account.balance, account.points_owed) == (200, 0)


def test_a_cancellation_after_payment_takes_back_every_point_of_the_order(
    accounts: LoyaltyAccounts, inbox: PolicyInbox
) -> None:
    customer_id, order_id, other_order = uuid4(), uuid4(), uuid4()
    orders = Stream("order")
    refunded = payload("order_refunded", customer_id=customer_id, order_id=order_id, amount="600.00",
                       refunded_total="600.00")
    events = [
        orders.publish("order_paid", paid(customer_id, other_order, "300.00")),
        orders.publish("order_paid", paid(customer_id, order_id, "600.00")),
        orders.publish("order_refunded", refunded),
    ]
    assert inbox.receive(events + events).applied == 3
    account = accounts.account(customer_id)
    assert (account.points_earned, account.points_taken_back, account.balance) == (900, 600, 300)
    assert accounts.tracked_position("order") == 3


def test_a_refund_for_a_customer_without_an_account_changes_nothing(
    accounts: LoyaltyAccounts, inbox: PolicyInbox
) -> None:
    refunded = Stream("order").publish("order_refunded", payload("order_refunded", customer_id=uuid4()))
    assert inbox.receive([refunded]).applied == 1
    assert accounts.tracked_position("order") == 1


def test_exchange_rates_come_from_the_environment(event_store_env: dict[str, str]) -> None:
    app = LoyaltyAccounts(env={**event_store_env, "LOYALTY_EXCHANGE_RATES": "USD=7.00, XAF=0.012"})
    try:
        assert (app.programme.rate_of("USD"), app.programme.rate_of("XAF")) == (Decimal("7.00"), Decimal("0.012"))
        assert app.programme.rate_of("EUR") == Decimal("7.70")  # the rest of the default table stays
    finally:
        app.close()
