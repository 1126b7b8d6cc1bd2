"""Reports for managers, each as JSON or CSV (`?format=csv`): the funnel by lifecycle stage, satisfaction by
department and agent group, SLA compliance, sales reps by revenue and their customers' satisfaction and
cohort retention (customer360, over the 360 views); the pipeline and the forecast (sales) and campaign
ROI (marketing), tabulated here from those services' own figures."""

from __future__ import annotations

import csv
import io
from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import analytics as contracts
from crm_gateway.auth import READ
from crm_gateway.errors import ApiError
from crm_gateway.operation import Operation
from crm_gateway.routes.common import Routes
from crm_gateway.web import endpoint, json_response, load_query
from crm_runtime.nameko.web import http

#: Marketing lists at most this many campaigns a page; the report reads them all, page by page.
CAMPAIGN_PAGE = 100
#: Cells a spreadsheet would read as a formula start with one of these: CSV answers quote them with '.
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_TOTALS = ["count", "amount", "weighted_amount"]


#: The reports customer360 builds over its views (crm_customer360.reports).
VIEW_REPORTS = ("funnel", "satisfaction", "sla", "reps", "cohorts", "analytics")


class ReportRoutes(Routes):
    """/v1/reports: tables for managers, JSON or CSV."""

    @http("GET", "/v1/reports/<report>")
    @endpoint(READ)
    def get_report(self, request: Request, report: str) -> Response:
        if report not in contracts.REPORT_NAMES:
            raise ApiError(404, "not_found", f"no report {report!r}: one of {', '.join(contracts.REPORT_NAMES)}")
        load_query(request, contracts.ReportQuery)  # a bad format is 422 before any service is asked
        if report in VIEW_REPORTS:
            return answer(request, self.customer360.report(report))
        if report == "campaigns":
            return answer(request, report_table("campaigns", CAMPAIGN_COLUMNS, self._campaign_rows()))
        key, totals = ("stage", self.sales.pipeline()) if report == "pipeline" else \
            ("close_month", self.sales.forecast_by_month())
        rows = [{key: r["key"], "currency": r["currency"], **{k: r[k] for k in _TOTALS}} for r in totals]
        return answer(request, report_table(report, [key, "currency", *_TOTALS], rows))

    def _campaign_rows(self) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        page = 1
        while True:
            found = self.marketing.list_campaigns({}, page, CAMPAIGN_PAGE)
            rows += [campaign_row(campaign) for campaign in found["items"]]
            if not found["items"] or page * CAMPAIGN_PAGE >= found["total"]:
                return rows
            page += 1


CAMPAIGN_COLUMNS = ["campaign_id", "name", "status", "currency", "budget", "responses", "leads", "qualified_leads",
                    "conversions", "attributed_revenue", "cost", "cost_per_lead", "roi_percent"]


def campaign_row(campaign: dict[str, Any]) -> dict[str, Any]:
    results = campaign.get("results") or {}
    return {"campaign_id": campaign["id"], "name": campaign.get("name"), "status": campaign.get("status"),
            "currency": campaign.get("currency"), "budget": campaign.get("budget"),
            **{k: results.get(k) for k in CAMPAIGN_COLUMNS[5:]}}


def report_table(name: str, columns: list[str], rows: list[dict[str, Any]]) -> dict[str, Any]:
    return {"report": name, "as_of": None, "columns": columns, "rows": rows}


def answer(request: Request, report: dict[str, Any]) -> Response:
    """The report as JSON, or as CSV (a header of the columns, then the rows) with `?format=csv`."""
    if load_query(request, contracts.ReportQuery)["format"] == "json":
        return json_response(200, report)
    return csv_response(report["report"], report["columns"], report["rows"])


def csv_response(name: str, columns: list[str], rows: list[dict[str, Any]]) -> Response:
    """Rows as CSV (RFC 4180, CRLF), a header of the columns first, downloaded as `<name>.csv`."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(column)) for column in columns])
    return Response(out.getvalue(), status=200, mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return f"'{text}" if text.startswith(_FORMULA_START) else text


SCHEMAS = {"Report": contracts.ReportSchema}


_DESCRIPTIONS = {
    "funnel": "customers who reached each lifecycle stage and the conversion from the stage before, per month of "
              "entry (and `all`)",
    "satisfaction": "customer satisfaction index of surveyed cases by department and agent group",
    "sla": "SLA compliance: cases by department and priority, those that missed a deadline",
    "reps": "sales reps by won revenue beside the satisfaction of the customers they won",
    "cohorts": "cohort retention: customers by month of first paid order and the share buying in each month after",
    "analytics": "the base by its analytics: CLV distribution (migration model), RFM grid (R by FM), loyalty type "
                 "by churn risk",
    "pipeline": "open pipeline by stage and currency, with the probability-weighted amount (sales)",
    "forecast": "open opportunities by expected close month, weighted by probability (sales)",
    "campaigns": "campaign ROI: responses, leads, conversions, attributed revenue, cost and return (marketing)",
}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get", "/v1/reports/{report}", "getReport", "A report for managers, as JSON or CSV", READ, 200, "Report",
        (401, 403, 404, 422, 503),
        "GET /v1/reports/funnel\n\nAs CSV: GET /v1/reports/funnel?format=csv\n\nThe reports:\n\n"
        + "\n".join(f"- `{name}`: {text}" for name, text in _DESCRIPTIONS.items()),
        query=contracts.ReportQuery, path_params=("report",), tag="reports", csv=True,
    ),
)
