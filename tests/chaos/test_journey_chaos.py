"""The whole journey for many customers at once while the services that run the lifecycle's policies
are SIGKILLed and restarted by the supervisor (issue 7): order (it places the order of a won
opportunity) and then loyalty (it earns the points of a paid order), each in the middle of its work.
Afterwards every hand-off happened exactly once: one customer and one opportunity per converted lead,
one order per won opportunity, points earned once per paid order, one survey per delivered order,
revenue attributed once — checked through the API and the services' event stores — and a rebuild of
the 360 view changes nothing.

Every customer walks to the points (lead -> customer -> opportunity -> order -> paid -> points);
the first CASES of them go on to the order survey and the complaint case (all of them by default).
CRM_JOURNEY_CUSTOMERS and CRM_JOURNEY_CASES change the counts; 200 full journeys by 12 clients take
about three minutes on two shared cores.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import rabbit_vhost
from tests.support.clients import RetryingClient
from tests.support.databases import query, stored_topics
from tests.support.infrastructure import Infrastructure
from tests.support.journeys import (
    CUSTOMER_ADDRESS_PATH,
    QUOTE_TOTAL,
    Api,
    Journey,
    plan_and_launch_campaign,
    walk,
)
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually

pytestmark = pytest.mark.chaos

PORT = int(os.environ.get("CRM_JOURNEY_CHAOS_GATEWAY_PORT", "31100"))
CUSTOMERS = int(os.environ.get("CRM_JOURNEY_CUSTOMERS", "200"))
CASES = int(os.environ.get("CRM_JOURNEY_CASES", str(CUSTOMERS)))
CLIENTS = 12
#: Who is killed, once how many journeys have reached which step: order while won opportunities are
#: becoming orders, loyalty while paid orders are earning points.
VICTIMS = (("order", "won", 0.3), ("loyalty", "confirmed, shipped, delivered, paid", 0.5))


@pytest.fixture(scope="module")
def restarting_platform(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """All eight processes under a supervisor that restarts what dies."""
    with rabbit_vhost(infra, "crm_journey_chaos") as vhost, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("journey_chaos")), label="journey_chaos", amqp_uri=vhost,
        gateway_port=PORT, service_base_port=PORT + 1, settings={"CRM_SERVICES": "", "CRM_RESTART": "on"},
        timeout=180,
    ) as running:
        yield running


class Killer:
    """SIGKILLs each victim once enough journeys reached its step; waits for the supervisor's restart."""

    def __init__(self, running: RunningPlatform, journeys: list[Journey]) -> None:
        self.platform, self.journeys = running.platform, journeys
        self.log: list[str] = []
        self.started = time.monotonic()
        self.finished = threading.Event()

    def reached(self, step: str) -> int:
        return sum(step in list(j.steps) for j in self.journeys)

    def run(self) -> None:
        for victim, step, share in VICTIMS:
            eventually(lambda step=step, share=share: self.reached(step) >= share * len(self.journeys) or
                       self.finished.is_set(), timeout=600, interval=0.05)
            before = self.platform.restarts(victim)
            self.platform.signal(victim, signal.SIGKILL)
            self.note(f"SIGKILL {victim} ({self.reached(step)} journeys past '{step}')")
            eventually(lambda victim=victim, before=before: self.platform.restarts(victim) > before, timeout=60)
            self.platform.wait_ready([victim], timeout=120)
            self.note(f"{victim} restarted and ready")

    def note(self, what: str) -> None:
        self.log.append(f"{time.monotonic() - self.started:6.1f}s {what}")


def journey_or_failure(api: Api, journey: Journey, address_endpoint: bool) -> str | None:
    try:
        walk(api, journey, address_endpoint=address_endpoint, with_case=journey.number < CASES)
    except Exception:  # noqa: BLE001 - reported with the step it failed after, every journey still runs
        return f"journey {journey.number} after {journey.steps[-1:]}: {traceback.format_exc(limit=3)}"
    return None


def walk_all(api: Api, journeys: list[Journey], campaigns: list[str], address_endpoint: bool) -> list[str]:
    """CLIENTS front ends walk the journeys, each one at a time and with a campaign of its own (every
    lead command also writes its campaign: one hot campaign for all makes them race, see
    test_journey.py's test on concurrent leads of one campaign); returns the failures."""
    waiting = iter(journeys)
    lock = threading.Lock()

    def front_end(campaign_id: str) -> list[str]:
        failures = []
        while True:
            with lock:
                journey = next(waiting, None)
            if journey is None:
                return failures
            journey.campaign_id = campaign_id
            failure = journey_or_failure(api, journey, address_endpoint)
            if failure:
                failures.append(failure)

    with ThreadPoolExecutor(len(campaigns)) as pool:
        return [f for failures in pool.map(front_end, campaigns) for f in failures]


@pytest.mark.timeout(900)
def test_every_hand_off_happens_exactly_once_while_policy_services_are_killed(
    restarting_platform: RunningPlatform,
) -> None:
    running, platform = restarting_platform, restarting_platform.platform
    client = RetryingClient(running.gateways, running.token, deadline=120)
    api = Api(client, lag=180)
    address_endpoint = CUSTOMER_ADDRESS_PATH in api.paths()
    campaigns = [plan_and_launch_campaign(api, f"Chaos retail push {n}")["id"] for n in range(CLIENTS)]
    journeys = [Journey(i, "") for i in range(CUSTOMERS)]
    killer = Killer(running, journeys)
    started = time.monotonic()
    with ThreadPoolExecutor(1) as background:
        kills = background.submit(killer.run)
        failures = walk_all(api, journeys, campaigns, address_endpoint)
        killer.finished.set()
        kills.result()
    walked = time.monotonic() - started
    restarts = {name: platform.restarts(name) for name in platform.processes}
    print(f"{CUSTOMERS} journeys ({CASES} with the case) in {walked:.0f}s by {CLIENTS} clients; retries by cause "
          f"{dict(client.retried)}; restarts {restarts}; shipping address from "
          f"{sorted({j.shipping_address_by for j in journeys})}", *killer.log, sep="\n  ")
    assert failures == [], f"{len(failures)} journeys failed; the first:\n" + "\n".join(failures[:3])
    victims = {victim for victim, _, _ in VICTIMS}
    assert {name: count for name, count in restarts.items() if name in victims} == dict.fromkeys(victims, 1)
    assert {name: count for name, count in restarts.items() if name not in victims and count} == {}, \
        "a process that was not killed crashed"

    # through the API: one opportunity per lead, one order per opportunity, the points once
    def one_of_each(journey: Journey) -> None:
        assert api.read(f"/v1/opportunities?lead_id={journey.lead['id']}")["total"] == 1, journey.number
        assert api.read(f"/v1/orders?opportunity_id={journey.opportunity['id']}")["total"] == 1, journey.number
        orders = api.read(f"/v1/customers/{journey.customer_id}/orders")["orders"]
        assert [o["order_id"] for o in orders] == [journey.order["order_id"]], journey.number
        account = api.read(f"/v1/loyalty-accounts/{journey.customer_id}")
        assert account["balance"] == int(QUOTE_TOTAL), (journey.number, account)

    with ThreadPoolExecutor(CLIENTS) as pool:
        list(pool.map(one_of_each, journeys))
    cases = [j for j in journeys if j.case]
    for campaign_id in campaigns:  # the campaign's revenue: each paid order attributed once
        converted = sum(j.campaign_id == campaign_id for j in journeys)
        results = api.eventually(lambda c=campaign_id, n=converted: (
            r := api.read(f"/v1/campaigns/{c}/results"))["attributed_revenue"] == str(QUOTE_TOTAL * n) and r)
        assert (results["leads"], results["conversions"]) == (converted, converted), results

    # in the event stores: each reaction's command saved once
    def counted(schema: str, *topics: str) -> list[int]:
        stored = stored_topics(running.env, schema)
        return [stored.get(f"crm_{schema}.domain:{topic}", 0) for topic in topics]

    assert counted("customer", "Customer.Registered", "Customer.LeadLinked") == [CUSTOMERS] * 2
    assert counted("sales", "Opportunity.Opened", "Opportunity.Won") == [CUSTOMERS] * 2
    assert counted("order", "Order.Placed", "Order.Paid") == [CUSTOMERS] * 2
    assert counted("loyalty", "Account.Enrolled", "Account.PointsEarned") == [CUSTOMERS] * 2
    # a survey on each full delivery, and on each closed case
    assert counted("service", "Survey.Requested") == [CUSTOMERS + len(cases)]

    # the 360 view: every customer whole, nothing applied twice, and a rebuild changes nothing
    def whole_views() -> bool:
        views = dict(query(running.env, "customer360", "SELECT customer_id::text, doc FROM customer_view"))
        missing = [j.number for j in journeys if j.customer_id not in views]
        assert not missing, f"{len(missing)} customers not in the 360 view"
        for journey in journeys:
            view = views[journey.customer_id]
            assert view["loyalty"]["balance"] == int(QUOTE_TOTAL) and view["paid_orders"] == 1, journey.number
            surveys = sorted(s["subject"] for s in view["service"]["surveys"].values())
            assert surveys == (["case", "order"] if journey.case else ["order"]), (journey.number, surveys)
        return True

    eventually(whole_views, timeout=120, interval=2)
    duplicates = query(running.env, "customer360", "SELECT origin, position FROM timeline "
                                                   "GROUP BY origin, position HAVING count(*) > 1")
    assert duplicates == [], "timeline entries applied twice"
    rebuilt = running.rebuild_changes_nothing()
    print(f"rebuild read {rebuilt} events; total {time.monotonic() - started:.0f}s")
