"""Two writer processes of one service and the relay running: no event is ever skipped.

Two Customers applications on one schema stand for two replicas (or the old and new process of a
rolling deploy). The interleaving is fixed with a trigger: writer A's insert blocks, after its
notification ids were issued and before it commits, until the test lets it go. Meanwhile writer B
saves and the relay reads. With eventsourcing's locking insert (what crm_runtime configures) B
waits for A's table lock, so ids commit in order; with its insert function (no lock), B commits ids
above A's, the relay moves past A's ids, and A's events are never published.
"""

from __future__ import annotations

import random
import threading

import psycopg2
import pytest
from psycopg2 import sql

from crm_customer.application import Customers
from tests.integration.test_outbox_relay import cursor_of
from tests.support.databases import dsn
from tests.support.polling import eventually

pytestmark = pytest.mark.integration

#: Writer A's emails; the trigger holds back every insert whose state mentions this.
#: Writer A's registrations come from this source channel, which its events' state holds in clear (names
#: and emails are sealed: crm_runtime.crypto); the trigger holds the insert of any row that mentions it.
HELD = "partner"


class HeldInserts:
    """A trigger that makes the insert of writer A's events wait on an advisory lock the test holds."""

    def __init__(self, database: dict[str, str], schema: str, table: str) -> None:
        self.key = random.randint(1_000_000, 2_000_000_000)
        self.schema, self.table = schema, table
        self.conn = psycopg2.connect(dsn(database))
        self.conn.autocommit = True
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL(
                "CREATE FUNCTION {schema}.hold_writer_a() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF position({held} in convert_from(NEW.state, 'UTF8')) > 0 THEN "
                "PERFORM pg_advisory_xact_lock({key}); END IF; RETURN NEW; END $$"
            ).format(schema=sql.Identifier(schema), held=sql.Literal(HELD), key=sql.Literal(self.key)))
            cur.execute(sql.SQL(
                "CREATE TRIGGER hold_writer_a BEFORE INSERT ON {schema}.{table} "
                "FOR EACH ROW EXECUTE FUNCTION {schema}.hold_writer_a()"
            ).format(schema=sql.Identifier(schema), table=sql.Identifier(table)))

    def hold(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_lock(%s)", (self.key,))

    def release(self) -> None:
        with self.conn.cursor() as cur:
            cur.execute("SELECT pg_advisory_unlock(%s)", (self.key,))

    def writer_a_is_held(self) -> bool:
        """A's transaction has its notification ids and waits, uncommitted, for the test."""
        return self._count("locktype = 'advisory' AND objid = %s AND NOT granted", self.key) > 0

    def someone_waits_for_the_table(self) -> bool:
        return self._count("relation = %s::regclass AND NOT granted", f"{self.schema}.{self.table}") > 0

    def committed_head(self) -> int:
        """The highest notification id a reader can see now."""
        with self.conn.cursor() as cur:
            cur.execute(sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}.{}").format(
                sql.Identifier(self.schema), sql.Identifier(self.table)))
            return int(cur.fetchone()[0])

    def _count(self, where: str, param: object) -> int:
        with self.conn.cursor() as cur:
            cur.execute(f"SELECT count(*) FROM pg_locks WHERE {where}", (param,))  # noqa: S608 - fixed text
            return int(cur.fetchone()[0])

    def close(self) -> None:
        self.conn.close()


def in_background(action, *args):
    """Run `action(*args)` in a thread; the returned thread has `.error` set if it raised."""

    def run():
        try:
            action(*args)
        except Exception as exc:  # noqa: BLE001 - reported by the test
            thread.error = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.error = None
    thread.start()
    return thread


def register(app, prefix, count, source_channel="web"):
    return [app.register(f"{prefix} {i}", f"{prefix}{i}@example.com", source_channel=source_channel).id
            for i in range(count)]


def test_two_writers_with_ids_committing_out_of_order_lose_nothing(
    customers, relay, probe, running, test_database, postgres_schema
):
    writer_b = Customers(env={**test_database, "POSTGRES_SCHEMA": postgres_schema, "CREATE_TABLE": "false"})
    held = HeldInserts(test_database, postgres_schema, customers.recorder.events_table_name)
    try:
        assert not customers.recorder.datastore.enable_db_functions
        assert not writer_b.recorder.datastore.enable_db_functions
        running(relay)
        eventually(lambda: relay.stats.is_leader)
        expected = register(customers, "before", 3)
        eventually(lambda: cursor_of(relay)[0] == held.committed_head())

        # A takes notification ids and holds its transaction open ...
        held.hold()
        a = in_background(lambda: expected.extend(register(customers, "writer-a-", 2, source_channel=HELD)))
        eventually(held.writer_a_is_held, timeout=10)
        # ... while B saves: B either commits (no table lock) or queues behind A's lock ...
        b = in_background(lambda: expected.extend(register(writer_b, "writer-b-", 3)))
        eventually(lambda: not b.is_alive() or held.someone_waits_for_the_table(), timeout=10)
        # ... and the relay reads everything committed so far.
        eventually(lambda: cursor_of(relay)[0] == held.committed_head(), timeout=10)

        held.release()
        a.join(10)
        b.join(10)
        assert a.error is None and b.error is None
        head = held.committed_head()
        eventually(lambda: cursor_of(relay)[0] == head, timeout=10)

        received = eventually(lambda: probe.drain() or None, timeout=10)
        positions = [e["position"] for e in received]
        assert [e["customer_id"] for e in received].count(None) == 0
        assert sorted(e["customer_id"] for e in received) == sorted(str(i) for i in expected), (
            "every registration of both writers is published exactly once"
        )
        assert positions == sorted(positions), "in log order"
        assert [e["previous"] for e in received] == [0, *positions[:-1]], "an unbroken previous chain"
    finally:
        held.release()
        held.close()
        writer_b.close()


def test_no_setting_brings_back_the_unlocked_insert(test_database, postgres_schema, monkeypatch, caplog):
    monkeypatch.setenv("POSTGRES_ENABLE_DB_FUNCTIONS", "true")
    monkeypatch.setenv("CUSTOMERS_POSTGRES_ENABLE_DB_FUNCTIONS", "yes")  # eventsourcing's per-application key
    app = Customers(env={**test_database, "POSTGRES_SCHEMA": postgres_schema, "CREATE_TABLE": "true",
                         "POSTGRES_ENABLE_DB_FUNCTIONS": "on"})
    try:
        assert not app.recorder.datastore.enable_db_functions
        assert "ignoring POSTGRES_ENABLE_DB_FUNCTIONS=on" in caplog.text
        assert "ignoring CUSTOMERS_POSTGRES_ENABLE_DB_FUNCTIONS=yes" in caplog.text
    finally:
        app.close()
