"""Two of everything (ARCHITECTURE.md guarantee 10): two replicas of customer, of customer360 and of the
gateway, one of each SIGKILLed in the middle of a burst of registrations and profile changes sent by
retrying clients through both gateways. Nothing is lost, nothing applied twice, and a rebuild of the
360 view changes nothing."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import rabbit_vhost
from tests.e2e.conftest import E2E_OWN_PLATFORM_PORT
from tests.support.clients import Outcome, RetryingClient
from tests.support.databases import query
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

CUSTOMERS = 240
#: Killed at 20%, 40% and 60% of the burst; restarts are off, so the other replica carries the rest.
VICTIMS = {"customer-2": 0.2, "customer360-2": 0.4, "gateway-2": 0.6}


@pytest.fixture(scope="module")
def replicated_platform(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with rabbit_vhost(infra, "crm_e2e_replicas") as vhost, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("replicas")), label="e2e_replicas", amqp_uri=vhost,
        gateway_port=E2E_OWN_PLATFORM_PORT, service_base_port=E2E_OWN_PLATFORM_PORT + 10,
        settings={"CRM_SERVICES": "customer,customer360,gateway", "CRM_REPLICAS": "customer=2,customer360=2,gateway=2",
                  "CRM_RESTART": "off"},
    ) as running:
        yield running


def customer_story(client: RetryingClient, i: int) -> tuple[Outcome, Outcome | None]:
    """Register a customer, then change its profile (both idempotent, retried)."""
    registered = client.register(name=f"Replica {i}")
    if not registered.accepted:
        return registered, None
    return registered, client.change_profile(registered.body["id"], 1, {"company": f"Company {i}"})


def test_two_replicas_of_everything_lose_nothing_and_apply_nothing_twice_when_one_of_each_dies(
    replicated_platform: RunningPlatform,
) -> None:
    running, platform = replicated_platform, replicated_platform.platform
    assert len(running.gateways) == 2
    client = RetryingClient(running.gateways, running.token)
    with ThreadPoolExecutor(12) as pool:
        stories: list[Future[tuple[Outcome, Outcome | None]]] = [
            pool.submit(customer_story, client, i) for i in range(CUSTOMERS)
        ]
        for victim, at in VICTIMS.items():
            eventually(lambda at=at: sum(f.done() for f in stories) >= at * CUSTOMERS, timeout=180, interval=0.05)
            platform.signal(victim, signal.SIGKILL)
        results = [(i, *story.result()) for i, story in enumerate(stories)]
    assert all(platform.pid(victim) is None for victim in VICTIMS)
    print(f"retries by cause: {dict(client.retried)}")

    registered = {r.body["id"]: i for i, r, _ in results if r.accepted}
    changed = {r.body["id"]: i for i, r, c in results if c is not None and c.accepted}

    def converged() -> bool:
        stored, viewed = running.stored_events(), running.viewed_events()
        missing = set(registered) - set(viewed)
        assert not missing, f"{len(missing)} accepted registrations not in the 360 view (yet)"
        assert viewed == stored, "the 360 view's event counts differ from the customer service's events"
        return True

    eventually(converged, timeout=90, interval=1)
    duplicates = query(running.env, "customer360", "SELECT customer_id, event_id FROM timeline "
                                                   "GROUP BY customer_id, event_id HAVING count(*) > 1")
    assert duplicates == [], "timeline entries applied twice"
    timeline = dict(query(running.env, "customer360", "SELECT customer_id::text, count(*) FROM timeline GROUP BY 1"))
    assert timeline == running.stored_events()
    companies = dict(query(running.env, "customer360", "SELECT customer_id::text, doc->'profile'->>'company' "
                                                       "FROM customer_view"))
    assert {cid: companies[cid] for cid in changed} == {cid: f"Company {i}" for cid, i in changed.items()}
    names = dict(query(running.env, "customer360", "SELECT customer_id::text, name FROM customer_view"))
    assert {cid: names[cid] for cid in registered} == {cid: f"Replica {i}" for cid, i in registered.items()}

    assert running.rebuild_changes_nothing() >= len(registered) + len(changed)

    unanswered = [(i, r.status, r.body) for i, r, _ in results if not r.accepted]
    assert unanswered == [], f"{len(unanswered)} registrations never answered 2xx: {unanswered[:5]}"
    # A change whose first attempt committed but whose answer died with its gateway is retried and
    # finds its If-Match stale (412): its outcome is unknown to the client, not lost (checked above).
    failed = [(i, c.status, c.body) for i, _, c in results if c is not None and not c.accepted and c.status != 412]
    assert failed == [], f"{len(failed)} profile changes failed: {failed[:5]}"
