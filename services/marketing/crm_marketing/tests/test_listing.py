"""`list_campaigns` and `list_leads`: campaigns and leads made through commands, then listed.

Real: PostgreSQL (a fresh schema) for the event store and the listing; the projector is driven
synchronously (`project()`); the worker is nameko's worker_factory with those real dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from crm_contracts.errors import InvalidRequestError
from crm_marketing.application import Marketing
from crm_marketing.service import MarketingService
from crm_runtime.tests.listing_support import listed_service, postgres_env

PLAN = {"name": "Spring retail push", "objective": "50 qualified retail leads", "segment": {"industries": ["retail"]},
        "channels": ["email", "online"], "starts_on": "2027-03-01", "ends_on": "2027-04-30", "budget": "1000.00",
        "currency": "CNY"}
AT = "2027-03-10T12:00:00+00:00"


@pytest.fixture
def listed(test_database: dict[str, str], postgres_schema: str) -> Iterator[Any]:
    app = Marketing(env=postgres_env(test_database, postgres_schema))
    with listed_service(MarketingService, app, test_database, postgres_schema) as found:
        yield found
    app.close()


def capture(service: Any, campaign_id: str, name: str) -> dict[str, Any]:
    return service.capture_lead({"channel": "web_form", "name": name, "email": f"{name}@example.com",
                                 "campaign_id": campaign_id, "company_size": 250, "industry": "retail", "at": AT})


def test_campaigns_are_listed_by_status_and_leads_by_campaign_and_grade(listed):
    service, project = listed
    planned = service.plan_campaign(PLAN, command_id="c1")
    active = service.plan_campaign({**PLAN, "name": "Summer"}, command_id="c2")
    active = service.launch_campaign(active["id"], expected_version=active["version"])
    lead = capture(service, active["id"], "zhang")
    capture(service, active["id"], "li")
    graded = service.grade_lead(lead["id"], {"grade": "key"})
    project()

    assert [c["id"] for c in service.list_campaigns({"status": "planned"})["items"]] == [planned["id"]]
    assert service.list_campaigns({"status": "active"})["items"] == [service.get_campaign(active["id"])]
    assert service.list_leads({"campaign_id": active["id"]})["total"] == 2
    assert service.list_leads({"grade": "key", "status": "captured"})["items"] == [graded]


def test_an_unknown_filter_is_refused_naming_it(listed):
    service, _ = listed
    with pytest.raises(InvalidRequestError) as refused:
        service.list_leads({"email": "x@example.com"})
    assert list(refused.value.details["fields"]) == ["email"]
