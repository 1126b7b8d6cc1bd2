"""Webhook delivery logs hold no personal data, so an erasure has nothing to purge there: a customer's event
(name, email, phone in its payload) delivered to a receiver that first refuses it with an answer quoting
the person, then cannot be reached, then takes it, leaves in the gateway's webhook tables only ids,
types, positions, statuses and the gateway's own error text — never the body sent nor the answer read
(crm_gateway.subscribers.webhooks).

Real: PostgreSQL (the gateway's tables in a schema of the test's own), a receiver on loopback over HTTP,
signatures. Replaced: the origin's feed (a list in memory).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest

from crm_gateway.routes.events import Selection, read_page
from crm_gateway.subscribers.webhooks import Sender, WebhookStore, deliver_due
from tests.support.databases import dsn
from tests.support.webhooks import LoopbackServer, QuietHandler, migrated_gateway_dsn

pytestmark = pytest.mark.integration


class EchoingReceiver(LoopbackServer):
    """Answers its first request 422, quoting the body it was sent, and every other one 200."""

    def __init__(self, refused: bool = False) -> None:
        self.received: list[dict[str, Any]] = []
        self.refused = refused  # the first request is answered 422 unless it was refused already
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                refuse, receiver.refused = not receiver.refused, True
                answer = b'{"error": "we cannot take ' + raw + b'"}' if refuse else b"{}"
                if not refuse:
                    receiver.received.append(json.loads(raw))
                self.send_response(422 if refuse else 200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        super().__init__(Handler)


@pytest.fixture
def store(test_database: dict[str, str], postgres_schema: str) -> Iterator[WebhookStore]:
    found = WebhookStore(migrated_gateway_dsn(test_database, postgres_schema))
    yield found
    found.close()


def test_the_delivery_log_of_a_customers_event_holds_nothing_that_names_them(
    store: WebhookStore, test_database: dict[str, str], postgres_schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE", "true")
    monkeypatch.setenv("WEBHOOK_BACKOFF_MAX", "0")
    marker = uuid.uuid4().hex[:10]
    person = {"name": f"Webhook Person {marker}", "email": f"hook.{marker}@example.org",
              "phone": f"+86 10 {int(marker[:6], 16) % 10**8:08d}"}
    envelope = {"event_id": str(uuid.uuid4()), "type": "customer_registered", "version": 1, "origin": "customer",
                "position": 1, "previous": 0, "occurred_at": "2026-12-01T10:00:00+00:00",
                "customer_id": str(uuid.uuid4()), "correlation_id": None, "causation_id": None,
                "payload": {"customer_id": None, **person}}
    envelope["payload"]["customer_id"] = envelope["customer_id"]

    def page(types: list[str], positions: dict[str, int], limit: int) -> Any:
        def events_since(position: int, n: int) -> list[dict[str, Any]]:
            return [e for e in [envelope] if e["position"] > position][:n]

        return read_page(lambda origin: events_since, Selection(["#"], types), positions, limit)

    receiver = EchoingReceiver()
    hook = store.create(str(uuid.uuid4()), receiver.url, ["customer.#"], "whsec_test")
    try:
        deliver_due(store, Sender(timeout=2), page)  # refused, with an answer quoting the person
        receiver.close()
        deliver_due(store, Sender(timeout=2), page)  # cannot connect
        receiver = EchoingReceiver(refused=True)
        conn = psycopg2.connect(dsn(test_database, postgres_schema))
        with conn, conn.cursor() as cur:
            cur.execute("UPDATE webhooks SET url = %s", (receiver.url,))
        conn.close()
        deliver_due(store, Sender(timeout=2), page)  # taken
    finally:
        receiver.close()

    assert [e["payload"]["email"] for e in receiver.received] == [person["email"]]  # the person was sent
    attempts = [(d["attempt"], d["status"]) for d in reversed(store.deliveries(hook.id))]
    assert attempts == [(1, 422), (2, None), (3, 200)], attempts
    conn = psycopg2.connect(dsn(test_database, postgres_schema))
    with conn, conn.cursor() as cur:
        cur.execute("SELECT json_agg(w)::text FROM webhooks AS w")
        subscriptions = cur.fetchone()[0]
        cur.execute("SELECT json_agg(d)::text FROM webhook_deliveries AS d")
        deliveries = cur.fetchone()[0]
    conn.close()
    kept = (subscriptions + deliveries).lower()
    assert envelope["event_id"] in kept  # what was delivered is logged, by id
    assert [what for what, value in person.items() if value.lower() in kept] == [], kept
