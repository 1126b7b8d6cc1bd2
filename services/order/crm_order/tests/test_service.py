"""The order service's RPC adapters, one worker at a time (nameko's worker_factory), on the in-memory
store; and how its errors cross the wire."""

from __future__ import annotations

import inspect
from typing import Any
from uuid import uuid4

import pytest
from marshmallow import ValidationError
from nameko.testing.services import worker_factory

from crm_contracts.errors import CrmError, InvalidRequestError, RuleViolationError, StaleVersionError
from crm_order import domain
from crm_order.application import Orders
from crm_order.service import OrderService
from crm_runtime.nameko.rpc import as_service_error

#: The error codes the gateway maps to an HTTP status.
GATEWAY_CODES = {"not_found", "conflict", "stale_version", "invalid", "rule_violation"}


@pytest.fixture
def service():
    app = Orders(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return worker_factory(OrderService, application=app)


def an_order(**overrides: Any) -> dict[str, Any]:
    """A place-order payload as a front end sends it: 10 licences at 10% off and 2 days, 12,400.00 CNY."""
    return {
        "customer_id": str(uuid4()),
        "currency": "CNY",
        "lines": [
            {"sku": "LIC", "description": "CRM Pro licence", "quantity": 10, "unit_price": "1200.00", "discount": "10"},
            {"sku": "DAY", "description": "Onboarding day", "quantity": 2, "unit_price": "800.00"},
        ],
        "shipping_address": {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"},
        **overrides,
    }


def log_head(service) -> int:
    return service.application.recorder.max_notification_id() or 0


def test_place_loads_the_payload_and_answers_where_the_order_is(service):
    placed = service.place(an_order())
    assert (placed["status"], placed["payment_status"], placed["total"], placed["version"]) == (
        "placed", "unpaid", "12400.00", 1
    )
    assert service.get(placed["order_id"]) == placed


def test_placing_twice_with_one_command_id_places_one_order_and_answers_it_twice(service):
    payload = an_order()
    first = service.place(payload, command_id="client-1:key-1")
    head = log_head(service)
    again = service.place(payload, command_id="client-1:key-1")
    assert again["order_id"] == first["order_id"]
    assert log_head(service) == head
    assert service.place(payload, command_id="client-1:key-2")["order_id"] != first["order_id"]


def test_an_order_walks_its_lifecycle_through_rpc(service):
    order = service.place(an_order())
    order_id = order["order_id"]
    order = service.confirm(order_id, {"reference": "ERP-SO-1"}, expected_version=1)
    order = service.ship(order_id, {"shipment_id": "S1", "carrier": "SF Express", "lines": {"LIC": 10, "DAY": 2}})
    order = service.record_delivery(order_id, {"shipment_id": "S1"})
    order = service.record_payment(
        order_id, {"payment_id": "P1", "amount": "12400.00", "currency": "CNY", "method": "card"}
    )
    order = service.record_return(
        order_id, {"return_id": "R1", "lines": {"DAY": 1}, "refund": "800.00", "currency": "CNY"}
    )
    assert (order["status"], order["payment_status"], order["refunded"]) == ("delivered", "paid", "800.00")
    assert [line["returned"] for line in order["lines"]] == [0, 1]
    other = service.place(an_order(customer_id=order["customer_id"]))
    cancelled = service.cancel(other["order_id"], {"reason": "changed their mind"}, expected_version=1)
    assert cancelled["status"] == "cancelled"
    mine = service.orders_of_customer(order["customer_id"])
    assert [o["order_id"] for o in mine] == [order_id, other["order_id"]]


def test_a_stale_expected_version_is_refused_and_changes_nothing(service):
    order = service.place(an_order())
    service.confirm(order["order_id"], {}, expected_version=1)
    head = log_head(service)
    with pytest.raises(StaleVersionError):
        service.cancel(order["order_id"], {"reason": "too late"}, expected_version=1)
    assert log_head(service) == head


def test_a_repeated_command_answers_the_order_as_it_is_not_a_rule_violation(service):
    order = service.place(an_order())
    confirmed = service.confirm(order["order_id"], {}, expected_version=1, command_id="c-confirm")
    assert service.confirm(order["order_id"], {}, expected_version=1, command_id="c-confirm") == confirmed
    with pytest.raises(RuleViolationError):
        service.confirm(order["order_id"], {}, command_id="c-confirm-again")


def test_a_resent_payment_answers_like_its_first_run_even_with_the_version_seen_then(service):
    order = service.place(an_order())
    payment = {"payment_id": "P1", "amount": "100.00", "currency": "CNY", "method": "card"}
    paid = service.record_payment(order["order_id"], payment, expected_version=1)
    assert service.record_payment(order["order_id"], payment, expected_version=1) == paid


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (an_order(customer_id="not-a-uuid"), "customer_id"),
        (an_order(currency="XXX"), "currency"),
        (an_order(lines=[]), "lines"),
        (an_order(shipping_address={"recipient": "Li Na"}), "shipping_address"),
        (an_order(vip=True), "vip"),
    ],
)
def test_bad_payloads_are_rejected_naming_the_field_and_change_nothing(service, payload, field):
    with pytest.raises(ValidationError) as raised:
        service.place(payload)
    assert field in raised.value.messages
    assert log_head(service) == 0


def test_a_bad_command_payload_names_the_field(service):
    order = service.place(an_order())
    with pytest.raises(ValidationError) as raised:
        service.record_payment(order["order_id"], {"payment_id": "P1", "amount": "1.001", "currency": "CNY",
                                                   "method": "card"})
    assert "amount" in raised.value.messages


def test_an_id_that_is_not_a_uuid_is_invalid_input_not_a_crash(service):
    with pytest.raises(InvalidRequestError) as raised:
        service.get("not-a-uuid")
    assert raised.value.details["fields"] == {"order_id": ["must be a UUID"]}


def test_every_domain_error_crosses_rpc_with_a_code_the_gateway_maps():
    errors = [cls for _, cls in inspect.getmembers(domain, inspect.isclass) if issubclass(cls, CrmError)]
    assert errors
    assert {cls.code for cls in errors} <= GATEWAY_CODES
    wire = as_service_error(domain.OrderAlreadyPlacedError(uuid4(), uuid4()))
    assert wire is not None and wire.code == "conflict" and "existing_order_id" in wire.details
