"""Commands need only PostgreSQL: while the broker is unreachable the gateway still accepts them (the
command path is HTTP, gateway -> service, and the outbox holds their events); once the broker is back
the relay publishes what piled up and the 360 view catches up, each event applied once.

The outage is played by cutting every connection through this test's own TCP proxy in front of the
shared RabbitMQ (the platform's AMQP_URI points at it); the shared broker is never touched.
"""

from __future__ import annotations

import itertools
import os
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlparse

import pytest

from conftest import rabbit_vhost
from tests.support.clients import Outcome, RetryingClient
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually
from tests.support.proxy import OutageProxyProcess

pytestmark = pytest.mark.chaos

PORT = int(os.environ.get("CRM_OUTAGE_GATEWAY_PORT", "18400"))
RATE = 40  # commands offered per second
CLIENTS = 8
BEFORE, OUTAGE, AFTER = 4.0, 15.0, 4.0  # seconds of load around and during the outage


@pytest.fixture(scope="module")
def platform_behind_a_broker_proxy(
    infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[RunningPlatform, OutageProxyProcess]]:
    """customer, customer360 and the gateway, reaching RabbitMQ only through the proxy yielded beside them."""
    broker_url = urlparse(infra.amqp_uri)
    with rabbit_vhost(infra, "crm_broker_outage") as vhost:
        broker = OutageProxyProcess(broker_url.hostname or "127.0.0.1", broker_url.port or 5672)
        proxied_vhost = vhost.replace(broker_url.netloc.split("@")[-1], f"127.0.0.1:{broker.port}", 1)
        try:
            with platform_of_its_own(
                infra, Path(tmp_path_factory.mktemp("broker_outage")), label="broker_outage", amqp_uri=vhost,
                gateway_port=PORT, service_base_port=PORT + 1,
                settings={"CRM_SERVICES": "customer,customer360,gateway"},
                platform_env={"AMQP_URI": proxied_vhost},
            ) as running:
                yield running, broker
        finally:
            broker.close()


def test_commands_are_accepted_while_the_broker_is_down_and_reach_the_view_once_it_is_back(
    platform_behind_a_broker_proxy: tuple[RunningPlatform, OutageProxyProcess],
) -> None:
    running, broker = platform_behind_a_broker_proxy
    once = RetryingClient(running.gateways, running.token, deadline=0.0, request_timeout=10.0)  # no retries
    started = time.monotonic()
    outage = (started + BEFORE, started + BEFORE + OUTAGE)
    numbers = itertools.count()
    sent: list[tuple[float, Outcome]] = []

    def client_loop() -> None:
        while (i := next(numbers)) < RATE * (BEFORE + OUTAGE + AFTER):
            time.sleep(max(0.0, started + i / RATE - time.monotonic()))
            at = time.monotonic()
            sent.append((at, once.register(name=f"Outage {i}")))

    with ThreadPoolExecutor(CLIENTS + 1) as pool:
        loops = [pool.submit(client_loop) for _ in range(CLIENTS)]
        time.sleep(max(0.0, outage[0] - time.monotonic()))
        broker.cut()
        print(f"broker cut at {datetime.now(UTC):%H:%M:%S.%f}")
        time.sleep(max(0.0, outage[1] - time.monotonic()))
        broker.restore()
        restored = time.monotonic()
        print(f"broker back at {datetime.now(UTC):%H:%M:%S.%f}")
        for loop in loops:
            loop.result()

    during = [outcome for at, outcome in sent if outage[0] <= at < outage[1]]
    statuses = Counter(outcome.status for _, outcome in sent)
    print(f"{len(sent)} commands, {len(during)} during the {OUTAGE:.0f} s outage; statuses {dict(statuses)}")
    assert len(during) >= 5 * OUTAGE, "the load did not span the outage"
    assert sum(o.accepted for o in during) >= 0.99 * len(during), (
        f"commands refused during the broker outage: {Counter(o.status for o in during)}")

    accepted = {outcome.body["id"] for _, outcome in sent if outcome.accepted}

    def every_accepted_command_viewed_once() -> bool:
        viewed, stored = running.viewed_events(), running.stored_events()
        assert accepted <= set(viewed), f"{len(accepted - set(viewed))} accepted registrations not viewed yet"
        assert viewed == stored and set(viewed.values()) == {1}
        return True

    eventually(every_accepted_command_viewed_once, timeout=90, interval=0.5)
    print(f"the view caught up {time.monotonic() - restored:.1f} s after the broker came back")
