"""One table maps every service error to one HTTP status; unavailable services are 503, never a hang."""

from __future__ import annotations

from unittest.mock import MagicMock

import eventlet
import pytest
from nameko.exceptions import RemoteError, UnknownService

from crm_contracts.errors import ServiceError
from crm_gateway.errors import STATUS_BY_CODE, ServiceUnavailableError, flatten_messages
from crm_gateway.tests.conftest import CUSTOMER_ID, body
from crm_runtime.nameko.client import ServiceCall, ServiceFailedError

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
    assert set(STATUS_BY_CODE) == {"not_found", "conflict", "stale_version", "invalid", "rule_violation", "moved"}


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
    proxy = ServiceCall("customer", 0.05, {}, None, SlowProxy())
    with pytest.raises(ServiceUnavailableError, match="customer service is unavailable: no answer within 0.05 s"):
        proxy.get(CUSTOMER_ID)


def test_a_call_to_a_service_that_is_not_running_is_unavailable():
    inner = MagicMock()
    inner.get.side_effect = UnknownService("customer")
    with pytest.raises(ServiceUnavailableError, match="not running"):
        ServiceCall("customer", 1, {}, None, inner).get(CUSTOMER_ID)


def test_a_crash_in_the_service_is_502(api, customer):
    inner = MagicMock()
    inner.get.side_effect = RemoteError("KeyError", "boom")
    with pytest.raises(ServiceFailedError):
        ServiceCall("customer", 1, {}, None, inner).get(CUSTOMER_ID)
    customer.get.side_effect = ServiceFailedError("customer")
    assert api.get(CUSTOMER).status_code == 502


def test_service_errors_pass_through_the_client_unchanged():
    inner = MagicMock()
    inner.get.side_effect = ServiceError("not_found", "no")
    with pytest.raises(ServiceError):
        ServiceCall("customer", 1, {}, None, inner).get(CUSTOMER_ID)


# --- a dependency that is down is 503 with Retry-After, never 500 ------------------------------------

def _broker_errors():
    import amqp.exceptions
    import kombu.exceptions

    return [
        pytest.param(kombu.exceptions.OperationalError("[Errno 111] Connection refused"), id="kombu-operational"),
        pytest.param(amqp.exceptions.RecoverableConnectionError("connection already closed"), id="amqp-recoverable"),
        pytest.param(amqp.exceptions.ConnectionForced("broker shutdown"), id="amqp-connection-forced"),
        pytest.param(ConnectionRefusedError(111, "Connection refused"), id="socket-refused"),
        pytest.param(ConnectionResetError(104, "Connection reset by peer"), id="socket-reset"),
        pytest.param(BrokenPipeError(32, "Broken pipe"), id="socket-broken-pipe"),
        pytest.param(TimeoutError("timed out"), id="socket-timeout"),
        pytest.param(OSError(113, "No route to host"), id="os-error"),
    ]


@pytest.mark.parametrize("error", _broker_errors())
def test_a_broker_that_is_down_makes_the_call_unavailable(error):
    inner = MagicMock()
    inner.register.side_effect = error
    with pytest.raises(ServiceUnavailableError, match="message broker"):
        ServiceCall("customer", 1, {}, None, inner).register({}, "c-1")


@pytest.mark.parametrize("error", _broker_errors())
def test_a_broker_that_is_down_is_503_with_retry_after(api, customer, error):
    customer.register.side_effect = ServiceCall("customer", 1, {}, None,
                                                MagicMock(register=MagicMock(side_effect=error))).register
    response = api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"})
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    error_body = body(response)["error"]
    assert error_body["code"] == "service_unavailable" and "message broker (RabbitMQ)" in error_body["message"]


@pytest.mark.parametrize(
    ("error", "dependency"),
    [
        pytest.param(__import__("kombu").exceptions.OperationalError("refused"), "message broker", id="kombu"),
        pytest.param(__import__("amqp").exceptions.ConnectionForced("shutdown"), "message broker", id="amqp"),
        pytest.param(ConnectionRefusedError(111, "refused"), "message broker", id="socket"),
        pytest.param(__import__("psycopg2").OperationalError("server closed the connection"), "idempotency store",
                     id="psycopg2-operational"),
        pytest.param(__import__("psycopg2").InterfaceError("connection already closed"), "idempotency store",
                     id="psycopg2-interface"),
    ],
)
def test_an_unavailable_dependency_raised_anywhere_is_503_naming_it(api, customer, error, dependency):
    """Not only through the RPC proxy: the idempotency store's psycopg2 errors, or a transport error raised
    outside a proxy call, are answered the same way by the one error table."""
    customer.get.side_effect = error
    response = api.get(CUSTOMER)
    assert response.status_code == 503 and response.headers["Retry-After"] == "5"
    assert dependency in body(response)["error"]["message"]


def test_an_idempotency_store_that_is_down_is_503(api, customer, monkeypatch):
    import psycopg2

    from crm_gateway.idempotency import IdempotencyStore

    def down(*args, **kwargs):
        raise psycopg2.OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(IdempotencyStore, "claim", down)
    response = api.post("/v1/customers", {"name": "Li Na", "email": "li.na@example.com"},
                        headers={"Idempotency-Key": "k-1"})
    assert response.status_code == 503 and "idempotency store (PostgreSQL)" in body(response)["error"]["message"]
    customer.register.assert_not_called()


def test_a_plain_os_error_outside_a_call_is_still_a_bug():
    """Only errors the broker's or the store's client raise are 'unavailable'; anything else stays a 500."""
    from crm_gateway.errors import response_for

    assert response_for(FileNotFoundError(2, "No such file")).status_code == 500
