"""GET /v1/events, the replay feed: every event from the beginning, each origin's in position order and
exactly once per position however the pages fall; a cursor that skips what a filter leaves out; scopes
per subscriber token; long polling; revoked subscriber tokens refused.

Real: the route, cursors, scopes, JWTs. Replaced: each origin's `events_since` is a list in memory, served
exactly as crm_runtime.feed serves it (envelopes after a position, oldest first, at most `limit`).
"""

from __future__ import annotations

import base64
import uuid
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crm_gateway import auth
from crm_gateway.auth import ADMIN, EVENTS, READ, WRITE, issue_token
from crm_gateway.routes.events import CURSOR_PREFIX, decode_cursor, encode_cursor, matches
from crm_gateway.tests.conftest import SECRET, body


class Feeds:
    """Every origin's published history, as its `events_since` serves it."""

    def __init__(self) -> None:
        self.logs: dict[str, list[dict[str, Any]]] = {}
        self.calls: list[str] = []
        self.position = 0

    def publish(self, origin: str, event_type: str, second: int) -> dict[str, Any]:
        self.position += 1  # positions of one origin grow; gaps between them (other aggregates' internals)
        log = self.logs.setdefault(origin, [])
        envelope = {
            "event_id": str(uuid.uuid4()), "type": event_type, "version": 1, "origin": origin,
            "position": self.position, "previous": log[-1]["position"] if log else 0,
            "occurred_at": f"2026-12-01T10:{second // 60:02d}:{second % 60:02d}+00:00", "customer_id": None,
            "correlation_id": None, "causation_id": None, "payload": {"n": self.position},
        }
        log.append(envelope)
        return envelope

    def events_since(self, origin: str):
        def serve(position: int, limit: int) -> list[dict[str, Any]]:
            self.calls.append(origin)
            return [e for e in self.logs.get(origin, []) if e["position"] > position][:limit]
        return serve


@pytest.fixture
def feeds(clients) -> Feeds:
    found = Feeds()
    for origin in ("customer", "marketing", "sales", "order", "service", "loyalty"):
        clients[origin].events_since.side_effect = found.events_since(origin)
    return found


def read_all(api, query: str = "", limit: int = 3, cursor: str | None = None) -> tuple[list[dict[str, Any]], str]:
    """Every event after `cursor` through pages of `limit`, and the last cursor."""
    seen: list[dict[str, Any]] = []
    for _ in range(1000):
        after = f"&after={cursor}" if cursor else ""
        answer = api.get(f"/v1/events?limit={limit}{query}{after}")
        assert answer.status_code == 200, body(answer)
        page = body(answer)
        seen += page["events"]
        cursor = page["next"]
        if not page["has_more"]:
            return seen, cursor
    raise AssertionError("the feed never ended")


def assert_each_origin_in_order_once(events: list[dict[str, Any]], feeds: Feeds, keys: set[str] | None = None):
    for origin, log in feeds.logs.items():
        expected = [e for e in log if keys is None or f"{origin}.{e['type']}" in keys]
        assert [e for e in events if e["origin"] == origin] == expected


def test_every_event_from_the_beginning_each_origin_in_order_exactly_once(api, feeds):
    for second, (origin, event_type) in enumerate([("customer", "customer_registered"), ("order", "order_placed"),
                                                   ("customer", "customer_graded"), ("sales", "opportunity_won"),
                                                   ("order", "order_paid"), ("order", "order_shipped"),
                                                   ("marketing", "lead_captured"), ("customer", "customer_graded")]):
        feeds.publish(origin, event_type, 50 - second * 5)  # later positions, earlier clocks: order by position
    events, cursor = read_all(api)
    assert len(events) == 8
    assert_each_origin_in_order_once(events, feeds)

    later = feeds.publish("order", "order_delivered", 59)
    page = body(api.get(f"/v1/events?after={cursor}"))
    assert page["events"] == [later] and page["has_more"] is False


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(st.tuples(st.sampled_from(["customer", "order", "sales"]), st.integers(0, 59)), max_size=30),
       limit=st.integers(1, 7), split=st.integers(0, 30))
def test_any_history_read_in_any_page_size_while_it_grows_is_each_origin_in_order_once(api, clients, script, limit,
                                                                                       split):
    feeds = Feeds()
    for origin in ("customer", "marketing", "sales", "order", "service", "loyalty"):
        clients[origin].events_since.side_effect = feeds.events_since(origin)
    for origin, second in script[:split]:
        feeds.publish(origin, "thing_happened", second)
    events, cursor = read_all(api, limit=limit)
    for origin, second in script[split:]:
        feeds.publish(origin, "thing_happened", second)
    more, _ = read_all(api, limit=limit, cursor=cursor)
    assert_each_origin_in_order_once(events + more, feeds)


def test_types_select_by_routing_key_and_the_cursor_moves_past_what_they_leave_out(api, feeds):
    for second in range(10):
        feeds.publish("customer", "customer_graded", second)
    wanted = feeds.publish("customer", "customer_registered", 20)
    feeds.publish("marketing", "lead_captured", 21)
    page = body(api.get("/v1/events?types=customer.customer_registered&limit=1"))
    assert page["events"] == [wanted]
    assert decode_cursor(page["next"]) == {"customer": wanted["position"]}
    assert "marketing" not in feeds.calls  # no type of it was asked for


def test_order_star_is_every_order_event(api, feeds):
    feeds.publish("order", "order_placed", 1)
    feeds.publish("customer", "customer_registered", 2)
    feeds.publish("order", "order_paid", 3)
    events, _ = read_all(api, "&types=order.*")
    assert [e["type"] for e in events] == ["order_placed", "order_paid"]


def subscriber_token(*patterns: str, name: str = "erp", token_id: str = "t1") -> str:
    return issue_token(f"subscriber:{name}", [EVENTS, *(f"events:{p}" for p in patterns)], secret=SECRET,
                       extra_claims={auth.SUBSCRIBER_CLAIM: name, "jti": token_id})


@pytest.fixture
def registry():
    """The subscribers' current token ids (the gateway's registry, in memory)."""
    current = {"erp": "t1"}
    auth.use_token_check(lambda name, token_id: current.get(name) == token_id)
    yield current
    auth.use_token_check(None)


def test_a_subscriber_sees_only_the_types_it_subscribed_to(api, feeds, registry):
    feeds.publish("order", "order_placed", 1)
    feeds.publish("marketing", "lead_captured", 2)
    feeds.publish("customer", "customer_registered", 3)
    api.token = subscriber_token("order.*", "customer.customer_registered")
    events, _ = read_all(api)
    assert [e["type"] for e in events] == ["order_placed", "customer_registered"]
    asked_wider, _ = read_all(api, "&types=%23")  # `#`: everything; still only what the token grants
    assert [e["type"] for e in asked_wider] == ["order_placed", "customer_registered"]
    assert "marketing" not in feeds.calls


def test_a_revoked_subscriber_token_is_refused(api, feeds, registry):
    api.token = subscriber_token("order.*")
    assert api.get("/v1/events").status_code == 200
    registry["erp"] = "t2"  # rotated
    answer = api.get("/v1/events")
    assert answer.status_code == 401 and "revoked" in body(answer)["error"]["message"]
    del registry["erp"]  # removed
    api.token = subscriber_token("order.*", token_id="t2")
    assert api.get("/v1/events").status_code == 401


def test_without_a_registry_no_subscriber_token_passes(api, feeds):
    api.token = subscriber_token("order.*")
    assert api.get("/v1/events").status_code == 401


@pytest.mark.parametrize("scopes", [(READ, WRITE), (EVENTS,)])
def test_a_token_without_event_types_is_403(api, feeds, scopes):
    api.token = issue_token("someone", scopes, secret=SECRET)
    assert api.get("/v1/events").status_code == 403


def test_admin_reads_every_event(api, feeds):
    api.token = issue_token("operator", (ADMIN,), secret=SECRET)
    feeds.publish("marketing", "lead_captured", 1)
    assert len(body(api.get("/v1/events"))["events"]) == 1


@pytest.mark.parametrize("query", ["after=nope", "after=c1.bm9wZQ", "after=" + encode_cursor({"order": 1})[:-2] + "!!",
                                   "types=order..paid", "types=ORDER.*", "types=order.*,", "limit=0", "limit=1001",
                                   "wait=-1", "wait=26", "shoe=1"])
def test_bad_queries_are_422_naming_the_parameter(api, feeds, query):
    answer = api.get(f"/v1/events?{query}")
    assert answer.status_code == 422
    assert list(body(answer)["error"]["fields"]) == [query.split("=")[0]]


@pytest.mark.parametrize("inner", [b"[" * 2500, b'{"order": "\\u0000"}', b'{"order": "\\ud800"}', b'{"order": 1e999}'])
def test_a_forged_cursor_nested_deep_or_with_odd_text_is_422(api, feeds, inner):
    forged = CURSOR_PREFIX + base64.urlsafe_b64encode(inner).decode().rstrip("=")
    answer = api.get(f"/v1/events?after={forged}")
    assert answer.status_code == 422 and list(body(answer)["error"]["fields"]) == ["after"]


def test_a_cursor_of_an_unknown_origin_is_refused(api, feeds):
    assert api.get(f"/v1/events?after={encode_cursor({'nobody': 3})}").status_code == 422


def test_long_polling_answers_with_the_event_published_while_it_waits(api, clients, feeds):
    calls = {"n": 0}
    serve = feeds.events_since("order")

    def publishing_on_the_third_call(position: int, limit: int):
        calls["n"] += 1
        if calls["n"] == 3:
            feeds.publish("order", "order_paid", 1)
        return serve(position, limit)

    clients["order"].events_since.side_effect = publishing_on_the_third_call
    page = body(api.get("/v1/events?types=order.*&wait=20"))
    assert [e["type"] for e in page["events"]] == ["order_paid"] and calls["n"] == 3


def test_an_empty_page_without_wait_keeps_the_cursor(api, feeds):
    feeds.publish("order", "order_paid", 1)
    _, cursor = read_all(api)
    page = body(api.get(f"/v1/events?after={cursor}"))
    assert page == {"events": [], "next": cursor, "has_more": False}


@pytest.mark.parametrize(("pattern", "key", "expected"), [
    ("order.*", "order.order_paid", True), ("order.*", "customer.order_paid", False),
    ("#", "order.order_paid", True), ("order.#", "order.order_paid", True), ("*.order_paid", "order.order_paid", True),
    ("order.order_paid", "order.order_paid", True), ("order", "order.order_paid", False),
    ("*", "order.order_paid", False), ("#.order_paid", "order.order_paid", True), ("order.*.x", "order.a", False),
])
def test_topic_patterns_match_as_amqp_does(pattern, key, expected):
    assert matches(pattern, key) is expected
