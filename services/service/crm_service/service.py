"""The service (after-sales) nameko service: RPC commands and queries, thin adapters over ServiceDesk."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from crm_contracts import service as contracts
from crm_contracts.fields import schema_of
from crm_runtime import config
from crm_runtime.listing import Listing
from crm_runtime.nameko.dependencies import EventSourcedApplication, PolicyConsumer, PostgresCursor
from crm_runtime.nameko.leader import leader_timer, sweep
from crm_runtime.nameko.listing import ListingProjection
from crm_runtime.nameko.rights import CustomerRightsService
from crm_runtime.nameko.rpc import aggregate_id, rpc
from crm_runtime.nameko.service import EventSourcedService
from crm_service.application import ServiceDesk
from crm_service.domain import Case, FaqArticle, FaqSuggestion, Survey
from crm_service.listing import service_listing
from crm_service.policies import policies
from crm_service.publishing import translator


def case_key(case_id: str) -> UUID:
    """The case id argument of a call, checked (a non-UUID is `invalid`, not a crash)."""
    return aggregate_id(case_id, "case_id")


def article_key(article_id: str) -> UUID:
    """The FAQ article id argument of a call, checked."""
    return aggregate_id(article_id, "article_id")


def case_view(case: Case) -> dict[str, Any]:
    """A case as the RPC answer: the contract's CaseSchema, JSON-ready."""
    return schema_of(contracts.CaseSchema).dump(case)  # type: ignore[no-any-return]


def survey_view(survey: Survey) -> dict[str, Any]:
    """A survey as the RPC answer: the contract's SurveySchema, JSON-ready."""
    return schema_of(contracts.SurveySchema).dump(survey)  # type: ignore[no-any-return]


def faq_view(article: FaqArticle) -> dict[str, Any]:
    """An FAQ article as the RPC answer: the contract's FaqArticleSchema, JSON-ready."""
    return schema_of(contracts.FaqArticleSchema).dump(article)  # type: ignore[no-any-return]


def suggestions_view(suggestions: list[FaqSuggestion]) -> list[dict[str, Any]]:
    """Suggested FAQ articles, best first: the contract's FaqSuggestionSchema, JSON-ready."""
    return schema_of(contracts.FaqSuggestionSchema).dump(suggestions, many=True)  # type: ignore[no-any-return]


class CustomerCareService(CustomerRightsService, EventSourcedService):
    """After-sales: cases from every channel (routing, SLA, complaints, surveys), the FAQ, satisfaction.

    Every command takes the caller's `command_id`: a redelivered or retried call takes effect once and
    answers as it is now; opening a case and drafting an article derive the new id from it. Commands
    on a case or article take the `expected_version` the caller saw.
    """

    name = "service"
    translator = translator
    application: ServiceDesk = EventSourcedApplication(ServiceDesk, translator)  # type: ignore[assignment]
    reactions = PolicyConsumer(policies)

    # --- cases ----------------------------------------------------------------------------------

    @rpc
    def open_case(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Open a case from an email, web form, phone call or chat: classified, routed, acknowledged."""
        fields = schema_of(contracts.OpenCaseRequest).load(payload)
        return case_view(self.application.open_case(**fields, command_id=command_id))

    @rpc
    def get_case(self, case_id: str) -> dict[str, Any]:
        return case_view(self.application.case(case_key(case_id)))

    @rpc
    def classify_case(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.ClassifyCaseRequest).load(payload)
        case = self.application.classify_case(case_key(case_id), **fields, expected_version=expected_version,
                                              command_id=command_id)
        return case_view(case)

    @rpc
    def assign_case(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.AssignCaseRequest).load(payload)
        case = self.application.assign_case(case_key(case_id), **fields, expected_version=expected_version,
                                            command_id=command_id)
        return case_view(case)

    @rpc
    def respond_to_case(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.RespondToCaseRequest).load(payload)
        case = self.application.respond_to_case(case_key(case_id), **fields, expected_version=expected_version,
                                                command_id=command_id)
        return case_view(case)

    @rpc
    def escalate_case(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.EscalateCaseRequest).load(payload)
        case = self.application.escalate_case(case_key(case_id), **fields, expected_version=expected_version,
                                              command_id=command_id)
        return case_view(case)

    @rpc
    def resolve_case(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.ResolveCaseRequest).load(payload)
        case = self.application.resolve_case(case_key(case_id), **fields, expected_version=expected_version,
                                             command_id=command_id)
        return case_view(case)

    @rpc
    def close_case(
        self, case_id: str, expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        case = self.application.close_case(case_key(case_id), expected_version=expected_version, command_id=command_id)
        return case_view(case)

    @rpc
    def reopen_case(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.ReopenCaseRequest).load(payload)
        case = self.application.reopen_case(case_key(case_id), **fields, expected_version=expected_version,
                                            command_id=command_id)
        return case_view(case)

    @rpc
    def check_sla(self, case_id: str) -> dict[str, Any]:
        """Record the SLA targets the case has missed by now (and escalate); idempotent, for sweeps."""
        self.application.check_sla(case_key(case_id))
        return case_view(self.application.case(case_key(case_id)))

    # --- complaints and surveys -----------------------------------------------------------------

    @rpc
    def flag_complaint(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.FlagComplaintRequest).load(payload)
        case = self.application.flag_complaint(case_key(case_id), **fields, expected_version=expected_version,
                                               command_id=command_id)
        return case_view(case)

    @rpc
    def assess_complaint(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.AssessComplaintRequest).load(payload)
        case = self.application.assess_complaint(case_key(case_id), **fields, expected_version=expected_version,
                                                 command_id=command_id)
        return case_view(case)

    @rpc
    def summarise_complaint(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.SummariseComplaintRequest).load(payload)
        case = self.application.summarise_complaint(case_key(case_id), **fields, expected_version=expected_version,
                                                    command_id=command_id)
        return case_view(case)

    @rpc
    def complete_survey(
        self, case_id: str, payload: dict[str, Any], expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        fields = schema_of(contracts.CompleteSurveyRequest).load(payload)
        case = self.application.complete_survey(case_key(case_id), **fields, expected_version=expected_version,
                                                command_id=command_id)
        return case_view(case)

    @rpc
    def get_survey(self, survey_id: str) -> dict[str, Any]:
        """A satisfaction survey (after a delivered order or a closed case) and its answer, if any."""
        return survey_view(self.application.survey(aggregate_id(survey_id, "survey_id")))

    @rpc
    def answer_survey(
        self,
        survey_id: str,
        payload: dict[str, Any],
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Answer a delivered order's survey; it feeds the customer's satisfaction index."""
        fields = schema_of(contracts.AnswerSurveyRequest).load(payload)
        survey = self.application.answer_survey(aggregate_id(survey_id, "survey_id"), **fields,
                                                expected_version=expected_version, command_id=command_id)
        return survey_view(survey)

    @rpc
    def satisfaction_index(self, customer_id: str) -> dict[str, Any]:
        """The customer's satisfaction index (CSI), 0-100; null before any survey."""
        customer = aggregate_id(customer_id, "customer_id")
        index = self.application.satisfaction_index(customer)
        return schema_of(contracts.SatisfactionIndexSchema).dump({"customer_id": customer, "index": index})  # type: ignore[no-any-return]

    # --- FAQ ------------------------------------------------------------------------------------

    @rpc
    def draft_faq(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Draft an article; its id derives from `command_id` (one article per command)."""
        fields = schema_of(contracts.DraftFaqRequest).load(payload)
        return faq_view(self.application.draft_faq(**fields, command_id=command_id))

    @rpc
    def get_faq(self, article_id: str) -> dict[str, Any]:
        return faq_view(self.application.faq(article_key(article_id)))

    @rpc
    def revise_faq(
        self,
        article_id: str,
        payload: dict[str, Any],
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        fields = schema_of(contracts.ReviseFaqRequest).load(payload)
        article = self.application.revise_faq(article_key(article_id), **fields, expected_version=expected_version,
                                              command_id=command_id)
        return faq_view(article)

    @rpc
    def publish_faq(
        self, article_id: str, expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        article = self.application.publish_faq(article_key(article_id), expected_version=expected_version,
                                               command_id=command_id)
        return faq_view(article)

    @rpc
    def retire_faq(
        self,
        article_id: str,
        payload: dict[str, Any],
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        fields = schema_of(contracts.RetireFaqRequest).load(payload)
        article = self.application.retire_faq(article_key(article_id), **fields, expected_version=expected_version,
                                              command_id=command_id)
        return faq_view(article)

    @rpc
    def record_faq_use(
        self,
        article_id: str,
        payload: dict[str, Any],
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        fields = schema_of(contracts.RecordFaqUseRequest).load(payload)
        article = self.application.record_faq_use(article_key(article_id), **fields,
                                                   expected_version=expected_version, command_id=command_id)
        return faq_view(article)

    @rpc
    def suggest_faqs(self, payload: dict[str, Any]) -> list[dict[str, Any]]:
        """Published articles matching a question, best first."""
        fields = schema_of(contracts.SuggestFaqsRequest).load(payload)
        return suggestions_view(self.application.suggest_faqs(**fields))

    @rpc
    def suggest_faqs_for_case(self, case_id: str, limit: int = 3) -> list[dict[str, Any]]:
        """Published articles matching a case's subject and body, best first."""
        return suggestions_view(self.application.suggest_faqs_for_case(case_key(case_id), max(1, min(int(limit), 10))))


    # --- lists: eventually consistent (milliseconds behind commands), newest change first -------------
    # Filters are equality on the fields named; pages answer {"items", "page", "page_size", "total",
    # "total_exact"} (crm_runtime.listing); an item is what the matching get answers.

    db = PostgresCursor("service")
    listing: Listing = ListingProjection(service_listing(case_view, faq_view))  # type: ignore[assignment]

    @rpc
    def list_cases(
        self, filters: dict[str, str] | None = None, page: int = 1, page_size: int = 20
    ) -> dict[str, Any]:
        """Cases: one page, filters status (open/resolved/closed), customer_id, agent, priority, department,
        channel, group, escalated_to, complaint_stage, complaint_category."""
        return self.listing.query(self.db, "cases", filters, page, page_size)

    @rpc
    def list_faqs(
        self, filters: dict[str, str] | None = None, page: int = 1, page_size: int = 20
    ) -> dict[str, Any]:
        """FAQ articles: one page, filters status, department."""
        return self.listing.query(self.db, "faqs", filters, page, page_size)

    # --- periodic work, in one replica (crm_runtime.nameko.leader) ------------------------------------

    @leader_timer(interval=float(config.setting("SLA_CHECK_INTERVAL", "60")))
    def check_slas(self) -> None:
        """Record the SLA targets open cases have missed and escalate them; a target is breached once."""
        open_cases = [case_id for case_id, _ in self.listing.rows(self.db, "cases", {"status": "open"})]
        sweep("SLA check", open_cases, self.application.check_sla)
