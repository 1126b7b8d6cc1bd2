"""A campaign planned for a saved segment (segment_id) instead of marketing's criteria, over HTTP: the
body reaches the marketing service as sent; criteria and a segment together, or neither, are 422 naming
`segment`, and nothing is called. The service is a mock (conftest)."""

from __future__ import annotations

from typing import Any

import pytest

from crm_gateway.tests.conftest import body

SEGMENT_ID = "6d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"
CAMPAIGN_ID = "5b7e1c2d-8a4f-4e6b-9d3c-1f0a2b3c4d5e"
PLAN: dict[str, Any] = {"name": "Thank you", "objective": "keep loyal customers", "channels": ["email", "online"],
                        "starts_on": "2027-05-01", "ends_on": "2027-05-31", "budget": "500.00", "currency": "CNY"}


def test_a_campaign_for_a_saved_segment_is_planned_with_its_id(api, marketing):
    marketing.plan_campaign.return_value = {"id": CAMPAIGN_ID, "version": 2, "segment_id": SEGMENT_ID}
    response = api.post("/v1/campaigns", {**PLAN, "segment_id": SEGMENT_ID})
    assert response.status_code == 201, body(response)
    sent, command_id = marketing.plan_campaign.call_args.args
    assert sent == {**PLAN, "segment_id": SEGMENT_ID} and command_id


@pytest.mark.parametrize("audience", [{"segment": {"industries": ["retail"]}, "segment_id": SEGMENT_ID}, {}])
def test_criteria_and_a_segment_together_or_neither_are_refused(api, marketing, audience):
    response = api.post("/v1/campaigns", {**PLAN, **audience})
    assert response.status_code == 422, body(response)
    assert list(body(response)["error"]["fields"]) == ["segment"]
    assert not marketing.method_calls


def test_the_openapi_document_offers_the_segment_target_and_the_reach(api):
    schemas = api.get("/openapi.json").json["components"]["schemas"]
    assert schemas["PlanCampaignRequest"]["properties"]["segment_id"]["format"] == "uuid"
    assert "segment" not in schemas["PlanCampaignRequest"].get("required", [])
    assert {"segment_id", "reached"} <= set(schemas["Campaign"]["properties"])
