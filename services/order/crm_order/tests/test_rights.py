"""A customer's rights in the order service, driven through its policies with contract-shaped envelopes
(customer_merged, customer_unmerged, customer_erased), on the in-memory store and on PostgreSQL:
orders follow a merge and come back on unmerge; an erasure shreds the keys sealing their addresses and
reasons, and the orders go on with anonymous facts."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from crm_order.application import Orders
from crm_order.domain import REDACTED_ADDRESS, CustomerForgottenError
from crm_order.policies import policies
from crm_order.publishing import translator
from crm_order.tests.support import ADDRESS, order_lines
from crm_runtime.feed import EventFeed
from crm_runtime.policy import PolicyInbox
from crm_runtime.rights import CustomerErasedError, record_merge
from tests.support.envelopes import Stream, customer_erased, customer_merged, customer_unmerged, payload

AT = "2026-11-20T09:30:00+00:00"


@pytest.fixture
def customer() -> Stream:
    return Stream("customer")


def apply(orders: Orders, envelope: dict) -> None:
    outcome = PolicyInbox(orders, policies, fetch=None).receive([envelope])
    assert outcome.failed == [] and not outcome.parked


def place(orders: Orders, customer_id: UUID) -> UUID:
    return orders.place(customer_id, "CNY", order_lines(), ADDRESS).id


def owners(orders: Orders, *order_ids: UUID) -> list[UUID]:
    return [orders.order(order_id).customer_id for order_id in order_ids]


def test_a_merge_re_points_the_orders_and_an_unmerge_gives_back_exactly_what_it_moved(
    orders: Orders, customer: Stream,
) -> None:
    absorbed, survivor = uuid4(), uuid4()
    first, second, own = place(orders, absorbed), place(orders, absorbed), place(orders, survivor)
    delivery = customer_merged(customer, absorbed, survivor, "merge-7")
    apply(orders, delivery)
    versions = [orders.order(order_id).version for order_id in (first, second, own)]
    PolicyInbox(orders, policies, fetch=None).receive([delivery])  # redelivered: a duplicate

    assert owners(orders, first, second, own) == [survivor] * 3
    assert [orders.order(order_id).version for order_id in (first, second, own)] == versions
    assert orders.order(first).merges == [{"merge_id": "merge-7", "merged_from": absorbed}]
    assert [p["order_id"] for p in orders.orders_of_customer(survivor)] == [first, second, own]
    assert orders.orders_of_customer(absorbed) == []
    # Commands keep working, and what the order publishes now names the survivor.
    orders.confirm(first, "ERP-1")
    after = orders.place(absorbed, "CNY", order_lines(), ADDRESS).id  # placed for the absorbed id: follows
    since = place(orders, survivor)  # the survivor's own, after the merge
    assert owners(orders, after, since) == [survivor, survivor]

    apply(orders, customer_unmerged(customer, absorbed, survivor, "merge-7"))
    apply(orders, customer_unmerged(customer, absorbed, survivor, "merge-7"))  # a second unmerge event changes nothing

    assert owners(orders, first, second, after) == [absorbed] * 3
    assert owners(orders, own, since) == [survivor, survivor]
    assert orders.order(first).status == "confirmed" and orders.order(first).merges == []


def test_published_events_carry_the_survivor_and_the_re_pointing_is_published(orders: Orders,
                                                                            customer: Stream) -> None:
    absorbed, survivor = uuid4(), uuid4()
    order_id = place(orders, absorbed)
    apply(orders, customer_merged(customer, absorbed, survivor, "merge-7"))
    orders.confirm(order_id, "ERP-1")
    apply(orders, customer_unmerged(customer, absorbed, survivor, "merge-7"))
    envelopes = [e for e in EventFeed(orders, translator).events_since(0, 100) if e["payload"].get("order_id")
                 == str(order_id)]
    assert [(e["type"], e["payload"]["customer_id"]) for e in envelopes] == [
        ("order_placed", str(absorbed)), ("order_customer_changed", str(survivor)),
        ("order_confirmed", str(survivor)), ("order_customer_changed", str(absorbed)),
    ]
    changes = [e["payload"] for e in envelopes if e["type"] == "order_customer_changed"]
    assert [(c["change"], c["previous_customer_id"], c["merge_id"]) for c in changes] == [
        ("merged", str(absorbed), "merge-7"), ("unmerged", str(survivor), "merge-7")]


def test_chained_merges_unwind_in_reverse_order(orders: Orders, customer: Stream) -> None:
    first, middle, last = uuid4(), uuid4(), uuid4()
    order_id = place(orders, first)
    apply(orders, customer_merged(customer, first, middle, "m1"))
    apply(orders, customer_merged(customer, middle, last, "m2"))
    assert owners(orders, order_id) == [last]
    late = orders.place(first, "CNY", order_lines(), ADDRESS).id  # follows both merges to the final survivor
    assert owners(orders, late) == [last]
    apply(orders, customer_unmerged(customer, middle, last, "m2"))
    assert owners(orders, order_id, late) == [middle, middle]
    apply(orders, customer_unmerged(customer, first, middle, "m1"))
    assert owners(orders, order_id, late) == [first, first]


def test_an_erasure_seals_the_address_and_reasons_and_the_order_goes_on_with_anonymous_facts(
    orders: Orders, customer: Stream,
) -> None:
    li_na = uuid4()
    apply(orders, customer.publish("customer_address_changed", payload(
        "customer_address_changed", customer_id=li_na, kind="shipping", default=True, changed_at=AT)))
    paid = place(orders, li_na)
    orders.confirm(paid, "ERP-1")
    orders.record_payment(paid, "P1", Decimal("12400.00"), "CNY", "bank_transfer")
    cancelled = place(orders, li_na)
    orders.cancel(cancelled, "Li Na moved to Shanghai")
    waiting = place(orders, li_na)
    assert orders.erasure_state(li_na) == "pending"

    delivery = customer_erased(customer, li_na)
    apply(orders, delivery)
    version = orders.order(paid).version
    PolicyInbox(orders, policies, fetch=None).receive([delivery])
    orders.forget_customer(li_na, "DSR-42")  # asked again: nothing new

    assert orders.order(paid).version == version
    assert orders.order(paid).shipping_address is None  # what the placement sealed
    assert orders.order(paid).total == Decimal("12400.00") and orders.order(paid).payment_status == "paid"
    assert orders.order(cancelled).cancel_reason == ""
    assert orders.customer_terms(li_na).default_shipping_address == REDACTED_ADDRESS
    # Anonymous facts still come in; nothing personal is taken any more.
    orders.ship(paid, "S1", "SF Express", {"LIC": 10, "DAY": 2})
    assert orders.order(paid).status == "shipped"
    with pytest.raises(CustomerForgottenError):
        orders.confirm(waiting, "ERP-2")
    with pytest.raises(CustomerForgottenError):
        orders.set_shipping_address(waiting, ADDRESS)
    orders.cancel(waiting, "customer erased")
    assert orders.order(waiting).cancel_reason == ""
    with pytest.raises(CustomerErasedError):
        orders.place(li_na, "CNY", order_lines(), ADDRESS)


def test_erasure_state_waits_out_the_key_cache_and_is_done_for_a_customer_never_seen(orders: Orders) -> None:
    li_na = uuid4()
    assert orders.erasure_state(uuid4()) == "done"
    place(orders, li_na)
    orders.forget_customer(li_na, "DSR-42")
    assert orders.erasure_state(li_na) == ("done" if orders.data_keys.ttl == 0 else "pending")
    orders.data_keys.ttl = 0
    assert orders.erasure_state(li_na) == "done"


def test_erasing_a_survivor_shreds_the_keys_of_the_customers_merged_into_it(orders: Orders,
                                                                            customer: Stream) -> None:
    absorbed, survivor = uuid4(), uuid4()
    apply(orders, customer.publish("customer_address_changed", payload(
        "customer_address_changed", customer_id=absorbed, kind="shipping", default=True, changed_at=AT)))
    order_id = place(orders, absorbed)
    apply(orders, customer_merged(customer, absorbed, survivor, "merge-7"))
    apply(orders, customer_erased(customer, survivor))
    assert orders.order(order_id).shipping_address is None  # sealed under the absorbed customer's key
    assert orders.order(order_id).customer_forgotten
    assert orders.customer_terms(absorbed).default_shipping_address == REDACTED_ADDRESS
    assert not orders.data_keys.has_key(absorbed) and not orders.data_keys.has_key(survivor)
    orders.data_keys.ttl = 0
    assert orders.erasure_state(survivor) == "done"


def test_an_order_the_merge_missed_follows_it_with_its_next_command(orders: Orders, customer: Stream) -> None:
    absorbed, survivor = uuid4(), uuid4()
    straggler = place(orders, absorbed)
    # As if committed while the merge's reaction was looking for the orders: only the merge is recorded.
    orders.save(*record_merge(orders.repository, absorbed, survivor, "merge-7"))
    assert owners(orders, straggler) == [absorbed]
    orders.confirm(straggler, "ERP-1")
    assert owners(orders, straggler) == [survivor]
    apply(orders, customer_unmerged(customer, absorbed, survivor, "merge-7"))
    assert owners(orders, straggler) == [absorbed]


def test_erasing_an_absorbed_customer_on_its_own_forgets_what_it_brought_to_the_survivor(
    orders: Orders, customer: Stream,
) -> None:
    absorbed, survivor = uuid4(), uuid4()
    brought, own = place(orders, absorbed), place(orders, survivor)
    apply(orders, customer_merged(customer, absorbed, survivor, "merge-7"))
    apply(orders, customer_erased(customer, absorbed))
    assert orders.order(brought).customer_forgotten and orders.order(brought).shipping_address is None
    assert not orders.order(own).customer_forgotten and orders.order(own).shipping_address["recipient"] == "Li Na"
    assert orders.data_keys.has_key(survivor) and not orders.data_keys.has_key(absorbed)


def test_what_an_order_took_while_merged_goes_with_it_and_is_erased_with_its_own_customer(
    orders: Orders, customer: Stream,
) -> None:
    absorbed, survivor = uuid4(), uuid4()
    order_id = orders.place(absorbed, "CNY", order_lines()).id  # no address yet
    apply(orders, customer_merged(customer, absorbed, survivor, "merge-7"))
    orders.set_shipping_address(order_id, {**ADDRESS, "recipient": "Zhang Min"})  # given while the survivor's
    apply(orders, customer_unmerged(customer, absorbed, survivor, "merge-7"))
    apply(orders, customer_erased(customer, absorbed))
    assert orders.order(order_id).shipping_address == REDACTED_ADDRESS  # sealed under the absorbed one's key
    assert orders.data_keys.has_key(survivor) is False  # the survivor never needed a key here


def test_a_feed_page_fetches_the_keys_of_every_customer_its_orders_are_sealed_under_in_one_query(
    event_store_env: dict[str, str],
) -> None:
    writer = Orders(env={**event_store_env, "GROUP_COMMIT": "false"})
    customers = [uuid4() for _ in range(4)]
    for customer_id in customers:
        place(writer, customer_id)
    reader = writer if "POSTGRES_SCHEMA" not in event_store_env else Orders(env=event_store_env)
    try:
        keys = reader.data_keys
        keys._cache.clear()  # a fresh relay process: nothing cached
        one_by_one: list[UUID] = []
        load = keys._load
        keys._load = lambda subject: one_by_one.append(subject) or load(subject)  # type: ignore[method-assign]
        placed = [e for e in EventFeed(reader, translator).events_since(0, 100) if e["type"] == "order_placed"]
        assert [e["payload"]["customer_id"] for e in placed] == [str(c) for c in customers]
        assert all(e["payload"]["shipping_address"] for e in placed)  # decrypted
        assert one_by_one == []  # every customer's key came with the page's one query
    finally:
        if reader is not writer:
            reader.close()
        writer.close()
