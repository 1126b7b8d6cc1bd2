"""Opportunities (sales service): open, read, list; stage, amount, close date, owner; quotes sent, accepted
and rejected; won and lost; and the pipeline, the forecast by month and by rep, and the win rate.

If-Match is REQUIRED on every command here: each is a person's decision on the opportunity they saw
(sending a quote supersedes the one before it).
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import sales as contracts
from crm_gateway.auth import READ, WRITE
from crm_gateway.operation import REQUIRED, command, create, listing, read
from crm_gateway.routes.common import Routes, list_call, read_response, resource_response
from crm_gateway.schemas import OpportunityQuery, WinRateQuery, page_of
from crm_gateway.web import endpoint, if_match_version, json_response, load_body, load_query, uuid_path
from crm_runtime.nameko.web import http


def created(opportunity: dict[str, Any]) -> Response:
    return resource_response(opportunity, 201, f"/v1/opportunities/{opportunity['id']}")


class OpportunityRoutes(Routes):
    """/v1/opportunities and /v1/sales (pipeline figures)."""

    @http("POST", "/v1/opportunities")
    @endpoint(WRITE)
    def open_opportunity(self, request: Request) -> Response:
        payload = load_body(request, contracts.OpenOpportunityRequest)
        return self.once(request, payload, lambda command_id: self.sales.open_opportunity(payload, command_id),
                         created)

    @http("GET", "/v1/opportunities/<opportunity_id>")
    @endpoint(READ)
    def get_opportunity(self, request: Request, opportunity_id: str) -> Response:
        return read_response(request, self.sales.get_opportunity(uuid_path(opportunity_id, "opportunity")))

    @http("GET", "/v1/opportunities")
    @endpoint(READ)
    def list_opportunities(self, request: Request) -> Response:
        return json_response(200, self.sales.list_opportunities(*list_call(load_query(request, OpportunityQuery))))

    @http("PUT", "/v1/opportunities/<opportunity_id>/stage")
    @endpoint(WRITE)
    def move_stage(self, request: Request, opportunity_id: str) -> Response:
        return self.act(request, opportunity_id, "opportunity", self.sales.move_stage, contracts.MoveStageRequest,
                        if_match=True)

    @http("PUT", "/v1/opportunities/<opportunity_id>/amount")
    @endpoint(WRITE)
    def change_amount(self, request: Request, opportunity_id: str) -> Response:
        return self.act(request, opportunity_id, "opportunity", self.sales.change_amount, contracts.ChangeAmountRequest,
                        if_match=True)

    @http("PUT", "/v1/opportunities/<opportunity_id>/close-date")
    @endpoint(WRITE)
    def change_close_date(self, request: Request, opportunity_id: str) -> Response:
        return self.act(request, opportunity_id, "opportunity", self.sales.change_expected_close_date,
                        contracts.ChangeExpectedCloseDateRequest, if_match=True)

    @http("PUT", "/v1/opportunities/<opportunity_id>/owner")
    @endpoint(WRITE)
    def reassign(self, request: Request, opportunity_id: str) -> Response:
        return self.act(request, opportunity_id, "opportunity", self.sales.reassign, contracts.ReassignRequest,
                        if_match=True)

    @http("POST", "/v1/opportunities/<opportunity_id>/quotes")
    @endpoint(WRITE)
    def send_quote(self, request: Request, opportunity_id: str) -> Response:
        return self.act(request, opportunity_id, "opportunity", self.sales.send_quote, contracts.SendQuoteRequest,
                        if_match=True)

    @http("POST", "/v1/opportunities/<opportunity_id>/quotes/<quote_id>/accept")
    @endpoint(WRITE)
    def accept_quote(self, request: Request, opportunity_id: str, quote_id: str) -> Response:
        opportunity_id, quote_id = uuid_path(opportunity_id, "opportunity"), uuid_path(quote_id, "quote")
        expected = if_match_version(request, required=True)
        return self.once(request, {}, lambda command_id: self.sales.accept_quote(
            opportunity_id, quote_id, expected, command_id=command_id))

    @http("POST", "/v1/opportunities/<opportunity_id>/quotes/<quote_id>/reject")
    @endpoint(WRITE)
    def reject_quote(self, request: Request, opportunity_id: str, quote_id: str) -> Response:
        opportunity_id, quote_id = uuid_path(opportunity_id, "opportunity"), uuid_path(quote_id, "quote")
        expected = if_match_version(request, required=True)
        payload = load_body(request, contracts.RejectQuoteRequest)
        return self.once(request, payload, lambda command_id: self.sales.reject_quote(
            opportunity_id, quote_id, payload, expected, command_id=command_id))

    @http("POST", "/v1/opportunities/<opportunity_id>/win")
    @endpoint(WRITE)
    def win(self, request: Request, opportunity_id: str) -> Response:
        return self.act(request, opportunity_id, "opportunity", self.sales.win, if_match=True)

    @http("POST", "/v1/opportunities/<opportunity_id>/lose")
    @endpoint(WRITE)
    def lose(self, request: Request, opportunity_id: str) -> Response:
        return self.act(request, opportunity_id, "opportunity", self.sales.lose, contracts.LoseOpportunityRequest,
                        if_match=True)


    # --- pipeline figures -----------------------------------------------------------------------

    @http("GET", "/v1/sales/pipeline")
    @endpoint(READ)
    def pipeline(self, request: Request) -> Response:
        return json_response(200, self.sales.pipeline())

    @http("GET", "/v1/sales/forecast/by-month")
    @endpoint(READ)
    def forecast_by_month(self, request: Request) -> Response:
        return json_response(200, self.sales.forecast_by_month())

    @http("GET", "/v1/sales/forecast/by-rep")
    @endpoint(READ)
    def forecast_by_rep(self, request: Request) -> Response:
        return json_response(200, self.sales.forecast_by_rep())

    @http("GET", "/v1/sales/win-rate")
    @endpoint(READ)
    def win_rate(self, request: Request) -> Response:
        return json_response(200, self.sales.win_rate(load_query(request, WinRateQuery).get("owner")))


SCHEMAS = {
    "Opportunity": contracts.OpportunitySchema,
    "OpportunityPage": page_of(contracts.OpportunitySchema, "OpportunityPage"),
    "PipelineTotals": contracts.PipelineTotalsSchema,
    "WinRate": contracts.WinRateSchema,
    "OpenOpportunityRequest": contracts.OpenOpportunityRequest,
    "MoveStageRequest": contracts.MoveStageRequest,
    "ChangeAmountRequest": contracts.ChangeAmountRequest,
    "ChangeExpectedCloseDateRequest": contracts.ChangeExpectedCloseDateRequest,
    "ReassignRequest": contracts.ReassignRequest,
    "SendQuoteRequest": contracts.SendQuoteRequest,
    "RejectQuoteRequest": contracts.RejectQuoteRequest,
    "LoseOpportunityRequest": contracts.LoseOpportunityRequest,
}

_TAG = "opportunities"
_ITEM = "/v1/opportunities/{opportunity_id}"
_QUOTE = f"{_ITEM}/quotes/{{quote_id}}"

OPERATIONS = (
    create("/v1/opportunities", "openOpportunity", "Open an opportunity for a customer", _TAG, "Opportunity",
           contracts.OpenOpportunityRequest),
    read(_ITEM, "getOpportunity", "Get an opportunity with its stage history and quotes", _TAG, "Opportunity"),
    listing("/v1/opportunities", "listOpportunities",
            "List opportunities, a page at a time, by stage, owner, customer or status (open, won, lost)", _TAG,
            "OpportunityPage", OpportunityQuery, "?owner=rep-wang-wei&status=open&page=1&page_size=20"),
    command("put", f"{_ITEM}/stage", "moveOpportunityStage", "Move to an open stage", _TAG, "Opportunity",
            contracts.MoveStageRequest, REQUIRED),
    command("put", f"{_ITEM}/amount", "changeOpportunityAmount", "Revise the estimated amount", _TAG, "Opportunity",
            contracts.ChangeAmountRequest, REQUIRED),
    command("put", f"{_ITEM}/close-date", "changeOpportunityCloseDate", "Move the expected close date", _TAG,
            "Opportunity", contracts.ChangeExpectedCloseDateRequest, REQUIRED),
    command("put", f"{_ITEM}/owner", "reassignOpportunity", "Hand the opportunity to another rep", _TAG,
            "Opportunity", contracts.ReassignRequest, REQUIRED),
    command("post", f"{_ITEM}/quotes", "sendQuote",
            "Send a quote version (it supersedes the previous one; the answer's last quote is the new one)", _TAG,
            "Opportunity", contracts.SendQuoteRequest, REQUIRED),
    command("post", f"{_QUOTE}/accept", "acceptQuote", "Record the customer's acceptance of a quote", _TAG,
            "Opportunity", None, REQUIRED),
    command("post", f"{_QUOTE}/reject", "rejectQuote", "Record the customer's rejection of a quote", _TAG,
            "Opportunity", contracts.RejectQuoteRequest, REQUIRED),
    command("post", f"{_ITEM}/win", "winOpportunity", "Close as won (the accepted quote becomes the order)", _TAG,
            "Opportunity", None, REQUIRED),
    command("post", f"{_ITEM}/lose", "loseOpportunity", "Close as lost, with the reason", _TAG, "Opportunity",
            contracts.LoseOpportunityRequest, REQUIRED),
    read("/v1/sales/pipeline", "getPipeline", "Open opportunities by stage and currency (`key` is the stage)", _TAG,
         "PipelineTotals[]", etag=False),
    read("/v1/sales/forecast/by-month", "getForecastByMonth",
         "Open opportunities by expected close month (`key` is YYYY-MM) and currency", _TAG, "PipelineTotals[]",
         etag=False),
    read("/v1/sales/forecast/by-rep", "getForecastByRep", "Open opportunities by owning rep and currency", _TAG,
         "PipelineTotals[]", etag=False),
    read("/v1/sales/win-rate", "getWinRate", "Won and lost counts and the win rate, for everyone or one rep", _TAG,
         "WinRate", etag=False, query=WinRateQuery, query_example="?owner=rep-wang-wei"),
)
