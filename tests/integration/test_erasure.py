"""Erasure by crypto-shredding, on real PostgreSQL: after a customer is erased, a `pg_dump` of the whole
database (every schema: the customer service's event store, data keys and ledger; the live 360 view and
timeline; a rebuilt 360 view) holds no byte of their name, email or phone, in text or in bytea; and a
rebuild after the erasure equals the live view row for row.

Real: PostgreSQL, the customer application and its feed (what the relay publishes), the 360 inbox and
read model, rebuild(), pg_dump. Replaced: the other services' feeds (an order origin given as a list)."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg2
import pytest

from crm_customer.application import Customers
from crm_customer.publishing import translator
from crm_customer360 import readmodel
from crm_customer360.rebuild import rebuild
from crm_customer360.service import ORIGINS
from crm_runtime.feed import EventFeed
from crm_runtime.inbox import Inbox
from tests.integration.test_360_journey import live_view, read  # noqa: F401 - live_view is a fixture
from tests.support.databases import dsn, leaked, pg_dump

pytestmark = pytest.mark.integration

NAME, EMAIL, PHONE = "Qiao Wenjing", "qiao.wenjing@example.org", "+86 755 5555 0142"
NEW_EMAIL, STREET = "wenjing.q@example.org", "19 Shennan Avenue"
SECRETS = (NAME, EMAIL, PHONE, NEW_EMAIL, STREET)


@pytest.fixture
def customers(test_database: dict[str, str], postgres_schema: str) -> Any:
    app = Customers(env={**test_database, "POSTGRES_SCHEMA": postgres_schema, "CREATE_TABLE": "true"})
    yield app
    app.close()


def order_events(customer_id: str) -> list[dict[str, Any]]:
    """An order origin's events about the customer, whose payload names them (a shipping address)."""
    order_id = str(uuid.uuid4())
    placed = {"order_id": order_id, "customer_id": customer_id, "total": "120.00", "currency": "CNY",
              "placed_at": "2026-11-20T10:00:00+00:00",
              "shipping_address": {"recipient": NAME, "line1": STREET, "city": "Shenzhen", "country": "CN",
                                   "phone": PHONE}}
    paid = {"order_id": order_id, "customer_id": customer_id, "amount": "120.00", "currency": "CNY",
            "paid_at": "2026-11-21T10:00:00+00:00"}
    return [
        {"event_id": str(uuid.uuid4()), "type": kind, "version": 1, "origin": "order", "position": position,
         "previous": position - 1, "occurred_at": payload.get("placed_at") or payload["paid_at"],
         "customer_id": customer_id, "correlation_id": None, "causation_id": None, "payload": payload}
        for position, (kind, payload) in enumerate((("order_placed", placed), ("order_paid", paid)), start=1)
    ]


def test_after_erasure_no_byte_of_the_customer_is_in_the_database_and_a_rebuild_equals_live(
    customers, live_view, test_database  # noqa: F811 - the imported fixture
):
    customer = customers.register(NAME, EMAIL, PHONE, company="Qiao Trading")
    customers.set_address(customer.id, "shipping", {"recipient": NAME, "line1": STREET, "city": "Shenzhen",
                                                    "country": "CN", "phone": PHONE})
    customers.change_profile(customer.id, None, {"email": NEW_EMAIL})
    customers.record_consent(customer.id, "email", True, "web form")
    feed = EventFeed(customers, translator)
    orders = order_events(str(customer.id))

    live = Inbox(dsn(test_database, live_view), readmodel.apply_batch, fetch=None)
    try:
        assert live.receive(feed.events_since(0, 100)).applied
        assert live.receive(orders[:1]).applied
        # The scan can fail: before the erasure the 360 view holds the customer in clear.
        assert set(leaked(pg_dump(test_database), SECRETS)) >= {NAME, PHONE, STREET}

        customers.erase(customer.id, "DSR-2026-7")
        tracked = read(test_database, live_view, lambda cur: _tracked(cur, "customer"))
        assert live.receive(feed.events_since(tracked, 100)).applied == 1  # customer_erased
        assert live.receive(orders[1:]).applied  # an event of another origin after the erasure
    finally:
        live.close()

    answer = read(test_database, live_view, readmodel.customer_360, str(customer.id))
    assert answer["profile"]["erased"] is True and answer["profile"]["name"] is None
    assert {e["type"] for e in answer["timeline"]} >= {"customer_registered", "customer_erased", "order_paid"}
    before = read(test_database, live_view, readmodel.all_rows)

    def fetch(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
        if origin == "customer":
            return feed.events_since(after, limit)
        return [e for e in orders if e["origin"] == origin and e["position"] > after][:limit]

    rebuild(fetch, ORIGINS, page=2)
    assert read(test_database, live_view, readmodel.all_rows) == before
    assert leaked(pg_dump(test_database), SECRETS) == []


def _tracked(cur: Any, origin: str) -> int:
    cur.execute("SELECT position FROM inbox_tracking WHERE origin = %s", (origin,))
    row = cur.fetchone()
    return row[0] if row else 0


def test_a_registration_after_erasure_is_a_new_customer_on_postgres(customers):
    first = customers.register(NAME, EMAIL, PHONE)
    customers.erase(first.id)
    again = customers.register(NAME, EMAIL, PHONE)
    assert again.id != first.id and customers.holder_of(EMAIL) == again.id
    schema = customers.env["POSTGRES_SCHEMA"]
    conn = psycopg2.connect(dsn({k: v for k, v in customers.env.items() if k.startswith("POSTGRES_")}))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(f'SELECT subject_id, shredded_at IS NOT NULL FROM "{schema}".erasure_ledger')
            assert cur.fetchall() == [(str(first.id), True)]
            cur.execute(f'SELECT count(*) FROM "{schema}".data_keys WHERE subject_id = %s', (str(first.id),))
            assert cur.fetchone()[0] == 0
    finally:
        conn.close()


def test_the_ledger_finds_what_a_restore_brought_back(customers):
    erased = customers.register(NAME, EMAIL, PHONE)
    backed_up = customers.data_keys._load(erased.id)  # the key as a backup taken before the erasure holds it
    customers.erase(erased.id, "DSR-9")
    stranger = uuid.uuid4()  # named by the ledger file only: this database never heard of the erasure
    assert customers.data_keys.unfinished([erased.id, stranger]) == [stranger]
    # A restore brings a wrapped key back: the ledger sees it, and reconciling shreds it again.
    schema = customers.env["POSTGRES_SCHEMA"]
    with customers.data_keys.datastore.transaction(commit=True) as cur:
        cur.execute(f'INSERT INTO "{schema}".data_keys (subject_id, wrapped_key) VALUES (%s, %s)',
                    (erased.id, backed_up))
    assert customers.data_keys.unfinished() == [erased.id]
    assert customers.reconcile_erasures() == [erased.id]
    assert customers.data_keys.unfinished() == [] and not customers.data_keys.has_key(erased.id)
