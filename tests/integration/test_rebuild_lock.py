"""Rebuilding the 360 view: one rebuild at a time (a second is refused with a conflict, 409 at the
gateway, instead of dropping the first one's schema), and a poison event does not fail every rebuild."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from psycopg2 import sql

from crm_customer360 import readmodel
from crm_customer360.rebuild import NEXT_SCHEMA, OLD_SCHEMA, SCHEMA, RebuildRunningError, rebuild
from crm_runtime.nameko.rpc import as_service_error
from tests.support.databases import dsn, query

pytestmark = pytest.mark.integration


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


def feed_of(events: list[dict[str, Any]]) -> Any:
    def fetch(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
        return [e for e in events if e["origin"] == origin and e["position"] > after][:limit]

    return fetch


def test_a_second_rebuild_while_one_runs_is_a_conflict_and_the_first_completes(live_view, test_database, envelopes):
    customer_id = str(uuid.uuid4())
    history = feed_of([envelopes.registered(customer_id)])
    inside, release = threading.Event(), threading.Event()

    def slow_fetch(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
        inside.set()
        assert release.wait(20)
        return history(origin, after, limit)

    reports: list[Any] = []
    first = threading.Thread(target=lambda: reports.append(rebuild(slow_fetch, ["customer"])), daemon=True)
    first.start()
    assert inside.wait(10)  # the first rebuild is pulling into customer360_next

    with pytest.raises(RebuildRunningError) as refused:
        rebuild(history, ["customer"])
    assert as_service_error(refused.value).code == "conflict"  # what the gateway answers with 409

    release.set()
    first.join(20)
    assert reports and reports[0].events == 1  # the first one's schema was not dropped under it
    assert query(test_database, live_view, "SELECT customer_id::text FROM customer_view") == [(customer_id,)]
    assert rebuild(history, ["customer"]).events == 1  # the lock went with the first rebuild


def test_a_rebuild_parks_a_poison_event_instead_of_failing(live_view, test_database, envelopes):
    customer_id = str(uuid.uuid4())
    registered = envelopes.registered(customer_id)
    poison = envelopes.next("customer", "customer_profile_changed", customer_id,
                            {"changes": {"company": "Acme\u0000Ltd"}})
    renamed = envelopes.renamed(customer_id, "Li Na (Acme)")

    report = rebuild(feed_of([registered, poison, renamed]), ["customer"])

    assert report.events == 2 and report.positions == {"customer": 3}
    assert query(test_database, live_view, "SELECT name FROM customer_view") == [("Li Na (Acme)",)]
    assert query(test_database, live_view, "SELECT origin, position FROM inbox_parked") == [("customer", 2)]
