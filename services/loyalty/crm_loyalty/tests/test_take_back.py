"""Orders in other currencies earn at the programme's exchange table; a refund or a return takes the
points of its share of the order back: available points at once, spent ones as a debt that the next
earnings settle; the balance never goes below zero. Pure domain."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from crm_loyalty.domain import Account, InvalidLoyaltyDataError, Programme, ProgrammeConfigurationError
from crm_loyalty.tests.support import PROGRAMME, T0, an_account, days, replay, state


def test_an_order_in_another_currency_earns_on_its_converted_amount():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("100.00"), "USD", T0, T0)  # 100 USD x 7.10 = 710.00 CNY
    (earned,) = account.collect_events()
    assert (earned.points, earned.programme_amount, earned.exchange_rate) == (710, Decimal("710.00"), Decimal("7.10"))
    assert account.spends[0]["amount"] == Decimal("710.00")  # the tier counts spend in the programme currency


def test_the_exchange_table_is_configurable_and_checked():
    programme = Programme(exchange_rates={"USD": Decimal("7.00")})
    assert programme.convert(Decimal("10.005"), "USD") == Decimal("70.04")
    with pytest.raises(InvalidLoyaltyDataError):
        programme.convert(Decimal("1.00"), "EUR")
    with pytest.raises(ProgrammeConfigurationError):
        Programme(exchange_rates={"USD": Decimal("0")})
    with pytest.raises(ProgrammeConfigurationError):
        Programme(exchange_rates={"CNY": Decimal("2")})


def test_a_full_refund_takes_back_every_point_of_the_order_at_once():
    account = an_account()
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("500.00"), "CNY", T0, T0)
    account.collect_events()
    assert account.take_back(PROGRAMME, order_id, "cancellation", Decimal("500.00"), "CNY", T0 + days(1)) is True
    (taken,) = account.collect_events()
    assert (taken.points, taken.owed, taken.balance, account.balance, account.points_owed) == (500, 0, 0, 0, 0)
    assert account.spends[0]["amount"] == Decimal("0.00")
    # once per refund: the same cancellation again changes nothing
    assert account.take_back(PROGRAMME, order_id, "cancellation", Decimal("500.00"), "CNY", T0 + days(2)) is False
    assert account.collect_events() == []


def test_spent_points_become_a_debt_settled_from_the_next_earnings():
    account = an_account()
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("400.00"), "CNY", T0, T0)
    account.earn(PROGRAMME, uuid4(), Decimal("100.00"), "CNY", T0 + days(1), T0 + days(1))
    account.redeem(PROGRAMME, "VOUCHER", 450, T0 + days(2))  # 50 of the 500 points left
    account.collect_events()
    account.take_back(PROGRAMME, order_id, "return:RMA-1", Decimal("400.00"), "CNY", T0 + days(3))
    (taken,) = account.collect_events()
    assert (taken.points, [lot["points"] for lot in taken.lots], taken.owed) == (400, [50], 350)
    assert (account.balance, account.points_owed) == (0, 350)  # never below zero: the rest is owed
    account.earn(PROGRAMME, uuid4(), Decimal("300.00"), "CNY", T0 + days(4), T0 + days(4))
    (earned,) = [e for e in account.collect_events() if type(e).__name__ == "PointsEarned"]
    assert (earned.points, earned.debt_settled, earned.balance) == (300, 300, 0)
    account.earn(PROGRAMME, uuid4(), Decimal("100.00"), "CNY", T0 + days(5), T0 + days(5))
    assert (account.balance, account.points_owed) == (50, 0)
    assert account.balance == (account.points_earned - account.points_redeemed - account.points_expired
                               - account.points_taken_back)


def test_partial_refunds_take_back_their_share_and_add_up_to_the_whole():
    account = an_account()
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("999.00"), "CNY", T0, T0)  # 999 points
    for index, refund in enumerate(["333.33", "333.33", "332.34"]):
        account.take_back(PROGRAMME, order_id, f"return:R{index}", Decimal(refund), "CNY", T0 + days(1))
    taken = [e.points for e in account.collect_events() if type(e).__name__ == "PointsTakenBack"]
    assert taken == [333, 333, 333] and account.balance == 0


def test_a_refund_of_an_order_that_earned_nothing_here_takes_nothing():
    account = an_account()
    assert account.take_back(PROGRAMME, uuid4(), "cancellation", Decimal("10.00"), "CNY", T0) is False
    assert account.collect_events() == []


def test_taking_back_replays_to_the_same_account():
    account = Account.enrol(uuid4(), PROGRAMME, T0)
    events = list(account.collect_events())
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("100.00"), "EUR", T0, T0)
    account.redeem(PROGRAMME, "VOUCHER", 700, T0 + days(1))
    account.take_back(PROGRAMME, order_id, "cancellation", Decimal("100.00"), "EUR", T0 + days(2))
    account.earn(PROGRAMME, uuid4(), Decimal("1000.00"), "CNY", T0 + days(3), T0 + days(3))
    events += account.collect_events()
    rebuilt = replay(events)
    assert state(rebuilt) == state(account)
    assert (rebuilt.points_owed, rebuilt.points_taken_back) == (account.points_owed, account.points_taken_back)


def test_a_refund_in_another_currency_than_the_order_is_refused():
    account = an_account()
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("100.00"), "CNY", T0, T0)
    with pytest.raises(InvalidLoyaltyDataError):
        account.take_back(PROGRAMME, order_id, "cancellation", Decimal("100.00"), "USD", T0)
