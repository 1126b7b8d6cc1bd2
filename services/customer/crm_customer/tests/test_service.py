"""The customer service's RPC adapters, one worker at a time (nameko's worker_factory), on the
in-memory store; and how its errors cross the wire."""

from __future__ import annotations

import json

import pytest
from marshmallow import ValidationError
from nameko.testing.services import worker_factory

from crm_contracts.errors import InvalidRequestError
from crm_customer.application import Customers
from crm_customer.domain import EmailTakenError, PhoneTakenError
from crm_customer.service import CustomerService
from crm_runtime.nameko.rpc import as_service_error


@pytest.fixture
def service():
    app = Customers(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return worker_factory(CustomerService, application=app)


def test_register_loads_the_payload_and_answers_the_contract(service):
    answer = service.register({"name": "Li Na", "email": "Li.Na@example.com", "source_channel": "event"})
    assert answer["email"] == "li.na@example.com" and answer["version"] == 1
    assert service.get(answer["id"]) == answer


def test_profile_change_takes_the_expected_version(service):
    registered = service.register({"name": "Li Na", "email": "li.na@example.com"})
    changed = service.change_profile(registered["id"], {"company": "Acme"}, expected_version=1)
    assert (changed["company"], changed["version"]) == ("Acme", 2)


@pytest.mark.parametrize(
    ("method", "args"),
    [
        ("change_profile", ({"company": "Acme"}, None)),
        ("record_consent", ("sms", {"granted": True, "source": "shop"})),
        ("set_credit_rating", ({"rating": "AA"},)),
        ("grade", ({"value": 5, "structure": 3, "loyalty": 4},)),
    ],
)
def test_a_command_delivered_twice_takes_effect_once(service, method, args):
    registered = service.register({"name": "Li Na", "email": "li.na@example.com"}, "register-1")
    assert service.register({"name": "Li Na", "email": "li.na@example.com"}, "register-1") == registered
    first = getattr(service, method)(registered["id"], *args, command_id="command-1")
    again = getattr(service, method)(registered["id"], *args, command_id="command-1")
    assert first == again and again["version"] == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"email": "li.na@example.com"}, "name"),
        ({"name": "Li Na"}, "email"),
        ({"name": "Li Na", "email": "not-an-email"}, "email"),
        ({"name": "Li Na", "email": "li.na@example.com", "source_channel": "fax"}, "source_channel"),
        ({"name": "Li Na", "email": "li.na@example.com", "phone": "call me"}, "phone"),
        ({"name": "Li Na", "email": "li.na@example.com", "vip": True}, "vip"),
    ],
)
def test_bad_payloads_are_rejected_naming_the_field_and_change_nothing(service, payload, field):
    with pytest.raises(ValidationError) as raised:
        service.register(payload)
    assert field in raised.value.messages
    assert service.application.recorder.max_notification_id() in (None, 0)


def test_errors_cross_rpc_as_service_errors_with_code_and_details():
    wire = as_service_error(EmailTakenError("a@example.com", __import__("uuid").UUID(int=1)))
    assert wire.code == "conflict"
    assert wire.details["existing_customer_id"] == "00000000-0000-0000-0000-000000000001"
    assert as_service_error(ValidationError({"name": ["required"]})).details == {"fields": {"name": ["required"]}}
    assert as_service_error(RuntimeError("bug")) is None


def test_an_id_that_is_not_a_uuid_is_invalid_input_not_a_crash(service):
    with pytest.raises(InvalidRequestError) as raised:
        service.get("not-a-uuid")
    assert raised.value.details["fields"] == {"customer_id": ["must be a UUID"]}


def test_a_customer_registers_by_phone_alone_and_a_phone_belongs_to_one_customer(service):
    registered = service.register({"name": "Wang Wei", "phone": "+86 10 5555 0101"}, "register-1")
    assert (registered["email"], registered["phone"]) == (None, "+86 10 5555 0101")
    with pytest.raises(PhoneTakenError) as raised:
        service.register({"name": "Someone Else", "email": "s@example.com", "phone": "+86 (10) 5555-0101"})
    assert as_service_error(raised.value).code == "conflict"


def test_erase_answers_where_the_erasure_stands_and_the_customer_reads_as_erased(service):
    registered = service.register({"name": "Li Na", "email": "li.na@example.com", "phone": "+86 10 5555 0101"})
    answer = service.erase(registered["id"], {"request_id": "DSR-7"})
    assert answer["request_id"] == "DSR-7" and answer["erased_at"] and answer["shredded_at"]
    assert service.erase(registered["id"], {}) == answer == service.erasure(registered["id"])
    erased = service.get(registered["id"])
    assert erased["erased"] is True and (erased["name"], erased["email"], erased["phone"]) == (None, None, None)
    assert as_service_error(_raised(lambda: service.change_profile(registered["id"], {"company": "X"}, None))
                            ).code == "conflict"


def _raised(call):
    try:
        call()
    except Exception as exc:  # noqa: BLE001 - the test looks at what crosses the wire
        return exc
    raise AssertionError("expected an error")


def test_export_answers_the_record_and_every_event_decrypted_as_json(service):
    registered = service.register({"name": "Li Na", "email": "li.na@example.com"})
    service.set_address(registered["id"], "billing", {"address": {"recipient": "Li Na", "line1": "1 Road",
                                                                  "city": "Beijing", "country": "CN"}})
    exported = service.export(registered["id"])
    assert exported["record"]["id"] == registered["id"]
    assert [e["type"] for e in exported["events"]] == ["Registered", "AddressChanged"]
    assert exported["events"][0]["data"]["email"] == "li.na@example.com"
    assert exported["events"][1]["data"]["address"]["line1"] == "1 Road"
    json.dumps(exported)  # JSON as it is


def test_merge_unmerge_and_the_merge_read_answer_the_contract(service):
    survivor = service.register({"name": "Li Na", "email": "li.na@example.com"})
    absorbed = service.register({"name": "Li Na", "email": "lina@example.com"})
    merge = service.merge(survivor["id"], {"absorb": [absorbed["id"]], "merge_id": "m-7"}, command_id="c-1")
    assert merge == service.merge(survivor["id"], {"absorb": [absorbed["id"]], "merge_id": "m-7"}, command_id="c-1")
    assert (merge["merge_id"], merge["survivor_id"], merge["undone"]) == ("m-7", survivor["id"], False)
    assert merge["absorbed"] == [{"customer_id": absorbed["id"], "unmerged_at": None}]
    assert service.get_merge("m-7") == merge
    moved = as_service_error(_raised(lambda: service.get(absorbed["id"])))
    assert (moved.code, moved.details) == ("moved", {"customer_id": absorbed["id"], "survivor_id": survivor["id"]})
    undone = service.unmerge("m-7", {}, command_id="c-2")
    assert undone["undone"] and undone["absorbed"][0]["unmerged_at"]
    assert service.get(absorbed["id"])["id"] == absorbed["id"]
    assert as_service_error(_raised(lambda: service.get_merge("m-8"))).code == "not_found"


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"absorb": []}, "absorb"),
        ({"absorb": ["not-a-uuid"]}, "absorb"),
        ({"absorb": ["3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"] * 2}, "absorb"),
        ({"absorb": ["3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"], "merge_id": "has space"}, "merge_id"),
        ({"absorb": ["3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"], "into": "x"}, "into"),
    ],
)
def test_a_bad_merge_request_names_the_field_and_changes_nothing(service, payload, field):
    survivor = service.register({"name": "Li Na", "email": "li.na@example.com"})
    before = service.application.recorder.max_notification_id()
    with pytest.raises(ValidationError) as raised:
        service.merge(survivor["id"], payload)
    assert field in raised.value.messages
    assert service.application.recorder.max_notification_id() == before


def test_merging_a_customer_into_itself_is_invalid_naming_absorb(service):
    survivor = service.register({"name": "Li Na", "email": "li.na@example.com"})
    wire = as_service_error(_raised(lambda: service.merge(survivor["id"], {"absorb": [survivor["id"]]})))
    assert wire.code == "invalid" and "absorb" in wire.details["fields"]
