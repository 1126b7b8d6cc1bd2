"""Operable by the people who run it: /metrics move under load, lag rises while a consumer is down and
falls to zero once it is back, and a dead letter shows up in `crm-admin` with its reason and is applied
exactly once by `retry` after its cause is fixed.

Real: the shared e2e platform (customer, customer360, gateway), `crm-admin` run as its console script
with the platform's settings, the lag exporter as a process of its own. The dead letter is caused the
way one happens in production: a read-model change (here a CHECK constraint) the fold's write violates.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tests.support.databases import dsn
from tests.support.platforms import RunningPlatform
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

CRM_ADMIN = str(Path(sys.executable).with_name("crm-admin"))
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(url: str) -> Samples:
    """Every sample of a /metrics page."""
    answer = requests.get(f"{url}/metrics", timeout=10)
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("text/plain"), answer.text
    return {(s.name, frozenset(s.labels.items())): s.value
            for family in text_string_to_metric_families(answer.text) for s in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name`'s samples carrying `labels` (0 when there are none)."""
    wanted = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and wanted <= ls)


def process_url(running: RunningPlatform, service: str) -> str:
    (name,) = running.platform.services(service)
    return f"http://127.0.0.1:{running.platform.processes[name].port}"


def crm_admin(running: RunningPlatform, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([CRM_ADMIN, "--json", *args], env={**os.environ, **running.env}, capture_output=True,
                          text=True, timeout=120)


def answers(url: str) -> bool:
    try:
        return requests.get(f"{url}/metrics", timeout=2).ok
    except requests.ConnectionError:
        return False


@pytest.fixture
def lag_exporter(running_platform: RunningPlatform) -> Iterator[str]:
    """`crm-admin exporter` on a free port, reading the platform's database."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    process = subprocess.Popen([CRM_ADMIN, "exporter", "--port", str(port), "--address", "127.0.0.1"],
                               env={**os.environ, **running_platform.env}, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        eventually(lambda: answers(url), timeout=30)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_metrics_move_under_a_load(running_platform):
    gateway, customer, view = (process_url(running_platform, s) for s in ("gateway", "customer", "customer360"))
    before = {url: scrape(url) for url in (gateway, customer, view)}
    ids = [running_platform.register().json()["id"] for _ in range(20)]
    for customer_id in ids[-3:]:
        running_platform.view(customer_id)

    after = scrape(gateway)
    posted = dict(method="POST", route="/v1/customers", status="201")
    assert value(after, "crm_http_requests_total", **posted) - value(before[gateway], "crm_http_requests_total",
                                                                     **posted) >= 20
    latency = dict(method="POST", route="/v1/customers")
    assert value(after, "crm_http_request_duration_seconds_count", **latency) >= 20
    assert value(after, "process_resident_memory_bytes") > 0

    def customer_moved() -> Samples:
        now = scrape(customer)
        for name, labels in (("crm_events_saved_total", {"service": "customer"}),
                             ("crm_relay_published_total", {"origin": "customer"}),
                             ("crm_handler_duration_seconds_count", {"method": "register"})):
            assert value(now, name, **labels) - value(before[customer], name, **labels) >= 20, name
        assert value(now, "crm_relay_lag_events", origin="customer") == 0
        return now

    moved = eventually(customer_moved, timeout=30)
    assert value(moved, "crm_relay_confirm_seconds_count", origin="customer") > 0
    assert value(moved, "crm_group_commit_batch_size_count") > 0
    assert value(moved, "crm_db_pool_connections", state="size") > 0

    def view_applied() -> bool:
        now = scrape(view)
        applied = value(now, "crm_consumer_applied_total") - value(before[view], "crm_consumer_applied_total")
        assert applied >= 20
        assert value(now, "crm_consumer_position", origin="customer") >= value(moved, "crm_relay_published_position",
                                                                               origin="customer")
        return True

    eventually(view_applied, timeout=30)


def test_consumer_lag_rises_while_the_consumer_is_stopped_and_falls_to_zero_after(running_platform, lag_exporter):
    platform = running_platform.platform
    (name,) = platform.services("customer360")

    def lag() -> float:
        return value(scrape(lag_exporter), "crm_consumer_lag_events", consumer="customer360", origin="customer")

    eventually(lambda: lag() == 0, timeout=30)
    platform.stop([name])
    try:
        for _ in range(5):
            running_platform.register()
        eventually(lambda: lag() >= 5, timeout=30)  # published by the relay, not applied by anyone
    finally:
        platform.start([name])
    eventually(lambda: lag() == 0, timeout=60)
    assert value(scrape(lag_exporter), "crm_platform_relay_lag_events", origin="customer") == 0


@pytest.fixture
def a_read_model_bug(running_platform: RunningPlatform) -> Iterator[tuple[str, str, Any]]:
    """A name the 360 view refuses to store (a CHECK constraint, named in the reason), and the fix."""
    suffix = uuid.uuid4().hex[:8]
    name, constraint = f"Poison {suffix}", f"ops_test_refuses_{suffix}"
    conn = psycopg2.connect(dsn(running_platform.env, "customer360"))
    conn.autocommit = True

    def fix() -> None:
        with conn.cursor() as cur:
            cur.execute(f"ALTER TABLE customer_view DROP CONSTRAINT IF EXISTS {constraint}")

    with conn.cursor() as cur:
        cur.execute(f"ALTER TABLE customer_view ADD CONSTRAINT {constraint} CHECK (name <> %s) NOT VALID", (name,))
    try:
        yield name, constraint, fix
    finally:
        fix()
        conn.close()


def test_a_dead_letter_is_listed_with_its_reason_and_retry_applies_it_once(running_platform, a_read_model_bug):
    poison_name, constraint, fix = a_read_model_bug
    view = process_url(running_platform, "customer360")
    dead_before = value(scrape(view), "crm_consumer_dead_lettered_total")
    customer_id = running_platform.register(name=poison_name).json()["id"]

    def parked() -> dict[str, Any]:
        listed = crm_admin(running_platform, "dead-letters", "list", "customer360")
        assert listed.returncode == 0, listed.stderr
        letters = [d for d in json.loads(listed.stdout) if constraint in d["reason"]]
        assert len(letters) == 1, letters
        return letters[0]  # type: ignore[no-any-return]

    letter = eventually(parked, timeout=60, interval=1)
    assert (letter["kind"], letter["type"], letter["consumer"]) == ("read-model", "customer_registered", "customer360")
    shown = json.loads(crm_admin(running_platform, "dead-letters", "show", "customer360", letter["id"]).stdout)
    assert shown["envelope"]["customer_id"] == customer_id and shown["envelope"]["payload"]["name"] == poison_name
    assert value(scrape(view), "crm_consumer_dead_lettered_total") > dead_before
    status = crm_admin(running_platform, "status")
    assert status.returncode == 1 and json.loads(status.stdout)["parked"]["customer360"] >= 1

    unfixed = crm_admin(running_platform, "dead-letters", "retry", "customer360", letter["id"])
    assert unfixed.returncode == 1, unfixed.stdout  # still failing: nothing applied, still parked
    assert letter["id"] in [d["id"] for d in json.loads(crm_admin(running_platform, "dead-letters", "list").stdout)]

    fix()
    retried = crm_admin(running_platform, "dead-letters", "retry", "customer360", letter["id"])
    assert retried.returncode == 0, retried.stderr
    assert running_platform.view(customer_id)["profile"]["name"] == poison_name
    applied_once = running_platform.stored_events()[customer_id]
    assert running_platform.viewed_events()[customer_id] == applied_once

    again = crm_admin(running_platform, "dead-letters", "retry", "customer360", letter["id"])
    assert again.returncode == 1 and "nothing is parked" in again.stderr  # once
    assert letter["id"] not in [d["id"] for d in json.loads(crm_admin(running_platform, "dead-letters", "list").stdout)]
    assert running_platform.viewed_events()[customer_id] == applied_once


def test_crm_admin_rebuilds_the_360_view_with_progress_and_it_equals_the_live_one(running_platform):
    ids = [running_platform.register().json()["id"] for _ in range(10)]
    for customer_id in ids:
        running_platform.view(customer_id)
    live = eventually(lambda: (rows := running_platform.read_model()) == running_platform.read_model() and rows,
                      timeout=60, interval=1)

    rebuilt = subprocess.run([CRM_ADMIN, "rebuild", "customer360"], env={**os.environ, **running_platform.env},
                             capture_output=True, text=True, timeout=300)

    assert rebuilt.returncode == 0, rebuilt.stderr
    assert "ETA" in rebuilt.stderr and "100.0%" in rebuilt.stderr  # the progress bar, drawn to the end
    assert rebuilt.stdout.startswith("rebuilt customer360 from ")
    assert running_platform.read_model() == live
    refused = crm_admin(running_platform, "replay", "customer360", "--from", "5")
    assert refused.returncode == 1 and "count events twice" in refused.stderr  # never onto a model that counted
