"""The customer journey over the gateway, as a front end walks it: campaign, lead, the customer and
opportunity the platform makes of a converted lead, quote, win, the order the platform places by
itself, fulfilment and payment, loyalty points, a complaint case and the surveys.

Every command goes through a RetryingClient (Idempotency-Key, retried after a 5xx or a lost answer)
with If-Match from the version last read. A command whose first attempt committed but whose answer
was lost (a killed service) is retried under the same key and may find its If-Match stale (412): the
front end then reads the resource again and goes on if the command's effect is there (`done`), as a
person would after a refresh. Hand-offs the platform makes by itself (customer, opportunity, order,
points, surveys) and read models (lists, the 360 view) lag: they are polled with `eventually`.
"""

from __future__ import annotations

import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import requests

from crm_contracts.vocabulary.sales import OPEN_STAGES
from tests.support.clients import Outcome, RetryingClient
from tests.support.polling import eventually

Doc = dict[str, Any]

#: One quote line: 50 seats at 240.00 less 10% = 10800.00 CNY, enough to lift the customer's first
#: order from bronze (1 point per CNY) to silver (from 10,000 CNY of rolling spend).
SKU = "CRM-SEAT"
QUANTITY = 50
QUOTE_LINES = [{"sku": SKU, "description": "CRM seat, annual", "quantity": QUANTITY, "unit_price": "240.00",
                "discount": "10.00"}]
QUOTE_TOTAL = Decimal("10800.00")
ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "postal_code": "100022",
           "country": "CN"}
#: An email that the service desk's rules route to customer service (delivery, damaged goods), as
#: important (urgent), and register as a complaint (unacceptable).
COMPLAINT = {"channel": "email", "subject": "Complaint: the delivery arrived broken",
             "body": "Urgent: half of the parcel was broken on delivery. This is unacceptable."}
CUSTOMER_ADDRESS_PATH = "/v1/customers/{customer_id}/addresses/{kind}"


class ApiError(AssertionError):
    """A command or read the API answered with something else than the journey expects."""


@dataclass
class Api:
    """A front end on the gateway: retried commands with Idempotency-Key and If-Match, retried reads."""

    client: RetryingClient
    lag: float = 60.0  # how long a hand-off or a read model may take to show a change

    def get(self, path: str, params: dict[str, Any] | None = None, *, ok: tuple[int, ...] = (200,)) -> Outcome:
        """A read, retried after a 5xx or a connection error (a read changes nothing)."""
        give_up, pause = time.monotonic() + self.client.deadline, 0.05
        attempt = 0
        while True:
            attempt += 1
            try:
                response = requests.get(self.client.gateways[attempt % len(self.client.gateways)] + path,
                                        params=params, timeout=self.client.request_timeout,
                                        headers={"Authorization": f"Bearer {self.client.token}"})
            except requests.RequestException:
                status: int | None = None
            else:
                status = response.status_code
                if status < 500:
                    body = response.json() if response.content else {}
                    if status not in ok:
                        raise ApiError(f"GET {path} {params or ''}: {status} {response.text[:500]}")
                    return Outcome("", status, body, dict(response.headers), attempt)
            self.client.retried[f"read {status or 'connection'}"] += 1
            if time.monotonic() + pause > give_up:
                raise ApiError(f"GET {path}: no answer within {self.client.deadline}s (last: {status})")
            time.sleep(pause)
            pause = min(1.0, pause * 2)

    def read(self, path: str) -> Doc:
        return self.get(path).body

    def create(self, path: str, body: Doc, *, method: str = "POST", status: int = 201) -> Doc:
        """A creating command, once per Idempotency-Key however often it is retried."""
        outcome = self.client.send(method, path, body)
        if outcome.status != status:
            raise ApiError(f"{method} {path}: {outcome.status} {outcome.body}")
        return outcome.body

    def command(self, method: str, path: str, body: Doc | None = None, *, version: int | None = None,
                resource: str | None = None, done: Callable[[Doc], bool] | None = None) -> Doc:
        """A command on a resource (If-Match: `version` when given). On 412 the resource (`resource`,
        default `path`'s parent) is read again: when `done` says the command's effect is there (its
        first attempt committed, its answer was lost) that is the answer; else the command is sent again
        with the version just read, under a new key."""
        for attempt in range(1, 6):
            headers = {"If-Match": f'"{version}"'} if version is not None else {}
            outcome = self.client.send(method, path, body or {}, headers)
            if outcome.accepted:
                return outcome.body
            if outcome.status != 412 or resource is None:
                raise ApiError(f"{method} {path} (If-Match {version}): {outcome.status} {outcome.body}")
            current = self.read(resource)
            if done is not None and done(current):
                return current
            self.client.retried[f"412 {'unchanged' if current['version'] == version else 'changed'} resource"] += 1
            version = current["version"]
            time.sleep(random.uniform(0.05, 0.2) * attempt)  # "reload it and retry", not all at once
        raise ApiError(f"{method} {path}: still 412 after five fresh reads")

    def eventually(self, what: Callable[[], Any], timeout: float | None = None) -> Any:
        return eventually(what, timeout=timeout or self.lag, interval=0.25)

    def paths(self) -> set[str]:
        return set(self.read("/openapi.json")["paths"])


def item(page: Doc) -> Doc:
    """The one item of a list page (fails, and is polled again, while there is none)."""
    assert page["total"] == 1 and len(page["items"]) == 1, f"expected one item: {page}"
    return page["items"][0]


@dataclass
class Journey:
    """One customer's walk and what it produced (ids, and what each step answered)."""

    number: int
    campaign_id: str
    email: str = ""
    lead: Doc = field(default_factory=dict)
    customer_id: str = ""
    opportunity: Doc = field(default_factory=dict)
    quote_id: str = ""
    order: Doc = field(default_factory=dict)
    shipping_address_by: str = ""  # "customer" (the default address) or "order"
    account: Doc = field(default_factory=dict)
    opened_case: Doc = field(default_factory=dict)
    case: Doc = field(default_factory=dict)
    order_survey: Doc = field(default_factory=dict)
    steps: list[str] = field(default_factory=list)

    def did(self, step: str) -> None:
        self.steps.append(step)


def plan_and_launch_campaign(api: Api, name: str) -> Doc:
    campaign = api.create("/v1/campaigns", {
        "name": name, "objective": "qualified leads from retail chains", "segment": {"industries": ["retail"]},
        "channels": ["online", "email"], "starts_on": "2026-01-01", "ends_on": "2027-12-31", "budget": "24000.00",
        "currency": "CNY"})
    assert campaign["status"] == "planned", campaign
    launched = api.command("POST", f"/v1/campaigns/{campaign['id']}/launch", version=campaign["version"],
                           resource=f"/v1/campaigns/{campaign['id']}", done=lambda c: c["status"] == "active")
    assert launched["status"] == "active", launched
    return launched


def capture_and_convert_lead(api: Api, journey: Journey) -> None:
    """Web form -> engagement -> rescore -> grade -> qualify -> convert: the lead becomes a customer."""
    journey.email = f"journey-{journey.number}-{uuid.uuid4().hex[:10]}@example.com"
    lead = api.create("/v1/leads", {
        "channel": "web_form", "name": f"Journey Customer {journey.number}", "email": journey.email,
        "campaign_id": journey.campaign_id, "company": f"Bright Retail {journey.number}", "company_size": 250,
        "role": "purchasing manager", "industry": "retail"})
    assert lead["status"] == "captured" and lead["campaign_id"] == journey.campaign_id, lead
    lead_path = f"/v1/leads/{lead['id']}"
    journey.did("lead captured")
    lead = api.command("POST", f"{lead_path}/engagements", {"kind": "reply"})
    lead = api.command("POST", f"{lead_path}/rescore")
    journey.did("engagement recorded, rescored")
    lead = api.command("PUT", f"{lead_path}/grade", {"grade": "key", "reason": "chain of 40 stores"},
                       version=lead["version"], resource=lead_path, done=lambda d: d["grade"] == "key")
    lead = api.command("POST", f"{lead_path}/qualify", {"note": "budget confirmed"}, version=lead["version"],
                       resource=lead_path, done=lambda d: d["status"] != "captured")
    assert lead["status"] == "qualified" and lead["grade"] == "key", lead
    journey.did("graded, qualified")
    lead = api.command("POST", f"{lead_path}/convert", {
        "estimated_amount": "12000.00", "currency": "CNY", "expected_close_date": "2027-06-30",
        "sales_owner": "rep-wang-wei"}, version=lead["version"], resource=lead_path,
        done=lambda d: d["status"] == "converted")
    assert lead["status"] == "converted", lead
    journey.lead = lead
    journey.did("converted")


def opportunity_of_lead(api: Api, journey: Journey) -> None:
    """The opportunity sales opens by itself for the customer the converted lead became."""
    found = api.eventually(lambda: item(api.read(f"/v1/opportunities?lead_id={journey.lead['id']}")))
    journey.customer_id = found["customer_id"]
    journey.opportunity = api.read(f"/v1/opportunities/{found['id']}")
    journey.did("customer registered, opportunity opened")


def set_default_shipping_address(api: Api, journey: Journey, supported: bool) -> None:
    """The customer's default shipping address, where the gateway has the endpoint (orders take it)."""
    if supported:
        api.command("PUT", f"/v1/customers/{journey.customer_id}/addresses/shipping",
                    {"address": ADDRESS, "default": True})
        journey.did("default shipping address set")


def quote_accept_win(api: Api, journey: Journey) -> None:
    """Move the opportunity to proposal, send a quote, record its acceptance, win."""
    path = f"/v1/opportunities/{journey.opportunity['id']}"
    opportunity = journey.opportunity
    target = OPEN_STAGES.index("proposal")
    while OPEN_STAGES.index(opportunity["stage"]) < target:
        next_stage = OPEN_STAGES[OPEN_STAGES.index(opportunity["stage"]) + 1]
        opportunity = api.command("PUT", f"{path}/stage", {"stage": next_stage}, version=opportunity["version"],
                                  resource=path,
                                  done=lambda d, s=next_stage: OPEN_STAGES.index(d["stage"]) >= OPEN_STAGES.index(s))
    opportunity = api.command("POST", f"{path}/quotes", {"lines": QUOTE_LINES}, version=opportunity["version"],
                              resource=path, done=lambda d: bool(d["quotes"]))
    quote = opportunity["quotes"][-1]
    assert quote["status"] == "sent" and Decimal(quote["total"]) == QUOTE_TOTAL, quote
    journey.quote_id = quote["quote_id"]
    journey.did("quote sent")
    opportunity = api.command("POST", f"{path}/quotes/{journey.quote_id}/accept", version=opportunity["version"],
                              resource=path, done=lambda d: d["quotes"][-1]["status"] == "accepted")
    journey.did("quote accepted")
    opportunity = api.command("POST", f"{path}/win", version=opportunity["version"], resource=path,
                              done=lambda d: d["stage"] == "won")
    assert opportunity["stage"] == "won" and opportunity["won_quote_id"] == journey.quote_id, opportunity
    journey.opportunity = opportunity
    journey.did("won")


def order_of_opportunity(api: Api, journey: Journey) -> None:
    """The order the platform places by itself from the won quote."""
    found = api.eventually(lambda: item(api.read(f"/v1/orders?opportunity_id={journey.opportunity['id']}")))
    journey.order = api.read(f"/v1/orders/{found['order_id']}")
    journey.did("order placed by itself")


def fulfil_and_pay(api: Api, journey: Journey) -> None:
    """Shipping address (the customer's default, else set on the order), confirm, ship, deliver, pay."""
    order = journey.order
    path = f"/v1/orders/{order['order_id']}"
    if order["shipping_address"] is None:
        order = api.command("PUT", f"{path}/shipping-address", {"shipping_address": ADDRESS},
                            version=order["version"], resource=path,
                            done=lambda d: d["shipping_address"] is not None)
        journey.shipping_address_by = "order"
    else:
        journey.shipping_address_by = "customer"
    order = api.command("POST", f"{path}/confirm", {"reference": f"ERP-SO-{journey.number}"},
                        version=order["version"], resource=path, done=lambda d: d["status"] != "placed")
    assert order["status"] == "confirmed", order
    shipment = f"SHP-{journey.number}-{order['order_id'][:8]}"
    order = api.command("POST", f"{path}/shipments", {"shipment_id": shipment, "carrier": "SF Express",
                                                       "tracking_number": f"SF{journey.number:010d}",
                                                       "lines": {SKU: QUANTITY}})
    assert order["status"] == "shipped", order
    order = api.command("POST", f"{path}/deliveries", {"shipment_id": shipment})
    assert order["status"] == "delivered", order
    order = api.command("POST", f"{path}/payments", {"payment_id": f"PAY-{journey.number}-{order['order_id'][:8]}",
                                                      "amount": str(QUOTE_TOTAL), "currency": "CNY",
                                                      "method": "bank_transfer"})
    assert order["payment_status"] == "paid", order
    journey.order = order
    journey.did("confirmed, shipped, delivered, paid")


def points_earned(api: Api, journey: Journey) -> None:
    """The loyalty account the platform opens on the first paid order, with the order's points."""

    def earned() -> Doc:
        account = api.get(f"/v1/loyalty-accounts/{journey.customer_id}", ok=(200, 404)).body
        assert account.get("balance") == int(QUOTE_TOTAL), f"not earned yet: {account}"
        return account

    journey.account = api.eventually(earned)
    journey.did("points earned")


def complaint_case(api: Api, journey: Journey) -> None:
    """An email complaint: opened (routed, acknowledged), answered, assessed, resolved, summarised, closed,
    and its survey answered."""
    case = api.create("/v1/cases", {**COMPLAINT, "sender": journey.email, "customer_id": journey.customer_id})
    journey.opened_case = case
    path = f"/v1/cases/{case['id']}"
    journey.did("complaint case opened")
    case = api.command("POST", f"{path}/responses", {"agent": "wang.wei", "body": "We are sending new parts today."})
    case = api.command("PUT", f"{path}/complaint/assessment", {
        "category": "delivery", "severity": "medium", "assessment": "courier damaged the parcel"},
        version=case["version"], resource=path, done=lambda d: d["complaint_stage"] != "received")
    case = api.command("POST", f"{path}/resolve", {"resolution": "Broken parts re-sent by express"},
                       version=case["version"], resource=path, done=lambda d: d["status"] != "open")
    case = api.command("PUT", f"{path}/complaint/summary", {
        "summary": "Parcel damaged in transit, parts re-sent", "root_cause": "no padding in the box"},
        version=case["version"], resource=path, done=lambda d: d["complaint_stage"] == "summarised")
    case = api.command("POST", f"{path}/close", version=case["version"], resource=path,
                       done=lambda d: d["status"] == "closed")
    assert case["status"] == "closed", case
    case = api.command("PUT", f"{path}/survey", {"score": 4, "comment": "quick and friendly"})
    journey.case = case
    journey.did("case answered, resolved, closed, surveyed")


def answer_order_survey(api: Api, journey: Journey) -> None:
    """The survey the platform asked for on the full delivery, found in the 360 view, answered."""
    order_id = journey.order["order_id"]

    def requested() -> str:
        surveys = api.read(f"/v1/customers/{journey.customer_id}/360")["service"]["surveys"]
        found = [sid for sid, s in surveys.items() if s["subject"] == "order" and s["subject_id"] == order_id]
        assert len(found) == 1, f"order survey not (yet) requested: {surveys}"
        return found[0]

    survey_id = api.eventually(requested)
    survey = api.read(f"/v1/surveys/{survey_id}")
    assert survey["status"] == "requested" and survey["customer_id"] == journey.customer_id, survey
    journey.order_survey = api.command("PUT", f"/v1/surveys/{survey_id}/answer", {"score": 5, "comment": "on time"})
    journey.did("order survey answered")


def walk(api: Api, journey: Journey, *, address_endpoint: bool, with_case: bool = True) -> Journey:
    """The whole journey of one customer; with_case=False stops once the points are earned."""
    capture_and_convert_lead(api, journey)
    opportunity_of_lead(api, journey)
    set_default_shipping_address(api, journey, address_endpoint)
    quote_accept_win(api, journey)
    order_of_opportunity(api, journey)
    fulfil_and_pay(api, journey)
    points_earned(api, journey)
    if with_case:
        answer_order_survey(api, journey)
        complaint_case(api, journey)
    return journey
