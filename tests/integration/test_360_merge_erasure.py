"""The 360 read model through merge -> erase and through chains of merges, on real PostgreSQL: the customer
service erases a survivor and then each customer merged into it (each its own customer_erased), so the view
sees both erasures; any interleaving of the origins, and a rebuild, give the same rows as the live view, and
no byte of the person stays. Real: PostgreSQL, the inbox, apply_batch, rebuild(). Replaced: the feeds (lists)."""

from __future__ import annotations

from typing import Any

import pytest

from crm_customer360 import readmodel
from crm_customer360.tests.test_merge_view import (
    ABSORBED,
    SURVIVOR,
    THIRD,
    before_the_merge,
    interleaving,
    merge_story,
    merged,
)
from crm_customer360.tests.test_view import Journey, day
from tests.integration.test_360_journey import apply, live_view, read  # noqa: F401 - a fixture
from tests.integration.test_360_merge import live_then_rebuilt
from tests.support.databases import query

pytestmark = pytest.mark.integration

SECRETS = ("Li Na", "a@example.com", "b@example.com", "Broken kettle")


def merged_then_erased() -> list[dict[str, Any]]:
    """The merge story, then the survivor erased and, as the customer service does, the absorbed one too."""
    events = merge_story(unmerge=False, erase=True)
    erased = next(e for e in events if e["type"] == "customer_erased")
    absorbed_erased = {**erased, "position": erased["position"] + 1, "previous": erased["position"],
                       "event_id": erased["event_id"][:-4] + "beef", "customer_id": ABSORBED,
                       "payload": {**erased["payload"], "customer_id": ABSORBED}}
    return [*events, absorbed_erased]


def chained_merges() -> Journey:
    """A into S, then S into T (a merge of merges), then an order of T's."""
    j = Journey(SURVIVOR)
    before_the_merge(j)
    merged(j)
    j.add("customer", "customer_registered", day(1), customer_id=THIRD, name="Na Li", email="c@example.com",
          source_channel="phone")
    j.add("customer", "customer_merged", day(15), customer_id=SURVIVOR, survivor_id=THIRD, merge_id="merge-2",
          merged_at=day(15))
    j.add("order", "order_placed", day(16), customer_id=THIRD, order_id="0a5e0000-0000-4000-8000-0000000000d1",
          total="10.00", currency="CNY", placed_at=day(16))
    return j


def chained_then_erased() -> list[dict[str, Any]]:
    """A into S, then S into T (a merge of merges), then T erased and everyone merged into it."""
    j = chained_merges()
    for customer in (THIRD, SURVIVOR, ABSORBED):
        j.add("customer", "customer_erased", day(30), customer_id=customer, request_id="DSR-9", erased_at=day(30))
    return j.events


def chained_then_unmerged() -> list[dict[str, Any]]:
    """A into S, S into T, then the later merge undone first, then the first (the order the service insists on)."""
    j = chained_merges()
    j.add("customer", "customer_unmerged", day(17), customer_id=SURVIVOR, survivor_id=THIRD, merge_id="merge-2",
          unmerged_at=day(17))
    j.add("service", "case_responded", day(18), customer_id=ABSORBED, case_id="0a5e0000-0000-4000-8000-0000000000e1")
    j.add("customer", "customer_unmerged", day(20), customer_id=ABSORBED, survivor_id=SURVIVOR, merge_id="merge-1",
          unmerged_at=day(20))
    return j.events


STORIES = {"merged_then_erased": merged_then_erased, "chained_then_erased": chained_then_erased,
           "chained_then_unmerged": chained_then_unmerged}
ERASED = {"merged_then_erased", "chained_then_erased"}


@pytest.mark.parametrize("story", sorted(STORIES))
def test_a_rebuild_equals_the_live_view_after_merge_then_erase(live_view, test_database, story):  # noqa: F811
    before, after = live_then_rebuilt(test_database, live_view, STORIES[story]())
    assert story not in ERASED or [s for s in SECRETS if s in repr(before)] == []
    assert after == before


@pytest.mark.parametrize("story", sorted(STORIES))
@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_any_interleaving_after_merge_then_erase_gives_the_same_rows_and_no_personal_data(
    read_schema, disposable_read_schema, test_database, story, seed
):
    events = STORIES[story]()
    apply(test_database, read_schema, [events])
    apply(test_database, disposable_read_schema, interleaving(events, seed))
    one = read(test_database, read_schema, readmodel.all_rows)
    assert one == read(test_database, disposable_read_schema, readmodel.all_rows)
    shown = query(test_database, read_schema, "SELECT customer_id::text FROM customer_view")
    if story in ERASED:
        assert [s for s in SECRETS if s in repr(one)] == [] and len(shown) == 1
    else:
        assert len(shown) == 3  # everyone back on their own row
