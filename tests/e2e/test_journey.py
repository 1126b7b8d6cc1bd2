"""The whole customer lifecycle, live (issue 7, "What shows it"): one customer walked over HTTP through
every stage by the six services reacting to each other — campaign, lead, the customer and opportunity
the platform makes of the converted lead, quote, win, the order placed by itself, fulfilment, payment,
loyalty points and tier, a complaint routed, resolved, closed and surveyed — seen whole in the 360 view,
with a timeline from all six origins, and equal after a rebuild.

A platform of this module's own: every service (CRM_SERVICES empty), one process each, under a
supervisor whose restarts would show a crash (none is allowed). The database is only read, to check.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import rabbit_vhost
from crm_contracts.customer360 import Customer360Schema
from tests.support.clients import RetryingClient
from tests.support.databases import query
from tests.support.infrastructure import Infrastructure
from tests.support.journeys import (
    ADDRESS,
    CUSTOMER_ADDRESS_PATH,
    QUOTE_TOTAL,
    SKU,
    Api,
    Journey,
    answer_order_survey,
    capture_and_convert_lead,
    complaint_case,
    fulfil_and_pay,
    opportunity_of_lead,
    order_of_opportunity,
    plan_and_launch_campaign,
    points_earned,
    quote_accept_win,
    set_default_shipping_address,
)
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

JOURNEY_PORT = int(os.environ.get("CRM_JOURNEY_GATEWAY_PORT", "31000"))
ORIGINS = {"customer", "marketing", "sales", "order", "service", "loyalty"}
PAID = str(QUOTE_TOTAL)


@pytest.fixture(scope="module")
def whole_platform(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """All eight processes (six services, customer360, gateway), small pools, restarts on."""
    with rabbit_vhost(infra, "crm_journey") as vhost, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("journey")), label="journey", amqp_uri=vhost,
        gateway_port=JOURNEY_PORT, service_base_port=JOURNEY_PORT + 1, settings={"CRM_SERVICES": ""}, timeout=180,
    ) as running:
        yield running


@pytest.mark.timeout(600)
def test_one_customer_walks_the_whole_lifecycle_and_the_360_view_shows_every_stage(
    whole_platform: RunningPlatform,
) -> None:
    running = whole_platform
    api = Api(RetryingClient(running.gateways, running.token, deadline=30))
    address_endpoint = CUSTOMER_ADDRESS_PATH in api.paths()

    campaign = plan_and_launch_campaign(api, "Spring retail push")
    faq = api.create("/v1/faqs", {"question": "My delivery arrived broken: what now?",
                                  "answer": "We re-send the broken parts by express at once.",
                                  "keywords": ["delivery", "broken", "parcel"], "department": "customer_service"})
    faq = api.command("POST", f"/v1/faqs/{faq['id']}/publish", version=faq["version"])
    journey = Journey(1, campaign["id"])

    # lead -> customer -> opportunity, by the platform itself
    capture_and_convert_lead(api, journey)
    assert journey.lead["score"] is not None and journey.lead["grade"] == "key"
    opportunity_of_lead(api, journey)
    cid, opportunity = journey.customer_id, journey.opportunity
    assert opportunity["lead_id"] == journey.lead["id"] and opportunity["owner"] == "rep-wang-wei"
    assert (opportunity["amount"], opportunity["currency"]) == ("12000.00", "CNY")
    customer = api.read(f"/v1/customers/{cid}")
    assert customer["email"] == journey.email and customer["name"] == "Journey Customer 1"
    api.eventually(lambda: api.read(f"/v1/leads/{journey.lead['id']}")["customer_id"] == cid)

    def with_open_opportunity() -> dict:
        view = api.read(f"/v1/customers/{cid}/360")
        assert view["pipeline"]["opportunities"].get(opportunity["id"], {}).get("status") == "open", view["pipeline"]
        assert view["lifecycle_stage"] == "opportunity", view["lifecycle_stage"]
        assert view["marketing"]["leads"].get(journey.lead["id"], {}).get("status") == "converted", view["marketing"]
        return view

    view = api.eventually(with_open_opportunity)
    assert campaign["id"] in view["marketing"]["campaigns"]
    assert view["pipeline"]["open_total"] == {"CNY": "12000.00"}

    # quote -> won -> the order, by the platform itself
    set_default_shipping_address(api, journey, address_endpoint)
    quote_accept_win(api, journey)
    order_of_opportunity(api, journey)
    order = journey.order
    assert (order["customer_id"], order["opportunity_id"], order["status"]) == (cid, opportunity["id"], "placed")
    assert (order["total"], order["currency"]) == (PAID, "CNY")
    assert [(line["sku"], line["ordered"]) for line in order["lines"]] == [(SKU, 50)]
    if address_endpoint:  # the order took the customer's default shipping address
        assert order["shipping_address"] is not None, order
        assert {k: order["shipping_address"].get(k) for k in ADDRESS} == ADDRESS
    orders = api.read(f"/v1/customers/{cid}/orders")["orders"]
    assert [o["order_id"] for o in orders] == [order["order_id"]]

    fulfil_and_pay(api, journey)
    points_earned(api, journey)
    account = journey.account
    assert account["tier"] == "silver", account  # 10,800 CNY of spend: bronze -> silver

    answer_order_survey(api, journey)
    complaint_case(api, journey)
    opened = journey.opened_case
    assert (opened["department"], opened["priority"], opened["group"]) == (
        "customer_service", "important", "senior_management"), opened
    assert opened["is_complaint"] and opened["complaint_stage"] == "received", opened
    assert opened["acknowledged_at"] is not None and opened["first_response_due"] is not None, opened
    assert faq["id"] in opened["suggested_faq_ids"], opened
    case = journey.case
    assert (case["status"], case["complaint_stage"], case["survey_score"]) == ("closed", "summarised", 4), case
    assert case["first_response_at"] is not None and case["resolved_at"] is not None, case

    # every stage in the 360 view
    def whole() -> dict:
        view = api.read(f"/v1/customers/{cid}/360")
        assert set(view["events"]) == ORIGINS, view["events"]
        assert view["loyalty"]["balance"] == int(QUOTE_TOTAL), view["loyalty"]
        assert view["service"]["satisfaction"]["responses"] == 2, view["service"]
        assert view["service"]["cases"].get(case["id"], {}).get("status") == "closed", view["service"]
        surveys = sorted(s["subject"] for s in view["service"]["surveys"].values())
        assert surveys == ["case", "order"], view["service"]["surveys"]  # on delivery, and on closing the case
        return view

    view = api.eventually(whole)
    assert Customer360Schema().validate(view) == {}
    assert view["profile"]["email"] == journey.email
    assert (view["lifecycle_stage"], view["stage_reached"], view["relationship_phase"]) == (
        "customer", "customer", "consolidation")
    assert view["paid_orders"] == 1 and view["stage_reasons"] == []
    lead = view["marketing"]["leads"][journey.lead["id"]]
    assert (lead["status"], lead["grade"], lead["campaign_id"]) == ("converted", "key", campaign["id"])
    assert view["marketing"]["campaigns"] == [campaign["id"]] and view["marketing"]["lead_grade"] == "key"
    won = view["pipeline"]["opportunities"][opportunity["id"]]
    assert (won["status"], won["won_amount"], won["quote"]["status"]) == ("won", PAID, "accepted")
    assert view["pipeline"]["won_total"] == {"CNY": PAID} and view["pipeline"]["open_total"] == {}
    assert view["pipeline"]["won_by_owner"] == {"rep-wang-wei": {"CNY": PAID}}
    shown = view["orders"]["by_id"][order["order_id"]]
    assert (shown["status"], shown["paid"], shown["outstanding"], shown["shipments"]) == ("paid", PAID, "0.00", 1)
    assert view["orders"]["revenue"] == {"CNY": PAID} and view["orders"]["outstanding"] == {}
    assert view["orders"]["last_order"]["order_id"] == order["order_id"]
    shown_case = view["service"]["cases"][case["id"]]
    assert (shown_case["department"], shown_case["priority"], shown_case["is_complaint"]) == (
        "customer_service", "important", True)
    assert shown_case["responded"] and shown_case["complaint"]["status"] == "resolved"
    assert view["service"]["complaints"] == {"total": 1, "unresolved": 0} and view["service"]["open_cases"] == 0
    assert view["service"]["satisfaction"]["csi"] == "87.5"  # scores 5 and 4: (4.5 - 1) / 4 * 100
    loyalty = view["loyalty"]
    assert (loyalty["tier"], loyalty["currency"]) == ("silver", "CNY") and loyalty["points_owed"] == 0
    assert [b["kind"] for b in loyalty["benefits"].values()] == ["discount"]
    assert view["timeline_total"] == sum(view["events"].values())
    assert len(view["timeline"]) == min(50, view["timeline_total"])
    timeline = dict(query(running.env, "customer360", "SELECT origin, count(*) FROM timeline WHERE customer_id = %s "
                                                      "GROUP BY origin", (cid,)))
    assert set(timeline) == ORIGINS and timeline == view["events"], timeline

    satisfaction = api.read(f"/v1/customers/{cid}/satisfaction")
    assert Decimal(satisfaction["index"]) == Decimal("87.5"), satisfaction
    results = api.eventually(lambda: (r := api.read(f"/v1/campaigns/{campaign['id']}/results"))
                             ["attributed_revenue"] == PAID and r)
    assert (results["leads"], results["conversions"]) == (1, 1), results

    # each hand-off happened once
    assert api.read(f"/v1/opportunities?customer_id={cid}")["total"] == 1
    assert api.read(f"/v1/orders?customer_id={cid}")["total"] == 1

    # a rebuild from every origin's history gives the same read model, row for row
    eventually(lambda: (rows := running.read_model()) == running.read_model() and rows, timeout=60, interval=1)
    live = api.read(f"/v1/customers/{cid}/360")
    assert running.rebuild_changes_nothing() >= live["timeline_total"]
    assert api.read(f"/v1/customers/{cid}/360") == live
    restarts = {name: running.platform.restarts(name) for name in running.platform.processes}
    assert set(restarts.values()) == {0}, f"a process crashed and was restarted: {restarts}"
    print("journey:", *journey.steps, sep="\n  ")


def test_leads_of_one_campaign_handled_at_the_same_time_are_never_refused_as_stale(
    whole_platform: RunningPlatform,
) -> None:
    running = whole_platform
    client = RetryingClient(running.gateways, running.token, deadline=30)
    campaign = plan_and_launch_campaign(Api(client), "One busy campaign")

    def front_end(i: int) -> list[str]:
        """Capture, qualify, convert one lead, each with the version just answered; what was refused."""
        lead = client.send("POST", "/v1/leads", {"channel": "web_form", "name": f"Busy {i}",
                                                 "email": f"busy-{i}-{uuid.uuid4().hex[:8]}@example.com",
                                                 "campaign_id": campaign["id"]})
        if lead.status != 201:
            return [f"capture {i}: {lead.status} {lead.body}"]
        for step, body in (("qualify", {}), ("convert", {"estimated_amount": "1000.00", "currency": "CNY"})):
            sent = lead.body["version"]
            lead = client.send("POST", f"/v1/leads/{lead.body['id']}/{step}", body, {"If-Match": f'"{sent}"'})
            if lead.status != 200:
                return [f"{step} {i} (If-Match {sent}, still current): {lead.status} {lead.body}"]
        return []

    with ThreadPoolExecutor(12) as pool:
        refused = [r for answers in pool.map(front_end, range(36)) for r in answers]
    assert refused == [], f"{len(refused)} of 36 leads refused; e.g. {refused[:3]}"
