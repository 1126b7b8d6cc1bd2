"""The analytics in the 360 read model (PostgreSQL): stored with their instant by a refresh, recomputed
when a customer's events arrive, equal after a rebuild, queryable; and the view as of a past instant,
equal to a view built from the events up to then. Real: PostgreSQL, the inbox, rebuild(). Replaced: the
origins' feeds (lists)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from crm_customer360 import analytics_store, readmodel, reports, segments
from crm_customer360 import view as views
from crm_customer360.rebuild import rebuild
from crm_customer360.service import ORIGINS
from crm_customer360.tests.test_view import CUSTOMER, Journey, day, full_journey, order, registered
from crm_customer360.view_as_of import customer_360_as_of
from crm_runtime.inbox import Inbox
from tests.integration.test_360_journey import (
    apply,
    live_view,  # noqa: F401 - the live schema fixture
    read,
    round_robin,
)
from tests.support.databases import dsn

pytestmark = pytest.mark.integration

OTHER = str(uuid.uuid4())


def events() -> list[dict[str, Any]]:
    """Two customers: the full journey (orders on days 20 and 90) and one who buys on days 30, 60 and 100."""
    first = full_journey(Journey(), str(uuid.uuid4()), [("12400.00", 20), ("99.99", 90)])
    second = Journey(OTHER)
    second.streams = first.streams  # one log per origin: positions go on from the first customer's
    registered(second, day(2))
    second.add("customer", "customer_consent_changed", day(3), channel="email", granted=True)
    for at in (30, 60, 100):
        order(second, str(uuid.uuid4()), "500.00", day(at), day(at + 1))
    return first.events + second.events


def refresh(cur: Any, instant: str) -> dict[str, Any]:
    """What the service's refresh_analytics does: the clock, then the analytics, as of one instant."""
    readmodel.advance_clock(cur, views._instant(instant))
    return analytics_store.refresh(cur, views._instant(instant))


def test_a_refresh_stores_figures_with_their_instant_and_new_events_recompute_them(read_schema, test_database):
    all_events = events()
    early = [e for e in all_events if e["occurred_at"] <= day(50)]
    apply(test_database, read_schema, [[e] for e in early])
    assert read(test_database, read_schema, analytics_store.of_customer, CUSTOMER) is None  # no model yet
    assert read(test_database, read_schema, refresh, day(50)) == {"as_of": day(50), "customers": 2, "buyers": 2}
    figures = read(test_database, read_schema, analytics_store.of_customer, OTHER)
    assert (figures["as_of"], figures["model_as_of"], figures["rfm"]["frequency"]) == (day(50), day(50), 1)

    apply(test_database, read_schema, [[e] for e in all_events if e not in early])
    figures = read(test_database, read_schema, analytics_store.of_customer, OTHER)
    # judged against the same model, as of the customer's newest event
    assert (figures["as_of"], figures["model_as_of"], figures["rfm"]["frequency"]) == (day(101), day(50), 3)

    page = read(test_database, read_schema, analytics_store.query, {"loyalty_type": figures["loyalty"]["type"]}, 1, 10)
    assert OTHER in {item["customer_id"] for item in page["items"]} and page["model_as_of"] == day(50)
    everyone = read(test_database, read_schema, analytics_store.query, {}, 1, 10)
    assert everyone["total"] == 2
    summary = read(test_database, read_schema, lambda cur: reports.analytics_summary(analytics_store.all_figures(cur)))
    assert sum(r["customers"] for r in summary["rows"] if r["measure"] == "clv_distribution") == 2
    clvs = [item["migration_clv"] for item in everyone["items"]]
    top = everyone["items"][0]["migration_clv"]
    assert read(test_database, read_schema, analytics_store.query, {"clv_min": top}, 1, 10)["total"] == \
        clvs.count(top)
    assert read(test_database, read_schema, analytics_store.query, {"churn_risk": "high", "clv_max": "0.00"},
                1, 10)["total"] == 0
    # criteria over the view's own fields: consent per channel, stage
    by_consent = read(test_database, read_schema, analytics_store.query, {"consent": "email"}, 1, 10)
    assert [item["customer_id"] for item in by_consent["items"]] == [OTHER]
    stage = by_consent["items"][0]["lifecycle_stage"]
    assert OTHER in {i["customer_id"] for i in read(test_database, read_schema, analytics_store.query,
                                                    {"lifecycle_stage": stage}, 1, 10)["items"]}
    assert read(test_database, read_schema, analytics_store.query, {"consent": "email", "lifecycle_stage": "lead"},
                1, 10)["total"] == 0
    # a campaign's channel needs its consent channel (email -> email, telephone -> phone), online none
    reached = {channel: read(test_database, read_schema, analytics_store.query, {"campaign_channel": channel}, 1, 10)
               for channel in ("email", "telephone", "online")}
    assert [item["customer_id"] for item in reached["email"]["items"]] == [OTHER]
    assert reached["telephone"]["total"] == 0 and reached["online"]["total"] == 2


def test_a_rebuild_equals_the_live_view_with_its_analytics(live_view, test_database):  # noqa: F811
    all_events = events()
    live = Inbox(dsn(test_database, live_view), readmodel.apply_batch, fetch=None)
    try:
        batches = round_robin(all_events, ["loyalty", "customer", "order", "marketing", "service", "sales"])
        for n, batch in enumerate(batches):
            assert live.receive(batch).applied == 1
            if n == len(batches) // 2:  # a refresh half way: later events are judged against its model
                read(test_database, live_view, refresh, day(60))
    finally:
        live.close()
    read(test_database, live_view, refresh, day(200))
    read(test_database, live_view, segments.save, "command-1", "by email", {"consent": "email"},
         views._instant(day(200)))
    before = read(test_database, live_view, readmodel.all_rows)
    assert len(before["analytics_model"]) == 2 and len(before["customer_analytics"]) == 2
    assert len(before["saved_segment"]) == 1

    def feed(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
        return [e for e in all_events if e["origin"] == origin and e["position"] > after][:limit]

    rebuild(feed, ORIGINS, page=3)
    assert read(test_database, live_view, readmodel.all_rows) == before


def test_the_view_as_of_now_is_the_live_view_and_as_of_a_past_instant_is_the_view_built_until_then(
    read_schema, disposable_read_schema, test_database
):
    all_events = events()
    past = day(50)
    until_then = [e for e in all_events if e["occurred_at"] <= past]
    # The live view: events up to the past instant, a refresh then, the rest, a refresh at day 200.
    apply(test_database, read_schema, [[e] for e in until_then])
    read(test_database, read_schema, refresh, past)
    apply(test_database, read_schema, [[e] for e in all_events if e not in until_then])
    read(test_database, read_schema, refresh, day(200))
    # A view built from the events up to the past instant only, refreshed then.
    apply(test_database, disposable_read_schema, [[e] for e in until_then])
    read(test_database, disposable_read_schema, refresh, past)

    for customer in (CUSTOMER, OTHER):
        live = read(test_database, read_schema, readmodel.customer_360, customer)
        live["analytics"] = read(test_database, read_schema, analytics_store.of_customer, customer)
        now = read(test_database, read_schema, customer_360_as_of, customer, views._instant(day(200)))
        assert now.pop("as_of") == day(200)
        assert now == live

        then = read(test_database, read_schema, customer_360_as_of, customer, views._instant(past))
        built = read(test_database, disposable_read_schema, readmodel.customer_360, customer)
        built["analytics"] = read(test_database, disposable_read_schema, analytics_store.of_customer, customer)
        assert then.pop("as_of") == past
        assert then == built
        assert then["analytics"]["model_as_of"] == past
    before_anything = views._instant(day(1))
    assert read(test_database, read_schema, customer_360_as_of, OTHER, before_anything) is None


def test_saved_segments_count_and_page_their_members_now(read_schema, test_database):
    apply(test_database, read_schema, [[e] for e in events()])
    read(test_database, read_schema, refresh, day(200))
    at = views._instant(day(200))
    saved = read(test_database, read_schema, segments.save, "command-7", "reachable by email",
                 {"campaign_channel": "email", "clv_min": None}, at)
    assert (saved["name"], saved["criteria"], saved["members"]) == ("reachable by email",
                                                                    {"campaign_channel": "email"}, 1)
    again = read(test_database, read_schema, segments.save, "command-7", "another name", {}, at)
    assert again == saved  # the same command saves once
    everyone = read(test_database, read_schema, segments.save, "command-8", "everyone", {}, at)
    assert everyone["members"] == 2
    listed = read(test_database, read_schema, segments.list_segments)["items"]
    assert {s["id"]: s["members"] for s in listed} == {saved["id"]: 1, everyone["id"]: 2}
    page = read(test_database, read_schema, segments.members, saved["id"], 1, 10)
    assert [item["customer_id"] for item in page["items"]] == [OTHER]
    assert read(test_database, read_schema, segments.delete, saved["id"]) is True
    assert read(test_database, read_schema, segments.get, saved["id"]) is None
    assert read(test_database, read_schema, segments.members, saved["id"], 1, 10) is None
