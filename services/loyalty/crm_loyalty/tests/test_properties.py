"""Property tests: random earn/redeem/expire/review sequences never break an account's invariants.

Pure domain, no store: hypothesis drives the Account aggregate beside a plain model of lots and spend.
After every step the balance is never negative and equals earned - redeemed - expired; redemption
and expiry take the oldest points first (the lots match the model's); the tier is the one the
rolling spend implies; the account is rebuilt identically from its events.
"""

from __future__ import annotations

import bisect
from datetime import datetime
from decimal import Decimal
from typing import Any
from uuid import UUID, uuid4

from hypothesis import given
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from crm_loyalty.domain import Account, InsufficientPointsError, OrderAlreadyEarnedError
from crm_loyalty.tests.support import PROGRAMME, T0, days, replay, state

CENTS = st.integers(min_value=0, max_value=1_200_000).map(lambda cents: Decimal(cents).scaleb(-2))


class AccountLifecycle(RuleBasedStateMachine):
    """Time passes; orders are paid (some delivered late, some twice); points are redeemed and expire."""

    def __init__(self) -> None:
        super().__init__()
        self.now = T0
        self.account = Account.enrol(uuid4(), PROGRAMME, T0)
        self.events: list[Any] = list(self.account.collect_events())
        self.order_ids = [uuid4() for _ in range(10)]
        # The model: lots oldest first as [earned_at, remaining], spend as (paid_at, amount).
        self.lots: list[list[Any]] = []
        self.spends: list[tuple[datetime, Decimal]] = []
        self.earned: dict[UUID, Decimal] = {}
        self.evaluated_at = T0

    # --- the model ---

    def model_spend(self, at: datetime) -> Decimal:
        return sum((amount for paid_at, amount in self.spends if at - PROGRAMME.spend_window < paid_at <= at),
                   Decimal(0))

    def model_available(self, at: datetime) -> int:
        return sum(remaining for earned_at, remaining in self.lots if earned_at + PROGRAMME.points_valid_for > at)

    def model_expire(self, at: datetime) -> None:
        for lot in self.lots:
            if lot[0] + PROGRAMME.points_valid_for <= at:
                lot[1] = 0

    def collect(self) -> list[Any]:
        new = list(self.account.collect_events())
        self.events.extend(new)
        return new

    # --- rules ---

    @rule(n=st.integers(min_value=0, max_value=20))
    def time_passes(self, n: int) -> None:
        self.now += days(n)

    @rule(index=st.integers(min_value=0, max_value=9), amount=CENTS, lag=st.integers(min_value=0, max_value=70),
          resend=st.booleans())
    def earn(self, index: int, amount: Decimal, lag: int, resend: bool) -> None:
        order_id = self.order_ids[index]
        if resend and order_id in self.earned:
            amount = self.earned[order_id]  # the order service delivering order_paid again
        paid_at = self.now - days(lag)
        if order_id in self.earned and self.earned[order_id] != amount:
            version = self.account.version
            try:
                self.account.earn(PROGRAMME, order_id, amount, "CNY", paid_at, self.now)
            except OrderAlreadyEarnedError:
                assert self.account.version == version
                return
            raise AssertionError("a second amount for one order was accepted")
        first = order_id not in self.earned
        rate_tier = PROGRAMME.tier_for(self.model_spend(self.now))
        assert self.account.earn(PROGRAMME, order_id, amount, "CNY", paid_at, self.now) is first
        new = self.collect()
        if not first:
            assert new == []
            return
        self.earned[order_id] = amount
        self.spends.append((paid_at, amount))
        points = PROGRAMME.points_for(amount, rate_tier)
        assert new[0].points == points
        if points:
            keys = [lot[0] for lot in self.lots]
            self.lots.insert(bisect.bisect_right(keys, paid_at), [paid_at, points])
        self.evaluated_at = self.now

    @rule(points=st.integers(min_value=1, max_value=30_000))
    def redeem(self, points: int) -> None:
        available = self.model_available(self.now)
        if points > available:
            before = state(self.account)
            try:
                self.account.redeem(PROGRAMME, "REWARD", points, self.now)
            except InsufficientPointsError as error:
                assert error.details["available_points"] == available
                assert state(self.account) == before and self.collect() == []
                return
            raise AssertionError("redeemed more than was available")
        self.account.redeem(PROGRAMME, "REWARD", points, self.now)
        self.model_expire(self.now)
        left = points
        for lot in self.lots:  # oldest first
            taken = min(lot[1], left)
            lot[1] -= taken
            left -= taken
        self.check_expiry_events(self.collect())
        self.evaluated_at = self.now

    @rule()
    def expire(self) -> None:
        due = sum(remaining for earned_at, remaining in self.lots
                  if earned_at + PROGRAMME.points_valid_for <= self.now)
        assert self.account.expire(PROGRAMME, self.now) == due
        self.model_expire(self.now)
        self.check_expiry_events(self.collect())
        self.evaluated_at = self.now

    @rule()
    def review(self) -> None:
        self.account.review_tier(PROGRAMME, self.now)
        assert all(type(e).__name__ in {"TierChanged", "BenefitGranted"} for e in self.collect())
        self.evaluated_at = self.now

    def check_expiry_events(self, new: list[Any]) -> None:
        """Every lot an expiry took is older than every lot still holding points after it."""
        for domain_event in new:
            if isinstance(domain_event, Account.PointsExpired):
                newest_expired = max(lot["earned_at"] for lot in domain_event.lots)
                assert all(newest_expired < lot["earned_at"] for lot in self.account.lots if lot["remaining"] > 0)

    # --- invariants ---

    @invariant()
    def balance_is_never_negative_and_adds_up(self) -> None:
        account = self.account
        assert account.balance >= 0
        assert all(lot["remaining"] >= 0 for lot in account.lots)
        assert account.balance == account.points_earned - account.points_redeemed - account.points_expired
        by_kind: dict[str, int] = {"PointsEarned": 0, "PointsRedeemed": 0, "PointsExpired": 0}
        for domain_event in self.events:
            if type(domain_event).__name__ in by_kind:
                by_kind[type(domain_event).__name__] += domain_event.points
        assert account.balance == by_kind["PointsEarned"] - by_kind["PointsRedeemed"] - by_kind["PointsExpired"]

    @invariant()
    def points_are_taken_oldest_first(self) -> None:
        assert [[lot["earned_at"], lot["remaining"]] for lot in self.account.lots] == self.lots

    @invariant()
    def the_tier_is_the_one_the_rolling_spend_implies(self) -> None:
        assert self.account.tier == PROGRAMME.tier_for(self.model_spend(self.evaluated_at)).name

    @invariant()
    def the_events_rebuild_the_account(self) -> None:
        assert state(replay(self.events)) == state(self.account)


TestAccountLifecycle = AccountLifecycle.TestCase


@given(st.lists(CENTS, max_size=30), st.lists(st.integers(min_value=1, max_value=20_000), max_size=30))
def test_redeeming_in_any_order_never_takes_the_balance_below_zero(amounts, redemptions):
    account = Account.enrol(uuid4(), PROGRAMME, T0)
    for amount in amounts:
        account.earn(PROGRAMME, uuid4(), amount, "CNY", T0, T0)
    for points in redemptions:
        held = account.balance
        try:
            account.redeem(PROGRAMME, "REWARD", points, T0 + days(1))
        except InsufficientPointsError:
            assert points > held
        else:
            assert account.balance == held - points
        assert account.balance >= 0


@given(CENTS, CENTS)
def test_more_spend_never_means_a_lower_tier_or_fewer_points(low, high):
    low, high = min(low, high), max(low, high)
    assert PROGRAMME.rank(PROGRAMME.tier_for(low).name) <= PROGRAMME.rank(PROGRAMME.tier_for(high).name)
    for tier in PROGRAMME.tiers:
        assert 0 <= PROGRAMME.points_for(low, tier) <= PROGRAMME.points_for(high, tier)


ORDERS = 6
STEP = st.one_of(
    st.tuples(st.just("earn"), st.integers(0, ORDERS - 1), CENTS, st.sampled_from(["CNY", "USD", "EUR"])),
    st.tuples(st.just("redeem"), st.integers(1, 30_000)),
    st.tuples(st.just("refund"), st.integers(0, ORDERS - 1), st.integers(0, 100), st.integers(0, 2)),
    st.tuples(st.just("wait"), st.integers(0, 40)),
)


@given(st.lists(STEP, max_size=40))
def test_taking_points_back_never_shows_a_negative_balance_and_owes_the_rest(steps):
    """Earnings (in several currencies), redemptions, refunds (some resent) and time in any order: the
    balance never goes below zero and adds up; each order loses at most the points it earned, exactly
    all of them once fully refunded; what could not be taken is owed until earnings settle it; the
    events rebuild the account."""
    account = Account.enrol(uuid4(), PROGRAMME, T0)
    events: list[Any] = list(account.collect_events())
    order_ids = [uuid4() for _ in range(ORDERS)]
    paid: dict[UUID, tuple[Decimal, str]] = {}
    refunded: dict[UUID, Decimal] = {}
    now = T0
    for step in steps:
        if step[0] == "earn" and order_ids[step[1]] not in paid:
            order_id, amount, currency = order_ids[step[1]], step[2], step[3]
            account.earn(PROGRAMME, order_id, amount, currency, now, now)
            paid[order_id] = (amount, currency)
        elif step[0] == "redeem" and step[1] <= account.available(now):
            account.redeem(PROGRAMME, "REWARD", step[1], now)
        elif step[0] == "refund" and order_ids[step[1]] in paid:
            order_id = order_ids[step[1]]
            amount, currency = paid[order_id]
            refund = (amount * step[2] / 100).quantize(Decimal("0.01"))
            reversal = f"return:{step[3]}"
            first = reversal not in account.earnings[order_id]["reversals"]
            account.take_back(PROGRAMME, order_id, reversal, refund, currency, now)
            if first:
                refunded[order_id] = min(refunded.get(order_id, Decimal(0)) + refund, amount)
        elif step[0] == "wait":
            now += days(step[1])
        events.extend(account.collect_events())
        assert account.balance >= 0 and account.points_owed >= 0
        assert all(lot["remaining"] >= 0 for lot in account.lots)
        assert account.balance == (account.points_earned - account.points_redeemed - account.points_expired
                                   - account.points_taken_back)
        for order_id, earning in account.earnings.items():
            assert 0 <= earning["taken_back"] <= earning["points"]
            if refunded.get(order_id) == paid[order_id][0]:
                assert earning["taken_back"] == earning["points"]
    taken = sum(e.points for e in events if isinstance(e, Account.PointsTakenBack))
    settled = sum(getattr(e, "debt_settled", 0) for e in events if isinstance(e, Account.PointsEarned))
    assert account.points_owed == taken - (account.points_taken_back - settled) - settled
    assert state(replay(events)) == state(account)
