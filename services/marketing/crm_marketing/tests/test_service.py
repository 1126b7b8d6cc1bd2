"""The marketing service's RPC adapters, one worker at a time (nameko's worker_factory), on the
in-memory store; and how its errors cross the wire."""

from __future__ import annotations

import inspect
from uuid import UUID

import pytest
from marshmallow import ValidationError
from nameko.testing.services import worker_factory

from crm_contracts.errors import CrmError, InvalidRequestError, StaleVersionError
from crm_marketing import domain
from crm_marketing.application import Marketing
from crm_marketing.domain import CampaignStatusError, LeadClosedError, LeadNotFoundError
from crm_marketing.service import MarketingService
from crm_runtime.nameko.rpc import as_service_error

#: The error codes the gateway maps to HTTP statuses.
GATEWAY_CODES = {"not_found", "conflict", "stale_version", "invalid", "rule_violation"}
PLAN = {
    "name": "Spring retail push",
    "objective": "50 qualified retail leads",
    "segment": {"industries": ["retail"]},
    "channels": ["email", "online"],
    "starts_on": "2027-03-01",
    "ends_on": "2027-04-30",
    "budget": "1000.00",
    "currency": "CNY",
}
AT = "2027-03-10T12:00:00+00:00"


@pytest.fixture
def service():
    app = Marketing(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    return worker_factory(MarketingService, application=app)


@pytest.fixture
def campaign(service):
    """An active campaign, as the service answers it."""
    planned = service.plan_campaign(PLAN)
    return service.launch_campaign(planned["id"], expected_version=planned["version"])


def capture(service, campaign, command_id=None, **overrides):
    payload = {"channel": "web_form", "name": "Zhang Min", "email": "zhang.min@example.com",
               "campaign_id": campaign["id"], "company_size": 250, "industry": "retail", "at": AT, **overrides}
    return service.capture_lead(payload, command_id=command_id)


def stored_events(service) -> int:
    return service.application.recorder.max_notification_id() or 0


def test_a_campaign_is_planned_launched_answered_closed_and_measured(service):
    planned = service.plan_campaign(PLAN)
    assert (planned["status"], planned["version"], planned["budget"]) == ("planned", 1, "1000.00")
    assert planned["results"]["leads"] == 0 and planned["results"]["cost_per_lead"] is None
    launched = service.launch_campaign(planned["id"], expected_version=1)
    responded = service.record_response(launched["id"], {"channel": "email", "count": 25, "at": AT})
    assert responded["results"]["responses"] == 25
    closed = service.close_campaign(launched["id"], {"actual_cost": "800.00"}, expected_version=3)
    assert closed["status"] == "closed" and closed["results"]["cost"] == "800.00"
    assert service.campaign_results(planned["id"]) == closed["results"]
    assert service.get_campaign(planned["id"]) == closed


def test_a_lead_walks_from_capture_to_conversion_and_its_campaign_counts_it(service, campaign):
    lead = capture(service, campaign)
    assert (lead["status"], lead["campaign_id"], lead["score"]) == ("captured", campaign["id"], lead["fit"])
    engaged = service.record_engagement(lead["id"], {"kind": "reply", "at": AT})
    assert engaged["engagement"] > 0
    rescored = service.rescore_lead(lead["id"], expected_version=engaged["version"])
    graded = service.grade_lead(lead["id"], {"grade": "key"}, expected_version=rescored["version"])
    qualified = service.qualify_lead(lead["id"], {"note": "budget confirmed"}, expected_version=graded["version"])
    converted = service.convert_lead(
        lead["id"], {"estimated_amount": "12000.00", "currency": "CNY", "sales_owner": "rep-wang-wei"},
        expected_version=qualified["version"],
    )
    assert (converted["status"], converted["estimated_amount"]) == ("converted", "12000.00")
    assert service.get_lead(lead["id"]) == converted
    other = capture(service, campaign, name="Li Lei", email="li.lei@example.com")
    service.disqualify_lead(other["id"], {"reason": "no budget"})
    assert [lead["id"] for lead in service.campaign_leads(campaign["id"], "converted")] == [converted["id"]]
    results = service.campaign_results(campaign["id"])
    assert (results["leads"], results["qualified_leads"], results["conversions"]) == (2, 1, 1)
    revised = service.attribute_revenue(campaign["id"], lead["id"], {"amount": "13500.00", "currency": "CNY"})
    assert revised["results"]["attributed_revenue"] == "13500.00"


def test_a_plan_repeated_with_its_command_id_plans_once_and_answers_the_same_campaign(service):
    first = service.plan_campaign(PLAN, command_id="caller:key-1")
    events = stored_events(service)
    again = service.plan_campaign(PLAN, command_id="caller:key-1")
    assert again == first and stored_events(service) == events
    assert service.plan_campaign(PLAN, command_id="caller:key-2")["id"] != first["id"]


def test_a_capture_repeated_with_its_command_id_captures_once_even_after_its_campaign_closed(service, campaign):
    first = capture(service, campaign, command_id="caller:lead-1")
    service.close_campaign(campaign["id"], {})
    events = stored_events(service)
    again = capture(service, campaign, command_id="caller:lead-1")
    assert again == first and stored_events(service) == events
    assert service.campaign_results(campaign["id"])["leads"] == 1


def test_appends_repeated_with_their_command_id_count_once_whatever_the_version(service, campaign):
    payload = {"channel": "email", "count": 10, "at": AT}
    counted = service.record_response(campaign["id"], payload, expected_version=campaign["version"], command_id="r1")
    again = service.record_response(campaign["id"], payload, expected_version=campaign["version"], command_id="r1")
    assert again == counted and counted["results"]["responses"] == 10
    lead = capture(service, campaign)
    engaged = service.record_engagement(lead["id"], {"kind": "visit", "at": AT}, command_id="e1")
    assert service.record_engagement(lead["id"], {"kind": "visit", "at": AT}, command_id="e1") == engaged
    service.record_engagement(lead["id"], {"kind": "visit", "at": AT}, command_id="e2")
    assert len(service.application.lead(UUID(lead["id"])).engagements) == 2


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({k: v for k, v in PLAN.items() if k != "name"}, "name"),
        ({**PLAN, "channels": ["fax"]}, "channels"),
        ({**PLAN, "budget": "10.001"}, "budget"),
        ({**PLAN, "currency": "XXX"}, "currency"),
        ({**PLAN, "ends_on": "2027-02-01"}, "ends_on"),
        ({**PLAN, "segment": {"grades": ["gold"]}}, "segment"),
        ({**PLAN, "vip": True}, "vip"),
    ],
)
def test_bad_plans_are_rejected_naming_the_field_and_change_nothing(service, payload, field):
    with pytest.raises(ValidationError) as raised:
        service.plan_campaign(payload, command_id="caller:bad")
    assert field in raised.value.messages
    assert stored_events(service) == 0


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": "pigeon"}, "channel"),
        ({"email": None, "phone": None}, "email"),
        ({"email": "not-an-email"}, "email"),
        ({"campaign_id": "not-a-uuid"}, "campaign_id"),
        ({"at": "2027-03-10T12:00:00"}, "at"),
    ],
)
def test_bad_captures_are_rejected_naming_the_field(service, campaign, overrides, field):
    with pytest.raises(ValidationError) as raised:
        capture(service, campaign, **overrides)
    assert field in raised.value.messages


def test_bad_lead_commands_name_the_field(service, campaign):
    lead = capture(service, campaign)
    with pytest.raises(ValidationError) as raised:
        service.grade_lead(lead["id"], {"grade": "gold"})
    assert "grade" in raised.value.messages
    with pytest.raises(ValidationError) as raised:
        service.convert_lead(lead["id"], {"estimated_amount": "-1.00", "currency": "CNY"})
    assert "estimated_amount" in raised.value.messages


def test_a_stale_expected_version_changes_nothing(service, campaign):
    lead = capture(service, campaign)
    with pytest.raises(StaleVersionError):
        service.launch_campaign(campaign["id"], expected_version=1)
    with pytest.raises(StaleVersionError):
        service.grade_lead(lead["id"], {"grade": "key"}, expected_version=lead["version"] + 1)
    assert service.get_lead(lead["id"]) == lead


def test_domain_errors_cross_rpc_with_codes_the_gateway_knows(service, campaign):
    with pytest.raises(CampaignStatusError) as launched_twice:
        service.launch_campaign(campaign["id"])
    lead = capture(service, campaign)
    service.disqualify_lead(lead["id"], {"reason": "no budget"})
    with pytest.raises(LeadClosedError) as closed:
        service.qualify_lead(lead["id"], {})
    with pytest.raises(LeadNotFoundError) as missing:
        service.get_lead(campaign["id"])  # a campaign's id is no lead's
    codes = [as_service_error(raised.value).code for raised in (launched_twice, closed, missing)]
    assert codes == ["rule_violation", "conflict", "not_found"]


def test_every_domain_error_is_a_crm_error_with_a_gateway_code():
    errors = [cls for _, cls in inspect.getmembers(domain, inspect.isclass) if issubclass(cls, Exception)]
    assert errors and all(issubclass(cls, CrmError) and cls.code in GATEWAY_CODES for cls in errors)


def test_an_id_that_is_not_a_uuid_is_invalid_input_not_a_crash(service):
    with pytest.raises(InvalidRequestError) as raised:
        service.get_campaign("not-a-uuid")
    assert raised.value.details["fields"] == {"campaign_id": ["must be a UUID"]}
    with pytest.raises(InvalidRequestError) as raised:
        service.record_engagement("42", {"kind": "open"})
    assert raised.value.details["fields"] == {"lead_id": ["must be a UUID"]}
