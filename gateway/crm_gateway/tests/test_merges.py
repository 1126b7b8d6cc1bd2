"""Merge routes (/v1/customers/{id}/merges, /v1/merges/{merge_id}) and the 308 answer for a merged customer:
the handlers with the customer service mocked (see conftest), idempotency keys on real PostgreSQL."""

from __future__ import annotations

import uuid

import pytest

from crm_contracts.errors import ServiceError
from crm_customer.service import CustomerService
from crm_gateway.auth import ADMIN, READ, WRITE, issue_token
from crm_gateway.tests.conftest import CUSTOMER_ID, SECRET, body, running_gateway

ABSORBED = "0b9c8d7e-2e1a-4f6b-9c7d-3f2b8c1e5d4a"
SURVIVOR = "5d4a3f2b-8c1e-4f6b-9c7d-2e1a0b9c8d7e"


def a_merge(**overrides) -> dict:
    return {"merge_id": "m-7", "version": 1, "survivor_id": CUSTOMER_ID,
            "absorbed": [{"customer_id": ABSORBED, "unmerged_at": None}],
            "merged_at": "2026-11-20T09:30:00+00:00", "undone": False, **overrides}


def test_a_merge_is_created_with_its_location_and_etag(api, customer):
    customer.merge.return_value = a_merge()
    response = api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [ABSORBED], "merge_id": "m-7"})
    assert response.status_code == 201
    assert (response.headers["Location"], response.headers["ETag"]) == ("/v1/merges/m-7", '"1"')
    assert body(response) == a_merge()
    survivor, payload, command_id = customer.merge.call_args.args
    assert (survivor, payload) == (CUSTOMER_ID, {"absorb": [ABSORBED], "merge_id": "m-7"}) and command_id


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "absorb"),
        ({"absorb": []}, "absorb"),
        ({"absorb": ["not-a-uuid"]}, "absorb.0"),
        ({"absorb": [ABSORBED, ABSORBED]}, "absorb"),
        ({"absorb": [ABSORBED], "merge_id": "no spaces please"}, "merge_id"),
        ({"absorb": [ABSORBED], "survivor": CUSTOMER_ID}, "survivor"),
    ],
)
def test_a_bad_merge_request_is_422_naming_the_field_and_never_reaches_the_service(api, customer, payload, field):
    response = api.post(f"/v1/customers/{CUSTOMER_ID}/merges", payload)
    assert response.status_code == 422 and field in body(response)["error"]["fields"]
    customer.merge.assert_not_called()


def test_the_service_refusals_keep_their_status(api, customer):
    customer.merge.side_effect = ServiceError(
        "invalid", "a customer cannot be merged into itself", {"fields": {"absorb": ["is the survivor"]}})
    itself = api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [CUSTOMER_ID]})
    assert itself.status_code == 422 and "absorb" in body(itself)["error"]["fields"]
    customer.merge.side_effect = ServiceError("conflict", f"customer {ABSORBED} was erased: it cannot be merged",
                                              {"customer_id": ABSORBED, "erased": True})
    erased = api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [ABSORBED]})
    assert erased.status_code == 409 and "erased" in body(erased)["error"]["message"]


def test_merging_and_undoing_take_the_admin_scope(api, customer):
    api.token = issue_token("clerk", (READ, WRITE), secret=SECRET)
    assert api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [ABSORBED]}).status_code == 403
    assert api.post("/v1/merges/m-7/undo").status_code == 403
    customer.get_merge.return_value = a_merge()
    assert api.get("/v1/merges/m-7").status_code == 200  # reading one takes the read scope
    customer.merge.assert_not_called()
    customer.unmerge.assert_not_called()


def test_a_merge_reads_with_its_etag_and_an_impossible_id_is_404(api, customer):
    customer.get_merge.return_value = a_merge()
    response = api.get("/v1/merges/m-7")
    assert response.status_code == 200 and body(response)["merge_id"] == "m-7"
    assert api.get("/v1/merges/m-7", headers={"If-None-Match": '"1"'}).status_code == 304
    customer.get_merge.assert_called_with("m-7")
    assert api.get("/v1/merges/not%20a%20merge").status_code == 404
    customer.get_merge.side_effect = ServiceError("not_found", "merge m-8 not found", {"merge_id": "m-8"})
    assert api.get("/v1/merges/m-8").status_code == 404


def test_undo_without_a_body_gives_everyone_back_or_only_the_customers_named(api, customer):
    customer.unmerge.return_value = a_merge(undone=True, version=2)
    everyone = api.post("/v1/merges/m-7/undo")
    assert everyone.status_code == 200 and body(everyone)["undone"] is True
    assert customer.unmerge.call_args.args[:2] == ("m-7", {})
    some = api.post("/v1/merges/m-7/undo", {"customer_ids": [ABSORBED]})
    assert some.status_code == 200
    assert customer.unmerge.call_args.args[:2] == ("m-7", {"customer_ids": [ABSORBED]})
    bad = api.post("/v1/merges/m-7/undo", {"customer_ids": ["nope"]})
    assert bad.status_code == 422 and "customer_ids.0" in body(bad)["error"]["fields"]
    calls = customer.unmerge.call_count
    twice = api.post("/v1/merges/m-7/undo", {"customer_ids": [ABSORBED, ABSORBED.upper()]})
    assert twice.status_code == 422 and "customer_ids" in body(twice)["error"]["fields"]
    assert customer.unmerge.call_count == calls  # refused at the gateway: nothing reached the service
    customer.unmerge.side_effect = ServiceError(
        "conflict", "the survivor was merged since: unmerge the later merge first", {"merge_id": "m-7"})
    later = api.post("/v1/merges/m-7/undo")
    assert later.status_code == 409 and "unmerge the later merge first" in body(later)["error"]["message"]


def moved(asked: str = ABSORBED) -> ServiceError:
    return ServiceError("moved", f"customer {asked} was merged into customer {SURVIVOR}",
                        {"customer_id": asked, "survivor_id": SURVIVOR})


@pytest.mark.parametrize(
    ("method", "path", "payload", "client"),
    [
        ("get", f"/v1/customers/{ABSORBED}", None, "get"),
        ("put", f"/v1/customers/{ABSORBED}/consents/email", {"granted": True}, "record_consent"),
        ("put", f"/v1/customers/{ABSORBED}/grade", {"value": 5, "structure": 3, "loyalty": 4}, "grade"),
    ],
)
def test_a_merged_customer_answers_308_to_the_same_request_for_the_survivor(api, customer, method, path, payload,
                                                                            client):
    getattr(customer, client).side_effect = moved()
    response = api.call(method, path, payload)
    assert response.status_code == 308
    assert response.headers["Location"] == path.replace(ABSORBED, SURVIVOR)
    error = body(response)["error"]
    assert error["code"] == "moved" and error["details"] == {"customer_id": ABSORBED, "survivor_id": SURVIVOR}


def test_the_redirect_keeps_the_query_string(api, customer360):
    customer360.view.side_effect = moved()
    response = api.get(f"/v1/customers/{ABSORBED}/360?as_of=2027-03-01T00:00:00%2B08:00")
    assert response.status_code == 308
    assert response.headers["Location"] == f"/v1/customers/{SURVIVOR}/360?as_of=2027-03-01T00:00:00%2B08:00"


def test_a_moved_customer_named_only_in_the_body_is_a_conflict_not_a_redirect(api, customer):
    customer.merge.side_effect = moved()  # the path names the survivor, not the customer that moved
    response = api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [ABSORBED]})
    assert response.status_code == 409 and "Location" not in response.headers
    assert body(response)["error"]["details"]["survivor_id"] == SURVIVOR


def test_an_idempotency_key_replays_the_first_merge(idempotent_api, customer):
    customer.merge.return_value = a_merge()
    key = {"Idempotency-Key": "merge-li-na-1"}
    first = idempotent_api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [ABSORBED]}, headers=key)
    again = idempotent_api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [ABSORBED]}, headers=key)
    assert (first.status_code, again.status_code) == (201, 201) and body(first) == body(again)
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert customer.merge.call_count == 1
    other = idempotent_api.post(f"/v1/customers/{CUSTOMER_ID}/merges", {"absorb": [SURVIVOR]}, headers=key)
    assert other.status_code == 422  # the same key with another body


@pytest.mark.integration
def test_merge_redirect_and_undo_over_http_with_the_real_customer_service(test_database, nameko_config, monkeypatch,
                                                                            http):
    with running_gateway(test_database, nameko_config, monkeypatch, [CustomerService]) as url:
        http.headers["Authorization"] = "Bearer " + issue_token("operator", (READ, WRITE, ADMIN), secret=SECRET)
        tag = uuid.uuid4().hex[:8]
        survivor, absorbed = (
            http.post(f"{url}/v1/customers", json={"name": "Li Na", "email": f"{who}.{tag}@example.com"},
                      timeout=10).json()["id"] for who in ("li.na", "lina"))
        merge_id = f"merge-{tag}"
        created = http.post(f"{url}/v1/customers/{survivor}/merges", json={"absorb": [absorbed], "merge_id": merge_id},
                            headers={"Idempotency-Key": merge_id}, timeout=10)
        assert created.status_code == 201, created.text
        assert created.headers["Location"] == f"/v1/merges/{merge_id}"
        assert http.get(url + created.headers["Location"], timeout=10).json() == created.json()

        moved = http.get(f"{url}/v1/customers/{absorbed}", allow_redirects=False, timeout=10)
        assert moved.status_code == 308 and moved.headers["Location"] == f"/v1/customers/{survivor}"
        assert http.get(f"{url}/v1/customers/{absorbed}", timeout=10).json()["id"] == survivor  # followed
        duplicate = http.post(f"{url}/v1/customers", json={"name": "Li Na", "email": f"lina.{tag}@example.com"},
                              timeout=10)
        assert duplicate.status_code == 409
        assert duplicate.json()["error"]["details"]["existing_customer_id"] == survivor
        itself = http.post(f"{url}/v1/customers/{absorbed}/merges", json={"absorb": [survivor]}, timeout=10)
        assert itself.status_code == 422 and "absorb" in itself.json()["error"]["fields"]

        undone = http.post(f"{url}/v1/merges/{merge_id}/undo", timeout=10)
        assert undone.status_code == 200 and undone.json()["undone"] is True
        assert http.get(f"{url}/v1/customers/{absorbed}", allow_redirects=False, timeout=10).status_code == 200
