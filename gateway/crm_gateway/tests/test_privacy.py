"""A customer's rights at the gateway: the export archive and its manifest, the erasure and its status, the
replacement of stored idempotent answers, and the duplicate warning of a registration. The services are
mocks (conftest); the idempotency store is real PostgreSQL where a test replays a key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_contracts.errors import ServiceError
from crm_gateway.tests.conftest import CUSTOMER_ID, body, customer_answer
from crm_runtime.nameko.client import ServiceUnavailableError

EXPORTED = {"record": customer_answer(), "events": [{"type": "Registered", "version": 1, "data": {"name": "Li Na"}}]}


def an_erasure(shredded_ago: float | None = 60.0) -> dict:
    now = datetime.now(UTC)
    return {"customer_id": CUSTOMER_ID, "request_id": "DSR-1",
            "requested_at": (now - timedelta(seconds=90)).isoformat(),
            "erased_at": (now - timedelta(seconds=80)).isoformat(),
            "shredded_at": None if shredded_ago is None else (now - timedelta(seconds=shredded_ago)).isoformat()}


def test_an_export_gathers_every_source_and_its_manifest_names_what_could_not_be_read(
    api, customer, customer360, marketing, sales, order, service, loyalty
):
    customer.export.return_value = EXPORTED
    customer360.view.return_value = {"customer_id": CUSTOMER_ID, "profile": {"name": "Li Na"}}
    marketing.list_leads.return_value = {"items": [{"id": "lead-1"}], "total": 1}
    sales.list_opportunities.side_effect = ServiceUnavailableError("sales", "not running")
    order.orders_of_customer.return_value = []
    service.list_cases.return_value = {"items": [], "total": 0}
    loyalty.get.side_effect = ServiceError("not_found", "no account")

    answer = api.get(f"/v1/customers/{CUSTOMER_ID}/export")

    assert answer.status_code == 200 and "attachment" in answer.headers["Content-Disposition"]
    archive = body(answer)
    statuses = {m["source"]: m["status"] for m in archive["manifest"]}
    assert statuses == {"customer": "ok", "customer360": "ok", "marketing": "ok", "sales": "unavailable",
                        "order": "ok", "service": "ok", "loyalty": "none"}
    assert archive["complete"] is False and archive["format"] == "crm-customer-export/1"
    assert archive["data"]["customer"] == EXPORTED and archive["data"]["marketing"] == [{"id": "lead-1"}]
    marketing.list_leads.assert_called_once_with({"customer_id": CUSTOMER_ID}, 1, 100)


def test_exporting_an_unknown_customer_is_404(api, customer):
    customer.export.side_effect = ServiceError("not_found", "customer not found")
    assert api.get(f"/v1/customers/{CUSTOMER_ID}/export").status_code == 404


@pytest.mark.parametrize(("shredded_ago", "profile", "customer_state", "view_state"), [
    (60.0, {"erased": True}, "done", "done"),
    (0.0, {"erased": True}, "pending", "done"),  # another replica may still hold the key (CRM_DATA_KEY_TTL)
    (None, {"name": "Li Na"}, "pending", "pending"),
])
def test_the_status_says_which_service_has_acted(
    idempotent_api, customer, customer360, shredded_ago, profile, customer_state, view_state
):
    customer.erasure.return_value = an_erasure(shredded_ago)
    customer360.view.return_value = {"profile": profile}
    status = body(idempotent_api.get(f"/v1/customers/{CUSTOMER_ID}/erasure"))
    states = {name: s["state"] for name, s in status["services"].items()}
    assert (states["customer"], states["customer360"], states["gateway"]) == (customer_state, view_state, "done")
    assert status["complete"] is False  # the five other services, mocks, answer nothing that says done


def test_the_erasure_is_complete_only_once_every_service_says_done(
    idempotent_api, customer, customer360, marketing, sales, order, service, loyalty
):
    customer.erasure.return_value = an_erasure(60.0)
    customer360.view.return_value = {"profile": {"erased": True}}
    for forgetting in (marketing, sales, order, service, loyalty):
        forgetting.erasure_status.return_value = {"state": "done"}
    loyalty.erasure_status.return_value = {"state": "pending"}

    def status() -> dict:
        return body(idempotent_api.get(f"/v1/customers/{CUSTOMER_ID}/erasure"))

    pending = status()
    assert pending["services"]["loyalty"] == {"state": "pending"} and pending["complete"] is False
    order.erasure_status.assert_called_with(CUSTOMER_ID)

    loyalty.erasure_status.return_value = {"state": "done"}
    sales.erasure_status.side_effect = ServiceUnavailableError("sales", "not running")
    unavailable = status()
    assert unavailable["services"]["sales"]["state"] == "unavailable" and unavailable["complete"] is False
    assert "not running" in unavailable["services"]["sales"]["reason"]

    sales.erasure_status.side_effect = None
    sales.erasure_status.return_value = {"state": "done"}
    done = status()
    assert {name: s["state"] for name, s in done["services"].items()} == dict.fromkeys(
        ("customer", "customer360", "gateway", "marketing", "sales", "order", "service", "loyalty"), "done")
    assert done["complete"] is True


def test_erasure_replaces_the_stored_answers_that_name_the_customer(idempotent_api, customer, customer360):
    customer.register.return_value = customer_answer()
    customer360.find_duplicates.return_value = []
    key = {"Idempotency-Key": "register-li-na"}
    first = idempotent_api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"}, headers=key)
    assert first.status_code == 201 and b"Li Na" in first.get_data()
    customer.erase.return_value = an_erasure()
    customer.erasure.return_value = an_erasure()
    customer360.view.side_effect = ServiceError("not_found", "no view")

    erased = idempotent_api.post(f"/v1/customers/{CUSTOMER_ID}/erasure", {"request_id": "DSR-1"})

    assert erased.status_code == 202 and body(erased)["services"]["gateway"]["stored_answers_replaced"] == 1
    replay = idempotent_api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"}, headers=key)
    assert replay.status_code == 410 and b"Li Na" not in replay.get_data()
    assert customer.register.call_count == 1  # a replay never runs the command again


def test_a_registration_answers_its_possible_duplicates_and_stands_without_them(api, customer, customer360):
    customer.register.return_value = customer_answer()
    candidate = {"customer_id": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d", "score": 1.0, "reasons": [{"reason": "email"}]}
    customer360.find_duplicates.return_value = [candidate]
    warned = api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"})
    assert warned.status_code == 201 and body(warned)["possible_duplicates"] == [candidate]
    customer360.find_duplicates.side_effect = ServiceUnavailableError("customer360", "down")
    alone = api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"})
    assert alone.status_code == 201 and "possible_duplicates" not in body(alone)


def test_erasure_replaces_the_stored_answers_of_the_customer_s_leads_too(
    idempotent_api, customer, customer360, marketing
):
    lead = {"id": "5e4d3c2b-1a09-4f8e-9d7c-6b5a4f3e2d1c", "version": 1, "name": "Li Na", "email": "li.na@example.com",
            "customer_id": None}  # captured before it was linked: the answer names the lead only
    marketing.capture_lead.return_value = lead
    key = {"Idempotency-Key": "capture-li-na"}
    capture = {"channel": "web_form", "name": "Li Na", "email": "li.na@example.com"}
    captured = idempotent_api.post("/v1/leads", capture, headers=key)
    assert captured.status_code == 201 and b"Li Na" in captured.get_data()
    customer.erase.return_value = customer.erasure.return_value = an_erasure()
    customer360.view.return_value = {"profile": {"erased": True}}

    marketing.list_leads.side_effect = ServiceUnavailableError("marketing", "not running")
    first = idempotent_api.post(f"/v1/customers/{CUSTOMER_ID}/erasure", {"request_id": "DSR-1"})
    assert first.status_code == 202  # erased all the same; which leads were the customer's is not known now
    assert idempotent_api.post("/v1/leads", capture, headers=key).status_code == 201

    marketing.list_leads.side_effect = None
    marketing.list_leads.return_value = {"items": [{**lead, "customer_id": CUSTOMER_ID}], "total": 1}
    again = idempotent_api.post(f"/v1/customers/{CUSTOMER_ID}/erasure", {"request_id": "DSR-1"})
    assert again.status_code == 202 and body(again)["services"]["gateway"]["stored_answers_replaced"] == 1
    marketing.list_leads.assert_called_with({"customer_id": CUSTOMER_ID}, 1, 100)
    replay = idempotent_api.post("/v1/leads", capture, headers=key)
    assert replay.status_code == 410 and b"Li Na" not in replay.get_data()
    assert marketing.capture_lead.call_count == 1 and customer.erase.call_count == 2  # erasing again is idempotent
