"""Merged customers in the 360 read model on real PostgreSQL (customer.customer_merged / customer_unmerged):
the survivor's row shows both customers, its timeline holds both customers' rows (each naming its own
customer), the absorbed id is gone from search, lists, duplicates, analytics and reports and answers with
its survivor; an unmerge gives each its own row back; any interleaving and batching of the origins, and a
rebuild, give the same rows; as-of views before the merge show the customers apart; erasing the survivor
leaves no byte of the person in the view. Real: PostgreSQL, the inbox, apply_batch, rebuild(). Replaced: the
origins' feeds (lists)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from crm_contracts.errors import MovedError
from crm_customer360 import analytics_store, duplicates, readmodel, reports
from crm_customer360 import view as views
from crm_customer360.rebuild import rebuild
from crm_customer360.service import ORIGINS
from crm_customer360.tests.test_merge_view import (
    ABSORBED,
    SURVIVOR,
    A,
    S,
    fold_merged,
    interleaving,
    merge_story,
    story_without_merge,
)
from crm_customer360.tests.test_view import day
from crm_customer360.view_as_of import customer_360_as_of
from crm_runtime.inbox import Inbox
from tests.integration.test_360_journey import apply, live_view, read, round_robin  # noqa: F401 - a fixture
from tests.support.databases import dsn, query

pytestmark = pytest.mark.integration


def view_rows(env: dict[str, str], schema: str) -> dict[str, Any]:
    return {cid: doc for cid, doc in query(env, schema, "SELECT customer_id::text, doc FROM customer_view")}


def test_a_merged_customer_is_one_row_with_both_timelines_and_the_absorbed_id_is_hidden(read_schema, test_database):
    apply(test_database, read_schema, round_robin(merge_story(unmerge=False), ORIGINS))
    read(test_database, read_schema, analytics_store.refresh, datetime.fromisoformat(day(40)))

    assert set(view_rows(test_database, read_schema)) == {SURVIVOR}
    answer = read(test_database, read_schema, readmodel.customer_360, SURVIVOR)
    assert answer["merged_from"] == [ABSORBED]
    assert set(answer["orders"]["by_id"]) == {A["order"], S["order"], S["late_order"]}
    assert answer["orders"]["revenue"] == {"CNY": "260.00"} and answer["loyalty"]["balance"] == 150
    assert answer["analytics"]["value"]["historic"] == "260.00"  # lifetime value of both
    whose = {(entry["type"], entry["customer_id"]) for entry in answer["timeline"]}
    assert {("customer_registered", ABSORBED), ("customer_registered", SURVIVOR), ("customer_merged", ABSORBED),
            ("case_opened", ABSORBED), ("order_refunded", ABSORBED), ("order_placed", SURVIVOR)} <= whose
    assert read(test_database, read_schema, readmodel.customer_360, ABSORBED) is None
    assert read(test_database, read_schema, readmodel.survivor_of, ABSORBED) == SURVIVOR
    assert read(test_database, read_schema, readmodel.survivor_of, SURVIVOR) is None
    # Hidden from search, lists, duplicates, analytics (segments) and reports.
    found = read(test_database, read_schema, readmodel.search, "li na", 1, 20)
    assert [item["customer_id"] for item in found["items"]] == [SURVIVOR]
    listed = read(test_database, read_schema, readmodel.search, "", 1, 20)
    assert [item["customer_id"] for item in listed["items"]] == [SURVIVOR]
    probe = duplicates.Probe("Li Na (shop)", "a@example.com")  # A by email, S by name: only S is there
    assert [c["customer_id"] for c in read(test_database, read_schema, duplicates.candidates, probe)] == [SURVIVOR]
    figures = read(test_database, read_schema, analytics_store.query, {}, 1, 20)
    assert [item["customer_id"] for item in figures["items"]] == [SURVIVOR]
    funnel = read(test_database, read_schema, lambda cur: reports.funnel(analytics_store.all_views(cur)))
    assert {row["customers"] for row in funnel["rows"] if row["stage"] == "prospect"} == {1}


def test_an_unmerge_gives_each_customer_its_own_row_back(read_schema, disposable_read_schema, test_database):
    apply(test_database, read_schema, [[e] for e in merge_story()])
    apply(test_database, disposable_read_schema, [[e] for e in story_without_merge()])
    assert view_rows(test_database, read_schema) == view_rows(test_database, disposable_read_schema)
    assert query(test_database, read_schema, "SELECT count(*) FROM customer_part") == [(0,)]
    assert read(test_database, read_schema, readmodel.survivor_of, ABSORBED) is None
    answer = read(test_database, read_schema, readmodel.customer_360, ABSORBED)
    assert "merged_from" not in answer and set(answer["orders"]["by_id"]) == {A["order"]}
    # Its timeline is its own again, with the merge and the unmerge on it.
    assert {entry["customer_id"] for entry in answer["timeline"]} == {ABSORBED}
    assert {"customer_merged", "customer_unmerged"} <= {entry["type"] for entry in answer["timeline"]}
    found = read(test_database, read_schema, readmodel.search, "li na", 1, 20)
    assert {item["customer_id"] for item in found["items"]} == {ABSORBED, SURVIVOR}


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_any_interleaving_of_origins_through_merge_and_unmerge_gives_the_same_rows(
    read_schema, disposable_read_schema, test_database, seed
):
    for unmerge in (False, True):
        events = merge_story(unmerge=unmerge)
        for schema, batches in ((read_schema, [events]), (disposable_read_schema, interleaving(events, seed))):
            query(test_database, schema, "TRUNCATE customer_view, customer_part, customer_merge, record_owner, "
                                         "timeline, lead_view, customer_search, inbox_tracking")
            apply(test_database, schema, batches)
        assert read(test_database, read_schema, readmodel.all_rows) == read(
            test_database, disposable_read_schema, readmodel.all_rows)
        expected = views.shown_views(*fold_merged([events]))
        assert view_rows(test_database, read_schema) == expected


def live_then_rebuilt(env: dict[str, str], schema: str, events: list[dict[str, Any]]) -> tuple[Any, Any]:
    """The rows of the live view `schema` once `events` arrived through its inbox (one event per batch, origins
    in turn) and its clock moved to day 60, then its rows after a rebuild from the same events."""
    live = Inbox(dsn(env, schema), readmodel.apply_batch, fetch=None)
    try:
        for batch in round_robin(events, ["order", "loyalty", "service", "customer", "sales", "marketing"]):
            assert live.receive(batch).applied == 1
    finally:
        live.close()
    read(env, schema, readmodel.advance_clock, datetime.fromisoformat(day(60)))
    before = read(env, schema, readmodel.all_rows)

    def feed(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
        return [e for e in events if e["origin"] == origin and e["position"] > after][:limit]

    assert rebuild(feed, ORIGINS, page=2).events == len(events)
    return before, read(env, schema, readmodel.all_rows)


@pytest.mark.parametrize("unmerge", [False, True])
def test_a_rebuild_equals_the_live_view_through_merge_and_unmerge(live_view, test_database, unmerge):  # noqa: F811
    before, after = live_then_rebuilt(test_database, live_view, merge_story(unmerge=unmerge))
    assert before["customer_merge"]
    assert after == before


def test_as_of_before_the_merge_the_customers_show_apart(read_schema, test_database):
    apply(test_database, read_schema, round_robin(merge_story(), ORIGINS))

    def as_of(customer_id: str, at: str) -> Any:
        return read(test_database, read_schema, customer_360_as_of, customer_id, datetime.fromisoformat(at))

    before = as_of(SURVIVOR, day(5))
    assert "merged_from" not in before and set(before["orders"]["by_id"]) == {S["order"]}
    assert {entry["customer_id"] for entry in before["timeline"]} == {SURVIVOR}
    assert set(as_of(ABSORBED, day(5))["orders"]["by_id"]) == {A["order"]}
    during = as_of(SURVIVOR, day(15))
    assert during["merged_from"] == [ABSORBED] and during["loyalty"]["balance"] == 150
    assert set(during["orders"]["by_id"]) == {A["order"], S["order"], S["late_order"]}
    with pytest.raises(MovedError) as moved:
        as_of(ABSORBED, day(15))
    assert moved.value.details == {"customer_id": ABSORBED, "survivor_id": SURVIVOR}
    after = as_of(ABSORBED, day(25))
    assert "merged_from" not in after and set(after["orders"]["by_id"]) == {A["order"]}
    # The as-of fold of the whole history equals the live row (its clock aside).
    live = read(test_database, read_schema, readmodel.customer_360, ABSORBED)
    assert {k: v for k, v in after.items() if k not in ("as_of", "stage_as_of", "timeline")} == {
        k: v for k, v in live.items() if k not in ("stage_as_of", "timeline", "timeline_total")} | {
        "timeline_total": after["timeline_total"]}


SECRETS = ("Li Na", "a@example.com", "b@example.com", "Broken kettle")


def test_erasing_the_survivor_forgets_both_customers_in_every_table(read_schema, test_database):
    apply(test_database, read_schema, round_robin(merge_story(unmerge=False), ORIGINS))
    everything = repr(read(test_database, read_schema, readmodel.all_rows))
    assert all(secret in everything for secret in SECRETS)  # the scan can fail: in clear before
    apply(test_database, read_schema, round_robin(merge_story(unmerge=False, erase=True)[-1:], ORIGINS))
    everything = repr(read(test_database, read_schema, readmodel.all_rows))
    assert [secret for secret in SECRETS if secret in everything] == []
    answer = read(test_database, read_schema, readmodel.customer_360, SURVIVOR)
    assert answer["erased_at"] and answer["orders"]["revenue"] == {"CNY": "260.00"}


def test_the_migration_gives_records_folded_before_owners_their_first_customer(read_schema, test_database):
    apply(test_database, read_schema, round_robin(story_without_merge(), ORIGINS))
    owners = query(test_database, read_schema, "SELECT * FROM record_owner ORDER BY origin, record_id")
    assert len(owners) == 7  # three orders, two accounts, an opportunity, a case
    query(test_database, read_schema, "TRUNCATE record_owner")
    read(test_database, read_schema, readmodel.create_tables)
    assert query(test_database, read_schema, "SELECT * FROM record_owner ORDER BY origin, record_id") == owners


def test_a_merge_waits_for_a_replica_folding_the_absorbed_customer_and_loses_nothing(read_schema, test_database):
    from tests.integration.test_readmodel_replicas import HeldOpen, run_in_thread, waiting_on_a_lock
    from tests.support.polling import eventually

    events = merge_story(unmerge=False)
    merge_at = next(i for i, e in enumerate(events) if e["type"] == "customer_merged")
    first, merge = events[:merge_at], events[merge_at]
    orders = [e for e in first if e["origin"] == "order"]
    held = HeldOpen()
    replica_a = Inbox(dsn(test_database, read_schema), held, fetch=None)
    replica_b = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    pid_b = replica_b.connection().get_backend_pid()
    try:
        assert replica_b.receive([e for e in first if e["origin"] != "order"]).applied == len(first) - len(orders)
        thread_a, outcome_a = run_in_thread(replica_a.receive, orders)  # folds A's order, holds on
        assert held.applied.wait(10)
        thread_b, outcome_b = run_in_thread(replica_b.receive, [merge])
        eventually(lambda: waiting_on_a_lock(test_database, pid_b), timeout=10)  # the merge waits
        held.release.set()
        thread_a.join(10)
        thread_b.join(10)
    finally:
        replica_a.close()
        replica_b.close()
    assert outcome_a[0].applied == len(orders) and outcome_b[0].applied == 1
    rows = view_rows(test_database, read_schema)
    assert set(rows) == {SURVIVOR} and set(rows[SURVIVOR]["orders"]["by_id"]) == {A["order"], S["order"]}
    assert rows[SURVIVOR]["paid_orders"] == 2


def test_the_service_answers_an_absorbed_id_with_moved_and_its_past_before_the_merge(
    read_schema, test_database, monkeypatch
):
    import psycopg2
    from nameko.testing.services import worker_factory

    from crm_customer360 import service as module
    from crm_customer360.service import Customer360NotFoundError, Customer360Service
    from crm_runtime.nameko.rpc import RawJson

    monkeypatch.setattr(module, "_past", module._aware)  # the story's days are in 2027

    apply(test_database, read_schema, round_robin(merge_story(unmerge=False), ORIGINS))
    conn = psycopg2.connect(dsn(test_database, read_schema))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            service = worker_factory(Customer360Service, reads=cur, db=cur)
            with pytest.raises(MovedError) as moved:
                service.view(ABSORBED)
            assert moved.value.details == {"customer_id": ABSORBED, "survivor_id": SURVIVOR}
            with pytest.raises(MovedError):
                service.duplicates_of(ABSORBED)
            with pytest.raises(MovedError):
                service.view(ABSORBED, as_of=day(15))
            past = service.view(ABSORBED, as_of=day(5))
            assert past["customer_id"] == ABSORBED and "merged_from" not in past
            assert isinstance(service.view(SURVIVOR), RawJson)
            with pytest.raises(Customer360NotFoundError):
                service.view("0a5e0000-0000-4000-8000-0000000000ff")
    finally:
        conn.close()
