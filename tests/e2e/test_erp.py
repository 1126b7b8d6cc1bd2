"""ERP as a first-class subscriber, end to end (issue 10, "What shows it"): an ERP provisioned with the
`crm-subscribers` command receives the order events on its own queue (the example subscriber in
contracts/examples/erp_subscriber), in order per origin; stopped while 1,000 orders are placed and
restarted, it catches up over the replay feed with nothing missing and nothing applied twice; shipment,
payment and confirmation facts it sends back twice each move each order once; a webhook receiver gets
each paid order once, signed, and verifies it.

A platform of this module's own (the order service and the gateway, as `make run` starts them, relay
included), its database, RabbitMQ virtual host and ports; webhooks may call loopback here
(WEBHOOKS_ALLOW_PRIVATE, for tests only). Not the whole lifecycle journey: orders are placed directly.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests

from conftest import rabbit_vhost
from crm_gateway.subscribers.broker import Management
from crm_gateway.tests.test_webhooks import HOOK_SECRET, Receiver
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import JWT_SECRET, RunningPlatform, platform_of_its_own
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

EXAMPLE = Path(__file__).resolve().parents[2] / "contracts" / "examples" / "erp_subscriber"
sys.path.insert(0, str(EXAMPLE))  # the example is a folder to copy, not a package
from ledger import Ledger  # noqa: E402
from replay_client import catch_up  # noqa: E402
from subscriber import Subscriber  # noqa: E402

PORT = int(os.environ.get("CRM_ERP_GATEWAY_PORT", "31200"))
OFFLINE_ORDERS = 1000
FACT_ORDERS = 10
ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}


@pytest.fixture(scope="module")
def platform(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with rabbit_vhost(infra, "crm_erp") as vhost, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("erp")), label="erp", amqp_uri=vhost, gateway_port=PORT,
        service_base_port=PORT + 1, settings={"CRM_SERVICES": "order,gateway", "WEBHOOKS_ALLOW_PRIVATE": "true"},
        timeout=120,
    ) as running:
        yield running


@pytest.fixture(scope="module")
def erp(platform: RunningPlatform, infra: Infrastructure) -> Iterator[dict[str, Any]]:
    """`crm-subscribers add erp --bind 'order.*' --facts`, run as an operator runs it."""
    env = {**os.environ, **platform.env, "CRM_JWT_SECRET": JWT_SECRET,
           "RABBITMQ_MANAGEMENT_URL": infra.rabbit_management_uri}
    name = f"erp-{uuid.uuid4().hex[:6]}"
    command = [str(Path(sys.executable).parent / "crm-subscribers")]
    added = subprocess.run([*command, "add", name, "--bind", "order.*", "--facts", "--json"], env=env,
                           capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    details = json.loads(added.stdout)
    yield details
    removed = subprocess.run([*command, "remove", name], env=env, capture_output=True, text=True, timeout=60)
    assert removed.returncode == 0, removed.stderr
    assert Management(infra.rabbit_management_uri).queue_depths(name, details["vhost"])[details["queue"]] is None


class Running:
    """The example subscriber in a thread of this process, until stopped."""

    def __init__(self, erp: dict[str, Any], gateway: str, ledger_path: str) -> None:
        self.stop = threading.Event()
        self.subscriber = Subscriber(Ledger(ledger_path), gateway, erp["api_token"])
        self.thread = threading.Thread(target=self.subscriber.run, args=(erp["amqp_url"], erp["queue"], self.stop))
        self.thread.start()

    def halt(self) -> None:
        self.stop.set()
        self.thread.join(timeout=30)
        self.subscriber.ledger.close()


def applied(ledger_path: str) -> list[tuple[str, int, str]]:
    """(origin, position, type) of every event the ERP applied, in the order it applied them."""
    with sqlite3.connect(ledger_path) as db:
        return [(o, int(p), t) for o, p, t in db.execute("SELECT origin, position, type FROM events ORDER BY rowid")]


def history(platform: RunningPlatform) -> list[tuple[str, int, str]]:
    """Every order event the order service published, from the replay feed (admin)."""
    events: list[tuple[str, int, str]] = []
    cursor = None
    while True:
        params = {"types": "order.*", "limit": 1000, **({"after": cursor} if cursor else {})}
        page = platform.http("GET", "/v1/events", token=platform.admin_token, params=params).json()
        events += [(e["origin"], e["position"], e["type"]) for e in page["events"]]
        cursor = page["next"]
        if not page["has_more"]:
            return events


def history_of(platform: RunningPlatform, count: int) -> list[tuple[str, int, str]]:
    """The history once it holds `count` events (the relay and the feed lag the commands by little)."""
    events = history(platform)
    assert len(events) == count, f"{len(events)} events, not yet {count}"
    return events


def place(platform: RunningPlatform, count: int) -> list[str]:
    """Place `count` orders, 8 at a time; a retry (same Idempotency-Key) places nothing twice."""

    def one(key: str) -> str:
        body = {"customer_id": str(uuid.uuid4()), "currency": "CNY", "shipping_address": ADDRESS,
                "lines": [{"sku": "LIC", "description": "licence", "quantity": 1, "unit_price": "10.00"}]}
        for _attempt in range(5):
            answer = platform.http("POST", "/v1/orders", json=body, headers={"Idempotency-Key": key})
            if answer.status_code == 201:
                return str(answer.json()["order_id"])
        raise AssertionError(answer.text)

    with ThreadPoolExecutor(8) as pool:
        return list(pool.map(one, [uuid.uuid4().hex for _ in range(count)]))


def send_facts_twice(platform: RunningPlatform, erp: dict[str, Any], order_id: str) -> None:
    token = erp["api_token"]
    for path, payload in [("confirm", {"reference": f"ERP-SO-{order_id[:8]}"}),
                          ("shipments", {"shipment_id": f"SHP-{order_id[:8]}", "carrier": "SF Express",
                                         "lines": {"LIC": 1}}),
                          ("payments", {"payment_id": f"PAY-{order_id[:8]}", "amount": "10.00", "currency": "CNY",
                                        "method": "bank_transfer"})]:
        for _ in range(2):
            answer = platform.http("POST", f"/v1/orders/{order_id}/{path}", token=token, json=payload,
                                   headers={"If-Match": "*"})
            assert answer.status_code == 200, (path, answer.text)


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    found = Receiver()
    yield found
    found.close()


def test_an_erp_subscriber_receives_in_order_catches_up_after_downtime_and_sends_facts_once(
        platform, erp, infra, receiver, tmp_path):
    management = Management(infra.rabbit_management_uri)
    hook = platform.http("POST", "/v1/webhooks", token=platform.admin_token,
                         json={"url": receiver.url, "types": ["order.order_paid"], "secret": HOOK_SECRET})
    assert hook.status_code == 201, hook.text
    ledger_path = str(tmp_path / "erp.sqlite")
    running = Running(erp, platform.gateway, ledger_path)
    try:
        orders = place(platform, FACT_ORDERS)
        for order_id in orders:
            send_facts_twice(platform, erp, order_id)
        # Each order: placed, confirmed, shipped, paid (the payment completed it), and nothing for a resend.
        expected = eventually(lambda: history_of(platform, 5 * FACT_ORDERS), timeout=60)
        eventually(lambda: applied(ledger_path) == expected, timeout=60)
    finally:
        running.halt()
    kinds = [kind for _, _, kind in expected]
    assert {kind: kinds.count(kind) for kind in set(kinds)} == {
        "order_placed": FACT_ORDERS, "order_confirmed": FACT_ORDERS, "order_shipped": FACT_ORDERS,
        "order_payment_recorded": FACT_ORDERS, "order_paid": FACT_ORDERS}
    positions = [position for _, position, _ in applied(ledger_path)]
    assert positions == sorted(positions)  # in order per origin (one origin here: order)
    for order_id in orders:
        assert platform.http("GET", f"/v1/orders/{order_id}").json()["payment_status"] == "paid"
    eventually(lambda: len(receiver.received) == FACT_ORDERS, timeout=60)
    assert sorted(e["payload"]["order_id"] for e in receiver.received) == sorted(orders)  # each paid order once
    assert receiver.forged == 0  # every delivery's signature verified

    place(platform, OFFLINE_ORDERS)  # while the ERP is down: its queue keeps them
    everything = eventually(lambda: history_of(platform, len(expected) + OFFLINE_ORDERS), timeout=120)
    ledger = Ledger(ledger_path)
    assert catch_up(ledger, platform.gateway, erp["api_token"]) == OFFLINE_ORDERS  # over the replay feed
    ledger.close()
    running = Running(erp, platform.gateway, ledger_path)  # then its queue: every message a duplicate
    try:
        eventually(lambda: management.queue_depths(erp["name"], erp["vhost"])[erp["queue"]] == 0,
                   timeout=120)
    finally:
        running.halt()
    assert applied(ledger_path) == everything  # nothing missing, nothing twice, in order
    assert management.queue_depths(erp["name"], erp["vhost"])[erp["dead_letter_queue"]] == 0
    assert requests.get(f"{platform.gateway}/v1/events", timeout=10,
                        headers={"Authorization": f"Bearer {platform.token}"}).status_code == 403
