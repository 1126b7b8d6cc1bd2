"""Campaigns (marketing service): plan, read, list, launch, count responses, close, results.

A campaign's audience is marketing's own criteria (`segment`) or a saved segment of customers
(`segment_id`, /v1/segments), which replaces the criteria: launching such a campaign reaches the
segment's members now, each on the campaign's channels their consent allows (`reached` counts them per
channel; each member's 360 view shows the campaign). A second launch is refused and reaches nobody.

If-Match: closing is REQUIRED (it settles the actual cost against the plan the person saw); launching and
counting responses only move forward or add, so If-Match is accepted but optional.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import marketing as contracts
from crm_gateway.auth import READ, WRITE
from crm_gateway.operation import OPTIONAL, REQUIRED, command, create, listing, read
from crm_gateway.routes.common import Routes, list_call, read_response, resource_response
from crm_gateway.schemas import CampaignQuery, page_of
from crm_gateway.web import endpoint, json_response, load_body, load_query, uuid_path
from crm_runtime.nameko.web import http


def created(campaign: dict[str, Any]) -> Response:
    return resource_response(campaign, 201, f"/v1/campaigns/{campaign['id']}")


class CampaignRoutes(Routes):
    """/v1/campaigns."""

    @http("POST", "/v1/campaigns")
    @endpoint(WRITE)
    def plan_campaign(self, request: Request) -> Response:
        payload = load_body(request, contracts.PlanCampaignRequest)
        return self.once(request, payload, lambda command_id: self.marketing.plan_campaign(payload, command_id),
                         created)

    @http("GET", "/v1/campaigns/<campaign_id>")
    @endpoint(READ)
    def get_campaign(self, request: Request, campaign_id: str) -> Response:
        return read_response(request, self.marketing.get_campaign(uuid_path(campaign_id, "campaign")))

    @http("GET", "/v1/campaigns")
    @endpoint(READ)
    def list_campaigns(self, request: Request) -> Response:
        return json_response(200, self.marketing.list_campaigns(*list_call(load_query(request, CampaignQuery))))

    @http("POST", "/v1/campaigns/<campaign_id>/launch")
    @endpoint(WRITE)
    def launch_campaign(self, request: Request, campaign_id: str) -> Response:
        return self.act(request, campaign_id, "campaign", self.marketing.launch_campaign, if_match=False)

    @http("POST", "/v1/campaigns/<campaign_id>/responses")
    @endpoint(WRITE)
    def record_campaign_response(self, request: Request, campaign_id: str) -> Response:
        return self.act(request, campaign_id, "campaign", self.marketing.record_response,
                        contracts.RecordResponseRequest, if_match=False)

    @http("POST", "/v1/campaigns/<campaign_id>/close")
    @endpoint(WRITE)
    def close_campaign(self, request: Request, campaign_id: str) -> Response:
        return self.act(request, campaign_id, "campaign", self.marketing.close_campaign, contracts.CloseCampaignRequest,
                        if_match=True)

    @http("GET", "/v1/campaigns/<campaign_id>/results")
    @endpoint(READ)
    def campaign_results(self, request: Request, campaign_id: str) -> Response:
        return json_response(200, self.marketing.campaign_results(uuid_path(campaign_id, "campaign")))


SCHEMAS = {
    "Campaign": contracts.CampaignSchema,
    "CampaignResults": contracts.CampaignResultsSchema,
    "CampaignPage": page_of(contracts.CampaignSchema, "CampaignPage"),
    "SegmentRequest": contracts.SegmentRequest,
    "PlanCampaignRequest": contracts.PlanCampaignRequest,
    "RecordResponseRequest": contracts.RecordResponseRequest,
    "CloseCampaignRequest": contracts.CloseCampaignRequest,
}

_TAG = "campaigns"
_ITEM = "/v1/campaigns/{campaign_id}"

OPERATIONS = (
    create("/v1/campaigns", "planCampaign",
           "Plan a campaign: its audience (criteria, or a saved segment by segment_id), channels, schedule, budget",
           _TAG, "Campaign", contracts.PlanCampaignRequest),
    read(_ITEM, "getCampaign", "Get a campaign with its results so far", _TAG, "Campaign"),
    listing("/v1/campaigns", "listCampaigns", "List campaigns, a page at a time, by status", _TAG, "CampaignPage",
            CampaignQuery, "?status=active&page=1&page_size=20"),
    command("post", f"{_ITEM}/launch", "launchCampaign",
            "Launch a planned campaign; one targeting a saved segment reaches its members now, consent allowing",
            _TAG, "Campaign", None, OPTIONAL),
    command("post", f"{_ITEM}/responses", "recordCampaignResponses", "Count responses on one channel", _TAG,
            "Campaign", contracts.RecordResponseRequest, OPTIONAL),
    command("post", f"{_ITEM}/close", "closeCampaign", "Close a campaign with its actual cost", _TAG, "Campaign",
            contracts.CloseCampaignRequest, REQUIRED),
    read(f"{_ITEM}/results", "getCampaignResults",
         "Results: responses, leads, qualified, conversions, attributed revenue, cost per lead, ROI", _TAG,
         "CampaignResults", etag=False),
)
