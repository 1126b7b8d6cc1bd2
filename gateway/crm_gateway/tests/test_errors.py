"""One table maps every service error to one HTTP status; unavailable services are 503, never a hang."""

from __future__ import annotations

from unittest.mock import MagicMock

import eventlet
import pytest
from nameko.exceptions import RemoteError, UnknownService

from crm_contracts.errors import ServiceError
from crm_gateway.errors import STATUS_BY_CODE, ServiceUnavailableError, flatten_messages
from crm_gateway.tests.conftest import CUSTOMER_ID, body
from crm_gateway.web import DeadlineServiceProxy

CUSTOMER = f"/v1/customers/{CUSTOMER_ID}"


@pytest.mark.parametrize(
    ("code", "status"),
    [("not_found", 404), ("conflict", 409), ("stale_version", 412), ("invalid", 422), ("rule_violation", 409)],
)
def test_each_service_error_code_has_its_status(api, customer, code, status):
    customer.get.side_effect = ServiceError(code, f"it went {code}")
    response = api.get(CUSTOMER)
    assert response.status_code == status
    assert body(response) == {"error": {"code": code, "message": f"it went {code}", "fields": {}}}
    assert response.mimetype == "application/json"


def test_the_table_covers_every_documented_code():
    assert set(STATUS_BY_CODE) == {"not_found", "conflict", "stale_version", "invalid", "rule_violation"}


def test_a_taken_email_is_409_naming_the_existing_customer(api, customer):
    existing = "0b9c8d7e-2e1a-4f6b-9c7d-3f2b8c1e5d4a"
    customer.register.side_effect = ServiceError(
        "conflict", f"email li.na@example.com already belongs to customer {existing}",
        {"existing_customer_id": existing, "fields": {"email": ["already belongs to another customer"]}},
    )
    response = api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"})
    assert response.status_code == 409
    error = body(response)["error"]
    assert error["fields"] == {"email": ["already belongs to another customer"]}
    assert error["details"] == {"existing_customer_id": existing}


def test_a_service_side_invalid_names_its_fields(api, customer):
    customer.grade.side_effect = ServiceError("invalid", "value: must be a score", {"fields": {"value": ["bad"]}})
    response = api.put(f"{CUSTOMER}/grade", {"value": 5, "structure": 3, "loyalty": 4})
    assert (response.status_code, body(response)["error"]["fields"]) == (422, {"value": ["bad"]})


def test_an_unknown_code_is_a_server_error_not_a_guess(api, customer):
    customer.get.side_effect = ServiceError("brand_new_code", "?")
    assert api.get(CUSTOMER).status_code == 500


def test_an_unavailable_service_is_503_naming_it(api, customer360):
    customer360.view.side_effect = ServiceUnavailableError("customer360", "it is not running")
    response = api.get(f"{CUSTOMER}/360")
    assert response.status_code == 503
    assert "customer360" in body(response)["error"]["message"]
    assert body(response)["error"]["code"] == "service_unavailable"


def test_an_unexpected_error_is_a_json_500(api, customer):
    customer.get.side_effect = RuntimeError("bug")
    response = api.get(CUSTOMER)
    assert response.status_code == 500 and body(response)["error"]["code"] == "internal"


def test_nested_messages_are_flattened_to_dotted_names():
    assert flatten_messages({"scores": {"value": ["too high"]}, "name": ["missing"]}) == {
        "scores.value": ["too high"], "name": ["missing"]}
    assert flatten_messages(["bad"]) == {"_schema": ["bad"]}


class SlowProxy:
    service_name = "customer"

    def get(self, customer_id):
        eventlet.sleep(5)


def test_a_call_that_gets_no_answer_ends_at_the_deadline():
    proxy = DeadlineServiceProxy(SlowProxy(), "customer", timeout=0.05)
    with pytest.raises(ServiceUnavailableError, match="customer service is unavailable: no answer within 0.05 s"):
        proxy.get(CUSTOMER_ID)


def test_a_call_to_a_service_that_is_not_running_is_unavailable():
    inner = MagicMock()
    inner.get.side_effect = UnknownService("customer")
    with pytest.raises(ServiceUnavailableError, match="not running"):
        DeadlineServiceProxy(inner, "customer", timeout=1).get(CUSTOMER_ID)


def test_a_crash_in_the_service_is_502(api, customer):
    from crm_gateway.errors import UpstreamError

    inner = MagicMock()
    inner.get.side_effect = RemoteError("KeyError", "boom")
    with pytest.raises(UpstreamError):
        DeadlineServiceProxy(inner, "customer", timeout=1).get(CUSTOMER_ID)
    customer.get.side_effect = UpstreamError("customer")
    assert api.get(CUSTOMER).status_code == 502


def test_service_errors_pass_through_the_deadline_proxy_unchanged():
    inner = MagicMock()
    inner.get.side_effect = ServiceError("not_found", "no")
    with pytest.raises(ServiceError):
        DeadlineServiceProxy(inner, "customer", timeout=1).get(CUSTOMER_ID)
