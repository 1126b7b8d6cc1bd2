"""The event store's connection pool: a connection the server closed is never handed out, and telling
costs no round trip (the check replaces eventsourcing's pre-ping)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
from eventsourcing.domain import Aggregate

from crm_runtime.eventstore import ServiceApplication, check_pooled_connection


class Note(Aggregate):
    def __init__(self, text: str) -> None:
        self.text = text


class Notes(ServiceApplication):
    service = "notes"


@pytest.fixture
def notes(test_database: dict[str, str], postgres_schema: str) -> Iterator[Notes]:
    env = {**test_database, "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_SCHEMA": postgres_schema,
           "CREATE_TABLE": "true", "POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "0", "GROUP_COMMIT": "false"}
    app = Notes(env=env)
    yield app
    app.close()


def test_a_connection_the_server_ended_is_replaced_before_the_next_command_uses_it(notes, test_database):
    note = Note("before")
    notes.save(note)
    pool = notes.recorder.datastore.pool
    with pool.connection() as first, pool.connection() as second:  # the whole pool (size 2)
        killed = [first.info.backend_pid, second.info.backend_pid]
    with psycopg.connect(host=test_database["POSTGRES_HOST"], port=test_database["POSTGRES_PORT"],
                         user=test_database["POSTGRES_USER"], dbname=test_database["POSTGRES_DBNAME"],
                         autocommit=True) as admin:
        for pid in killed:
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
    time.sleep(0.2)  # the server's FATAL message and FIN reach the client socket

    assert notes.repository.get(note.id).text == "before"  # no error reaches the caller
    assert pool.get_stats().get("connections_lost", 0) >= 1  # the check, not a failed query, found it
    with pool.connection() as conn:
        assert conn.info.backend_pid not in killed


def test_the_check_refuses_a_closed_or_busy_connection_and_passes_an_idle_one(test_database):
    params = dict(host=test_database["POSTGRES_HOST"], port=test_database["POSTGRES_PORT"],
                  user=test_database["POSTGRES_USER"], dbname=test_database["POSTGRES_DBNAME"])
    with psycopg.connect(**params) as conn:
        check_pooled_connection(conn)
        conn.execute("SELECT 1")  # now in a transaction: not idle
        with pytest.raises(psycopg.OperationalError):
            check_pooled_connection(conn)
        conn.rollback()
        check_pooled_connection(conn)
    with pytest.raises(psycopg.OperationalError):
        check_pooled_connection(conn)
