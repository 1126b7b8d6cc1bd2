"""A customer's rights in the loyalty service (crm_runtime.rights), on the in-memory store and on
PostgreSQL: a merge moves the absorbed account's points lots, spends, earnings and debt to the
survivor's account (tagged with the merge) and closes the absorbed account; the survivor's tier is
reviewed. An unmerge gives back what that merge moved, as it is now: what the survivor redeemed of it,
or what expired, stays gone; what the survivor earned after the merge stays with it. Erasure: the
service holds no personal data, so it is done at once."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from crm_contracts.errors import MovedError
from crm_loyalty.application import LoyaltyAccounts
from crm_loyalty.domain import Account, AccountNotFoundError
from crm_loyalty.policies import policies
from crm_loyalty.publishing import translator
from crm_loyalty.tests.conftest import SmallProgrammeAccounts
from crm_loyalty.tests.support import T0, days, replay, state
from crm_runtime.feed import EventFeed
from crm_runtime.policy import PolicyInbox
from tests.support.envelopes import Stream, customer_erased, customer_merged, customer_unmerged, payload
from tests.support.publishing import assert_published_under_contracts

LI_NA, WANG_WEI, ZHAO_LEI = UUID(int=0xA1), UUID(int=0xB2), UUID(int=0xC3)


@pytest.fixture
def accounts(event_store_env: dict[str, str]) -> Iterator[LoyaltyAccounts]:
    app = SmallProgrammeAccounts(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def inbox(accounts: LoyaltyAccounts) -> PolicyInbox:
    return PolicyInbox(accounts, policies, fetch=None)


def earn(accounts: LoyaltyAccounts, customer: UUID, amount: str, at: datetime) -> UUID:
    order_id = uuid4()
    accounts.earn_on_paid_order(customer, order_id, Decimal(amount), "CNY", at)
    return order_id


def lots(account: Account) -> list[tuple[UUID, int]]:
    return [(lot["order_id"], lot["remaining"]) for lot in account.lots]


def stored(accounts: LoyaltyAccounts, customer: UUID) -> Account:
    """The account as its events rebuild it (decoded from the store), compared with the live one."""
    events = [accounts.mapper.to_domain_event(e) for e in accounts.recorder.select_events(Account.id_for(customer))]
    return replay(events)


def test_a_merge_moves_points_spend_and_earnings_to_the_survivor_and_closes_the_absorbed_account(accounts):
    hers = earn(accounts, LI_NA, "600.00", T0)
    his = earn(accounts, WANG_WEI, "500.00", T0 + days(1))
    accounts.redeem(LI_NA, "MUG", 100, now=T0 + days(2))
    assert accounts.account(WANG_WEI).tier == "bronze"

    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(3))
    survivor = accounts.account(WANG_WEI)
    assert lots(survivor) == [(hers, 500), (his, 500)] and survivor.balance == 1000
    assert survivor.rolling_spend(T0 + days(3), accounts.programme.spend_window) == Decimal("1100.00")
    assert survivor.tier == "silver" and survivor.has_benefit("financial", "discount")  # reviewed on the merge
    assert set(survivor.earned_orders) == {hers, his} and survivor.absorbed == {
        "m-1": {"merged_from": LI_NA, "owed": 0}}
    absorbed = accounts.repository.get(Account.id_for(LI_NA))
    assert (absorbed.balance, absorbed.spends, absorbed.earnings) == (0, [], {})
    assert absorbed.merged_into == {"survivor_id": WANG_WEI, "merge_id": "m-1"}
    assert absorbed.points_redeemed == 100  # counters stay each account's own history
    with pytest.raises(MovedError) as moved:
        accounts.account(LI_NA)
    assert moved.value.details == {"customer_id": str(LI_NA), "survivor_id": str(WANG_WEI)}
    with pytest.raises(MovedError):
        accounts.redeem(LI_NA, "MUG", 10, now=T0 + days(3))

    versions = (survivor.version, absorbed.version)
    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(4))  # redelivered: nothing changes
    assert (accounts.account(WANG_WEI).version, accounts.repository.get(absorbed.id).version) == versions
    for customer in (LI_NA, WANG_WEI):
        assert state(stored(accounts, customer)) == state(accounts.repository.get(Account.id_for(customer)))


def test_an_unmerge_gives_back_what_is_left_and_the_survivor_keeps_what_came_after(accounts):
    hers = earn(accounts, LI_NA, "600.00", T0)
    his = earn(accounts, WANG_WEI, "500.00", T0 + days(1))
    accounts.redeem(LI_NA, "MUG", 100, now=T0 + days(2))
    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(3))
    # While merged the survivor redeems, oldest lots first: all of what was Li Na's, and some of its own.
    accounts.redeem(WANG_WEI, "KETTLE", 700, now=T0 + days(4))
    later = earn(accounts, WANG_WEI, "200.00", T0 + days(5))  # at the silver rate: 250 points

    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(6))
    restored, survivor = accounts.account(LI_NA), accounts.account(WANG_WEI)
    assert lots(restored) == [(hers, 0)]  # what was left of her lot: nothing, the survivor spent it
    assert restored.lots[0]["redeemed"] == 600 and restored.balance == 0
    assert [s["order_id"] for s in restored.spends] == [hers] and set(restored.earned_orders) == {hers}
    assert restored.merged_into is None and restored.tier == "bronze"
    assert lots(survivor) == [(his, 300), (later, 250)] and survivor.balance == 550
    assert [r["reward_code"] for r in survivor.redemptions] == ["KETTLE"]  # the redemption stays its own
    assert survivor.tier == "bronze" and survivor.absorbed == {}  # reviewed: 700 of spend is below silver
    assert survivor.has_benefit("financial", "discount")  # a benefit once granted is kept

    versions = (restored.version, survivor.version)
    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(7))  # redelivered: nothing changes
    assert (accounts.account(LI_NA).version, accounts.account(WANG_WEI).version) == versions
    # Her account works again; a second merge is a new one.
    earn(accounts, LI_NA, "100.00", T0 + days(7))
    assert accounts.account(LI_NA).balance == 100
    for customer in (LI_NA, WANG_WEI):
        assert state(stored(accounts, customer)) == state(accounts.repository.get(Account.id_for(customer)))


def test_points_that_expired_while_merged_come_back_expired(accounts):
    hers = earn(accounts, LI_NA, "300.00", T0)
    earn(accounts, WANG_WEI, "100.00", T0 + days(30))
    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(1))
    assert accounts.expire(WANG_WEI, now=T0 + days(61)).points_expired == 300  # her lot, on the survivor
    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(62))
    restored = accounts.account(LI_NA)
    assert lots(restored) == [(hers, 0)] and restored.lots[0]["expired"] == 300
    assert accounts.account(WANG_WEI).balance == 100


def test_a_debt_moves_with_the_merge_and_comes_back_less_what_the_survivor_settled(accounts):
    hers = earn(accounts, LI_NA, "400.00", T0)
    accounts.redeem(LI_NA, "MUG", 400, now=T0 + days(1))
    accounts.take_back_points(LI_NA, hers, "cancellation", Decimal("400.00"), "CNY", T0 + days(2))
    assert accounts.account(LI_NA).points_owed == 400
    earn(accounts, WANG_WEI, "100.00", T0 + days(2))

    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(3))
    assert (accounts.account(WANG_WEI).points_owed, accounts.account(WANG_WEI).balance) == (400, 100)
    earn(accounts, WANG_WEI, "300.00", T0 + days(4))  # its 300 points settle 300 of the debt it took over
    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(5))

    restored, survivor = accounts.account(LI_NA), accounts.account(WANG_WEI)
    assert (restored.points_owed, survivor.points_owed) == (100, 0)  # what the survivor settled stays settled
    assert lots(restored) == [(hers, 0)] and set(restored.earned_orders) == {hers}
    assert survivor.balance == 100


def test_payments_and_refunds_naming_the_absorbed_customer_follow_to_the_survivor(accounts, inbox):
    customers, orders = Stream("customer"), Stream("order")
    now = datetime.now(UTC)
    first, second = uuid4(), uuid4()

    def paid(order: UUID, amount: str) -> dict:
        return orders.publish("order_paid", payload(
            "order_paid", customer_id=LI_NA, order_id=order, amount=amount, currency="CNY",
            paid_at=(now - timedelta(days=2)).isoformat()))

    merge = customer_merged(customers, LI_NA, WANG_WEI, "m-1")
    paid_first = paid(first, "300.00")
    assert inbox.receive([paid_first]).applied == 1
    assert inbox.receive([merge]).applied == 1
    assert inbox.receive([paid(second, "200.00")]).applied == 1  # names her, paid after the merge
    assert accounts.account(WANG_WEI).balance == 500  # the survivor's account was opened by the merge
    refunded = orders.publish("order_refunded", payload(
        "order_refunded", customer_id=LI_NA, order_id=first, amount="300.00", currency="CNY",
        refunded_at=now.isoformat()))
    assert inbox.receive([refunded, paid_first]).applied == 1  # the payment again is a duplicate
    survivor = accounts.account(WANG_WEI)
    assert (survivor.balance, survivor.points_taken_back) == (200, 300)
    accounts.earn_on_paid_order(LI_NA, first, Decimal("300.00"), "CNY", now - timedelta(days=2))
    assert accounts.account(WANG_WEI).version == survivor.version  # a payment earned before is not earned again

    unmerge = customer_unmerged(customers, LI_NA, WANG_WEI, "m-1")
    assert inbox.receive([unmerge, merge]).applied == 1
    assert accounts.account(LI_NA).balance == 0 and set(accounts.account(LI_NA).earned_orders) == {first}
    assert accounts.account(WANG_WEI).balance == 200  # earned on the survivor after the merge: stays


def test_a_chain_of_merges_is_undone_latest_first(accounts):
    hers, his, theirs = (earn(accounts, c, "300.00", T0) for c in (LI_NA, WANG_WEI, ZHAO_LEI))
    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(1))
    accounts.absorb_customer(WANG_WEI, ZHAO_LEI, "m-2", now=T0 + days(2))
    assert {order for order, _ in lots(accounts.account(ZHAO_LEI))} == {hers, his, theirs}
    with pytest.raises(MovedError) as moved:
        accounts.account(LI_NA)
    assert moved.value.details["survivor_id"] == str(ZHAO_LEI)  # the final survivor
    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(3))  # out of order: refused, nothing moves
    assert accounts.repository.get(Account.id_for(LI_NA)).merged_into is not None

    accounts.restore_customer(WANG_WEI, ZHAO_LEI, "m-2", now=T0 + days(3))
    assert {order for order, _ in lots(accounts.account(WANG_WEI))} == {hers, his}
    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(4))
    assert [lots(accounts.account(c)) for c in (LI_NA, WANG_WEI, ZHAO_LEI)] == [
        [(hers, 300)], [(his, 300)], [(theirs, 300)]]
    assert all(lot["merges"] == [] for c in (LI_NA, WANG_WEI) for lot in accounts.account(c).lots)


def test_a_customer_without_an_account_is_merged_too_and_what_arrives_for_it_goes_to_the_survivor(accounts):
    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0)
    assert accounts._existing(LI_NA) is None and accounts._existing(WANG_WEI) is None  # none opened
    with pytest.raises(MovedError) as moved:
        accounts.account(LI_NA)
    assert moved.value.details["survivor_id"] == str(WANG_WEI)
    with pytest.raises(MovedError):
        accounts.enrol(LI_NA, at=T0)
    order = earn(accounts, LI_NA, "100.00", T0 + days(1))  # a payment naming her, arriving after the merge
    assert accounts._existing(LI_NA) is None and lots(accounts.account(WANG_WEI)) == [(order, 100)]
    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(2))
    assert lots(accounts.account(WANG_WEI)) == [(order, 100)]  # earned after the merge: stays
    with pytest.raises(AccountNotFoundError):
        accounts.account(LI_NA)


def test_the_expiry_sweep_leaves_merged_accounts_alone(accounts):
    earn(accounts, LI_NA, "100.00", T0)
    earn(accounts, WANG_WEI, "100.00", T0)
    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(1))
    assert accounts.expire_due(LI_NA) is None
    assert accounts.expire_due(WANG_WEI).points_expired == 200  # her lot too, now on his account
    assert accounts.expire_due(ZHAO_LEI) is None  # no account


def test_erasure_enters_the_ledger_and_nothing_personal_is_held(accounts, inbox):
    earn(accounts, LI_NA, "100.00", T0)
    assert accounts.erasure_state(LI_NA) == "done"  # nothing personal is held: done, erased or not
    erased = customer_erased(Stream("customer"), LI_NA, "DSR-7")
    assert inbox.receive([erased, erased]).applied == 1
    record = accounts.data_keys.erasure(LI_NA)
    assert record is not None and record.request_id == "DSR-7" and record.shredded_at is not None
    assert accounts.erasure_state(LI_NA) == "pending"  # until CRM_DATA_KEY_TTL has passed, as everywhere
    accounts.data_keys.ttl = 0
    assert accounts.erasure_state(LI_NA) == "done"
    assert accounts.account(LI_NA).balance == 100  # anonymous facts stay
    assert accounts.data_keys.has_key(LI_NA) is False  # no key was ever made: nothing is sealed


def test_the_moves_are_published_on_both_accounts_under_their_contract(accounts):
    hers = earn(accounts, LI_NA, "600.00", T0)
    earn(accounts, WANG_WEI, "500.00", T0 + days(1))
    accounts.absorb_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(3))
    accounts.restore_customer(LI_NA, WANG_WEI, "m-1", now=T0 + days(4))
    envelopes = EventFeed(accounts, translator).events_since(0, 100)
    assert_published_under_contracts(envelopes, "loyalty")
    moved = [e["payload"] for e in envelopes if e["type"] == "loyalty_points_moved"]
    moves = [(m["customer_id"], m["counterpart_id"], m["reason"], m["direction"], m["points"], m["balance"])
             for m in moved]
    her, his = str(LI_NA), str(WANG_WEI)
    assert moves == [(her, his, "merge", "out", 600, 0), (his, her, "merge", "in", 600, 1100),
                     (his, her, "unmerge", "out", 600, 500), (her, his, "unmerge", "in", 600, 600)]
    moved_lots = [m["lots"] for m in moved]
    assert all(lots_ == [{"order_id": str(hers), "earned_at": T0.isoformat(),
                          "expires_at": (T0 + days(60)).isoformat(), "remaining": 600}] for lots_ in moved_lots)
    tiers = [(e["customer_id"], e["payload"]["to_tier"]) for e in envelopes if e["type"] == "tier_changed"]
    assert tiers == [(his, "silver"), (his, "bronze")]
