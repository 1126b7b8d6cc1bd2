"""The Account aggregate and the Programme, alone: no store, no broker."""

from __future__ import annotations

from datetime import datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_loyalty.domain import (
    Account,
    DuplicateEntryError,
    InsufficientPointsError,
    InvalidLoyaltyDataError,
    OrderAlreadyEarnedError,
    Programme,
    ProgrammeConfigurationError,
    Tier,
    TierBenefit,
)
from crm_loyalty.tests.support import PROGRAMME, T0, an_account, days, replay, state


def event_names(account: Account) -> list[str]:
    return [type(e).__name__ for e in account.collect_events()]


def test_enrolling_opens_the_account_in_the_entry_tier_under_an_id_derived_from_the_customer():
    customer_id = uuid4()
    account = Account.enrol(customer_id, PROGRAMME, T0)
    assert account.id == Account.id_for(customer_id) != Account.id_for(uuid4())
    assert (account.tier, account.currency, account.balance, account.enrolled_at) == ("bronze", "CNY", 0, T0)
    assert event_names(account) == ["Enrolled"]


def test_times_must_carry_a_timezone():
    with pytest.raises(InvalidLoyaltyDataError) as raised:
        Account.enrol(uuid4(), PROGRAMME, datetime(2026, 1, 1))
    assert "enrolled_at" in raised.value.details["fields"]
    with pytest.raises(InvalidLoyaltyDataError):
        an_account().earn(PROGRAMME, uuid4(), Decimal("10.00"), "CNY", datetime(2026, 1, 1), T0)


def test_earning_gives_whole_points_at_the_tier_rate_in_a_lot_that_expires():
    account = an_account()
    order_id = uuid4()
    assert account.earn(PROGRAMME, order_id, Decimal("99.99"), "CNY", T0, T0) is True
    (earned,) = account.collect_events()
    assert (earned.points, earned.tier, earned.points_per_unit, earned.balance) == (99, "bronze", Decimal("1"), 99)
    assert account.lots == [
        {"order_id": order_id, "earned_at": T0, "expires_at": T0 + days(60), "points": 99, "remaining": 99,
         "redeemed": 0, "expired": 0, "taken_back": 0}
    ]


def test_the_same_order_earns_once():
    account = an_account()
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("300.00"), "CNY", T0, T0)
    account.collect_events()
    assert account.earn(PROGRAMME, order_id, Decimal("300.00"), "CNY", T0, T0 + days(1)) is False
    assert account.collect_events() == []
    assert (account.balance, account.points_earned) == (300, 300)


def test_the_same_order_with_another_amount_is_a_conflict():
    account = an_account()
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("300.00"), "CNY", T0, T0)
    with pytest.raises(OrderAlreadyEarnedError) as raised:
        account.earn(PROGRAMME, order_id, Decimal("301.00"), "CNY", T0, T0)
    assert raised.value.details == {"order_id": str(order_id), "earned_amount": "300.00"}


@pytest.mark.parametrize(
    ("amount", "currency", "field"),
    [(Decimal("-1.00"), "CNY", "amount"), (Decimal("10.00"), "XAF", "currency")],  # XAF: no rate in the programme
)
def test_earning_with_bad_input_names_the_field_and_changes_nothing(amount, currency, field):
    account = an_account()
    with pytest.raises(InvalidLoyaltyDataError) as raised:
        account.earn(PROGRAMME, uuid4(), amount, currency, T0, T0)
    assert field in raised.value.details["fields"]
    assert account.collect_events() == [] and account.balance == 0


def test_a_zero_amount_earns_nothing_but_still_counts_as_earned():
    account = an_account()
    order_id = uuid4()
    account.earn(PROGRAMME, order_id, Decimal("0.00"), "CNY", T0, T0)
    assert account.lots == [] and account.earned_orders == {order_id: Decimal("0.00")}
    assert account.earn(PROGRAMME, order_id, Decimal("0.00"), "CNY", T0, T0) is False


def test_the_rate_is_the_tier_held_before_the_order_and_crossing_a_threshold_changes_the_tier():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("1200.00"), "CNY", T0, T0)
    first = account.collect_events()
    assert [type(e).__name__ for e in first] == ["PointsEarned", "TierChanged", "BenefitGranted"]
    earned, changed, granted = first
    assert (earned.points, earned.tier) == (1200, "bronze")
    assert (changed.from_tier, changed.to_tier, changed.direction, changed.reason) == ("bronze", "silver", "up", "earn")
    assert changed.rolling_spend == Decimal("1200.00")
    assert (granted.level, granted.kind, granted.reason) == ("financial", "discount", "reached silver tier")
    account.earn(PROGRAMME, uuid4(), Decimal("100.00"), "CNY", T0 + days(1), T0 + days(1))
    (second,) = account.collect_events()
    assert (second.points, second.tier, second.points_per_unit) == (125, "silver", Decimal("1.25"))


def test_a_jump_over_several_tiers_grants_the_benefits_of_each_tier_passed():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("25000.00"), "CNY", T0, T0)
    assert account.tier == "platinum"
    assert [(b["level"], b["kind"]) for b in account.benefits] == [
        ("financial", "discount"), ("social", "personal_advisor"), ("structural", "dedicated_account_manager")
    ]


def test_the_tier_falls_when_spend_ages_out_of_the_window_and_benefits_are_not_granted_twice():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("6000.00"), "CNY", T0, T0)
    assert account.tier == "gold"
    account.collect_events()
    account.review_tier(PROGRAMME, T0 + days(29))
    assert account.collect_events() == []
    account.review_tier(PROGRAMME, T0 + days(30))
    (changed,) = account.collect_events()
    assert (changed.from_tier, changed.to_tier, changed.direction) == ("gold", "bronze", "down")
    assert changed.reason == "review"
    account.earn(PROGRAMME, uuid4(), Decimal("5000.00"), "CNY", T0 + days(31), T0 + days(31))
    assert account.tier == "gold"
    assert [type(e).__name__ for e in account.collect_events()] == ["PointsEarned", "TierChanged"]
    assert len(account.benefits) == 2


def test_redeeming_consumes_the_oldest_lots_first():
    account = an_account()
    older, newer = uuid4(), uuid4()
    account.earn(PROGRAMME, newer, Decimal("300.00"), "CNY", T0 + days(2), T0 + days(2))
    account.earn(PROGRAMME, older, Decimal("200.00"), "CNY", T0, T0 + days(2))  # paid first, delivered late
    account.collect_events()
    account.redeem(PROGRAMME, "MUG", 250, T0 + days(3))
    (redeemed,) = account.collect_events()
    assert (redeemed.reward_code, redeemed.points, redeemed.balance) == ("MUG", 250, 250)
    assert [(lot["order_id"], lot["remaining"], lot["redeemed"]) for lot in account.lots] == [
        (older, 0, 200), (newer, 250, 50)
    ]


def test_redeeming_more_than_is_available_names_the_available_points_and_changes_nothing():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("300.00"), "CNY", T0, T0)
    account.collect_events()
    before = state(account)
    with pytest.raises(InsufficientPointsError) as raised:
        account.redeem(PROGRAMME, "TV", 301, T0)
    assert raised.value.details == {"available_points": 300, "requested_points": 301}
    assert "300 points available" in str(raised.value)
    assert account.collect_events() == [] and state(account) == before


def test_points_due_to_expire_cannot_be_redeemed_and_are_expired_first():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("300.00"), "CNY", T0, T0)
    account.earn(PROGRAMME, uuid4(), Decimal("100.00"), "CNY", T0 + days(10), T0 + days(10))
    account.collect_events()
    with pytest.raises(InsufficientPointsError) as raised:
        account.redeem(PROGRAMME, "TV", 101, T0 + days(60))
    assert raised.value.details["available_points"] == 100
    account.redeem(PROGRAMME, "MUG", 100, T0 + days(60))
    assert event_names(account) == ["PointsExpired", "PointsRedeemed"]
    assert account.balance == 0


@pytest.mark.parametrize(
    ("reward_code", "points"),
    [("", 10), ("   ", 10), ("X" * 65, 10), ("MUG", 0), ("MUG", -5), ("MUG", True)],
)
def test_redeeming_with_bad_input_is_refused(reward_code, points):
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("300.00"), "CNY", T0, T0)
    with pytest.raises(InvalidLoyaltyDataError):
        account.redeem(PROGRAMME, reward_code, points, T0)


def test_expiry_takes_the_due_lots_oldest_first_and_records_which():
    account = an_account()
    first, second, third = uuid4(), uuid4(), uuid4()
    account.earn(PROGRAMME, first, Decimal("100.00"), "CNY", T0, T0)
    account.earn(PROGRAMME, second, Decimal("200.00"), "CNY", T0 + days(5), T0 + days(5))
    account.earn(PROGRAMME, third, Decimal("400.00"), "CNY", T0 + days(40), T0 + days(40))
    account.redeem(PROGRAMME, "MUG", 150, T0 + days(41))
    account.collect_events()
    assert account.expire(PROGRAMME, T0 + days(59)) == 0
    assert account.collect_events() == []
    assert account.expire(PROGRAMME, T0 + days(65)) == 150
    (expired,) = account.collect_events()
    assert expired.lots == [{"order_id": second, "earned_at": T0 + days(5), "points": 150}]
    assert (expired.points, expired.balance, expired.expired_at) == (150, 400, T0 + days(65))
    assert [lot["remaining"] for lot in account.lots] == [0, 0, 400]
    assert account.balance == account.points_earned - account.points_redeemed - account.points_expired == 400


def test_expiry_also_re_evaluates_the_tier():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("1500.00"), "CNY", T0, T0)
    account.collect_events()
    account.expire(PROGRAMME, T0 + days(61))
    assert event_names(account) == ["PointsExpired", "TierChanged"]
    assert account.tier == "bronze"


@pytest.mark.parametrize(
    ("level", "kind", "description", "field"),
    [
        ("emotional", "discount", "x", "level"),
        ("social", "discount", "x", "kind"),
        ("structural", "extended_warranty", " ", "description"),
    ],
)
def test_a_benefit_names_a_retention_level_a_kind_of_that_level_and_what_it_is(level, kind, description, field):
    with pytest.raises(InvalidLoyaltyDataError) as raised:
        an_account().grant_benefit(level, kind, description, T0)
    assert field in raised.value.details["fields"]


def test_granting_a_benefit_records_it():
    account = an_account()
    benefit_id = account.grant_benefit("social", "personal_call", "call after the complaint closed", T0, "complaint")
    (granted,) = account.collect_events()
    assert (granted.benefit_id, granted.level, granted.kind, granted.reason) == (
        benefit_id, "social", "personal_call", "complaint"
    )
    assert account.has_benefit("social", "personal_call")


def test_a_redemption_the_account_already_has_is_answered_not_made_again():
    account = an_account()
    account.earn(PROGRAMME, uuid4(), Decimal("300.00"), "CNY", T0, T0)
    redemption_id = Account.id_for_redemption("client:key-1")
    assert account.redeem(PROGRAMME, "MUG", 250, T0, redemption_id) == redemption_id
    account.collect_events()
    # Checked before the balance: only 50 points are left, the repeat still answers the first redemption.
    assert account.redeem(PROGRAMME, " MUG ", 250, T0 + days(1), redemption_id) == redemption_id
    assert account.collect_events() == [] and account.balance == 50
    with pytest.raises(DuplicateEntryError):
        account.redeem(PROGRAMME, "MUG", 10, T0, redemption_id)


def test_a_benefit_the_account_already_has_is_answered_not_granted_again():
    account = an_account()
    benefit_id = Account.id_for_benefit("client:key-1")
    assert account.grant_benefit("social", "personal_call", "call", T0, "complaint", benefit_id) == benefit_id
    account.collect_events()
    assert account.grant_benefit("social", "personal_call", "call", T0 + days(1), "complaint", benefit_id) == benefit_id
    assert account.collect_events() == [] and len(account.benefits) == 1
    with pytest.raises(DuplicateEntryError):
        account.grant_benefit("financial", "voucher", "100 off", T0, None, benefit_id)


def test_ids_derived_from_command_ids_differ_by_kind_and_by_command():
    assert Account.id_for_redemption("k") == Account.id_for_redemption("k")
    assert len({Account.id_for_redemption("k"), Account.id_for_benefit("k"), Account.id_for_redemption("j")}) == 3


def test_an_account_is_rebuilt_identically_from_its_events():
    account = Account.enrol(uuid4(), PROGRAMME, T0)
    account.earn(PROGRAMME, uuid4(), Decimal("1200.00"), "CNY", T0, T0)
    account.earn(PROGRAMME, uuid4(), Decimal("80.00"), "CNY", T0 + days(20), T0 + days(20))
    account.redeem(PROGRAMME, "MUG", 1250, T0 + days(21))
    account.expire(PROGRAMME, T0 + days(81))
    account.grant_benefit("structural", "system_integration", "EDI link", T0 + days(82))
    assert state(replay(account.collect_events())) == state(account)


def test_the_default_programme_has_four_tiers_and_one_benefit_per_retention_level():
    programme = Programme()
    assert [tier.name for tier in programme.tiers] == ["bronze", "silver", "gold", "platinum"]
    assert {b.level for b in programme.tier_benefits} == {"financial", "social", "structural"}
    assert programme.tier_for(Decimal("49999.99")).name == "silver"
    assert programme.tier_for(Decimal("50000")).name == "gold"
    assert programme.points_for(Decimal("10.99"), programme.tier("platinum")) == 21


def test_a_programme_can_name_its_own_tiers():
    programme = Programme(tiers=(Tier("member", Decimal("0"), Decimal("0.5")),), tier_benefits=())
    account = Account.enrol(uuid4(), programme, T0)
    account.earn(programme, uuid4(), Decimal("99.00"), "CNY", T0, T0)
    assert (account.tier, account.balance) == ("member", 49)


@pytest.mark.parametrize(
    "overrides",
    [
        {"tiers": (Tier("basic", Decimal("10"), Decimal("1")),)},
        {"tiers": (Tier("a", Decimal("0"), Decimal("1")), Tier("b", Decimal("0"), Decimal("2")))},
        {"tiers": (Tier("a", Decimal("0"), Decimal("1")), Tier("a", Decimal("5"), Decimal("2")))},
        {"tiers": (Tier("a", Decimal("0"), Decimal("-1")),)},
        {"tiers": (Tier("a", Decimal("0"), Decimal("1")),)},  # the default benefits name unknown tiers
        {"points_valid_for": timedelta(0)},
        {"spend_window": timedelta(days=-1)},
        {"tier_benefits": (TierBenefit("gold", "financial", "hug", "a hug"),)},
    ],
)
def test_an_inconsistent_programme_is_refused_at_configuration(overrides):
    with pytest.raises(ProgrammeConfigurationError):
        Programme(**overrides)
