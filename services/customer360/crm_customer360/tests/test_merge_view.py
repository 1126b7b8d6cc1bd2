"""Merged customers in the 360 fold (customer.customer_merged / customer_unmerged): the survivor shows one
view with the union of the customers' facts, events about an absorbed customer end under the survivor in
any order of arrival, an unmerge gives each customer back exactly its own view, and any interleaving and
batching of the origins gives the same shown views (what lets a rebuild equal the live view)."""

from __future__ import annotations

import random
import uuid
from typing import Any

import pytest

from crm_customer360 import view as views
from crm_customer360.tests.test_view import Journey, day

ABSORBED = "0a5e0000-0000-4000-8000-00000000000a"
SURVIVOR = "0a5e0000-0000-4000-8000-00000000000b"
THIRD = "0a5e0000-0000-4000-8000-00000000000c"
MERGE = "merge-1"


def ids(prefix: str) -> dict[str, str]:
    """Record ids of one customer's story (an order, an opportunity, a case, a loyalty account)."""
    return {kind: str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}:{kind}")) for kind in
            ("order", "late_order", "opportunity", "case", "account")}


A, S = ids("absorbed"), ids("survivor")


def before_the_merge(j: Journey) -> None:
    """Two registrations of one person, each with an order, an account and points; A also a case."""
    for customer, records, name, amount, points in ((ABSORBED, A, "Li Na", "100.00", 100),
                                                    (SURVIVOR, S, "Li Na (shop)", "200.00", 50)):
        j.add("customer", "customer_registered", day(1), customer_id=customer, name=name,
              email=f"{customer[-1]}@example.com", source_channel="web")
        j.add("order", "order_placed", day(2), customer_id=customer, order_id=records["order"], total=amount,
              currency="CNY", placed_at=day(2))
        j.add("order", "order_paid", day(3), customer_id=customer, order_id=records["order"], amount=amount,
              currency="CNY", paid_at=day(3))
        j.add("loyalty", "loyalty_account_enrolled", day(2), customer_id=customer, account_id=records["account"],
              tier="basic")
        j.add("loyalty", "points_earned", day(3), customer_id=customer, account_id=records["account"],
              order_id=records["order"], points=points, balance=points, earned_at=day(3), expires_at=day(300))
    j.add("customer", "customer_consent_changed", day(2), customer_id=ABSORBED, channel="email", granted=False)
    j.add("customer", "customer_consent_changed", day(2), customer_id=SURVIVOR, channel="email", granted=True)
    j.add("sales", "opportunity_opened", day(2), customer_id=ABSORBED, opportunity_id=A["opportunity"],
          amount="500.00", currency="CNY")
    j.add("service", "case_opened", day(4), customer_id=ABSORBED, case_id=A["case"], subject="Broken kettle")


def merged(j: Journey, at: str = day(10)) -> None:
    j.add("customer", "customer_merged", at, customer_id=ABSORBED, survivor_id=SURVIVOR, merge_id=MERGE,
          merged_at=at)


def unmerged(j: Journey, at: str = day(20)) -> None:
    j.add("customer", "customer_unmerged", at, customer_id=ABSORBED, survivor_id=SURVIVOR, merge_id=MERGE,
          unmerged_at=at)


def after_the_merge(j: Journey, *, repointed: bool) -> None:
    """What happens while merged. With `repointed`, the order service moved A's order to the survivor, so
    its later events carry the survivor's id; without, the story as it would be had no merge happened."""
    a_order_customer = SURVIVOR if repointed else ABSORBED
    if repointed:
        j.add("order", "order_customer_changed", day(11), order_id=A["order"], customer_id=SURVIVOR,
              previous_customer_id=ABSORBED, change="merged", merge_id=MERGE, changed_at=day(11))
        points_moved(j, "merge", ABSORBED, SURVIVOR, balances=(0, 150))
    j.add("order", "order_refunded", day(12), customer_id=a_order_customer, order_id=A["order"], amount="40.00",
          currency="CNY", refunded_total="40.00")
    # A service that had not re-pointed yet: the absorbed id itself, on A's own case.
    j.add("service", "case_responded", day(12), customer_id=ABSORBED, case_id=A["case"])
    # Created on the survivor after the merge: the survivor's for good.
    j.add("order", "order_placed", day(13), customer_id=SURVIVOR, order_id=S["late_order"], total="30.00",
          currency="CNY", placed_at=day(13))
    if repointed:
        j.add("order", "order_customer_changed", day(20), order_id=A["order"], customer_id=ABSORBED,
              previous_customer_id=SURVIVOR, change="unmerged", merge_id=MERGE, changed_at=day(20))


def points_moved(j: Journey, reason: str, source: str, target: str, balances: tuple[int, int]) -> None:
    """The loyalty service moving A's lot between the two accounts (one event on each account)."""
    at = day(11 if reason == "merge" else 20)
    lot = {"order_id": A["order"], "earned_at": day(3), "expires_at": day(300), "remaining": 100}
    for customer, counterpart, direction, balance in ((source, target, "out", balances[0]),
                                                      (target, source, "in", balances[1])):
        account = (A if customer == ABSORBED else S)["account"]
        j.add("loyalty", "loyalty_points_moved", at, customer_id=customer, account_id=account,
              counterpart_id=counterpart, merge_id=MERGE, reason=reason, direction=direction, points=100,
              lots=[lot], points_owed=0, moved_at=at, balance=balance)


def merge_story(unmerge: bool = True, erase: bool = False) -> list[dict[str, Any]]:
    j = Journey(SURVIVOR)
    before_the_merge(j)
    merged(j)
    after_the_merge(j, repointed=True)
    if unmerge:
        unmerged(j)
        points_moved(j, "unmerge", SURVIVOR, ABSORBED, balances=(50, 100))
    if erase:
        j.add("customer", "customer_erased", day(30), customer_id=SURVIVOR, request_id="DSR-1", erased_at=day(30))
    return j.events


def story_without_merge() -> list[dict[str, Any]]:
    j = Journey(SURVIVOR)
    before_the_merge(j)
    after_the_merge(j, repointed=False)
    return j.events


def fold_merged(batches: list[list[dict[str, Any]]]) -> tuple[dict[str, views.View], views.Links]:
    """The parts and links after folding `batches` as the read model does."""
    parts: dict[str, views.View] = {}
    owners: dict[tuple[str, str], str] = {}
    links: views.Links = {}
    for batch in batches:
        for envelope in batch:
            if envelope["type"] in views.MERGE_EVENTS:
                views.apply_merge(links, envelope)
        views.fold_batch(parts, {}, batch, owners)
    return parts, links


def shown(batches: list[list[dict[str, Any]]], clock: str | None = None) -> dict[str, views.View]:
    """The shown views (by root) after folding `batches`."""
    return views.shown_views(*fold_merged(batches), clock)


def interleaving(events: list[dict[str, Any]], seed: int) -> list[list[dict[str, Any]]]:
    """The events in a random order across origins (each origin's order kept), cut into random batches."""
    streams: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        streams.setdefault(event["origin"], []).append(event)
    rng, ordered = random.Random(seed), []
    while any(streams.values()):
        ordered.append(streams[rng.choice(sorted(o for o, s in streams.items() if s))].pop(0))
    cuts = sorted(rng.sample(range(1, len(ordered)), k=min(5, len(ordered) - 1)))
    return [ordered[a:b] for a, b in zip([0, *cuts], [*cuts, len(ordered)], strict=True)]


def test_the_survivor_shows_one_view_with_the_union_of_both_customers():
    views_now = shown([merge_story(unmerge=False)])
    assert list(views_now) == [SURVIVOR]  # the absorbed customer is shown by its survivor only
    view = views_now[SURVIVOR]
    assert view["merged_from"] == [ABSORBED]
    assert view["profile"]["name"] == "Li Na (shop)"  # the survivor speaks for the person
    assert set(view["orders"]["by_id"]) == {A["order"], S["order"], S["late_order"]}
    assert view["paid_orders"] == 2 and view["lifecycle_stage"] == "repeat_customer"
    assert view["orders"]["revenue"] == {"CNY": "260.00"}  # 100 - 40 refunded + 200
    assert view["orders"]["outstanding"] == {"CNY": "30.00"}
    assert set(view["pipeline"]["opportunities"]) == {A["opportunity"]}
    assert view["pipeline"]["open_total"] == {"CNY": "500.00"}
    assert set(view["service"]["cases"]) == {A["case"]} and view["service"]["cases"][A["case"]]["responded"]
    assert view["loyalty"]["balance"] == 150 and view["loyalty"]["account_id"] == S["account"]
    assert len(view["loyalty"]["lots"]) == 2
    assert view["consents"]["email"]["granted"] is False  # the most restrictive consent wins
    # Events add up, merge bookkeeping (merged, the order's re-pointing) is not counted as activity.
    assert view["events"] == {"customer": 4, "order": 6, "loyalty": 4, "sales": 1, "service": 2}


def test_events_for_the_absorbed_id_in_any_order_of_arrival_end_under_the_survivor():
    expected = shown([merge_story(unmerge=False)])
    for seed in range(40):
        assert shown(interleaving(merge_story(unmerge=False), seed)) == expected


def test_an_unmerge_gives_each_customer_back_exactly_its_own_view():
    after = shown([merge_story()])
    never_merged = shown([story_without_merge()])
    assert set(after) == {ABSORBED, SURVIVOR}
    assert after == never_merged  # exactly: A's order (with its refund while merged), case and points
    assert set(after[ABSORBED]["orders"]["by_id"]) == {A["order"]}
    assert after[ABSORBED]["orders"]["by_id"][A["order"]]["refunded"] == "40.00"
    assert set(after[SURVIVOR]["orders"]["by_id"]) == {S["order"], S["late_order"]}  # made after: stays
    assert "merged_from" not in after[SURVIVOR]


@pytest.mark.parametrize("seed", range(30))
def test_any_interleaving_and_batching_through_merge_and_unmerge_gives_the_same_views(seed):
    clock = day(400)
    assert shown(interleaving(merge_story(), seed), clock) == shown([merge_story()], clock)


def test_merges_of_merges_show_under_the_final_survivor_and_unmerge_one_level_at_a_time():
    j = Journey(SURVIVOR)
    before_the_merge(j)
    merged(j)
    j.add("customer", "customer_registered", day(1), customer_id=THIRD, name="Na Li", source_channel="phone")
    j.add("customer", "customer_merged", day(15), customer_id=SURVIVOR, survivor_id=THIRD, merge_id="merge-2",
          merged_at=day(15))
    chained = shown([j.events])
    assert list(chained) == [THIRD] and chained[THIRD]["merged_from"] == [ABSORBED, SURVIVOR]
    assert chained[THIRD]["loyalty"]["balance"] == 150 and chained[THIRD]["paid_orders"] == 2
    j.add("customer", "customer_unmerged", day(16), customer_id=SURVIVOR, survivor_id=THIRD, merge_id="merge-2",
          unmerged_at=day(16))
    back = shown([j.events])
    assert set(back) == {SURVIVOR, THIRD} and back[SURVIVOR]["merged_from"] == [ABSORBED]
    assert back[THIRD]["orders"]["by_id"] == {}


def test_an_unmerge_of_another_merge_changes_nothing():
    j = Journey(SURVIVOR)
    before_the_merge(j)
    merged(j)
    j.add("customer", "customer_unmerged", day(12), customer_id=ABSORBED, survivor_id=SURVIVOR,
          merge_id="another-merge", unmerged_at=day(12))
    assert list(shown([j.events])) == [SURVIVOR]


def personal(view: Any) -> list[str]:
    text = repr(view)
    return [value for value in ("Li Na", "Broken kettle", "a@example.com", "b@example.com") if value in text]


@pytest.mark.parametrize("seed", range(10))
def test_erasing_the_survivor_erases_the_merged_view_and_the_parts_in_it(seed):
    parts, links = fold_merged(interleaving(merge_story(unmerge=False, erase=True), seed))
    result = views.shown_views(parts, links)
    assert result[SURVIVOR]["erased_at"] == day(30)
    assert personal(result) == []
    assert all(part.get("erased_at") == day(30) for part in parts.values())  # the parts as stored, too
    assert result[SURVIVOR]["orders"]["revenue"] == {"CNY": "260.00"}  # anonymous facts stay


def test_a_record_belongs_to_the_customer_its_first_event_carried():
    j = Journey(SURVIVOR)
    first = j.add("order", "order_placed", day(1), customer_id=ABSORBED, order_id=A["order"])
    later = j.add("order", "order_paid", day(2), customer_id=SURVIVOR, order_id=A["order"])
    owners: dict[tuple[str, str], str] = {}
    assert views.assign_owners(owners, [first, later]) == {("order", f"order_id:{A['order']}"): ABSORBED}
    assert views.owner_of(later, owners) == ABSORBED
    assert views.owner_of({**later, "origin": "customer"}, owners) == SURVIVOR  # no record: the id carried
