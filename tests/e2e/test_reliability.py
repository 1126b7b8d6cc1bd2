"""End-to-end reliability: duplicates, lost messages, killed processes and rebuilds never lose an
event nor apply one twice."""

from __future__ import annotations

import json
import signal
import uuid
from concurrent.futures import ThreadPoolExecutor

import kombu
import pytest

from crm_contracts.envelope import EXCHANGE, routing_key
from tests.support.clients import RetryingClient
from tests.support.databases import query
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

QUEUE = "customer360.events"


def register_many(platform, count, workers=8):
    """Register `count` customers concurrently, each retried with its Idempotency-Key while a service is
    unavailable (commands go over HTTP: they do not wait in the broker); return the ids accepted (201)."""
    client = RetryingClient(platform.gateways, platform.token, deadline=60)

    def one(i):
        outcome = client.register(name=f"Bulk {i}")
        return outcome.body["id"] if outcome.status == 201 else None

    with ThreadPoolExecutor(workers) as pool:
        return [cid for cid in pool.map(one, range(count)) if cid]


def event_counts(platform, ids):
    """customer_id -> how many customer-origin events the 360 view has applied for it."""
    rows = query(platform.env, "customer360",
                 "SELECT customer_id::text, (doc->'events'->>'customer')::int FROM customer_view "
                 "WHERE customer_id = ANY(%s::uuid[])", (list(ids),))
    return dict(rows)


def all_applied_exactly_once(platform, ids):
    def check():
        counts = event_counts(platform, ids)
        assert len(counts) == len(ids), f"{len(ids) - len(counts)} customers not in the view yet"
        assert set(counts.values()) == {1}, "an event was applied more than once"
        return True

    return eventually(check, timeout=60, interval=0.5)


def customer_feed(platform):
    """The customer service's published envelopes, as a consumer sees them."""
    rows = query(platform.env, "customer360", "SELECT origin, position, event_id::text FROM timeline "
                                              "WHERE origin = 'customer' ORDER BY position")
    return rows


def test_the_same_envelope_delivered_twice_changes_nothing(running_platform):
    cid = running_platform.register().json()["id"]
    before = running_platform.view(cid)
    (origin, position, event_id), = [r for r in customer_feed(running_platform)
                                     if r[2] == before["timeline"][0]["event_id"]]
    envelope = query(running_platform.env, "customer360",
                     "SELECT payload, occurred_at, type FROM timeline WHERE origin = %s AND position = %s",
                     (origin, position))[0]
    duplicates_before = running_platform.health("customer360")["checks"]["inbox"]["inbox"]["duplicates"]
    message = {
        "event_id": event_id, "type": envelope[2], "version": 1, "origin": origin, "position": position,
        "previous": 0, "occurred_at": envelope[1].isoformat(), "customer_id": cid, "correlation_id": None,
        "causation_id": None, "payload": envelope[0],
    }
    with running_platform.amqp() as connection:
        producer = connection.Producer(exchange=kombu.Exchange(EXCHANGE, "topic", durable=True))
        for _ in range(2):
            producer.publish(json.dumps(message), routing_key=routing_key(origin, envelope[2]),
                             content_type="application/json", delivery_mode=2)
    eventually(lambda: running_platform.health("customer360")["checks"]["inbox"]["inbox"]["duplicates"]
               >= duplicates_before + 2)
    assert running_platform.view(cid) == before


def test_a_lost_message_is_repaired_from_the_origin_feed(running_platform):
    running_platform.platform.stop(["customer360"])
    lost = running_platform.register(name="Lost In Transit").json()["id"]
    with running_platform.amqp() as connection:
        eventually(lambda: kombu.Queue(QUEUE)(connection.channel()).queue_declare(passive=True).message_count > 0)
        kombu.Queue(QUEUE)(connection.channel()).purge()  # the broker "lost" it
    after = running_platform.register(name="Arrives Fine").json()["id"]
    running_platform.platform.start(["customer360"])
    assert running_platform.view(lost)["profile"]["name"] == "Lost In Transit"
    assert running_platform.view(after)["profile"]["name"] == "Arrives Fine"
    all_applied_exactly_once(running_platform, [lost, after])


def test_customer360_killed_mid_stream_converges_to_the_full_view(running_platform):
    platform = running_platform.platform
    with ThreadPoolExecutor(1) as background:
        burst = background.submit(register_many, running_platform, 300)
        eventually(lambda: len(customer_feed(running_platform)) > 0)
        platform.signal("customer360", signal.SIGKILL)
        ids = burst.result()
    eventually(lambda: platform.pid("customer360") is None)
    platform.start(["customer360"])
    assert len(ids) == 300
    all_applied_exactly_once(running_platform, ids)


def test_the_relay_killed_mid_batch_loses_and_duplicates_nothing(running_platform):
    platform = running_platform.platform
    with ThreadPoolExecutor(1) as background:
        burst = background.submit(register_many, running_platform, 300)
        eventually(lambda: platform.ready("customer") and len(customer_feed(running_platform)) > 0)
        platform.signal("customer", signal.SIGKILL)  # the relay runs in the customer service process
        eventually(lambda: platform.pid("customer") is None)
        platform.start(["customer"])  # clients retry meanwhile, each with its Idempotency-Key
        accepted = burst.result()
    assert len(accepted) == 300, "a registration cut off by the kill was not answered once retried"
    all_applied_exactly_once(running_platform, accepted)
    more = register_many(running_platform, 20)
    all_applied_exactly_once(running_platform, accepted + more)


def test_a_rebuilt_view_equals_the_live_one_row_for_row(running_platform):
    ids = register_many(running_platform, 50)
    all_applied_exactly_once(running_platform, ids)

    def snapshot():
        return (query(running_platform.env, "customer360", "SELECT * FROM customer_view ORDER BY customer_id"),
                query(running_platform.env, "customer360", "SELECT * FROM timeline ORDER BY origin, position"),
                # An origin at position 0 is one nothing was applied from yet: the same as no row.
                query(running_platform.env, "customer360", "SELECT origin, position FROM inbox_tracking "
                                                           "WHERE position > 0 ORDER BY origin"))

    live = eventually(lambda: (s := snapshot()) == snapshot() and s)  # quiet: nothing in flight
    response = running_platform.http("POST", "/v1/admin/rebuild-360", token=running_platform.admin_token)
    assert response.status_code == 200, response.text
    assert response.json()["events"] >= len(ids)
    rebuilt = snapshot()
    assert rebuilt[0] == live[0]
    assert rebuilt[1] == live[1]
    assert rebuilt[2] == live[2]


def test_rebuild_needs_the_admin_scope(running_platform):
    assert running_platform.http("POST", "/v1/admin/rebuild-360").status_code == 403


def test_every_process_reports_ready_with_its_dependencies(running_platform):
    for name in running_platform.platform.processes:
        report = running_platform.health(name)
        assert report["ready"] is True, report
    assert uuid.UUID(running_platform.register().json()["id"])
