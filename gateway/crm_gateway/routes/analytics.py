"""Analytics on the 360 view (customer360): customers by lifetime value, RFM segment, loyalty type and
churn risk, and the admin refresh of the analytics. One customer's figures are in GET /v1/customers/{id}/360.
Formulas and thresholds: services/customer360/ANALYTICS.md."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import analytics as contracts
from crm_gateway.auth import ADMIN, READ
from crm_gateway.operation import QUERY_ERRORS, Operation
from crm_gateway.routes.common import Routes
from crm_gateway.routes.reports import csv_response
from crm_gateway.web import endpoint, json_response, load_query
from crm_runtime.nameko.web import http


class AnalyticsRoutes(Routes):
    """/v1/analytics: the customer base judged by its analytics."""

    @http("GET", "/v1/analytics/customers")
    @endpoint(READ)
    def customers_by_analytics(self, request: Request) -> Response:
        query = load_query(request, contracts.AnalyticsQuery)
        filters = {name: (str(value) if value is not None else None) for name, value in query.items()
                   if name not in ("page", "page_size", "format")}
        if query["format"] == "json":
            return json_response(200, self.customer360.customer_analytics(filters, query["page"], query["page_size"]))
        return customers_csv("customers", lambda page, size: self.customer360.customer_analytics(filters, page, size))

    @http("POST", "/v1/admin/refresh-analytics")
    @endpoint(ADMIN)
    def refresh_analytics(self, request: Request) -> Response:
        return self.idempotency.run(
            request, {}, lambda _command_id: json_response(200, self.customer360_admin.refresh_analytics())
        )


def customers_csv(filename: str, page_of: Callable[[int, int], dict[str, Any]]) -> Response:
    """Every customer that `page_of(page, page_size)` pages through (a 360 page: `items`, `total`), read
    page by page up to the export cap, as a CSV of EXPORT_COLUMNS."""
    rows: list[dict[str, Any]] = []
    page = 1
    while len(rows) < contracts.MAX_EXPORT_ROWS:
        found = page_of(page, contracts.MAX_ANALYTICS_PAGE_SIZE)
        rows += found["items"]
        if not found["items"] or page * contracts.MAX_ANALYTICS_PAGE_SIZE >= found["total"]:
            break
        page += 1
    return csv_response(filename, EXPORT_COLUMNS, rows[: contracts.MAX_EXPORT_ROWS])


EXPORT_COLUMNS = ["customer_id", "name", "email", "lifecycle_stage", "as_of", "rfm_segment", "loyalty_type",
                  "churn_risk", "retention_clv", "migration_clv", "historic_value"]

SCHEMAS = {
    "CustomerAnalytics": contracts.CustomerAnalyticsSchema,
    "AnalyticsPage": contracts.AnalyticsPageSchema,
    "AnalyticsRefresh": contracts.AnalyticsRefreshSchema,
}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get", "/v1/analytics/customers", "customersByAnalytics",
        "Customers filtered by RFM segment, loyalty type, churn risk and lifetime value (migration model), "
        "highest lifetime value first", READ, 200, "AnalyticsPage", QUERY_ERRORS,
        "GET /v1/analytics/customers?loyalty_type=super_value&churn_risk=low&clv_min=1000.00&page=1&page_size=20\n\n"
        "A segment of customers who agreed to email, at risk, as CSV (every match, up to 10,000):\n\n"
        "GET /v1/analytics/customers?consent=email&lifecycle_stage=at_risk&format=csv\n\n"
        "Every filter is optional; filters combine with AND. The figures are as of each item's `as_of`, against "
        "the model of the customer base estimated as of `model_as_of` (refreshed hourly and by "
        "POST /v1/admin/refresh-analytics)",
        query=contracts.AnalyticsQuery, tag="analytics", csv=True,
    ),
    Operation(
        "post", "/v1/admin/refresh-analytics", "refreshAnalytics",
        "Re-estimate the analytics' model of the customer base as of now and recompute every customer's figures "
        "(and move the 360 view's clock to the same instant)", ADMIN, 200, "AnalyticsRefresh",
        (400, 401, 403, 409, 422, 503), "POST /v1/admin/refresh-analytics", idempotent=True, tag="admin",
    ),
)
