"""Leads (marketing service): capture, read, list, engagement, rescore, grade, qualify, disqualify, convert.

If-Match: grading, qualifying, disqualifying and converting are REQUIRED (a person judges the lead they
saw; converting hands it to sales once). Engagements only add and rescoring recomputes from what is
recorded, so there If-Match is accepted but optional.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import marketing as contracts
from crm_gateway.auth import READ, WRITE
from crm_gateway.operation import OPTIONAL, REQUIRED, command, create, listing, read
from crm_gateway.routes.common import Routes, list_call, read_response, resource_response
from crm_gateway.schemas import LeadQuery, page_of
from crm_gateway.web import endpoint, json_response, load_body, load_query, uuid_path
from crm_runtime.nameko.web import http


def created(lead: dict[str, Any]) -> Response:
    return resource_response(lead, 201, f"/v1/leads/{lead['id']}")


class LeadRoutes(Routes):
    """/v1/leads."""

    @http("POST", "/v1/leads")
    @endpoint(WRITE)
    def capture_lead(self, request: Request) -> Response:
        payload = load_body(request, contracts.CaptureLeadRequest)
        return self.once(request, payload, lambda command_id: self.marketing.capture_lead(payload, command_id), created)

    @http("GET", "/v1/leads/<lead_id>")
    @endpoint(READ)
    def get_lead(self, request: Request, lead_id: str) -> Response:
        return read_response(request, self.marketing.get_lead(uuid_path(lead_id, "lead")))

    @http("GET", "/v1/leads")
    @endpoint(READ)
    def list_leads(self, request: Request) -> Response:
        return json_response(200, self.marketing.list_leads(*list_call(load_query(request, LeadQuery))))

    @http("POST", "/v1/leads/<lead_id>/engagements")
    @endpoint(WRITE)
    def record_engagement(self, request: Request, lead_id: str) -> Response:
        return self.act(request, lead_id, "lead", self.marketing.record_engagement, contracts.RecordEngagementRequest,
                        if_match=False)

    @http("POST", "/v1/leads/<lead_id>/rescore")
    @endpoint(WRITE)
    def rescore_lead(self, request: Request, lead_id: str) -> Response:
        return self.act(request, lead_id, "lead", self.marketing.rescore_lead, if_match=False)

    @http("PUT", "/v1/leads/<lead_id>/grade")
    @endpoint(WRITE)
    def grade_lead(self, request: Request, lead_id: str) -> Response:
        return self.act(request, lead_id, "lead", self.marketing.grade_lead, contracts.GradeLeadRequest,
                        if_match=True)

    @http("POST", "/v1/leads/<lead_id>/qualify")
    @endpoint(WRITE)
    def qualify_lead(self, request: Request, lead_id: str) -> Response:
        return self.act(request, lead_id, "lead", self.marketing.qualify_lead, contracts.QualifyLeadRequest,
                        if_match=True)

    @http("POST", "/v1/leads/<lead_id>/disqualify")
    @endpoint(WRITE)
    def disqualify_lead(self, request: Request, lead_id: str) -> Response:
        return self.act(request, lead_id, "lead", self.marketing.disqualify_lead, contracts.DisqualifyLeadRequest,
                        if_match=True)

    @http("POST", "/v1/leads/<lead_id>/convert")
    @endpoint(WRITE)
    def convert_lead(self, request: Request, lead_id: str) -> Response:
        return self.act(request, lead_id, "lead", self.marketing.convert_lead, contracts.ConvertLeadRequest,
                        if_match=True)



SCHEMAS = {
    "Lead": contracts.LeadSchema,
    "LeadPage": page_of(contracts.LeadSchema, "LeadPage"),
    "CaptureLeadRequest": contracts.CaptureLeadRequest,
    "RecordEngagementRequest": contracts.RecordEngagementRequest,
    "GradeLeadRequest": contracts.GradeLeadRequest,
    "QualifyLeadRequest": contracts.QualifyLeadRequest,
    "DisqualifyLeadRequest": contracts.DisqualifyLeadRequest,
    "ConvertLeadRequest": contracts.ConvertLeadRequest,
}

_TAG = "leads"
_ITEM = "/v1/leads/{lead_id}"

OPERATIONS = (
    create("/v1/leads", "captureLead", "Capture a lead (from a web form, an event, a campaign reply...); it is "
           "scored at once. Give an email or a phone", _TAG, "Lead", contracts.CaptureLeadRequest),
    read(_ITEM, "getLead", "Get a lead: status, score, grade, conversion", _TAG, "Lead"),
    listing("/v1/leads", "listLeads", "List leads, a page at a time, by status, campaign, grade or customer", _TAG,
            "LeadPage", LeadQuery, "?status=qualified&grade=key&page=1&page_size=20"),
    command("post", f"{_ITEM}/engagements", "recordLeadEngagement", "Record an engagement (open, visit, reply)",
            _TAG, "Lead", contracts.RecordEngagementRequest, OPTIONAL),
    command("post", f"{_ITEM}/rescore", "rescoreLead", "Recompute the lead's score", _TAG, "Lead", None, OPTIONAL),
    command("put", f"{_ITEM}/grade", "gradeLead", "Grade a lead", _TAG, "Lead", contracts.GradeLeadRequest, REQUIRED),
    command("post", f"{_ITEM}/qualify", "qualifyLead", "Qualify a lead", _TAG, "Lead", contracts.QualifyLeadRequest,
            REQUIRED),
    command("post", f"{_ITEM}/disqualify", "disqualifyLead", "Disqualify a lead, with the reason", _TAG, "Lead",
            contracts.DisqualifyLeadRequest, REQUIRED),
    command("post", f"{_ITEM}/convert", "convertLead",
            "Convert a qualified lead: the customer is registered or linked and sales opens the opportunity",
            _TAG, "Lead", contracts.ConvertLeadRequest, REQUIRED),
)
