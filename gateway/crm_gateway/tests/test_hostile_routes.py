"""Hostile input at the newer routes (events, webhooks): what a caller controls never costs the gateway more
than a bounded amount of work, and is refused 4xx naming the field before anything is stored."""

from __future__ import annotations

import json
import time
from types import SimpleNamespace
from unittest.mock import MagicMock
from urllib.parse import quote

import pytest
from nameko.testing.services import worker_factory

from crm_gateway.auth import ADMIN, issue_token
from crm_gateway.routes.events import matches
from crm_gateway.service import GatewayService
from crm_gateway.tests.conftest import SECRET, Api, body

#: Hundreds of `#` words before a word no key has: a naive recursive matcher tries every way to split the
#: key among them (minutes of CPU on the gateway's one event loop).
MANY_HASHES = ".".join(["#"] * 300) + ".zzz"


def test_a_pattern_of_many_hashes_is_matched_in_bounded_time():
    started = time.monotonic()
    assert not matches(MANY_HASHES, "order.order_paid")
    assert matches(".".join(["#"] * 300) + ".order_paid", "order.order_paid")
    assert matches("#.#.order.#.*.#", "order.order_paid") and not matches("#.order.#.*.*.#", "order.order_paid")
    assert time.monotonic() - started < 0.5


def test_replaying_with_a_pattern_of_many_hashes_answers_promptly(api, clients):
    for origin in ("customer", "marketing", "sales", "order", "service", "loyalty"):
        clients[origin].events_since.return_value = []
    started = time.monotonic()
    answer = api.get(f"/v1/events?types={quote(MANY_HASHES)}")
    assert answer.status_code == 200 and body(answer)["events"] == [] and time.monotonic() - started < 1


@pytest.fixture
def webhook_store() -> MagicMock:
    return MagicMock(name="webhook store")


@pytest.fixture
def admin_api(clients, unused_store, webhook_store) -> Api:
    api = Api(worker_factory(GatewayService, **clients, idempotency=unused_store,
                             webhooks=SimpleNamespace(store=webhook_store, sender=None)))
    api.token = issue_token("operator", (ADMIN,), secret=SECRET)
    return api


@pytest.mark.parametrize(("types", "field"), [
    (["order.*", "order.*"], "types"),
    (["x" * 1000], "types.0"),
    ([12], "types.0"),
    (["order.*\u0000"], "types.0"),
    ("order.*", "types"),
    ({"order": "*"}, "types"),
])
def test_webhook_types_that_are_repeated_too_long_or_not_text_are_422_and_nothing_is_stored(
        admin_api, webhook_store, types, field):
    answer = admin_api.request("POST", "/v1/webhooks", data=json.dumps({"url": "https://erp.example.com/h",
                                                                        "types": types}),
                               content_type="application/json")
    assert answer.status_code == 422 and field in body(answer)["error"]["fields"], body(answer)
    webhook_store.create.assert_not_called()
