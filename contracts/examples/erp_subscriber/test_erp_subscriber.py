"""The ERP example, run for real: provisioned with `crm-subscribers`, the replay client catches up from the
beginning of history over HTTP, and the AMQP subscriber applies what arrives on its own queue exactly once
per position — dropping a duplicate, filling a gap from the replay feed, rejecting a message that is no
event into its dead-letter queue.

Real: a gateway and the order service (nameko containers), RabbitMQ (this session's virtual host),
PostgreSQL. The relay is off here, so the test itself publishes to crm.events what the relay would: the
very envelopes the order service's feed serves. The whole platform with its relay is tests/e2e/test_erp.py.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp
import pytest
import requests
from ledger import Ledger
from replay_client import catch_up
from subscriber import Subscriber

from crm_gateway.auth import ADMIN, READ, WRITE, issue_token
from crm_gateway.subscribers import cli
from crm_gateway.subscribers.broker import Management
from crm_gateway.subscribers.registry import store_from_environment
from crm_gateway.tests.conftest import running_gateway
from crm_order.service import OrderService
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SECRET = "erp-example-secret-" + "0123456789" * 3


@pytest.fixture
def gateway_url(test_database, amqp_vhost, monkeypatch, infra) -> Iterator[str]:
    monkeypatch.setenv("CRM_JWT_SECRET", SECRET)
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", infra.rabbit_management_uri)
    with running_gateway(test_database, {"AMQP_URI": amqp_vhost, "serializer": "json"}, monkeypatch,
                         [OrderService]) as url:
        yield url


@pytest.fixture
def erp(gateway_url, capsys) -> Iterator[dict[str, Any]]:
    """A subscriber provisioned as an operator would: `crm-subscribers add ... --json`; removed afterwards."""
    name = f"erp-{uuid.uuid4().hex[:8]}"
    assert cli.main(["add", name, "--bind", "order.*", "--json"]) == 0
    details = json.loads(capsys.readouterr().out)
    yield details
    store = store_from_environment()
    store.remove(name)
    store.close()
    Management().remove(name, details["vhost"])


def place_orders(gateway_url: str, count: int) -> None:
    token = issue_token("sales", (READ, WRITE), secret=SECRET)
    for _ in range(count):
        answer = requests.post(f"{gateway_url}/v1/orders", headers={"Authorization": f"Bearer {token}"}, timeout=30,
                               json={"customer_id": str(uuid.uuid4()), "currency": "CNY", "lines": [
                                   {"sku": "LIC", "description": "licence", "quantity": 1, "unit_price": "10.00"}]})
        assert answer.status_code == 201, answer.text


def published_history(gateway_url: str) -> list[dict[str, Any]]:
    """Every order event as the feed serves it (what the relay publishes)."""
    token = issue_token("operator", (ADMIN,), secret=SECRET)
    events: list[dict[str, Any]] = []
    params: dict[str, Any] = {"types": "order.*", "limit": 1000}
    while True:
        page = requests.get(f"{gateway_url}/v1/events", params=params, timeout=30,
                            headers={"Authorization": f"Bearer {token}"}).json()
        events += page["events"]
        if not page["has_more"]:
            return events
        params["after"] = page["next"]


def publish(amqp_uri: str, bodies: list[bytes], routing_key: str = "order.order_placed") -> None:
    """Publish as the relay does (the platform's own user, persistent, confirmed)."""
    url = urlsplit(amqp_uri)
    connection = amqp.Connection(f"{url.hostname}:{url.port or 5672}", userid=url.username, password=url.password,
                                 virtual_host=unquote(url.path[1:]), confirm_publish=True)
    connection.connect()
    try:
        channel = connection.channel()
        for body in bodies:
            channel.basic_publish(amqp.Message(body, delivery_mode=2), exchange="crm.events", routing_key=routing_key)
    finally:
        connection.close()


def test_the_example_catches_up_then_applies_its_queue_exactly_once(gateway_url, erp, amqp_vhost, tmp_path: Path):
    before = len(published_history(gateway_url))  # the session's database may hold other tests' orders
    place_orders(gateway_url, 5)
    ledger_path = str(tmp_path / "erp.sqlite")
    ledger = Ledger(ledger_path)
    assert catch_up(ledger, gateway_url, erp["api_token"]) == before + 5  # from the beginning of history
    assert catch_up(ledger, gateway_url, erp["api_token"]) == 0  # from its cursor: nothing new
    ledger.close()

    place_orders(gateway_url, 3)
    history = published_history(gateway_url)
    new = history[before:]
    assert len(new) == 8
    # On its queue: an event it already has, then the 8th without the 6th and 7th (a gap), then not an event.
    publish(amqp_vhost, [json.dumps(new[2]).encode(), json.dumps(new[7]).encode(), b"not an event"])

    stop = threading.Event()
    subscriber = Subscriber(Ledger(ledger_path), gateway_url, erp["api_token"])
    consuming = threading.Thread(target=subscriber.run, args=(erp["amqp_url"], erp["queue"], stop))
    consuming.start()
    try:
        expected = [("order", e["position"], e["type"]) for e in history]
        eventually(lambda: Ledger(ledger_path).events() == expected, timeout=30)
        depths = eventually(lambda: (d := Management().queue_depths(erp["name"], erp["vhost"]))[
            erp["dead_letter_queue"]] == 1 and d, timeout=30)
        assert depths[erp["queue"]] == 0
    finally:
        stop.set()
        consuming.join(timeout=10)
