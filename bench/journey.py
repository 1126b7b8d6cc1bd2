"""The customer journey under load: `count` customers walk the lifecycle over HTTP through the gateway
from `clients` concurrent threads, each on its own campaign, while the platform's policies make the
hand-offs by themselves:

    lead captured, qualified, converted  -> customer and opportunity appear (customer, sales policies)
    stages, quote sent, accepted, won    -> the order appears (order policy)
    shipping address, confirm, ship, deliver, pay -> the points are earned (loyalty policy)

Measured: completed journeys per second of wall time, and per journey the time from the 200 of
POST /v1/leads/{id}/convert to the first GET /v1/loyalty-accounts/{customer_id} that shows the points
(polled every 20 ms), with the three policy hand-offs on their own. A journey whose hand-off never comes
(within a generous timeout) or whose balance is not the order's points is a correctness failure: it is
reported as the phase's error (the bench then exits 1), never a slow one.

The same walk as tests/support/journeys.py, without its retry machinery for killed services: commands
carry an Idempotency-Key and are resent under it after a 5xx or a lost answer (there are no faults here,
so retries are counted, not expected), and If-Match with the version last read.
"""

from __future__ import annotations

import http.client
import itertools
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from bench.common import log, percentile
from bench.workload import STOP, Client, _ms

Doc = dict[str, Any]

#: The services the journey crosses (with customer360, the eight processes of `make run`).
SERVICES = ("gateway", "customer", "marketing", "sales", "order", "loyalty")
OPEN_STAGES = ("prospecting", "qualification", "proposal")  # walked in turn up to where quotes are sent
SKU = "CRM-SEAT"
QUANTITY = 10
QUOTE_LINES = [{"sku": SKU, "description": "CRM seat, annual", "quantity": QUANTITY, "unit_price": "120.00"}]
QUOTE_TOTAL = Decimal("1200.00")
#: A new customer is bronze: 1 point per CNY paid (crm_loyalty.domain.DEFAULT_TIERS), whole points.
EXPECTED_POINTS = int(QUOTE_TOTAL)
ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "postal_code": "100022",
           "country": "CN"}
POLL_INTERVAL = 0.02


class JourneyError(AssertionError):
    """The platform answered or did something else than the journey expects (a correctness failure)."""


class Front:
    """A front end on one keep-alive connection: commands with Idempotency-Key (resent under the same key
    after a 5xx, a lost answer or 409 in_progress) and If-Match; reads; polls."""

    def __init__(self, client: Client, retried: Counter[str], deadline: float = 60.0) -> None:
        self.client = client
        self.retried = retried
        self.deadline = deadline
        self.commands = 0

    def call(self, method: str, path: str, body: Doc | None = None, *, version: int | None = None,
             ok: tuple[int, ...] = (200, 201)) -> tuple[int, Doc]:
        """One request, retried until a final answer; (status, body). Anything but `ok` fails the journey."""
        headers: dict[str, str] = {}
        if method != "GET":
            self.commands += 1
            headers["Idempotency-Key"] = uuid.uuid4().hex
            if version is not None:
                headers["If-Match"] = f'"{version}"'
        give_up, pause = time.monotonic() + self.deadline, 0.05
        while True:
            if STOP.is_set():
                raise JourneyError("interrupted")
            try:
                status, raw = self.client.request(method, path, body if method != "GET" else None, headers)
            except (http.client.HTTPException, OSError) as exc:
                status, raw, reason = -1, b"", type(exc).__name__
            else:
                doc = _json(raw)
                reason = str(status) if status >= 500 else "409 in_progress" if _code(doc) == "in_progress" else ""
                if not reason:
                    if status not in ok:
                        raise JourneyError(f"{method} {path}: {status} {raw[:400]!r}")
                    return status, doc
            self.retried[reason] += 1
            if time.monotonic() + pause > give_up:
                raise JourneyError(f"{method} {path}: no final answer within {self.deadline:.0f}s "
                                   f"(last: {reason} {raw[:200]!r})")
            time.sleep(pause)
            pause = min(1.0, pause * 2)

    def command(self, method: str, path: str, body: Doc | None = None, *, version: int | None = None,
                resource: str | None = None) -> Doc:
        """A command; with `version` (If-Match), a 412 (something else moved the resource on) reads `resource`
        again and resends with its version, as a person would after a refresh (counted)."""
        for _ in range(3):
            status, doc = self.call(method, path, body, version=version,
                                    ok=(200, 201, 412) if resource else (200, 201))
            if status != 412:
                return doc
            self.retried["412 re-read"] += 1
            version = self.read(str(resource))["version"]
        raise JourneyError(f"{method} {path}: still 412 after two fresh reads")

    def read(self, path: str) -> Doc:
        return self.call("GET", path, ok=(200,))[1]

    def poll(self, path: str, done: Callable[[int, Doc], bool], timeout: float, what: str) -> Doc:
        """GET `path` every 20 ms until `done(status, body)`; fails the journey after `timeout` seconds."""
        give_up = time.perf_counter() + timeout
        while True:
            status, doc = self.call("GET", path, ok=(200, 404))
            if done(status, doc):
                return doc
            if time.perf_counter() > give_up:
                raise JourneyError(f"{what}: not there {timeout:.0f}s later (last GET {path}: {status} {doc})")
            time.sleep(POLL_INTERVAL)


def _json(raw: bytes) -> Doc:
    try:
        doc = json.loads(raw) if raw else {}
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {"items": doc}


def _code(doc: Doc) -> str:
    error = doc.get("error")
    return str(error.get("code", "")) if isinstance(error, dict) else ""


def one(page: Doc, what: str) -> Doc | None:
    """The one item of a list page, None while there is none; more than one is a correctness failure."""
    if page.get("total", 0) > 1 or len(page.get("items") or []) > 1:
        raise JourneyError(f"{what}: more than one: {page}")
    items = page.get("items") or []
    return items[0] if items else None


def campaign(front: Front, name: str) -> str:
    """Plan and launch a campaign; its id."""
    planned = front.command("POST", "/v1/campaigns", {
        "name": name, "objective": "qualified leads from retail chains", "segment": {"industries": ["retail"]},
        "channels": ["online", "email"], "starts_on": "2026-01-01", "ends_on": "2027-12-31", "budget": "24000.00",
        "currency": "CNY"})
    launched = front.command("POST", f"/v1/campaigns/{planned['id']}/launch")
    if launched.get("status") != "active":
        raise JourneyError(f"campaign not active after launch: {launched}")
    return str(planned["id"])


def walk(front: Front, run: str, number: int, campaign_id: str, timeout: float) -> dict[str, Any]:
    """One customer's journey: the moments (perf_counter) it measures, and the ids it made."""
    at: dict[str, Any] = {"start": time.perf_counter()}
    lead = front.command("POST", "/v1/leads", {
        "channel": "web_form", "name": f"Journey Customer {number}", "email": f"journey-{run}-{number}@example.com",
        "campaign_id": campaign_id, "company": f"Bright Retail {number}", "company_size": 250,
        "role": "purchasing manager", "industry": "retail"})
    lead_path = f"/v1/leads/{lead['id']}"
    lead = front.command("POST", f"{lead_path}/qualify", {"note": "budget confirmed"}, version=lead["version"],
                         resource=lead_path)
    lead = front.command("POST", f"{lead_path}/convert", {
        "estimated_amount": "1200.00", "currency": "CNY", "expected_close_date": "2027-06-30",
        "sales_owner": "rep-wang-wei"}, version=lead["version"], resource=lead_path)
    at["converted"] = time.perf_counter()
    if lead.get("status") != "converted":
        raise JourneyError(f"lead not converted: {lead}")

    found = front.poll(f"/v1/opportunities?lead_id={lead['id']}",
                       lambda status, page: one(page, "opportunities of the lead") is not None,
                       timeout, "the opportunity of the converted lead")
    at["opportunity"] = time.perf_counter()
    summary = one(found, "opportunities of the lead") or {}
    customer_id = summary["customer_id"]
    path = f"/v1/opportunities/{summary['id']}"
    opportunity = front.read(path)
    for stage in OPEN_STAGES[OPEN_STAGES.index(opportunity["stage"]) + 1:]:
        opportunity = front.command("PUT", f"{path}/stage", {"stage": stage}, version=opportunity["version"],
                                    resource=path)
    opportunity = front.command("POST", f"{path}/quotes", {"lines": QUOTE_LINES}, version=opportunity["version"],
                                resource=path)
    quote = opportunity["quotes"][-1]
    if Decimal(quote["total"]) != QUOTE_TOTAL:
        raise JourneyError(f"quote total {quote['total']}, expected {QUOTE_TOTAL}")
    opportunity = front.command("POST", f"{path}/quotes/{quote['quote_id']}/accept",
                                version=opportunity["version"], resource=path)
    opportunity = front.command("POST", f"{path}/win", version=opportunity["version"], resource=path)
    at["won"] = time.perf_counter()
    if opportunity.get("stage") != "won":
        raise JourneyError(f"opportunity not won: {opportunity}")

    found = front.poll(f"/v1/orders?opportunity_id={summary['id']}",
                       lambda status, page: one(page, "orders of the opportunity") is not None,
                       timeout, "the order of the won opportunity")
    at["order"] = time.perf_counter()
    order_path = f"/v1/orders/{(one(found, 'orders of the opportunity') or {})['order_id']}"
    order = front.read(order_path)
    if order["shipping_address"] is None:
        order = front.command("PUT", f"{order_path}/shipping-address", {"shipping_address": ADDRESS},
                              version=order["version"], resource=order_path)
    order = front.command("POST", f"{order_path}/confirm", {"reference": f"ERP-SO-{run}-{number}"},
                          version=order["version"], resource=order_path)
    shipment = f"SHP-{run}-{number}"
    front.command("POST", f"{order_path}/shipments", {"shipment_id": shipment, "carrier": "SF Express",
                                                      "tracking_number": f"SF{number:010d}",
                                                      "lines": {SKU: QUANTITY}})
    front.command("POST", f"{order_path}/deliveries", {"shipment_id": shipment})
    order = front.command("POST", f"{order_path}/payments", {"payment_id": f"PAY-{run}-{number}",
                                                             "amount": order["total"], "currency": "CNY",
                                                             "method": "bank_transfer"})
    at["paid"] = time.perf_counter()
    if order.get("payment_status") != "paid" or Decimal(order["total"]) != QUOTE_TOTAL:
        raise JourneyError(f"order not paid in full, or not the quote's total: {order}")

    account = front.poll(f"/v1/loyalty-accounts/{customer_id}",
                         lambda status, doc: status == 200 and int(doc.get("balance") or 0) > 0,
                         timeout, "the points of the paid order")
    at["points"] = time.perf_counter()
    if account.get("balance") != EXPECTED_POINTS:
        raise JourneyError(f"customer {customer_id}: balance {account.get('balance')}, expected {EXPECTED_POINTS}")
    at.update(customer_id=customer_id, lead_id=lead["id"], opportunity_id=summary["id"])
    return at


def verify(front: Front, done: list[dict[str, Any]]) -> list[str]:
    """After the run: every customer still holds exactly the points of one order, and every lead made one
    opportunity and every opportunity one order (a late duplicate would show here)."""
    wrong: list[str] = []
    for walked in done:
        if STOP.is_set():
            break
        balance = front.read(f"/v1/loyalty-accounts/{walked['customer_id']}").get("balance")
        if balance != EXPECTED_POINTS:
            wrong.append(f"customer {walked['customer_id']}: balance {balance}, expected {EXPECTED_POINTS}")
        for path, what in ((f"/v1/opportunities?lead_id={walked['lead_id']}", "opportunities of a lead"),
                           (f"/v1/orders?opportunity_id={walked['opportunity_id']}", "orders of an opportunity")):
            total = front.read(path).get("total")
            if total != 1:
                wrong.append(f"{what}: {total}, expected 1 ({path})")
    return wrong


def journeys(base: tuple[str, int], token: str, count: int, clients: int, timeout: float = 60.0,
             warmup: int = 1) -> dict[str, Any]:
    """`count` journeys from `clients` threads (each with its own campaign, planned before the clock starts,
    after `warmup` untimed journeys); figures, and "error" when a journey went wrong."""
    run = uuid.uuid4().hex[:8]
    retried: Counter[str] = Counter()
    lock = threading.Lock()
    numbers = itertools.count()
    done: list[dict[str, Any]] = []
    failures: list[str] = []
    commands: list[int] = []

    setup = Front(Client(*base, token), retried)
    campaigns = [campaign(setup, f"Bench journeys {run} #{slot}") for slot in range(clients)]
    for n in range(warmup):
        walk(setup, run + "w", n, campaigns[0], timeout)
    setup.client.close()

    def worker(slot: int) -> None:
        front = Front(Client(*base, token), retried)
        while not STOP.is_set():
            number = next(numbers)
            if number >= count:
                break
            before = front.commands
            try:
                walked = walk(front, run, number, campaigns[slot], timeout)
            except Exception as exc:  # noqa: BLE001 - one failed journey is reported, the others go on
                message = f"journey {number}: {type(exc).__name__}: {exc}"
                log(f"  FAILED {message}")
                with lock:
                    failures.append(message)
                continue
            with lock:
                done.append(walked)
                commands.append(front.commands - before)
        front.client.close()

    threads = [threading.Thread(target=worker, args=(slot,), name=f"journey-{slot}", daemon=True)
               for slot in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(600.0, count * 10.0))
    elapsed = time.perf_counter() - started
    log(f"  {len(done)} of {count} journeys in {elapsed:.1f}s; checking balances and hand-offs once more")

    checker = Front(Client(*base, token), retried)
    try:
        wrong = verify(checker, done)
    finally:
        checker.client.close()

    def spans(start: str, end: str) -> list[float]:
        return [(walked[end] - walked[start]) * 1000 for walked in done]

    def stats(values: list[float]) -> dict[str, float | None]:
        return {"p50_ms": _ms(percentile(values, 50)), "p99_ms": _ms(percentile(values, 99)),
                "max_ms": _ms(max(values) if values else None)}

    result: dict[str, Any] = {
        "journeys": count, "clients": clients, "completed": len(done), "failed": len(failures),
        "seconds": round(elapsed, 2), "per_second": round(len(done) / elapsed, 2) if elapsed and done else None,
        "commands_per_journey": round(sum(commands) / len(commands), 1) if commands else None,
        "converted_to_points": stats(spans("converted", "points")),
        "journey": stats(spans("start", "points")),
        "handoffs": {"converted_to_opportunity": stats(spans("converted", "opportunity")),
                     "won_to_order": stats(spans("won", "order")),
                     "paid_to_points": stats(spans("paid", "points"))},
        "poll_interval_ms": POLL_INTERVAL * 1000, "handoff_timeout_s": timeout, "expected_points": EXPECTED_POINTS,
        "retried": dict(retried), "failures": failures[:5], "wrong_after_run": wrong[:5],
    }
    problems = []
    if failures:
        problems.append(f"{len(failures)} of {count} journeys failed (first: {failures[0]})")
    elif len(done) < count:
        problems.append(f"only {len(done)} of {count} journeys ran (interrupted?)")
    if wrong:
        problems.append(f"{len(wrong)} wrong after the run (first: {wrong[0]})")
    if problems:
        result["error"] = "journey correctness: " + "; ".join(problems)
        log(f"  JOURNEY CORRECTNESS FAILURE: {result['error']}")
    return result
