"""One person, two registrations, and their rights, over HTTP (issue 11, "What shows it"): the person
converted from a campaign's lead (an order placed and paid, loyalty points, a complaint case) and
registered again by phone is flagged as a duplicate, merged (orders and points follow the survivor, the
absorbed id answers 308 to it), unmerged (each gets back its own), exported (every service's data in the
archive) and erased: the erasure's status reaches complete, a rebuild of the 360 view equals the live one,
and no byte of the person's name, email or phone is left in a dump of every schema (rebuilt projections
included) nor in the platform's dead-letter queues.

A platform of this module's own: every service (CRM_SERVICES empty), one process each. The database and
the broker are only read to check, except one dead letter naming the person put in order's dead-letter
queue (as its consumer would after failing on the person's event) to show that erasure purges it.

Each step's failure names the step and those that passed before it.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import kombu
import pytest

from conftest import rabbit_vhost
from crm_contracts.envelope import DEAD_LETTER_EXCHANGE
from tests.support.clients import RetryingClient
from tests.support.infrastructure import Infrastructure
from tests.support.journeys import CUSTOMER_ADDRESS_PATH, QUOTE_TOTAL, Api, Journey, plan_and_launch_campaign, walk
from tests.support.platforms import RunningPlatform, platform_of_its_own

pytestmark = pytest.mark.e2e

RIGHTS_PORT = int(os.environ.get("CRM_RIGHTS_GATEWAY_PORT", "31300"))
#: Every consumer of the platform, whose dead-letter queue is `<consumer>.dead-letter`.
CONSUMERS = ("customer", "marketing", "sales", "order", "service", "loyalty", "customer360")
POINTS = int(QUOTE_TOTAL)


@pytest.fixture(scope="module")
def whole_platform(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    """All eight processes (six services, customer360, gateway), restarts on."""
    with rabbit_vhost(infra, "crm_rights") as vhost, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("rights")), label="rights", amqp_uri=vhost,
        gateway_port=RIGHTS_PORT, service_base_port=RIGHTS_PORT + 1, settings={"CRM_SERVICES": ""}, timeout=180,
    ) as running:
        yield running


class Steps:
    """Runs the test's steps in order; a failing one says which, and which passed before it. A step that
    later steps do not need (`independent`) is noted and the test goes on; `finish` fails with them all."""

    def __init__(self) -> None:
        self.passed: list[str] = []
        self.failed: list[str] = []

    def __call__(self, name: str, check: Callable[[], Any], independent: bool = False) -> Any:
        try:
            found = check()
        except Exception as exc:
            failure = f"step {name!r} failed ({type(exc).__name__}: {exc})"
            if not independent:
                raise AssertionError(f"{failure}\npassed before it: {self.passed}\nfailed before it: "
                                     f"{self.failed}") from exc
            print("FAILED:", failure)
            self.failed.append(failure)
            return None
        self.passed.append(name)
        print("passed:", name)
        return found

    def finish(self) -> None:
        assert not self.failed, "\n".join([*self.failed, f"passed: {self.passed}"])


def dead_letters(running: RunningPlatform) -> bytes:
    """Every message of every consumer's dead-letter queue, body and headers (read, then given back)."""
    found = []
    with running.amqp() as connection:
        for consumer in CONSUMERS:
            channel = connection.channel()
            try:
                while (message := channel.basic_get(f"{consumer}.events.dead-letter", no_ack=False)) is not None:
                    body = message.body if isinstance(message.body, bytes) else message.body.encode()
                    found.append(body + json.dumps(dict(message.properties.get("application_headers") or {}),
                                                   default=str).encode())
            except Exception as exc:  # noqa: BLE001 - a consumer that never declared its queue holds nothing
                if "NOT_FOUND" not in str(exc):
                    raise
            finally:
                if channel.is_open:
                    channel.close()  # unacked: given back
    return b"\n".join(found)


def leaks(dumped: bytes, secrets: dict[str, str]) -> list[str]:
    """Which of the secrets `dumped` holds, in clear (any case) or as bytea hex."""
    lowered = dumped.lower()
    return [what for what, secret in secrets.items()
            if secret.lower().encode() in lowered or secret.encode().hex().encode() in lowered]


@pytest.mark.timeout(900)
def test_one_person_registered_twice_is_merged_unmerged_exported_and_erased(whole_platform: RunningPlatform) -> None:
    running = whole_platform
    api = Api(RetryingClient(running.gateways, running.token, deadline=30))
    step = Steps()

    def admin(method: str, path: str, body: dict[str, Any] | None = None, **kwargs: Any) -> Any:
        return running.http(method, path, token=running.admin_token, json=body,
                            headers={"Idempotency-Key": uuid.uuid4().hex}, **kwargs)

    # The person as a campaign's lead converted into a customer (who orders, pays, earns points, complains).
    number = random.randint(1000, 9999)
    campaign = plan_and_launch_campaign(api, f"Rights campaign {number}")
    journey = step("the converted lead's customer orders, pays, earns points and opens a case", lambda: walk(
        api, Journey(number, campaign["id"]), address_endpoint=CUSTOMER_ADDRESS_PATH in api.paths()))
    absorbed = journey.customer_id
    phone = f"+86 21 6{number}{random.randint(100, 999)}"

    def add_phone() -> dict[str, Any]:
        customer = api.read(f"/v1/customers/{absorbed}")
        return api.command("PATCH", f"/v1/customers/{absorbed}", {"phone": phone}, version=customer["version"],
                           resource=f"/v1/customers/{absorbed}", done=lambda d: d["phone"] is not None)

    step("the converted customer gives a phone", add_phone)
    secrets = {"name": f"Journey Customer {number}", "email": journey.email, "phone": phone}
    local, _, domain = journey.email.partition("@")

    # The same person registered again, by phone, under another spelling of the email.
    def register_again() -> dict[str, Any]:
        answer = running.http("POST", "/v1/customers", json={
            "name": f"J. Kustomer {number}", "email": f"{local}+phone@{domain}", "source_channel": "phone"})
        assert answer.status_code == 201, f"registration refused: {answer.status_code} {answer.text}"
        return answer.json()

    survivor = step("the second registration (by phone) is accepted", register_again)["id"]
    case = step("the second registration opens a case of its own", lambda: api.create("/v1/cases", {
        "channel": "phone", "subject": "Invoice copy", "body": "Please send the invoice again.",
        "sender": f"J. Kustomer {number}", "customer_id": survivor}))

    def flagged() -> bool:
        found = running.http("GET", f"/v1/customers/{survivor}/duplicates")
        assert found.status_code == 200, f"GET duplicates: {found.status_code} {found.text[:300]}"
        candidates = {c["customer_id"]: c for c in found.json()["candidates"]}
        assert absorbed in candidates, f"the first registration is not among the candidates: {found.json()}"
        assert "email" in {r["reason"] for r in candidates[absorbed]["reasons"]}, candidates[absorbed]
        return True

    step("the two registrations are flagged as duplicates (by email)", lambda: api.eventually(flagged))

    def merge() -> str:
        answer = admin("POST", f"/v1/customers/{survivor}/merges", {"absorb": [absorbed]})
        assert answer.status_code == 201, f"POST merges (the customer service's merge): {answer.status_code} " \
                                          f"{answer.text[:500]}"
        return answer.json()["merge_id"]

    merge_id = step("the duplicate is merged into the survivor", merge)

    def moved() -> None:
        answer = running.http("GET", f"/v1/customers/{absorbed}", allow_redirects=False)
        assert answer.status_code == 308, f"the absorbed id answers {answer.status_code}, not 308: {answer.text[:300]}"
        assert answer.headers["Location"].endswith(f"/v1/customers/{survivor}"), answer.headers.get("Location")

    step("the absorbed id answers 308 to the survivor", moved)
    order_id = journey.order["order_id"]

    def orders_of(customer_id: str) -> list[str]:
        return [o["order_id"] for o in api.read(f"/v1/customers/{customer_id}/orders")["orders"]]

    def balance_of(customer_id: str) -> int:
        account = api.get(f"/v1/loyalty-accounts/{customer_id}", ok=(200, 404)).body
        return int(account.get("balance") or 0)

    def followed() -> bool:
        assert order_id in orders_of(survivor), f"the order service has not re-pointed the absorbed customer's " \
                                                f"order to the survivor: {orders_of(survivor)}"
        assert balance_of(survivor) == POINTS, f"loyalty has not moved the absorbed customer's points to the " \
                                               f"survivor: balance {balance_of(survivor)}"
        return True

    step("the absorbed customer's order and points follow the survivor", lambda: api.eventually(followed))

    def unmerge() -> None:
        answer = admin("POST", f"/v1/merges/{merge_id}/undo", {})
        assert answer.status_code == 200, f"POST undo (the customer service's unmerge): {answer.status_code} " \
                                          f"{answer.text[:500]}"

    step("the merge is undone", unmerge)

    def given_back() -> bool:
        answer = running.http("GET", f"/v1/customers/{absorbed}", allow_redirects=False)
        assert answer.status_code == 200, f"the unmerged id still answers {answer.status_code}"
        assert orders_of(absorbed) == [order_id] and order_id not in orders_of(survivor), (
            f"the order service has not given the order back: {orders_of(absorbed)} / {orders_of(survivor)}")
        assert (balance_of(absorbed), balance_of(survivor)) == (POINTS, 0), (
            f"loyalty has not given the points back: {balance_of(absorbed)} / {balance_of(survivor)}")
        cases = {c["id"] for c in api.read(f"/v1/cases?customer_id={survivor}")["items"]}
        assert case["id"] in cases and journey.case["id"] not in cases, f"the cases are not each their own: {cases}"
        return True

    step("each gets back its own (order, points, cases)", lambda: api.eventually(given_back))

    def exported() -> dict[str, Any]:
        answer = running.http("GET", f"/v1/customers/{absorbed}/export", token=running.admin_token)
        assert answer.status_code == 200, f"export: {answer.status_code} {answer.text[:300]}"
        archive = answer.json()
        statuses = {m["source"]: m["status"] for m in archive["manifest"]}
        assert statuses == dict.fromkeys(statuses, "ok") and archive["complete"], f"sources not all read: {statuses}"
        data = json.dumps(archive["data"])
        missing = [what for what, value in (("lead", journey.lead["id"]), ("opportunity", journey.opportunity["id"]),
                                            ("order", order_id), ("case", journey.case["id"]),
                                            ("email", journey.email)) if value not in data]
        assert missing == [], f"the archive lacks the customer's {missing}"
        assert archive["data"]["loyalty"]["balance"] == POINTS, archive["data"]["loyalty"]
        return archive

    step("the export holds every service's data about the customer", exported)

    with running.amqp() as connection:  # a dead letter naming the person, as order's consumer makes one
        producer = kombu.Producer(connection.channel(), exchange=kombu.Exchange(DEAD_LETTER_EXCHANGE, "topic",
                                                                               durable=True))
        producer.publish(json.dumps({"event_id": str(uuid.uuid4()), "type": "customer_profile_changed",
                                     "origin": "customer", "position": 999999, "customer_id": absorbed,
                                     "payload": {"customer_id": absorbed, "changes": {"phone": phone,
                                                                                       "email": journey.email}}}),
                         routing_key="order.events", delivery_mode=2, content_type="application/json",
                         headers={"x-reason": "parked: ValueError: cannot apply", "x-queue": "order.events"})
    assert leaks(dead_letters(running), secrets) != [], "the dead letter put in order's queue is not there"

    def erase() -> None:
        answer = admin("POST", f"/v1/customers/{absorbed}/erasure", {"request_id": f"DSR-{number}"})
        assert answer.status_code == 202, f"erasure: {answer.status_code} {answer.text[:300]}"

    step("the erasure is accepted", erase)

    def complete() -> dict[str, Any]:
        status = running.http("GET", f"/v1/customers/{absorbed}/erasure", token=running.admin_token).json()
        not_done = {name: s for name, s in status["services"].items() if s["state"] != "done"}
        assert status["complete"] is True and not not_done, f"services not done yet: {not_done}"
        return status

    step("the erasure's status reaches complete", lambda: api.eventually(complete, timeout=90))

    def rebuilt_equal() -> None:
        view = api.read(f"/v1/customers/{absorbed}/360")
        assert view["profile"]["erased"] is True, f"the 360 view does not show the customer erased: {view['profile']}"
        assert leaks(json.dumps(view).encode(), secrets) == [], "the 360 view still shows the person"
        live = api.eventually(lambda: (rows := running.read_model()) == running.read_model() and rows)
        answer = running.http("POST", "/v1/admin/rebuild-360", token=running.admin_token, timeout=600)
        assert answer.status_code == 200, f"rebuild: {answer.status_code} {answer.text[:300]}"
        rebuilt = running.read_model()
        for table in live:
            only_live = [row for row in live[table] if row not in rebuilt[table]]
            only_rebuilt = [row for row in rebuilt[table] if row not in live[table]]
            assert not only_live and not only_rebuilt, (
                f"the rebuilt {table} differs from the live one: live only {only_live[:3]}, rebuilt only "
                f"{only_rebuilt[:3]}")
        assert api.read(f"/v1/customers/{absorbed}/360") == view

    step("a rebuild of the 360 view after the erasure equals the live view (the customer erased)", rebuilt_equal,
         independent=True)

    def dump_clean() -> None:
        env = running.env
        dumped = subprocess.run(
            [shutil.which("pg_dump") or "pg_dump", "-h", env["POSTGRES_HOST"], "-p", env["POSTGRES_PORT"],
             "-U", env["POSTGRES_USER"], "-d", env["POSTGRES_DBNAME"], "--no-owner"],
            capture_output=True, check=True, timeout=300,
            env={**os.environ, "PGPASSWORD": env.get("POSTGRES_PASSWORD", "")},
        ).stdout
        found = leaks(dumped, secrets)
        if found:
            at = dumped.lower().find(secrets[found[0]].lower().encode())
            table = dumped.rfind(b"COPY ", 0, at)
            context = dumped[table:dumped.find(b"\n", table)] if table >= 0 else b"(as bytea hex)"
            raise AssertionError(f"the dump still holds the person's {found}; first in: {context[:200]!r}")

    step("no byte of the person's name, email or phone in a dump of every schema", dump_clean, independent=True)
    def queues_clean() -> bool:
        found = leaks(dead_letters(running), secrets)
        assert found == [], f"the dead-letter queues still hold the person's {found} (not purged)"
        return True

    step("no byte of them in the platform's dead-letter queues", lambda: api.eventually(queues_clean, timeout=60),
         independent=True)
    print("steps passed:", *step.passed, sep="\n  ")
    step.finish()
