"""Saved segments (customer360): named criteria over the 360 view's fields — stage, RFM segment, CLV,
loyalty type, churn risk, tier, grade, consent per channel, the consent a campaign channel needs — with
their members now, a page at a time or exported as CSV."""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import analytics as contracts
from crm_gateway.auth import READ, WRITE
from crm_gateway.operation import CREATE_ERRORS, READ_ERRORS, WRITE_ERRORS, Operation, example_of
from crm_gateway.routes.analytics import customers_csv
from crm_gateway.routes.common import Routes, resource_response
from crm_gateway.web import endpoint, json_response, load_body, load_query, uuid_path
from crm_runtime.nameko.web import http

_SEGMENT = "6d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


class SegmentRoutes(Routes):
    """/v1/segments: saved segments of customers and their members."""

    @http("POST", "/v1/segments")
    @endpoint(WRITE)
    def save_segment(self, request: Request) -> Response:
        payload = load_body(request, contracts.SaveSegmentRequest)
        sent = {"name": payload["name"], "criteria": criteria_of(payload["criteria"])}
        # A saved segment never changes (delete it and save another): its ETag is always "1".
        return self.once(request, sent, lambda command_id: self.customer360.save_segment(sent, command_id),
                         lambda segment: resource_response(segment, 201, f"/v1/segments/{segment['id']}", version=1))

    @http("GET", "/v1/segments")
    @endpoint(READ)
    def list_segments(self, request: Request) -> Response:
        return json_response(200, self.customer360.list_segments())

    @http("GET", "/v1/segments/<segment_id>")
    @endpoint(READ)
    def get_segment(self, request: Request, segment_id: str) -> Response:
        return json_response(200, self.customer360.get_segment(uuid_path(segment_id, "segment")))

    @http("DELETE", "/v1/segments/<segment_id>")
    @endpoint(WRITE)
    def delete_segment(self, request: Request, segment_id: str) -> Response:
        checked = uuid_path(segment_id, "segment")
        return self.once(request, {}, lambda _command_id: self.customer360.delete_segment(checked) or {},
                         lambda _: Response(status=204))

    @http("GET", "/v1/segments/<segment_id>/members")
    @endpoint(READ)
    def segment_members(self, request: Request, segment_id: str) -> Response:
        checked = uuid_path(segment_id, "segment")
        query = load_query(request, contracts.MembersQuery)
        if query["format"] == "json":
            return json_response(200, self.customer360.segment_members(checked, query["page"], query["page_size"]))
        return customers_csv("segment", lambda page, size: self.customer360.segment_members(checked, page, size))


def criteria_of(loaded: dict[str, Any]) -> dict[str, str]:
    """Loaded criteria as the service takes them: those given, as strings (amounts stay exact)."""
    return {name: str(value) for name, value in loaded.items() if value is not None}


SCHEMAS = {
    "SegmentCriteria": contracts.SegmentCriteria,
    "SaveSegmentRequest": contracts.SaveSegmentRequest,
    "Segment": contracts.SegmentSchema,
    "SegmentList": contracts.SegmentListSchema,
}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post", "/v1/segments", "saveSegment", "Save a segment: named criteria over the 360 view's fields", WRITE, 201,
        "Segment", CREATE_ERRORS,
        'POST /v1/segments\n\n{"name": "Loyal, reachable by email", "criteria": {"loyalty_type": "super_value", '
        '"campaign_channel": "email"}}\n\nThe answer counts the members now (`members`)',
        body="SaveSegmentRequest", body_example=example_of(contracts.SaveSegmentRequest), idempotent=True,
        ok_headers=("ETag", "Location"), tag="segments",
    ),
    Operation(
        "get", "/v1/segments", "listSegments", "Every saved segment with its members counted now", READ, 200,
        "SegmentList", (401, 403, 503), "GET /v1/segments", tag="segments",
    ),
    Operation(
        "get", "/v1/segments/{segment_id}", "getSegment", "A saved segment with its members counted now", READ, 200,
        "Segment", READ_ERRORS, f"GET /v1/segments/{_SEGMENT}", path_params=("segment_id",), tag="segments",
    ),
    Operation(
        "delete", "/v1/segments/{segment_id}", "deleteSegment", "Delete a saved segment", WRITE, 204, None,
        WRITE_ERRORS, f"DELETE /v1/segments/{_SEGMENT}", path_params=("segment_id",), idempotent=True,
        tag="segments",
    ),
    Operation(
        "get", "/v1/segments/{segment_id}/members", "getSegmentMembers",
        "The customers matching a segment now, highest lifetime value first: a page, or every one as CSV", READ, 200,
        "AnalyticsPage", (*READ_ERRORS, 422),
        f"GET /v1/segments/{_SEGMENT}/members?page=1&page_size=20\n\nAs CSV (every member, up to 10,000): "
        f"GET /v1/segments/{_SEGMENT}/members?format=csv",
        query=contracts.MembersQuery, path_params=("segment_id",), tag="segments", csv=True,
    ),
)
