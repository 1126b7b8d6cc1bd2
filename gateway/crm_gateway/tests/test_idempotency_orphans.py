"""A claim whose gateway died in the middle of it never blocks its Idempotency-Key (real PostgreSQL).

A claim is one short transaction that holds the key's row lock until it commits. A gateway that dies
between its statements, with its connection still open to the server (a vanished host, a proxy that
keeps the server's side open: the chaos run's database proxy once did), leaves that transaction
"idle in transaction". Before the store's sessions had a lock timeout and an idle-in-transaction
timeout, every later request with that key waited on the row lock for good: the client's every try
timed out, and each waiting request held one of the gateway's pooled connections.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import eventlet
import psycopg2
import pytest
from werkzeug.wrappers import Response

from crm_gateway.errors import ApiError
from crm_gateway.idempotency import _CLAIM, Claim, IdempotencyStore
from tests.support.polling import eventually

#: A bound on a claim that should answer within its lock timeout: reached only if it waits on the lock.
HANG = 30


@contextmanager
def claim_left_open(store: IdempotencyStore, key: str) -> Iterator[None]:
    """`store`'s gateway claims `key` and stops before committing, its connection still open: the body
    runs while that transaction holds the key's row. Raises psycopg2.OperationalError at the end if
    the server ended the session meanwhile."""
    params = {
        "p": "p", "k": key, "f": "fp", "command": str(uuid.uuid4()), "owner": store.instance_id,
        "token": str(uuid.uuid4()), "ttl": store.ttl_seconds, "abandoned": store.abandoned_after_seconds,
        "owner_timeout": store.owner_timeout_seconds,
    }
    with store._cursor() as cur:  # noqa: SLF001 - the test stops the store's own claim half-way
        cur.execute(_CLAIM, params)
        assert cur.fetchone() is not None
        yield


def claim_or_in_progress(store: IdempotencyStore, key: str) -> Claim | None:
    """The claim, or None while the key is answered 409 in_progress."""
    with eventlet.Timeout(HANG, AssertionError(f"the claim of {key!r} waited on a row lock for {HANG} s")):
        try:
            outcome = store.claim("p", key, "fp")
        except ApiError as error:
            assert (error.status, error.code) == (409, "in_progress"), error
            return None
    assert isinstance(outcome, Claim), outcome
    return outcome


@pytest.fixture
def stores(idempotency_store: IdempotencyStore) -> Iterator[Any]:
    """Makes further gateway instances' stores on the same key table; closes them afterwards."""
    made: list[IdempotencyStore] = []

    def make(**options: Any) -> IdempotencyStore:
        made.append(IdempotencyStore(idempotency_store.dsn, **options))
        return made[-1]

    yield make
    for store in made:
        store.close()


def test_a_claim_left_open_by_a_dead_gateway_is_in_progress_then_rolled_back_and_claimed(stores):
    dead = stores(idle_in_transaction_timeout_seconds=3)
    live = stores(lock_timeout_seconds=0.5)
    with pytest.raises(psycopg2.OperationalError):  # the server ended the dead gateway's session
        with claim_left_open(dead, "orphaned"):
            assert claim_or_in_progress(live, "orphaned") is None  # answered, not left waiting
            taken = eventually(lambda: claim_or_in_progress(live, "orphaned"), timeout=HANG, interval=0.5)
    assert live.complete(taken, Response(b"{}", status=201, mimetype="application/json")) is True


def test_a_claim_waiting_on_a_held_row_answers_409_and_holds_no_connection(stores, idempotency_store):
    live = stores(lock_timeout_seconds=0.5, max_connections=1)
    holder = psycopg2.connect(idempotency_store.dsn)  # a session without the store's timeouts
    try:
        holder.cursor().execute("INSERT INTO idempotency_keys (principal, key, fingerprint, state) "
                                "VALUES ('p', 'held', 'fp', 'running')")
        for _ in range(2):  # with one pooled connection: the first wait must have given it back
            assert claim_or_in_progress(live, "held") is None
        holder.rollback()
    finally:
        holder.close()
    assert isinstance(claim_or_in_progress(live, "held"), Claim)
