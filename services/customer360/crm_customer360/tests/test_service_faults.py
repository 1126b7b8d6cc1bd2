"""customer360's runtime providers under faults, with fakes (no database, no broker).

nameko kills the whole container when a provider's get_dependency or worker_result raises, or when a
managed thread ends with an exception; these tests hold each of those doors shut."""

from __future__ import annotations

import os
import sys
import threading
from types import SimpleNamespace
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from crm_customer360.rebuild import RebuildRunningError
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.inbox import Failure, FeedUnavailableError, Outcome
from crm_runtime.nameko.dependencies import InboxConsumer, PostgresCursor
from crm_runtime.nameko.rpc import as_service_error


class FakeConnection:
    """A psycopg2 connection whose server can go away."""

    def __init__(self) -> None:
        self.closed = 0
        self.info = SimpleNamespace(transaction_status=psycopg2.extensions.TRANSACTION_STATUS_IDLE)
        self._socket, self._server = os.pipe()
        self.dead = False

    def fileno(self) -> int:
        return self._socket

    def server_goes_away(self) -> None:
        """What a restart leaves: a readable socket (the FATAL message, then EOF)."""
        self.dead = True
        os.write(self._server, b"E")

    def cursor(self) -> Any:
        return FakeCursor(self)

    def commit(self) -> None:
        self._use()

    def rollback(self) -> None:
        if self.closed:
            raise psycopg2.InterfaceError("connection already closed")
        self._use()

    def _use(self) -> None:
        if self.dead:
            self.closed = 2
            raise psycopg2.OperationalError("terminating connection due to administrator command")


class FakeCursor:
    def __init__(self, conn: FakeConnection) -> None:
        self.conn = conn

    def execute(self, statement: str, params: Any = None) -> None:
        self.conn._use()

    def fetchone(self) -> tuple[int]:
        return (1,)

    def __enter__(self) -> FakeCursor:
        return self

    def __exit__(self, *exc: Any) -> None:
        pass


class FakePool:
    """psycopg2's pool as far as PostgresCursor uses it; `refuse` makes new connections fail."""

    def __init__(self) -> None:
        self.idle: list[FakeConnection] = []
        self.discarded: list[FakeConnection] = []
        self.refuse: Exception | None = None

    def getconn(self) -> FakeConnection:
        if self.idle:
            return self.idle.pop()
        if self.refuse is not None:
            raise self.refuse
        return FakeConnection()

    def putconn(self, conn: FakeConnection, close: bool = False) -> None:
        (self.discarded if close else self.idle).append(conn)


@pytest.fixture
def provider() -> PostgresCursor:
    found = PostgresCursor("customer360")
    found.pool, found.size, found._available = FakePool(), 2, threading.BoundedSemaphore(2)
    return found


def free_slots(provider: PostgresCursor) -> int:
    return provider._available._value  # type: ignore[attr-defined,no-any-return]


def run_worker(provider: PostgresCursor, work: Any) -> None:
    """nameko's part: inject, run, and report the result to the provider (which must not raise)."""
    worker_ctx = object()
    cursor = provider.get_dependency(worker_ctx)
    try:
        work(cursor)
    except Exception:  # noqa: BLE001 - nameko hands the error to worker_result and replies with it
        provider.worker_result(worker_ctx, None, sys.exc_info())
        raise
    provider.worker_result(worker_ctx, "result", None)


def test_a_connection_lost_during_a_worker_fails_that_call_only(provider):
    def query_while_the_server_dies(cursor: Any) -> None:
        cursor.execute("SELECT 1")
        cursor.conn.server_goes_away()
        cursor.execute("SELECT 1")

    with pytest.raises(psycopg2.OperationalError):
        run_worker(provider, query_while_the_server_dies)  # rollback raised InterfaceError: not escaped
    assert len(provider.pool.discarded) == 1 and free_slots(provider) == 2


def test_a_commit_on_a_dead_connection_is_not_raised_into_nameko(provider):
    run_worker(provider, lambda cursor: (cursor.execute("SELECT 1"), cursor.conn.server_goes_away()))
    assert len(provider.pool.discarded) == 1 and free_slots(provider) == 2


def test_a_database_refusing_connections_fails_calls_and_leaks_no_slot(provider):
    provider.pool.refuse = psycopg2.OperationalError("connection refused")
    for _ in range(provider.size + 1):  # more than the slots: a leaked slot would block here
        with pytest.raises(psycopg2.OperationalError):
            run_worker(provider, lambda cursor: cursor.execute("SELECT 1"))
    assert free_slots(provider) == 2
    assert provider.health_check() == {"ok": False, "database": "error: connection refused"}
    provider.pool.refuse = None
    run_worker(provider, lambda cursor: cursor.execute("SELECT 1"))  # and it recovers by itself


def test_a_pooled_connection_the_server_closed_is_never_handed_out(provider):
    stale = [FakeConnection(), FakeConnection()]
    for conn in stale:
        conn.server_goes_away()
    provider.pool.idle.extend(stale)
    run_worker(provider, lambda cursor: cursor.execute("SELECT 1"))
    assert {id(c) for c in provider.pool.discarded} == {id(c) for c in stale} and free_slots(provider) == 2
    assert provider.health_check() == {"ok": True, "database": "ok"}


def test_a_worker_that_never_queries_takes_no_connection(provider):
    run_worker(provider, lambda cursor: None)
    assert provider.pool.idle == [] and free_slots(provider) == 2


class FlakyConsumer:
    """An EnvelopeConsumer whose run() fails once with a bug, then runs until stopped."""

    def __init__(self) -> None:
        self.runs = 0

    def run(self, stopping: threading.Event) -> None:
        self.runs += 1
        if self.runs == 1:
            raise RuntimeError("a bug")
        stopping.set()


def test_the_inbox_thread_survives_a_consumer_that_raises(monkeypatch):
    provider = InboxConsumer("q", [], ["customer"], "customer360", lambda cur, batch: None)
    provider.consumer = FlakyConsumer()  # type: ignore[assignment]
    monkeypatch.setattr(provider._stopping, "wait", lambda timeout=None: False)
    provider._consume()  # returns only once stopping is set; raising would kill the container
    assert provider.consumer.runs == 2


class FaultyInbox:
    def __init__(self) -> None:
        self.errors = {"customer": psycopg2.OperationalError("database restarting"),
                       "order": FeedUnavailableError("order is down"), "sales": RuntimeError("a bug")}

    def catch_up(self, origin: str) -> Outcome:
        if origin in self.errors:
            raise self.errors[origin]
        return Outcome(applied=1)

    def parked_count(self) -> int:
        raise psycopg2.OperationalError("database restarting")

    def acts_on(self, envelope: dict) -> bool:
        return True  # as the read side's Inbox: every event's content is used


def test_catch_up_survives_any_fault_of_one_origin():
    provider = InboxConsumer("q", [], ["customer", "order", "sales", "loyalty"], "customer360",
                             lambda cur, batch: None)
    outcomes = provider._catch_up(FaultyInbox())  # type: ignore[arg-type]
    assert [o.applied for o in outcomes] == [1]


def test_the_consumer_housekeeping_survives_faults_and_transient_failures_are_not_dead_lettered():
    consumer = EnvelopeConsumer(FaultyInbox(), "amqp://unused", "q", [],  # type: ignore[arg-type]
                                catch_up=lambda inbox: (_ for _ in ()).throw(RuntimeError("a bug")))
    consumer._housekeeping(channel=None)
    assert "a bug" in (consumer.stats.last_error or "")

    dead_lettered: list[str] = []
    consumer._dead_letter = lambda channel, message, envelope, reason: dead_lettered.append(reason)  # type: ignore
    envelope = {"event_id": "e1", "origin": "customer", "position": 1}
    transient = Outcome(failed=[Failure(envelope, "OperationalError: gone", transient=True)])
    consumer._apply_with_retries = lambda envelopes: transient  # type: ignore[method-assign]
    consumer._process([], channel=None)
    assert dead_lettered == []  # left for catch-up: tracking has not moved past it


def test_a_second_rebuild_is_a_conflict_for_the_gateway():
    assert as_service_error(RebuildRunningError("a rebuild is already running")).code == "conflict"
