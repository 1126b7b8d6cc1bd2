"""Webhooks: subscriptions (crm:admin), no server-side request forgery, HMAC-SHA256 signatures over
timestamp and body, delivery in feed order one at a time (so a customer's events never overtake each
other), retries with back-off, pause after repeated failure, resume from the last event delivered, and a
delivery log.

Real: PostgreSQL (the gateway's tables in a schema of the test's own), a local receiver on loopback (so
these tests set WEBHOOKS_ALLOW_PRIVATE, as only tests may), HTTP, signatures. Replaced: the origins'
feeds (lists in memory, test_events.Feeds) — except in the last test, where the gateway's own timer
delivers what the real order service published.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from types import SimpleNamespace
from typing import Any

import pytest
from nameko.testing.services import worker_factory

from crm_gateway.auth import ADMIN, READ, WRITE, issue_token
from crm_gateway.routes.events import Selection, read_page
from crm_gateway.service import GatewayService
from crm_gateway.subscribers import webhooks
from crm_gateway.subscribers.webhooks import Sender, WebhookStore, deliver_due, signature, verify
from crm_gateway.tests.conftest import SECRET, Api, body, running_gateway
from crm_gateway.tests.test_events import Feeds
from crm_order.service import OrderService
from crm_runtime.nameko.client import ServiceUnavailableError
from tests.support.polling import eventually
from tests.support.webhooks import LoopbackServer, QuietHandler, migrated_gateway_dsn

HOOK_SECRET = "whsec_test_secret_of_the_receiver"


class Receiver(LoopbackServer):
    """A webhook receiver on loopback that verifies every signature and answers as told."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.forged = 0
        self.answers: list[int] = []  # statuses to answer next, then 200
        receiver = self

        class Handler(QuietHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                status = receiver.answers.pop(0) if receiver.answers else 200
                if not verify(HOOK_SECRET, self.headers.get("CRM-Signature", ""), raw):
                    receiver.forged += 1
                    status = 400
                elif status == 200:
                    receiver.received.append(json.loads(raw))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler)


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Receiver]:
    monkeypatch.setenv("WEBHOOKS_ALLOW_PRIVATE", "true")
    found = Receiver()
    yield found
    found.close()


@pytest.fixture
def store(test_database, postgres_schema) -> Iterator[WebhookStore]:
    found = WebhookStore(migrated_gateway_dsn(test_database, postgres_schema))
    yield found
    found.close()


@pytest.fixture
def admin_api(clients, unused_store, store) -> Api:
    api = Api(worker_factory(GatewayService, **clients, idempotency=unused_store,
                             webhooks=SimpleNamespace(store=store, sender=Sender(timeout=5))))
    api.token = issue_token("operator", (ADMIN,), secret=SECRET)
    return api


@pytest.mark.parametrize("url", [
    "http://127.0.0.1/hook", "http://localhost:8080/hook", "http://erp.localhost/", "http://10.0.0.5/",
    "http://192.168.1.20/", "http://172.16.3.4/", "http://169.254.169.254/latest/meta-data", "http://[::1]/",
    "http://[fe80::1]/", "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/", "ftp://erp.example.com/",
    "http://user:secret@erp.example.com/", "https:///nohost", "http://erp.example.com:99999/",
])
def test_a_url_that_is_not_public_is_refused(admin_api, url):
    answer = admin_api.post("/v1/webhooks", {"url": url, "types": ["order.*"], "secret": HOOK_SECRET})
    assert answer.status_code == 422 and list(body(answer)["error"]["fields"]) == ["url"]


def test_a_name_resolving_to_a_private_address_is_refused_when_delivering():
    with pytest.raises(webhooks.RefusedUrlError):
        webhooks.check_url("https://erp.example.com/hook", resolve=lambda host: ["93.184.216.34", "10.1.2.3"])
    webhooks.check_url("https://erp.example.com/hook", resolve=lambda host: ["93.184.216.34"])


def test_only_admin_manages_webhooks(admin_api):
    admin_api.token = issue_token("writer", (READ, WRITE), secret=SECRET)
    assert admin_api.post("/v1/webhooks", {"url": "https://93.184.216.34/", "types": ["order.*"]}).status_code == 403
    assert admin_api.get("/v1/webhooks").status_code == 403


def test_signatures_verify_and_anything_else_does_not():
    raw = b'{"type":"order_paid"}'
    header = signature(HOOK_SECRET, 1_800_000_000, raw)
    assert verify(HOOK_SECRET, header, raw, now=1_800_000_010)
    assert not verify(HOOK_SECRET, header, raw + b" ", now=1_800_000_010)
    assert not verify("another secret of the same length!", header, raw, now=1_800_000_010)
    assert not verify(HOOK_SECRET, header, raw, now=1_800_000_000 + 3600)  # a replay, an hour later
    assert not verify(HOOK_SECRET, "v1=abc", raw)


def deliver(store: WebhookStore, feeds: Feeds, rounds: int = 1) -> None:
    def page(types: list[str], positions: dict[str, int], limit: int) -> Any:
        return read_page(feeds.events_since, Selection(["#"], types), positions, limit)

    for _ in range(rounds):
        deliver_due(store, Sender(timeout=5), page)


def publish_history(feeds: Feeds) -> None:
    for second, (origin, kind) in enumerate([("order", "order_placed"), ("customer", "customer_registered"),
                                             ("marketing", "lead_captured"), ("order", "order_paid"),
                                             ("order", "order_shipped")]):
        feeds.publish(origin, kind, second)


def test_deliveries_are_signed_in_order_filtered_and_logged(admin_api, store, receiver, monkeypatch):
    monkeypatch.setenv("WEBHOOK_BACKOFF_MAX", "0")
    created = admin_api.post("/v1/webhooks", {"url": receiver.url, "types": ["order.*", "customer.#"],
                                              "secret": HOOK_SECRET})
    assert created.status_code == 201 and body(created)["secret"] == HOOK_SECRET
    hook_id = body(created)["id"]
    assert "secret" not in body(admin_api.get(f"/v1/webhooks/{hook_id}"))
    feeds = Feeds()
    publish_history(feeds)
    deliver(store, feeds)
    assert [e["type"] for e in receiver.received] == ["order_placed", "customer_registered", "order_paid",
                                                       "order_shipped"]
    assert receiver.forged == 0
    deliver(store, feeds)  # nothing new: nothing again
    assert len(receiver.received) == 4
    log = body(admin_api.get(f"/v1/webhooks/{hook_id}/deliveries"))["items"]
    assert [(d["type"], d["status"]) for d in log] == [("order_shipped", 200), ("order_paid", 200),
                                                       ("customer_registered", 200), ("order_placed", 200)]


def test_an_origin_that_does_not_answer_delays_only_its_own_subscribers(admin_api, store, receiver):
    for types in (["customer.#"], ["order.*"]):
        assert admin_api.post("/v1/webhooks", {"url": receiver.url, "types": types,
                                               "secret": HOOK_SECRET}).status_code == 201
    feeds = Feeds()
    publish_history(feeds)

    def page(types: list[str], positions: dict[str, int], limit: int) -> Any:
        if any(t.startswith("customer.") for t in types):
            raise ServiceUnavailableError("customer", "no answer within 5 s")
        return read_page(feeds.events_since, Selection(["#"], types), positions, limit)

    deliver_due(store, Sender(timeout=5), page)
    assert [e["type"] for e in receiver.received] == ["order_placed", "order_paid", "order_shipped"]


def test_a_failing_receiver_is_retried_holds_back_what_follows_then_is_paused_and_resumed(
        admin_api, store, receiver, monkeypatch):
    monkeypatch.setenv("WEBHOOK_BACKOFF_MAX", "0")  # retry at the next round (the back-off is tested below)
    monkeypatch.setenv("WEBHOOK_MAX_FAILURES", "3")
    hook_id = body(admin_api.post("/v1/webhooks", {"url": receiver.url, "types": ["order.*"],
                                                   "secret": HOOK_SECRET}))["id"]
    feeds = Feeds()
    publish_history(feeds)
    receiver.answers = [200, 500, 503]  # the first goes through, the second fails twice, then succeeds
    deliver(store, feeds, rounds=3)
    assert [e["type"] for e in receiver.received] == ["order_placed", "order_paid", "order_shipped"]

    receiver.answers = [500, 500, 500, 500]
    feeds.publish("order", "order_delivered", 59)
    feeds.publish("order", "order_refunded", 59)
    deliver(store, feeds, rounds=5)
    hook = body(admin_api.get(f"/v1/webhooks/{hook_id}"))
    assert hook["status"] == "paused" and hook["failures"] == 3 and "500" in hook["last_error"]
    assert len(receiver.received) == 3  # neither the failing event nor the one behind it

    resumed = admin_api.post(f"/v1/webhooks/{hook_id}/resume")
    assert resumed.status_code == 200 and body(resumed)["status"] == "active"
    receiver.answers = []
    deliver(store, feeds, rounds=2)
    assert [e["type"] for e in receiver.received] == ["order_placed", "order_paid", "order_shipped",
                                                       "order_delivered", "order_refunded"]
    statuses = [d["status"] for d in body(admin_api.get(f"/v1/webhooks/{hook_id}/deliveries"))["items"]]
    assert len([s for s in statuses if s >= 500]) == 2 + 3  # every failed attempt is in the log


def test_back_off_grows_between_attempts(store, receiver, monkeypatch):
    monkeypatch.setenv("WEBHOOK_BACKOFF_MAX", "300")
    hook = store.create(str(uuid.uuid4()), receiver.url, ["order.*"], HOOK_SECRET)
    feeds = Feeds()
    feeds.publish("order", "order_placed", 1)
    receiver.answers = [500] * 10
    deliver(store, feeds)
    deliver(store, feeds)  # not due yet: no second attempt
    assert [d["attempt"] for d in store.deliveries(hook.id)] == [1]
    assert store.get(hook.id).next_attempt_at > store.get(hook.id).created_at


def test_unknown_and_malformed_ids_are_404(admin_api):
    assert admin_api.get(f"/v1/webhooks/{uuid.uuid4()}").status_code == 404
    assert admin_api.get("/v1/webhooks/nope").status_code == 404
    assert admin_api.call("delete", f"/v1/webhooks/{uuid.uuid4()}").status_code == 404
    assert admin_api.post(f"/v1/webhooks/{uuid.uuid4()}/resume").status_code == 404


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_the_gateway_delivers_what_the_order_service_publishes(test_database, nameko_config, monkeypatch, receiver,
                                                               http):
    monkeypatch.setenv("CRM_JWT_SECRET", SECRET)
    with running_gateway(test_database, nameko_config, monkeypatch, [OrderService]) as url:
        admin = {"Authorization": f"Bearer {issue_token('operator', (ADMIN, READ, WRITE), secret=SECRET)}"}
        created = http.post(f"{url}/v1/webhooks", headers=admin,
                            json={"url": receiver.url, "types": ["order.order_placed"], "secret": HOOK_SECRET})
        assert created.status_code == 201, created.text
        placed = []
        for _ in range(3):
            answer = http.post(f"{url}/v1/orders", headers=admin, json={
                "customer_id": str(uuid.uuid4()), "currency": "CNY",
                "lines": [{"sku": "LIC", "description": "licence", "quantity": 1, "unit_price": "10.00"}]})
            assert answer.status_code == 201, answer.text
            placed.append(answer.json()["order_id"])
        # Other tests' subscriptions name origins that do not run here: each tick waits 5 s on each of them.
        eventually(lambda: [e["payload"]["order_id"] for e in receiver.received][-3:] == placed, timeout=90)
        assert receiver.forged == 0
        assert http.delete(f"{url}/v1/webhooks/{created.json()['id']}", headers=admin).status_code == 204
