"""The loyalty RPC adapters, one worker at a time (nameko's worker_factory), on the in-memory store
and the tests' small programme; and how its errors cross the wire."""

from __future__ import annotations

import inspect
from datetime import UTC, datetime, timedelta
from uuid import UUID, uuid4

import pytest
from marshmallow import ValidationError
from nameko.testing.services import worker_factory

from crm_contracts.errors import CrmError, InvalidRequestError, MovedError, StaleVersionError
from crm_loyalty import domain
from crm_loyalty.service import LoyaltyService
from crm_loyalty.tests.conftest import SmallProgrammeAccounts

#: The error codes the gateway maps to an HTTP status.
GATEWAY_CODES = {"not_found", "conflict", "stale_version", "invalid", "rule_violation"}
#: Points are redeemed "now" (the service's clock): they were earned yesterday, so they are still valid.
EARNED = datetime.now(UTC) - timedelta(days=1)
PAID_AT = EARNED.isoformat()


@pytest.fixture
def service():
    app = SmallProgrammeAccounts(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return worker_factory(LoyaltyService, application=app)


@pytest.fixture
def customer(service) -> str:
    """A customer enrolled, who earned 300 points on one order (account at version 2)."""
    customer_id = str(uuid4())
    service.enrol({"customer_id": customer_id, "at": PAID_AT})
    service.earn(customer_id, {"order_id": str(uuid4()), "amount": "300.00", "currency": "CNY", "paid_at": PAID_AT})
    return customer_id


def log_head(service) -> int:
    return service.application.recorder.max_notification_id() or 0


def test_enrol_earn_and_get_answer_the_contract(service, customer):
    account = service.get(customer)
    assert (account["customer_id"], account["tier"], account["balance"], account["version"]) == (
        customer, "bronze", 300, 2
    )
    assert [lot["remaining"] for lot in account["lots"]] == [300]


def test_the_same_paid_order_earns_once(service, customer):
    order = {"order_id": str(uuid4()), "amount": "100.00", "currency": "CNY", "paid_at": PAID_AT}
    once = service.earn(customer, order)
    assert service.earn(customer, order, expected_version=2) == once


def test_redeeming_twice_with_one_command_id_spends_once_and_answers_the_same_redemption(service, customer):
    first = service.redeem(customer, {"reward_code": "MUG", "points": 250}, expected_version=2, command_id="c:1")
    head = log_head(service)
    again = service.redeem(customer, {"reward_code": "MUG", "points": 250}, expected_version=2, command_id="c:1")
    assert again["redemption"] == first["redemption"]
    assert (again["account"]["balance"], log_head(service)) == (50, head)
    other = service.redeem(customer, {"reward_code": "PEN", "points": 50}, command_id="c:2")
    assert other["redemption"]["redemption_id"] != first["redemption"]["redemption_id"]


def test_granting_twice_with_one_command_id_grants_once(service, customer):
    benefit = {"level": "social", "kind": "personal_call", "description": "call after the complaint"}
    first = service.grant_benefit(customer, benefit, command_id="c:1")
    again = service.grant_benefit(customer, benefit, command_id="c:1")
    assert again["benefit"] == first["benefit"] and len(again["account"]["benefits"]) == 1


def test_expiry_and_tier_review_take_the_time_from_the_payload(service, customer):
    account = service.review_tier(customer, {"now": (EARNED + timedelta(days=45)).isoformat()})
    assert account["tier"] == "bronze"
    later = (EARNED + timedelta(days=61)).isoformat()  # the small programme's points are valid 60 days
    expired = service.expire(customer, {"now": later}, expected_version=account["version"])
    assert (expired["balance"], expired["points_expired"]) == (0, 300)


def test_a_stale_expected_version_is_refused_and_changes_nothing(service, customer):
    head = log_head(service)
    with pytest.raises(StaleVersionError):
        service.redeem(customer, {"reward_code": "MUG", "points": 10}, expected_version=1)
    assert log_head(service) == head


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"reward_code": "MUG"}, "points"),
        ({"reward_code": "MUG", "points": 0}, "points"),
        ({"reward_code": "MUG", "points": "10"}, "points"),
        ({"reward_code": "", "points": 10}, "reward_code"),
        ({"reward_code": "MUG", "points": 10, "free": True}, "free"),
    ],
)
def test_bad_payloads_are_rejected_naming_the_field_and_change_nothing(service, customer, payload, field):
    head = log_head(service)
    with pytest.raises(ValidationError) as raised:
        service.redeem(customer, payload)
    assert field in raised.value.messages
    assert log_head(service) == head


def test_a_benefit_kind_of_another_level_names_the_kind(service, customer):
    with pytest.raises(ValidationError) as raised:
        service.grant_benefit(customer, {"level": "financial", "kind": "personal_call", "description": "call"})
    assert "kind" in raised.value.messages


def test_an_id_that_is_not_a_uuid_is_invalid_input_not_a_crash(service):
    with pytest.raises(InvalidRequestError) as raised:
        service.get("not-a-uuid")
    assert raised.value.details["fields"] == {"customer_id": ["must be a UUID"]}


def test_every_domain_error_crosses_rpc_with_a_code_the_gateway_maps():
    errors = [cls for _, cls in inspect.getmembers(domain, inspect.isclass) if issubclass(cls, CrmError)]
    assert errors
    assert {cls.code for cls in errors} <= GATEWAY_CODES


def test_a_merged_account_answers_moved_naming_the_survivor_and_erasure_status_is_done(service, customer):
    survivor = str(uuid4())
    service.application.absorb_customer(UUID(customer), UUID(survivor), "m-1")
    with pytest.raises(MovedError) as moved:
        service.get(customer)
    assert moved.value.code == "moved" and moved.value.details["survivor_id"] == survivor
    assert service.get(survivor)["balance"] == 300
    assert service.erasure_status(customer) == {"state": "done"}
    with pytest.raises(InvalidRequestError):
        service.erasure_status("not-a-uuid")
