"""Erasure in marketing on real PostgreSQL: a `pg_dump` of the marketing schema (event store, data keys,
erasure ledger, lists) holds the lead's name, email and phone while the customer it became exists, and
no byte of them (in text or as the hex pg_dump writes bytea in) once that customer is forgotten.

Real: PostgreSQL (a fresh schema), the marketing application, its listing projector (driven with
`project()`), the service's RPC methods (nameko's worker_factory), pg_dump."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from crm_marketing.application import Marketing
from crm_marketing.service import MarketingService
from crm_runtime.tests.listing_support import listed_application
from tests.support.databases import leaked, pg_dump

NAME, EMAIL, PHONE, COMPANY = "Ouyang Xiaoqing", "ouyang.xiaoqing@example.net", "+86 571 5555 0199", "Xihu Tea House"
SECRETS = (NAME, EMAIL, PHONE, COMPANY)
PLAN = {"name": "Tea season", "objective": "20 qualified leads", "segment": {"industries": ["retail"]},
        "channels": ["email"], "starts_on": "2027-03-01", "ends_on": "2027-04-30", "budget": "1000.00",
        "currency": "CNY"}


@pytest.fixture
def listed(test_database: dict[str, str], postgres_schema: str) -> Iterator[tuple[Marketing, Any, Any]]:
    with listed_application(Marketing, MarketingService, test_database, postgres_schema) as listed:
        yield listed


def test_after_the_customer_is_forgotten_no_byte_of_its_leads_is_in_the_marketing_schema(
    listed, test_database, postgres_schema
):
    app, service, project = listed
    campaign = service.launch_campaign(service.plan_campaign(PLAN, command_id="plan")["id"])
    lead = service.capture_lead({"channel": "web_form", "name": NAME, "email": EMAIL, "phone": PHONE,
                                 "company": COMPANY, "campaign_id": campaign["id"]}, command_id="capture")
    service.qualify_lead(lead["id"], {"note": f"{NAME} confirmed the budget"})
    service.convert_lead(lead["id"], {"estimated_amount": "9000.00", "currency": "CNY"})
    customer_id = uuid.uuid4()
    app.link_customer(uuid.UUID(lead["id"]), customer_id, uuid.UUID(campaign["id"]))  # customer.lead_linked
    project()
    assert service.list_leads({"customer_id": str(customer_id)})["items"][0]["email"] == EMAIL
    assert leaked(pg_dump(test_database, postgres_schema), SECRETS) == list(SECRETS)  # the list rows hold them in clear

    app.forget_customer(customer_id, "erasure-1")
    project()

    assert leaked(pg_dump(test_database, postgres_schema), SECRETS) == []
    (listed_lead,) = service.list_leads({"customer_id": str(customer_id)})["items"]
    assert (listed_lead["name"], listed_lead["email"], listed_lead["phone"]) == ("", None, None)
    assert listed_lead["status"] == "converted" and listed_lead["estimated_amount"] == "9000.00"
    assert service.get_campaign(campaign["id"])["results"]["conversions"] == 1  # anonymous facts stay
