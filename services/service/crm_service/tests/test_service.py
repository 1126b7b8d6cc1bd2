"""The service (after-sales) RPC adapters, one worker at a time (nameko's worker_factory), on the
in-memory store; and how its errors cross the wire."""

from __future__ import annotations

import inspect
from typing import Any
from uuid import uuid4

import pytest
from marshmallow import ValidationError
from nameko.testing.services import worker_factory

from crm_contracts.errors import CrmError, InvalidRequestError, StaleVersionError
from crm_service import domain
from crm_service.application import ServiceDesk
from crm_service.service import CustomerCareService

#: The error codes the gateway maps to an HTTP status.
GATEWAY_CODES = {"not_found", "conflict", "stale_version", "invalid", "rule_violation"}


@pytest.fixture
def service():
    app = ServiceDesk(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return worker_factory(CustomerCareService, application=app)


def a_message(**overrides: Any) -> dict[str, Any]:
    """An email to the contact centre about an invoice (routed to finance)."""
    return {"channel": "email", "subject": "Invoice 42 is wrong", "body": "see the attached statement",
            "sender": "ap@acme.example", **overrides}


def log_head(service) -> int:
    return service.application.recorder.max_notification_id() or 0


def test_open_case_routes_and_acknowledges_the_message(service):
    case = service.open_case(a_message(customer_id=str(uuid4())))
    assert (case["status"], case["department"], case["group"], case["version"]) == (
        "open", "finance", "accounts_desk", case["version"]
    )
    assert case["acknowledged_at"] is not None
    assert service.get_case(case["id"]) == case


def test_opening_twice_with_one_command_id_opens_one_case_and_answers_it_twice(service):
    first = service.open_case(a_message(), command_id="client-1:key-1")
    head = log_head(service)
    assert service.open_case(a_message(), command_id="client-1:key-1") == first
    assert log_head(service) == head
    assert service.open_case(a_message(), command_id="client-1:key-2")["id"] != first["id"]


def test_a_case_walks_its_lifecycle_and_complaint_steps_through_rpc(service):
    customer = str(uuid4())
    case = service.open_case(a_message(channel="phone", subject="Kettle is faulty", body="", customer_id=customer))
    case_id = case["id"]
    case = service.classify_case(case_id, {"department": "customer_service", "priority": "important",
                                           "by": "wang.wei"}, expected_version=case["version"])
    case = service.assign_case(case_id, {"group": "customer_care", "agent": "wang.wei"})
    case = service.respond_to_case(case_id, {"agent": "wang.wei", "body": "We will replace it"})
    case = service.flag_complaint(case_id, {"by": "wang.wei"}, expected_version=case["version"])
    case = service.assess_complaint(case_id, {"category": "product_quality", "severity": "medium",
                                              "assessment": "faulty batch"})
    case = service.resolve_case(case_id, {"resolution": "replaced"}, expected_version=case["version"])
    case = service.summarise_complaint(case_id, {"summary": "faulty kettle replaced", "root_cause": "batch 7"})
    case = service.close_case(case_id, expected_version=case["version"])
    case = service.complete_survey(case_id, {"score": 4, "comment": "quick"})
    assert (case["status"], case["complaint_stage"], case["survey_score"]) == ("closed", "summarised", 4)
    assert service.satisfaction_index(customer) == {"customer_id": customer, "index": "75.0"}
    reopened = service.reopen_case(case_id, {"reason": "broke again"}, expected_version=case["version"])
    assert reopened["status"] == "open" and reopened["reopen_count"] == 1
    assert service.escalate_case(case_id, {"reason": "second failure"})["escalation_level"] >= 1
    assert service.check_sla(case_id)["id"] == case_id


def test_faq_articles_are_drafted_once_per_command_revised_published_suggested_and_retired(service):
    draft = {"question": "Where is my parcel?", "answer": "Track it online", "keywords": ["parcel", "tracking"]}
    article = service.draft_faq(draft, command_id="client-1:key-1")
    assert service.draft_faq(draft, command_id="client-1:key-1") == article
    article = service.revise_faq(article["id"], {**draft, "answer": "Track it at /track"},
                                 expected_version=article["version"])
    article = service.publish_faq(article["id"], expected_version=article["version"])
    assert article["status"] == "published"
    suggested = service.suggest_faqs({"text": "where is my parcel"})
    assert [s["article_id"] for s in suggested] == [article["id"]]
    case = service.open_case(a_message(subject="Parcel tracking", body="where is my parcel"))
    assert case["suggested_faq_ids"] == [article["id"]]
    assert [s["article_id"] for s in service.suggest_faqs_for_case(case["id"])] == [article["id"]]
    used = service.record_faq_use(article["id"], {"case_id": case["id"], "helpful": True})
    assert (used["uses"], used["helpfulness"]) == (1, "1.00")
    retired = service.retire_faq(article["id"], {"reason": "new portal"}, expected_version=used["version"])
    assert retired["status"] == "retired" and service.get_faq(article["id"]) == retired


def test_a_stale_expected_version_is_refused_and_changes_nothing(service):
    case = service.open_case(a_message())
    service.assign_case(case["id"], {"group": "customer_care"})
    head = log_head(service)
    with pytest.raises(StaleVersionError):
        service.resolve_case(case["id"], {"resolution": "done"}, expected_version=case["version"])
    assert log_head(service) == head


def test_a_repeated_command_answers_the_case_as_it_is(service):
    case = service.open_case(a_message())
    resolved = service.resolve_case(case["id"], {"resolution": "done"}, expected_version=case["version"],
                                    command_id="c-resolve")
    again = service.resolve_case(case["id"], {"resolution": "done"}, expected_version=case["version"],
                                 command_id="c-resolve")
    assert again == resolved


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        (a_message(channel="fax"), "channel"),
        ({k: v for k, v in a_message().items() if k != "subject"}, "subject"),
        (a_message(sender=""), "sender"),
        (a_message(customer_id="not-a-uuid"), "customer_id"),
        (a_message(urgent=True), "urgent"),
    ],
)
def test_bad_payloads_are_rejected_naming_the_field_and_change_nothing(service, payload, field):
    with pytest.raises(ValidationError) as raised:
        service.open_case(payload)
    assert field in raised.value.messages
    assert log_head(service) == 0


def test_a_bad_survey_score_names_the_field(service):
    case = service.open_case(a_message())
    with pytest.raises(ValidationError) as raised:
        service.complete_survey(case["id"], {"score": 9})
    assert "score" in raised.value.messages


def test_an_id_that_is_not_a_uuid_is_invalid_input_not_a_crash(service):
    with pytest.raises(InvalidRequestError) as raised:
        service.get_case("not-a-uuid")
    assert raised.value.details["fields"] == {"case_id": ["must be a UUID"]}


def test_every_domain_error_crosses_rpc_with_a_code_the_gateway_maps():
    errors = [cls for _, cls in inspect.getmembers(domain, inspect.isclass) if issubclass(cls, CrmError)]
    assert errors
    assert {cls.code for cls in errors} <= GATEWAY_CODES
