"""Bad input is answered at the edge, names the field, and never reaches a service (guarantee 8)."""

from __future__ import annotations

import pytest

from crm_gateway.tests.conftest import CUSTOMER_ID, body

CUSTOMER = f"/v1/customers/{CUSTOMER_ID}"
VALID_REGISTRATION = {"name": "Li Na", "email": "li.na@example.com"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "li.na@example.com"}, "name"),
        ({"name": "", "email": "li.na@example.com"}, "name"),
        ({"name": "x" * 201, "email": "li.na@example.com"}, "name"),
        ({"name": 42, "email": "li.na@example.com"}, "name"),
        ({"name": "Li Na"}, "email"),
        ({"name": "Li Na", "email": "not-an-email"}, "email"),
        ({**VALID_REGISTRATION, "phone": "call me"}, "phone"),
        ({**VALID_REGISTRATION, "company": "c" * 201}, "company"),
        ({**VALID_REGISTRATION, "source_channel": "fax"}, "source_channel"),
        ({**VALID_REGISTRATION, "shoe_size": 42}, "shoe_size"),
    ],
)
def test_each_bad_registration_field_is_422_naming_it(api, customer, payload, field):
    response = api.post("/v1/customers", payload)
    assert response.status_code == 422
    error = body(response)["error"]
    assert error["code"] == "invalid" and field in error["fields"]
    customer.register.assert_not_called()


@pytest.mark.parametrize(
    ("method", "path", "payload", "field"),
    [
        ("PATCH", CUSTOMER, {"email": "nope"}, "email"),
        ("PATCH", CUSTOMER, {"favourite_colour": "blue"}, "favourite_colour"),
        ("PATCH", CUSTOMER, {}, "_schema"),
        ("PUT", f"{CUSTOMER}/consents/email", {"source": "web"}, "granted"),
        ("PUT", f"{CUSTOMER}/consents/email", {"granted": "perhaps"}, "granted"),
        ("PUT", f"{CUSTOMER}/consents/email", {"granted": True, "at": "2026-01-01T10:00:00"}, "at"),
        ("PUT", f"{CUSTOMER}/consents/fax", {"granted": True}, "channel"),
        ("PUT", f"{CUSTOMER}/credit-rating", {"rating": "Z"}, "rating"),
        ("PUT", f"{CUSTOMER}/credit-rating", {"rating": "A", "limit": "-1.00"}, "limit"),
        ("PUT", f"{CUSTOMER}/credit-rating", {"rating": "A", "limit": "lots"}, "limit"),
        ("PUT", f"{CUSTOMER}/grade", {"value": 6, "structure": 3, "loyalty": 3}, "value"),
        ("PUT", f"{CUSTOMER}/grade", {"value": 5, "loyalty": 3}, "structure"),
        ("PUT", f"{CUSTOMER}/grade", {"value": 5, "structure": 3, "loyalty": 0}, "loyalty"),
    ],
)
def test_each_bad_command_field_is_422_naming_it(api, customer, method, path, payload, field):
    response = api.request(method, path, payload, headers={"If-Match": '"1"'})
    assert response.status_code == 422, body(response)
    assert field in body(response)["error"]["fields"]
    assert not customer.method_calls


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("page=0", "page"),
        ("page=two", "page"),
        ("page_size=101", "page_size"),
        ("page_size=0", "page_size"),
        ("q=" + "x" * 201, "q"),
        ("sort=name", "sort"),
    ],
)
def test_each_bad_search_parameter_is_422_naming_it(api, customer360, query, field):
    response = api.get(f"/v1/customers?{query}")
    assert response.status_code == 422
    assert field in body(response)["error"]["fields"]
    customer360.search.assert_not_called()


def test_search_passes_validated_paging(api, customer360):
    customer360.search.return_value = {"items": [], "page": 2, "page_size": 100, "total": 0}
    response = api.get("/v1/customers?q=li&page=2&page_size=100")
    assert response.status_code == 200 and body(response)["page_size"] == 100
    customer360.search.assert_called_once_with("li", 2, 100)


@pytest.mark.parametrize("data", ["{", "not json", '{"name": "Li Na",}', "\xff"])
def test_malformed_json_is_400(api, customer, data):
    response = api.request("POST", "/v1/customers", data=data.encode("latin-1"), content_type="application/json")
    assert response.status_code == 400
    assert body(response)["error"]["code"] == "malformed_json"
    customer.register.assert_not_called()


@pytest.mark.parametrize("data", ["[]", '"Li Na"', "42", "null"])
def test_a_body_that_is_not_an_object_is_422(api, customer, data):
    response = api.request("POST", "/v1/customers", data=data, content_type="application/json")
    assert response.status_code == 422
    customer.register.assert_not_called()


@pytest.mark.parametrize("content_type", [None, "text/plain", "application/x-www-form-urlencoded", "application/xml"])
def test_a_body_that_is_not_json_is_415(api, customer, content_type):
    response = api.request("POST", "/v1/customers", data='{"name": "Li Na"}', content_type=content_type)
    assert response.status_code == 415
    assert "Content-Type" in body(response)["error"]["fields"]
    customer.register.assert_not_called()


def test_json_with_charset_is_accepted(api, customer):
    response = api.request("POST", "/v1/customers", data='{"name": "Li Na", "email": "li.na@example.com"}',
                           content_type="application/json; charset=utf-8")
    assert response.status_code == 201


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v1/customers/42"),
        ("GET", "/v1/customers/not-a-uuid/360"),
        ("PATCH", "/v1/customers/robert'); DROP TABLE customers;--"),
        ("PUT", "/v1/customers/123/grade"),
    ],
)
def test_ids_that_are_not_uuids_are_404_without_a_service_call(api, customer, customer360, method, path):
    response = api.request(method, path, {"name": "x"}, headers={"If-Match": '"1"'})
    assert response.status_code == 404
    assert body(response)["error"]["code"] == "not_found"
    assert not customer.method_calls and not customer360.method_calls


def test_a_valid_registration_reaches_the_service_as_sent(api, customer):
    payload = {**VALID_REGISTRATION, "phone": "+86 10 5555 0101", "source_channel": "event"}
    response = api.post("/v1/customers", payload)
    assert response.status_code == 201
    customer.register.assert_called_once()
    sent, command_id = customer.register.call_args.args
    assert sent == payload and command_id  # without an Idempotency-Key: an id unique to this request
