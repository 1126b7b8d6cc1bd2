"""The 360 read model with two customer360 replicas writing at once (two inboxes, two connections).

The interleaving is fixed, not left to chance: replica A applies its event and holds its transaction
open; replica B then applies an event of another origin for the same customer and must wait for A;
A commits; B finishes. Whatever B read before A committed would be a lost update."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest

from crm_customer360 import readmodel
from crm_runtime.inbox import Inbox
from tests.support.databases import dsn, query
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


class HeldOpen:
    """An apply_batch that, after applying, keeps the transaction open until released."""

    def __init__(self) -> None:
        self.applied = threading.Event()
        self.release = threading.Event()

    def __call__(self, cur: Any, batch: list[dict[str, Any]]) -> None:
        readmodel.apply_batch(cur, batch)
        self.applied.set()
        assert self.release.wait(20), "the test never released replica A"


def waiting_on_a_lock(test_database: dict[str, str], pid: int) -> bool:
    rows = query(test_database, None, "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,))
    return bool(rows) and rows[0][0] == "Lock"


def run_in_thread(target: Any, *args: Any) -> tuple[threading.Thread, list[Any]]:
    results: list[Any] = []
    thread = threading.Thread(target=lambda: results.append(target(*args)), daemon=True)
    thread.start()
    return thread, results


def test_two_replicas_folding_a_new_customer_from_two_origins_lose_no_update(
    read_schema, test_database, envelopes
):
    customer_id = str(uuid.uuid4())
    registered, paid = envelopes.registered(customer_id), envelopes.order_paid(customer_id)
    held = HeldOpen()
    replica_a = Inbox(dsn(test_database, read_schema), held, fetch=None)
    replica_b = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    pid_b = replica_b.connection().get_backend_pid()

    thread_a, outcome_a = run_in_thread(replica_a.receive, [registered])
    assert held.applied.wait(10)
    thread_b, outcome_b = run_in_thread(replica_b.receive, [paid])
    eventually(lambda: waiting_on_a_lock(test_database, pid_b), timeout=10)  # B waits for A's row
    held.release.set()
    thread_a.join(10)
    thread_b.join(10)

    assert outcome_a[0].applied == 1 and outcome_b[0].applied == 1
    ((doc,),) = query(test_database, read_schema, "SELECT doc FROM customer_view")
    assert doc["profile"]["name"] == "Li Na"  # A's registration survived B's write
    assert doc["paid_orders"] == 1 and doc["lifecycle_stage"] == "customer"
    assert doc["events"] == {"customer": 1, "order": 1}
    replica_a.close()
    replica_b.close()


def test_replicas_applying_overlapping_customers_in_opposite_orders_neither_deadlock_nor_lose(
    read_schema, test_database, envelopes
):
    customers = sorted(str(uuid.uuid4()) for _ in range(6))
    registrations = [envelopes.registered(c, name=f"Customer {i}") for i, c in enumerate(customers)]
    payments = [envelopes.order_paid(c) for c in reversed(customers)]
    held = HeldOpen()
    replica_a = Inbox(dsn(test_database, read_schema), held, fetch=None)
    replica_b = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    pid_b = replica_b.connection().get_backend_pid()

    thread_a, outcome_a = run_in_thread(replica_a.receive, registrations)
    assert held.applied.wait(10)
    thread_b, outcome_b = run_in_thread(replica_b.receive, payments)
    eventually(lambda: waiting_on_a_lock(test_database, pid_b), timeout=10)
    held.release.set()
    thread_a.join(10)
    thread_b.join(10)

    assert (outcome_a[0].applied, outcome_b[0].applied) == (6, 6)
    assert not outcome_a[0].failed and not outcome_b[0].failed
    rows = query(test_database, read_schema, "SELECT name, doc FROM customer_view ORDER BY customer_id")
    assert [name for name, _ in rows] == [f"Customer {i}" for i in range(6)]
    assert all(doc["events"] == {"customer": 1, "order": 1} for _, doc in rows)
    replica_a.close()
    replica_b.close()
