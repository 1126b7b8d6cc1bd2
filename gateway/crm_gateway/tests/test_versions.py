"""Aggregate versions are the concurrency token: ETag out, If-Match in, 428 and 412 (guarantee 6)."""

from __future__ import annotations

from unittest.mock import ANY

import pytest

from crm_contracts.errors import ServiceError
from crm_gateway.tests.conftest import CUSTOMER_ID, body, customer_answer

CUSTOMER = f"/v1/customers/{CUSTOMER_ID}"


def test_registration_is_201_with_location_and_etag(api, customer):
    customer.register.return_value = customer_answer(version=1)
    response = api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"})
    assert response.status_code == 201
    assert response.headers["Location"] == CUSTOMER
    assert response.headers["ETag"] == '"1"'
    assert body(response)["id"] == CUSTOMER_ID


def test_get_returns_the_version_as_etag(api, customer):
    customer.get.return_value = customer_answer(version=7)
    response = api.get(CUSTOMER)
    assert (response.status_code, response.headers["ETag"]) == (200, '"7"')
    customer.get.assert_called_once_with(CUSTOMER_ID)


def test_get_with_the_current_etag_is_304(api, customer):
    customer.get.return_value = customer_answer(version=7)
    assert api.get(CUSTOMER, headers={"If-None-Match": '"7"'}).status_code == 304


def test_patch_without_if_match_is_428(api, customer):
    response = api.patch(CUSTOMER, {"phone": "+86 10 5555 0199"})
    assert response.status_code == 428
    assert body(response)["error"]["code"] == "precondition_required"
    customer.change_profile.assert_not_called()


@pytest.mark.parametrize(("if_match", "expected"), [('"3"', 3), ('W/"3"', 3), ("3", 3), (" \"12\" ", 12), ("*", None)])
def test_patch_passes_the_if_match_version_as_expected_version(api, customer, if_match, expected):
    customer.change_profile.return_value = customer_answer(version=4)
    response = api.patch(CUSTOMER, {"phone": "+86 10 5555 0199"}, headers={"If-Match": if_match})
    assert (response.status_code, response.headers["ETag"]) == (200, '"4"')
    customer.change_profile.assert_called_once_with(
        CUSTOMER_ID, {"phone": "+86 10 5555 0199"}, expected, command_id=ANY
    )


@pytest.mark.parametrize("if_match", ['"abc"', '"1", "2"', "-1"])
def test_an_if_match_that_is_not_one_of_our_etags_is_400(api, customer, if_match):
    response = api.patch(CUSTOMER, {"phone": "+86 10 5555 0199"}, headers={"If-Match": if_match})
    assert response.status_code == 400 and "If-Match" in body(response)["error"]["fields"]
    customer.change_profile.assert_not_called()


def test_a_stale_if_match_is_412(api, customer):
    customer.change_profile.side_effect = ServiceError(
        "stale_version", "customer is at version 2, not 1", {"current_version": 2})
    response = api.patch(CUSTOMER, {"phone": "+86 10 5555 0199"}, headers={"If-Match": '"1"'})
    assert response.status_code == 412
    assert body(response)["error"]["details"] == {"current_version": 2}


@pytest.mark.parametrize(
    ("path", "payload", "method"),
    [
        ("/consents/sms", {"granted": False}, "record_consent"),
        ("/credit-rating", {"rating": "AA"}, "set_credit_rating"),
        ("/grade", {"value": 5, "structure": 3, "loyalty": 4}, "grade"),
    ],
)
def test_puts_take_an_optional_if_match(api, customer, path, payload, method):
    getattr(customer, method).return_value = customer_answer(version=5)
    response = api.put(CUSTOMER + path, payload)
    assert (response.status_code, response.headers["ETag"]) == (200, '"5"')
    assert getattr(customer, method).call_args.args[-1] is None
    api.put(CUSTOMER + path, payload, headers={"If-Match": '"4"'})
    assert getattr(customer, method).call_args.args[-1] == 4


def test_consent_passes_the_channel(api, customer):
    api.put(f"{CUSTOMER}/consents/post", {"granted": True, "source": "letter"})
    customer.record_consent.assert_called_once_with(
        CUSTOMER_ID, "post", {"granted": True, "source": "letter"}, None, command_id=ANY
    )


def test_the_360_view_and_rebuild_come_from_customer360(api, customer360):
    customer360.view.return_value = {"customer_id": CUSTOMER_ID, "timeline": []}
    assert body(api.get(f"{CUSTOMER}/360"))["customer_id"] == CUSTOMER_ID
    customer360.view.assert_called_once_with(CUSTOMER_ID)
    customer360.rebuild.return_value = {"events": 12}
    assert body(api.post("/v1/admin/rebuild-360", data=b"", content_type=None)) == {"events": 12}
