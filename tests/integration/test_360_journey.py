"""A realistic journey through the 360 read model in PostgreSQL: one customer walked through all six
origins, lead events arriving before or after the link, applied through readmodel.apply_batch in two
different interleavings (equal row for row), refreshed by the view's clock, and rebuilt (equal to the
live view row for row). Real: PostgreSQL, the inbox, rebuild(). Replaced: the origins' feeds (lists)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from crm_contracts.customer360 import Customer360Schema
from crm_customer360 import readmodel
from crm_customer360 import view as views
from crm_customer360.rebuild import NEXT_SCHEMA, OLD_SCHEMA, SCHEMA, rebuild
from crm_customer360.service import ORIGINS
from crm_customer360.tests.test_view import CUSTOMER, Journey, day, full_journey
from crm_runtime.inbox import Inbox
from tests.support.databases import dsn

pytestmark = pytest.mark.integration

LEAD = str(uuid.uuid4())


def journey() -> list[dict[str, Any]]:
    return full_journey(Journey(), LEAD, [("12400.00", 20), ("99.99", 90)]).events


def by_origin(events: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    streams: dict[str, list[dict[str, Any]]] = {}
    for event in events:
        streams.setdefault(event["origin"], []).append(event)
    return streams


def round_robin(events: list[dict[str, Any]], origins: list[str]) -> list[list[dict[str, Any]]]:
    """One event per origin in turn, taking origins in the order given: batches of one."""
    streams = by_origin(events)
    merged = []
    while any(streams.get(o) for o in origins):
        for origin in origins:
            if streams.get(origin):
                merged.append([streams[origin].pop(0)])
    return merged


def apply(env: dict[str, str], schema: str, batches: list[list[dict[str, Any]]]) -> None:
    conn = psycopg2.connect(dsn(env, schema))
    try:
        for batch in batches:
            with conn, conn.cursor() as cur:
                readmodel.apply_batch(cur, batch)
    finally:
        conn.close()


def read(env: dict[str, str], schema: str, reader: Any, *args: Any) -> Any:
    conn = psycopg2.connect(dsn(env, schema))
    try:
        with conn, conn.cursor() as cur:
            return reader(cur, *args)
    finally:
        conn.close()


def test_two_interleavings_give_the_same_rows_and_lead_events_reach_the_timeline(
    read_schema, disposable_read_schema, test_database
):
    events = journey()
    # Marketing last: the lead's events come after its link. Then marketing first, whole origins as batches.
    apply(test_database, read_schema, round_robin(events, ["customer", "sales", "order", "service", "loyalty",
                                                           "marketing"]))
    streams = by_origin(events)
    apply(test_database, disposable_read_schema, [streams[o] for o in ("marketing", "loyalty", "service", "order",
                                                                      "sales", "customer")])

    assert read(test_database, read_schema, readmodel.all_rows) == read(
        test_database, disposable_read_schema, readmodel.all_rows)
    answer = read(test_database, read_schema, readmodel.customer_360, CUSTOMER)
    assert Customer360Schema().validate(answer) == {}
    shown = {entry["type"] for entry in answer["timeline"]}
    assert {"lead_captured", "lead_scored", "lead_qualified", "lead_converted"} <= shown
    assert {e["origin"] for e in answer["timeline"]} == {"customer", "marketing", "sales", "order", "service",
                                                          "loyalty"}
    assert answer["timeline_total"] == len([e for e in events if e["type"] != "campaign_launched"])
    assert answer["lifecycle_stage"] == "repeat_customer" and answer["marketing"]["campaigns"]
    assert answer["pipeline"]["won_total"] == {"CNY": "12400.00"}
    assert answer["orders"]["revenue"] == {"CNY": "12498.99"}  # 12400.00 + 99.99 - 1.00 returned


def test_the_clock_moves_time_based_stages_in_every_copy_alike(read_schema, disposable_read_schema, test_database):
    events = journey()
    for schema in (read_schema, disposable_read_schema):
        apply(test_database, schema, [[e] for e in events])
        changed = read(test_database, schema, readmodel.advance_clock,
                       views._instant(day(90 + views.CHURNED_AFTER_DAYS + 10)))
        assert changed == 1
    assert read(test_database, read_schema, readmodel.all_rows) == read(
        test_database, disposable_read_schema, readmodel.all_rows)
    answer = read(test_database, read_schema, readmodel.customer_360, CUSTOMER)
    assert (answer["lifecycle_stage"], answer["relationship_phase"]) == ("churned", "pause")
    # The clock never goes back: an older instant changes nothing.
    assert read(test_database, read_schema, readmodel.advance_clock, views._instant(day(1))) == 0


@pytest.fixture
def live_view(test_database: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The live 360 schema (`customer360`) in the test database, which rebuild() is pointed at."""
    for key, value in test_database.items():
        monkeypatch.setenv(key, value)
    conn = psycopg2.connect(dsn(test_database))
    with conn, conn.cursor() as cur:
        for schema in (SCHEMA, NEXT_SCHEMA, OLD_SCHEMA):
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(SCHEMA)))
        cur.execute(sql.SQL("SET LOCAL search_path TO {}").format(sql.Identifier(SCHEMA)))
        readmodel.create_tables(cur)
    yield SCHEMA
    with conn, conn.cursor() as cur:
        for schema in (SCHEMA, NEXT_SCHEMA, OLD_SCHEMA):
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    conn.close()


def test_a_rebuild_equals_the_live_view_row_for_row(live_view, test_database):
    events = journey()
    live = Inbox(dsn(test_database, live_view), readmodel.apply_batch, fetch=None)
    try:
        for batch in round_robin(events, ["loyalty", "customer", "order", "marketing", "service", "sales"]):
            assert live.receive(batch).applied == 1
    finally:
        live.close()
    read(test_database, live_view, readmodel.advance_clock, views._instant(day(90 + views.AT_RISK_AFTER_DAYS)))
    before = read(test_database, live_view, readmodel.all_rows)
    assert before["lead_view"] and before["view_clock"][0][1] is not None

    def feed(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
        return [e for e in events if e["origin"] == origin and e["position"] > after][:limit]

    report = rebuild(feed, ORIGINS, page=3)

    assert report.events == len(events)
    assert read(test_database, live_view, readmodel.all_rows) == before
