"""The sales service's RPC adapters, one worker at a time (nameko's worker_factory), on the in-memory
store; and how its errors cross the wire."""

from __future__ import annotations

import inspect
from uuid import uuid4

import pytest
from marshmallow import ValidationError
from nameko.testing.services import worker_factory

from crm_contracts.errors import CrmError, InvalidRequestError, StaleVersionError
from crm_runtime.nameko.rpc import as_service_error
from crm_sales import domain
from crm_sales.application import Opportunities
from crm_sales.domain import NoAcceptedQuoteError, OpportunityAlreadyOpenedError, OpportunityNotFoundError
from crm_sales.service import SalesService

#: The error codes the gateway maps to HTTP statuses.
GATEWAY_CODES = {"not_found", "conflict", "stale_version", "invalid", "rule_violation"}
CUSTOMER = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"
OPENING = {"customer_id": CUSTOMER, "title": "50 CRM seats", "owner": "rep-wang-wei", "amount": "12000.00",
           "currency": "CNY", "expected_close_date": "2027-06-30"}
QUOTE = {"lines": [{"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50, "unit_price": "240.00",
                    "discount": "10.00"}]}


@pytest.fixture
def service():
    app = Opportunities(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return worker_factory(SalesService, application=app)


@pytest.fixture
def proposal(service):
    """An opportunity in the proposal stage, as the service answers it."""
    opened = service.open_opportunity(OPENING)
    qualified = service.move_stage(opened["id"], {"stage": "qualification"}, expected_version=1)
    return service.move_stage(opened["id"], {"stage": "proposal"}, expected_version=qualified["version"])


def stored_events(service) -> int:
    return service.application.recorder.max_notification_id() or 0


def test_an_opportunity_is_worked_quoted_and_won(service, proposal):
    opportunity_id = proposal["id"]
    changed = service.change_amount(opportunity_id, {"amount": "13000.00"}, expected_version=proposal["version"])
    changed = service.change_expected_close_date(
        opportunity_id, {"expected_close_date": "2027-07-31"}, expected_version=changed["version"]
    )
    changed = service.reassign(opportunity_id, {"owner": "rep-zhao-lei"}, expected_version=changed["version"])
    assert (changed["amount"], changed["expected_close_date"], changed["owner"]) == (
        "13000.00", "2027-07-31", "rep-zhao-lei"
    )
    quoted = service.send_quote(opportunity_id, QUOTE, expected_version=changed["version"])
    quote = quoted["quotes"][-1]
    assert (quote["status"], quote["total"], quote["lines"][0]["line_total"]) == ("sent", "10800.00", "10800.00")
    accepted = service.accept_quote(opportunity_id, quote["quote_id"], expected_version=quoted["version"])
    won = service.win(opportunity_id, expected_version=accepted["version"])
    assert (won["stage"], won["won_quote_id"], won["amount"]) == ("won", quote["quote_id"], "10800.00")
    assert service.get_opportunity(opportunity_id) == won
    assert service.win_rate() == {"won": 1, "lost": 0, "rate": "1.0000"}
    assert service.win_rate("rep-wang-wei") == {"won": 0, "lost": 0, "rate": None}


def test_a_rejected_quote_is_followed_by_a_new_version_or_the_opportunity_is_lost(service, proposal):
    quoted = service.send_quote(proposal["id"], QUOTE)
    rejected = service.reject_quote(proposal["id"], quoted["quotes"][0]["quote_id"], {"reason": "over budget"})
    assert rejected["quotes"][0]["rejection_reason"] == "over budget"
    lost = service.lose(proposal["id"], {"reason": "chose a competitor"}, expected_version=rejected["version"])
    assert (lost["stage"], lost["lost_reason"]) == ("lost", "chose a competitor")


def test_pipeline_and_forecasts_group_open_opportunities(service, proposal):
    service.open_opportunity({**OPENING, "owner": "rep-zhao-lei", "expected_close_date": "2027-08-15"})
    assert [(row["key"], row["count"], row["weighted_amount"]) for row in service.pipeline()] == [
        ("prospecting", 1, "1200.00"), ("proposal", 1, "6000.00")
    ]
    assert [row["key"] for row in service.forecast_by_month()] == ["2027-06", "2027-08"]
    assert [row["key"] for row in service.forecast_by_rep()] == ["rep-wang-wei", "rep-zhao-lei"]


def test_an_opening_repeated_with_its_command_id_opens_once_and_answers_the_same_opportunity(service):
    first = service.open_opportunity(OPENING, command_id="caller:key-1")
    events = stored_events(service)
    assert service.open_opportunity(OPENING, command_id="caller:key-1") == first
    assert stored_events(service) == events
    assert service.open_opportunity(OPENING, command_id="caller:key-2")["id"] != first["id"]


def test_an_opening_from_a_lead_repeated_answers_it_but_another_opening_from_that_lead_conflicts(service):
    from_lead = {**OPENING, "lead_id": str(uuid4())}
    first = service.open_opportunity(from_lead, command_id="policy:lead-1")
    assert service.open_opportunity(from_lead, command_id="policy:lead-1") == first
    with pytest.raises(OpportunityAlreadyOpenedError) as raised:
        service.open_opportunity({**from_lead, "amount": "99.00"}, command_id="caller:other")
    assert raised.value.details["existing_opportunity_id"] == first["id"]


def test_a_quote_sent_again_with_its_command_id_is_sent_once_whatever_the_version(service, proposal):
    version = proposal["version"]
    first = service.send_quote(proposal["id"], QUOTE, expected_version=version, command_id="caller:quote-1")
    again = service.send_quote(proposal["id"], QUOTE, expected_version=version, command_id="caller:quote-1")
    assert again == first and len(again["quotes"]) == 1
    second = service.send_quote(proposal["id"], QUOTE, expected_version=first["version"], command_id="caller:quote-2")
    assert [q["status"] for q in second["quotes"]] == ["superseded", "sent"]
    assert second["quotes"][0]["quote_id"] != second["quotes"][1]["quote_id"]


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({k: v for k, v in OPENING.items() if k != "customer_id"}, "customer_id"),
        ({**OPENING, "customer_id": "someone"}, "customer_id"),
        ({**OPENING, "amount": "12.345"}, "amount"),
        ({**OPENING, "amount": "-1.00"}, "amount"),
        ({**OPENING, "currency": "XXX"}, "currency"),
        ({**OPENING, "expected_close_date": "soon"}, "expected_close_date"),
        ({**OPENING, "title": ""}, "title"),
        ({**OPENING, "probability": 50}, "probability"),
    ],
)
def test_bad_openings_are_rejected_naming_the_field_and_change_nothing(service, payload, field):
    with pytest.raises(ValidationError) as raised:
        service.open_opportunity(payload, command_id="caller:bad")
    assert field in raised.value.messages
    assert stored_events(service) == 0


@pytest.mark.parametrize(
    ("line", "field"),
    [
        ({"quantity": 1.5}, "quantity"),
        ({"discount": "12.345"}, "discount"),
        ({"discount": "101.00"}, "discount"),
        ({"unit_price": "abc"}, "unit_price"),
    ],
)
def test_bad_quote_lines_are_rejected_naming_the_line_and_field(service, proposal, line, field):
    with pytest.raises(ValidationError) as raised:
        service.send_quote(proposal["id"], {"lines": [{**QUOTE["lines"][0], **line}]})
    assert field in raised.value.messages["lines"][0]


def test_a_stale_expected_version_changes_nothing(service, proposal):
    with pytest.raises(StaleVersionError) as raised:
        service.change_amount(proposal["id"], {"amount": "1.00"}, expected_version=proposal["version"] - 1)
    assert raised.value.details["current_version"] == proposal["version"]
    with pytest.raises(StaleVersionError):
        service.send_quote(proposal["id"], QUOTE, expected_version=1, command_id="caller:quote-1")
    assert service.get_opportunity(proposal["id"]) == proposal


def test_domain_errors_cross_rpc_with_codes_the_gateway_knows(service, proposal):
    with pytest.raises(NoAcceptedQuoteError) as not_accepted:
        service.win(proposal["id"])
    with pytest.raises(OpportunityNotFoundError) as missing:
        service.get_opportunity(str(uuid4()))
    codes = [as_service_error(raised.value).code for raised in (not_accepted, missing)]
    assert codes == ["rule_violation", "not_found"]


def test_every_domain_error_is_a_crm_error_with_a_gateway_code():
    errors = [cls for _, cls in inspect.getmembers(domain, inspect.isclass) if issubclass(cls, Exception)]
    assert errors and all(issubclass(cls, CrmError) and cls.code in GATEWAY_CODES for cls in errors)


def test_an_id_that_is_not_a_uuid_is_invalid_input_not_a_crash(service, proposal):
    with pytest.raises(InvalidRequestError) as raised:
        service.get_opportunity("not-a-uuid")
    assert raised.value.details["fields"] == {"opportunity_id": ["must be a UUID"]}
    with pytest.raises(InvalidRequestError) as raised:
        service.accept_quote(proposal["id"], "quote-1")
    assert raised.value.details["fields"] == {"quote_id": ["must be a UUID"]}
