"""Cases (service service): open from an email, web form, phone call or chat (classified, routed and
acknowledged at once), read, list; respond, assign, escalate, reclassify, resolve, close, reopen; the
complaint steps; the case's survey; FAQ suggestions for a case; surveys after a delivery; and a customer's
satisfaction index.

If-Match: reclassifying, resolving, closing, reopening, and assessing and summarising a complaint are
REQUIRED (a person decides on the case they saw). Responses, assignment, escalation, flagging a complaint
and survey answers add to the case, so If-Match is accepted but optional.
"""

from __future__ import annotations

from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import service as contracts
from crm_gateway.auth import READ, WRITE
from crm_gateway.operation import OPTIONAL, REQUIRED, command, create, listing, read
from crm_gateway.routes.common import Routes, list_call, read_response, resource_response
from crm_gateway.schemas import CaseQuery, page_of
from crm_gateway.web import endpoint, json_response, load_body, load_query, uuid_path
from crm_runtime.nameko.web import http


def created(case: dict[str, Any]) -> Response:
    return resource_response(case, 201, f"/v1/cases/{case['id']}")


class CaseRoutes(Routes):
    """/v1/cases, /v1/surveys and /v1/customers/{id}/satisfaction."""

    @http("POST", "/v1/cases")
    @endpoint(WRITE)
    def open_case(self, request: Request) -> Response:
        payload = load_body(request, contracts.OpenCaseRequest)
        return self.once(request, payload, lambda command_id: self.service.open_case(payload, command_id), created)

    @http("GET", "/v1/cases/<case_id>")
    @endpoint(READ)
    def get_case(self, request: Request, case_id: str) -> Response:
        return read_response(request, self.service.get_case(uuid_path(case_id, "case")))

    @http("GET", "/v1/cases")
    @endpoint(READ)
    def list_cases(self, request: Request) -> Response:
        return json_response(200, self.service.list_cases(*list_call(load_query(request, CaseQuery))))

    @http("POST", "/v1/cases/<case_id>/responses")
    @endpoint(WRITE)
    def respond_to_case(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.respond_to_case, contracts.RespondToCaseRequest,
                        if_match=False)

    @http("PUT", "/v1/cases/<case_id>/assignment")
    @endpoint(WRITE)
    def assign_case(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.assign_case, contracts.AssignCaseRequest,
                        if_match=False)

    @http("POST", "/v1/cases/<case_id>/escalations")
    @endpoint(WRITE)
    def escalate_case(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.escalate_case, contracts.EscalateCaseRequest,
                        if_match=False)

    @http("PUT", "/v1/cases/<case_id>/classification")
    @endpoint(WRITE)
    def reclassify_case(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.classify_case, contracts.ClassifyCaseRequest,
                        if_match=True)

    @http("POST", "/v1/cases/<case_id>/resolve")
    @endpoint(WRITE)
    def resolve_case(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.resolve_case, contracts.ResolveCaseRequest,
                        if_match=True)

    @http("POST", "/v1/cases/<case_id>/close")
    @endpoint(WRITE)
    def close_case(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.close_case, if_match=True)

    @http("POST", "/v1/cases/<case_id>/reopen")
    @endpoint(WRITE)
    def reopen_case(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.reopen_case, contracts.ReopenCaseRequest,
                        if_match=True)

    # --- complaint steps and the case's survey ----------------------------------------------------

    @http("POST", "/v1/cases/<case_id>/complaint")
    @endpoint(WRITE)
    def flag_complaint(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.flag_complaint, contracts.FlagComplaintRequest,
                        if_match=False)

    @http("PUT", "/v1/cases/<case_id>/complaint/assessment")
    @endpoint(WRITE)
    def assess_complaint(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.assess_complaint, contracts.AssessComplaintRequest,
                        if_match=True)

    @http("PUT", "/v1/cases/<case_id>/complaint/summary")
    @endpoint(WRITE)
    def summarise_complaint(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.summarise_complaint,
                        contracts.SummariseComplaintRequest, if_match=True)

    @http("PUT", "/v1/cases/<case_id>/survey")
    @endpoint(WRITE)
    def complete_case_survey(self, request: Request, case_id: str) -> Response:
        return self.act(request, case_id, "case", self.service.complete_survey, contracts.CompleteSurveyRequest,
                        if_match=False)

    @http("GET", "/v1/cases/<case_id>/faq-suggestions")
    @endpoint(READ)
    def case_faq_suggestions(self, request: Request, case_id: str) -> Response:
        return json_response(200, self.service.suggest_faqs_for_case(uuid_path(case_id, "case")))

    # --- surveys after a delivery, and satisfaction -----------------------------------------------

    @http("GET", "/v1/surveys/<survey_id>")
    @endpoint(READ)
    def get_survey(self, request: Request, survey_id: str) -> Response:
        return read_response(request, self.service.get_survey(uuid_path(survey_id, "survey")))

    @http("PUT", "/v1/surveys/<survey_id>/answer")
    @endpoint(WRITE)
    def answer_survey(self, request: Request, survey_id: str) -> Response:
        return self.act(request, survey_id, "survey", self.service.answer_survey, contracts.AnswerSurveyRequest,
                        if_match=False)

    @http("GET", "/v1/customers/<customer_id>/satisfaction")
    @endpoint(READ)
    def satisfaction(self, request: Request, customer_id: str) -> Response:
        return json_response(200, self.service.satisfaction_index(uuid_path(customer_id)))


SCHEMAS = {
    "Case": contracts.CaseSchema,
    "CasePage": page_of(contracts.CaseSchema, "CasePage"),
    "Survey": contracts.SurveySchema,
    "FaqSuggestion": contracts.FaqSuggestionSchema,
    "SatisfactionIndex": contracts.SatisfactionIndexSchema,
    "OpenCaseRequest": contracts.OpenCaseRequest,
    "RespondToCaseRequest": contracts.RespondToCaseRequest,
    "AssignCaseRequest": contracts.AssignCaseRequest,
    "EscalateCaseRequest": contracts.EscalateCaseRequest,
    "ClassifyCaseRequest": contracts.ClassifyCaseRequest,
    "ResolveCaseRequest": contracts.ResolveCaseRequest,
    "ReopenCaseRequest": contracts.ReopenCaseRequest,
    "FlagComplaintRequest": contracts.FlagComplaintRequest,
    "AssessComplaintRequest": contracts.AssessComplaintRequest,
    "SummariseComplaintRequest": contracts.SummariseComplaintRequest,
    "CompleteSurveyRequest": contracts.CompleteSurveyRequest,
    "AnswerSurveyRequest": contracts.AnswerSurveyRequest,
}

_TAG = "cases"
_ITEM = "/v1/cases/{case_id}"

OPERATIONS = (
    create("/v1/cases", "openCase", "Open a case from an email, web form, phone call or chat message: it is "
           "classified (department, priority), routed, acknowledged, and gets its SLA deadlines", _TAG, "Case",
           contracts.OpenCaseRequest),
    read(_ITEM, "getCase", "Get a case: routing, SLA deadlines and breaches, responses, complaint, survey", _TAG,
         "Case"),
    listing("/v1/cases", "listCases", "List cases, a page at a time, by status, priority, complaint category or "
            "customer", _TAG, "CasePage", CaseQuery, "?status=open&priority=important&page=1&page_size=20"),
    command("post", f"{_ITEM}/responses", "respondToCase", "Respond to the customer", _TAG, "Case",
            contracts.RespondToCaseRequest, OPTIONAL),
    command("put", f"{_ITEM}/assignment", "assignCase", "Assign to a group and agent", _TAG, "Case",
            contracts.AssignCaseRequest, OPTIONAL),
    command("post", f"{_ITEM}/escalations", "escalateCase", "Escalate one level", _TAG, "Case",
            contracts.EscalateCaseRequest, OPTIONAL),
    command("put", f"{_ITEM}/classification", "reclassifyCase",
            "Reclassify (department, priority); SLA targets then count from the reclassification", _TAG, "Case",
            contracts.ClassifyCaseRequest, REQUIRED),
    command("post", f"{_ITEM}/resolve", "resolveCase", "Resolve with the resolution", _TAG, "Case",
            contracts.ResolveCaseRequest, REQUIRED),
    command("post", f"{_ITEM}/close", "closeCase", "Close a resolved case (a survey is requested)", _TAG, "Case",
            None, REQUIRED),
    command("post", f"{_ITEM}/reopen", "reopenCase", "Reopen a resolved or closed case", _TAG, "Case",
            contracts.ReopenCaseRequest, REQUIRED),
    command("post", f"{_ITEM}/complaint", "flagComplaint", "Flag the case as a complaint", _TAG, "Case",
            contracts.FlagComplaintRequest, OPTIONAL),
    command("put", f"{_ITEM}/complaint/assessment", "assessComplaint", "Assess the complaint: category, severity",
            _TAG, "Case", contracts.AssessComplaintRequest, REQUIRED),
    command("put", f"{_ITEM}/complaint/summary", "summariseComplaint",
            "Summarise the resolved complaint with its root cause", _TAG, "Case",
            contracts.SummariseComplaintRequest, REQUIRED),
    command("put", f"{_ITEM}/survey", "completeCaseSurvey", "Answer the closed case's satisfaction survey", _TAG,
            "Case", contracts.CompleteSurveyRequest, OPTIONAL),
    read(f"{_ITEM}/faq-suggestions", "getCaseFaqSuggestions", "Published FAQ articles matching the case, best first",
         _TAG, "FaqSuggestion[]", etag=False),
    read("/v1/surveys/{survey_id}", "getSurvey", "Get a satisfaction survey (after a delivery or a closed case)",
         _TAG, "Survey"),
    command("put", "/v1/surveys/{survey_id}/answer", "answerSurvey", "Answer a delivered order's survey", _TAG,
            "Survey", contracts.AnswerSurveyRequest, OPTIONAL),
    read("/v1/customers/{customer_id}/satisfaction", "getSatisfactionIndex",
         "The customer's satisfaction index (CSI, 0-100; null before any survey)", _TAG, "SatisfactionIndex",
         etag=False),
)
