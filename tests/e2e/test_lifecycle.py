"""The first vertical slice end to end: a front end registers a customer at the gateway; the customer
service stores it as events; the relay publishes them; customer360 shows the customer."""

from __future__ import annotations

import uuid

import pytest

from crm_contracts.customer360 import Customer360Schema, SearchPageSchema
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e


def test_a_registered_customer_appears_in_the_360_view(running_platform):
    response = running_platform.register(name="Li Na", company="Acme", source_channel="event")
    assert response.status_code == 201, response.text
    customer = response.json()
    assert response.headers["Location"].endswith(f"/v1/customers/{customer['id']}")
    assert response.headers["ETag"] == '"1"'

    view = running_platform.view(customer["id"])
    assert view["profile"]["name"] == "Li Na" and view["profile"]["company"] == "Acme"
    assert view["lifecycle_stage"] == "prospect"
    assert [entry["type"] for entry in view["timeline"]] == ["customer_registered"]
    assert Customer360Schema().validate(view) == {}  # the answer is what the contract documents, no more


def test_changes_flow_into_the_view_and_stale_writers_lose(running_platform):
    customer = running_platform.register().json()
    cid = customer["id"]
    changed = running_platform.http("PATCH", f"/v1/customers/{cid}", json={"company": "Acme Group"},
                                    headers={"If-Match": '"1"'})
    assert changed.status_code == 200 and changed.headers["ETag"] == '"2"'
    stale = running_platform.http("PATCH", f"/v1/customers/{cid}", json={"company": "Other"},
                                  headers={"If-Match": '"1"'})
    assert stale.status_code == 412
    consent = running_platform.http("PUT", f"/v1/customers/{cid}/consents/sms", json={"granted": False})
    assert consent.status_code == 200

    def updated():
        view = running_platform.view(cid)
        assert view["profile"]["company"] == "Acme Group"
        assert view["consents"].get("sms", {}).get("granted") is False
        return view

    view = eventually(updated)
    assert view["timeline_total"] == 3


def test_search_finds_customers_by_name_or_email_a_page_at_a_time(running_platform):
    marker = uuid.uuid4().hex[:8]
    ids = [running_platform.register(name=f"Searchable {marker} {i}").json()["id"] for i in range(3)]
    for cid in ids:
        running_platform.view(cid)
    page = running_platform.http("GET", "/v1/customers", params={"q": marker, "page": 1, "page_size": 2}).json()
    assert SearchPageSchema().validate(page) == {}
    assert page["total"] == 3 and len(page["items"]) == 2
    rest = running_platform.http("GET", "/v1/customers", params={"q": marker, "page": 2, "page_size": 2}).json()
    assert {i["customer_id"] for i in page["items"] + rest["items"]} == set(ids)


def test_a_taken_email_is_a_409_naming_the_existing_customer(running_platform):
    first = running_platform.register(email=f"{uuid.uuid4().hex}@example.com").json()
    second = running_platform.register(email=first["email"].upper())
    assert second.status_code == 409
    assert first["id"] in second.text


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"email": "a@example.com"}, "name"),
        ({"name": "Li Na"}, "email"),
        ({"name": "Li Na", "email": "not-an-email"}, "email"),
        ({"name": "Li Na", "email": "a@example.com", "source_channel": "fax"}, "source_channel"),
        ({"name": "Li Na", "email": "a@example.com", "shoe_size": 42}, "shoe_size"),
    ],
)
def test_invalid_bodies_give_4xx_naming_the_field_and_change_nothing(running_platform, body, field):
    response = running_platform.http("POST", "/v1/customers", json=body)
    assert 400 <= response.status_code < 500
    assert field in response.json()["error"]["fields"]


def test_malformed_json_and_missing_token_are_4xx(running_platform):
    malformed = running_platform.http("POST", "/v1/customers", data="{not json",
                                      headers={"Content-Type": "application/json"})
    assert malformed.status_code == 400
    assert running_platform.http("GET", "/v1/customers", token="not-a-token").status_code == 401


def test_an_idempotent_replay_returns_the_first_response(running_platform):
    key = uuid.uuid4().hex
    body = {"name": "Once Only", "email": f"{key}@example.com"}
    first = running_platform.http("POST", "/v1/customers", json=body, headers={"Idempotency-Key": key})
    replay = running_platform.http("POST", "/v1/customers", json=body, headers={"Idempotency-Key": key})
    assert first.status_code == replay.status_code == 201
    assert replay.json() == first.json()
    other = running_platform.http("POST", "/v1/customers", json={**body, "name": "Changed"},
                                  headers={"Idempotency-Key": key})
    assert other.status_code == 422


def test_unknown_paths_and_methods_answer_json_errors(running_platform):
    missing = running_platform.http("GET", "/v1/nothing-here")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    wrong = running_platform.http("DELETE", "/v1/customers")
    assert wrong.status_code == 405 and wrong.json()["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]
