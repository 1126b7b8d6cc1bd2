"""The gateway's stores keep their PostgreSQL sessions between calls, and never hand out one the server
ended (a restart): the next call gets a fresh session instead of an error."""

from __future__ import annotations

import time

import psycopg2

from crm_gateway.idempotency import IdempotencyStore


def backend_of(store: IdempotencyStore) -> int:
    with store._cursor() as cur:
        cur.execute("SELECT pg_backend_pid()")
        return int(cur.fetchone()[0])


def test_a_session_is_kept_for_the_next_call(idempotency_store: IdempotencyStore) -> None:
    assert backend_of(idempotency_store) == backend_of(idempotency_store)


def test_a_session_the_server_ended_is_replaced_before_it_is_used(idempotency_store: IdempotencyStore) -> None:
    ended = backend_of(idempotency_store)
    with psycopg2.connect(idempotency_store.dsn) as admin, admin.cursor() as cur:
        cur.execute("SELECT pg_terminate_backend(%s)", (ended,))
    admin.close()
    time.sleep(0.2)  # the server's goodbye reaches the kept socket
    assert backend_of(idempotency_store) != ended  # no error on the way
