"""Candidate duplicates (customer360): of one customer, every pair (the batch check), and the warning a
registration answers with. Read-only: merging is an operator's decision."""

from __future__ import annotations

import logging
from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import duplicates as contracts
from crm_contracts.errors import ServiceError
from crm_gateway.auth import READ
from crm_gateway.operation import EXAMPLE_IDS, Operation
from crm_gateway.routes.common import Routes
from crm_gateway.web import endpoint, json_response, load_query, uuid_path
from crm_runtime import config
from crm_runtime.nameko.client import ServiceFailedError, ServiceUnavailableError
from crm_runtime.nameko.web import http

log = logging.getLogger(__name__)

#: Candidates a registration's answer names at most.
WARN_AT_MOST = 5
#: Whether a registration's answer is checked for duplicates (two indexed lookups in the 360 view, about
#: 30 ms at 100,000 customers on the reference machine): DUPLICATE_CHECK_ON_REGISTER.
CHECK_ON_REGISTER = config.setting("DUPLICATE_CHECK_ON_REGISTER", "true").lower() in {"1", "true", "yes", "on"}


class DuplicateRoutes(Routes):
    """/v1/customers/{id}/duplicates and /v1/duplicates."""

    @http("GET", "/v1/customers/<customer_id>/duplicates")
    @endpoint(READ)
    def duplicates_of_customer(self, request: Request, customer_id: str) -> Response:
        query = load_query(request, contracts.DuplicatesQuery)
        return json_response(200, self.customer360.duplicates_of(uuid_path(customer_id), query["threshold"],
                                                                 query["limit"]))

    @http("GET", "/v1/duplicates")
    @endpoint(READ)
    def duplicate_pairs(self, request: Request) -> Response:
        query = load_query(request, contracts.DuplicatePairsQuery)
        return json_response(200, self.customer360.duplicate_pairs(query["threshold"], query["page"],
                                                                   query["page_size"]))

    def with_duplicate_warning(self, customer: dict[str, Any], fields: dict[str, Any]) -> dict[str, Any]:
        """A registration's answer with the customers it may duplicate (`possible_duplicates`): a warning,
        never a refusal or a merge. Left out when the 360 view cannot be asked (the registration stands)."""
        if not CHECK_ON_REGISTER:
            return customer
        try:
            found = self.customer360.find_duplicates(fields, customer.get("id"), WARN_AT_MOST)
        except (ServiceError, ServiceUnavailableError, ServiceFailedError) as error:
            log.warning("registration %s: duplicates not checked: %s", customer.get("id"), error)
            return customer
        return {**customer, "possible_duplicates": found} if isinstance(found, list) and found else customer


_CUSTOMER = EXAMPLE_IDS["customer_id"]

SCHEMAS = {
    "Duplicates": contracts.DuplicatesSchema,
    "DuplicatePairsPage": contracts.DuplicatePairsPageSchema,
}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get", "/v1/customers/{customer_id}/duplicates", "getDuplicatesOfCustomer",
        "Customers who may be the same person: same normalised email, same phone (E.164), similar name and "
        "company; with reasons and a score", READ, 200, "Duplicates", (401, 403, 404, 422, 503),
        f"GET /v1/customers/{_CUSTOMER}/duplicates?threshold=0.6", query=contracts.DuplicatesQuery,
        path_params=("customer_id",), tag="customers",
    ),
    Operation(
        "get", "/v1/duplicates", "listDuplicatePairs", "Every candidate pair of duplicates, best first (batch check)",
        READ, 200, "DuplicatePairsPage", (401, 403, 422, 503), "GET /v1/duplicates?threshold=0.7&page=1&page_size=20",
        query=contracts.DuplicatePairsQuery, tag="customers",
    ),
)
