"""Merges (customer service): fold duplicate customers into one survivor, read a merge, undo it.

A merge is a fact of the customer service (its events; `customer.get_merge` reads its record), named by its
merge id: the client's, or one the service derives from the call. Merging and undoing change who a
customer is in every service, so they take the admin scope; reading a merge takes the read scope.
"""

from __future__ import annotations

import re
from urllib.parse import quote

from werkzeug.wrappers import Request, Response

from crm_contracts import customer as contracts
from crm_gateway.auth import ADMIN, READ
from crm_gateway.errors import ApiError
from crm_gateway.operation import CREATE_ERRORS, EXAMPLE_IDS, READ_ERRORS, Operation
from crm_gateway.routes.common import Answer, Routes, read_response, resource_response
from crm_gateway.web import endpoint, load_body, load_optional_body, uuid_path
from crm_runtime.nameko.web import http

#: A merge id as the contract takes it (MergeCustomersRequest.merge_id).
MERGE_ID_PATTERN = contracts.MERGE_ID_PATTERN
_MERGE_ID = re.compile(MERGE_ID_PATTERN)


def merge_path(value: str) -> str:
    """A path's merge id; 404 for one no merge can have."""
    if not _MERGE_ID.fullmatch(value):
        shown = value if len(value) <= 100 else value[:100] + "..."  # a path of any length is not echoed whole
        raise ApiError(404, "not_found", f"no merge {shown!r}: merge ids are 1-100 letters, digits, '.', '_', ':' "
                                         "or '-'")
    return value


def merge_location(merge: Answer) -> str:
    """The merge's own path (its id percent-encoded: a relative path whatever the id)."""
    return f"/v1/merges/{quote(str(merge['merge_id']), safe='._:-')}"


class MergeRoutes(Routes):
    """/v1/customers/{id}/merges and /v1/merges/{merge_id}: merge, read, undo."""

    @http("POST", "/v1/customers/<customer_id>/merges")
    @endpoint(ADMIN)
    def merge_customers(self, request: Request, customer_id: str) -> Response:
        survivor_id = uuid_path(customer_id)
        payload = load_body(request, contracts.MergeCustomersRequest)
        return self.once(request, payload, lambda command_id: self.customer.merge(survivor_id, payload, command_id),
                         lambda merge: resource_response(merge, 201, merge_location(merge)))

    @http("GET", "/v1/merges/<merge_id>")
    @endpoint(READ)
    def get_merge(self, request: Request, merge_id: str) -> Response:
        return read_response(request, self.customer.get_merge(merge_path(merge_id)))

    @http("POST", "/v1/merges/<merge_id>/undo")
    @endpoint(ADMIN)
    def undo_merge(self, request: Request, merge_id: str) -> Response:
        merge_id = merge_path(merge_id)
        payload = load_optional_body(request, contracts.UnmergeRequest)
        return self.once(request, payload, lambda command_id: self.customer.unmerge(merge_id, payload, command_id))


SCHEMAS = {
    "MergeCustomersRequest": contracts.MergeCustomersRequest,
    "UnmergeRequest": contracts.UnmergeRequest,
    "Merge": contracts.MergeSchema,
}

_SURVIVOR = EXAMPLE_IDS["customer_id"]
_ABSORBED = "0b9c8d7e-2e1a-4f6b-9c7d-3f2b8c1e5d4a"
_MERGE = "merge-2026-0007"

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post", "/v1/customers/{customer_id}/merges", "mergeCustomers",
        "Merge duplicate customers into this one (the survivor); undo it with POST /v1/merges/{merge_id}/undo",
        ADMIN, 201, "Merge", CREATE_ERRORS,
        f"POST /v1/customers/{_SURVIVOR}/merges\nIdempotency-Key: 4d2a-merge-li-na\n\n"
        f'{{"absorb": ["{_ABSORBED}"], "merge_id": "{_MERGE}"}}\n\n'
        "Each absorbed customer is published as customer_merged: every service re-points what it holds to the "
        "survivor, and the absorbed ids answer 308 to the survivor. A survivor that was merged itself stands for "
        "its final survivor. On the survivor, per consent channel the most restrictive consent wins (a channel "
        "any absorbed customer has not granted is withdrawn; an unmerge restores it unless it was recorded anew "
        "since). The survivor among `absorb` is 422; an erased customer, or one merged elsewhere already, is 409; "
        "an unknown one 404. The same `merge_id` for the same customers answers that merge; for others it is 409",
        body="MergeCustomersRequest", body_example={"absorb": [_ABSORBED], "merge_id": _MERGE},
        idempotent=True, ok_headers=("ETag", "Location"), path_params=("customer_id",), tag="merges",
    ),
    Operation(
        "get", "/v1/merges/{merge_id}", "getMerge", "A merge: its survivor, whom it absorbed, who was given back",
        READ, 200, "Merge", READ_ERRORS, f"GET /v1/merges/{_MERGE}", ok_headers=("ETag",), path_params=("merge_id",),
        tag="merges", not_modified=True,
    ),
    Operation(
        "post", "/v1/merges/{merge_id}/undo", "undoMerge",
        "Undo a merge, for every customer it absorbed or only `customer_ids`", ADMIN, 200, "Merge",
        (400, 401, 403, 404, 409, 413, 415, 422, 503),
        f"POST /v1/merges/{_MERGE}/undo\nIdempotency-Key: 9e1b-unmerge-li-na\n\n"
        f'{{"customer_ids": ["{_ABSORBED}"]}}\n\n'
        "Each customer given back is published as customer_unmerged: every service gives it back what it "
        "re-pointed under this merge; what was recorded on the survivor since stays with the survivor. Without a "
        "body, every customer of the merge. Asking again changes nothing. 409 while the survivor is merged into "
        "another (unmerge the later merge first) or when either side was erased",
        body="UnmergeRequest", body_example={"customer_ids": [_ABSORBED]}, body_optional=True,
        idempotent=True, ok_headers=("ETag",), path_params=("merge_id",), tag="merges",
    ),
)
