"""Service domain events -> published integration events. The only place that translates.

Internal, never published: FaqArticle.Drafted and Revised (drafts are work in progress), the
KnowledgeBase, CustomerSatisfaction and crm_runtime.rights.CustomerMerge events (indexes kept for this
context's own queries), and a case's or survey's Forgotten (the customer_erased it follows says it all).
"""

from __future__ import annotations

from crm_contracts import service as contracts
from crm_contracts.integration import IntegrationEvent, Translator, integration_event
from crm_runtime.rights import customer_changed
from crm_service.domain import Case, FaqArticle, Survey

translator = Translator(origin="service")


@translator.translates(Case.Opened)
def case_opened(event: Case.Opened) -> IntegrationEvent:
    """Case.Opened as `case_opened` v1."""
    return integration_event(
        contracts.CaseOpenedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "channel": event.channel,
            "subject": event.subject,
            "sender": event.sender,
            "opened_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Acknowledged)
def case_acknowledged(event: Case.Acknowledged) -> IntegrationEvent:
    """Case.Acknowledged as `case_acknowledged` v1."""
    return integration_event(
        contracts.CaseAcknowledgedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "sender": event.sender,
            "channel": event.channel,
            "respond_by": event.respond_by,
            "suggested_faq_ids": event.suggested_faq_ids,
            "acknowledged_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Classified)
def case_classified(event: Case.Classified) -> IntegrationEvent:
    """Case.Classified as `case_classified` v1."""
    return integration_event(
        contracts.CaseClassifiedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "department": event.department,
            "priority": event.priority,
            "matched_keywords": event.matched,
            "classified_by": event.by,
            "first_response_due": event.first_response_due,
            "resolution_due": event.resolution_due,
            "classified_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Assigned)
def case_assigned(event: Case.Assigned) -> IntegrationEvent:
    """Case.Assigned as `case_assigned` v1."""
    return integration_event(
        contracts.CaseAssignedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "group": event.group,
            "agent": event.agent,
            "assigned_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Responded)
def case_responded(event: Case.Responded) -> IntegrationEvent:
    """Case.Responded as `case_responded` v1."""
    return integration_event(
        contracts.CaseRespondedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "agent": event.agent,
            "body": event.body,
            "first_response": event.first,
            "responded_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.SlaBreached)
def case_sla_breached(event: Case.SlaBreached) -> IntegrationEvent:
    """Case.SlaBreached as `case_sla_breached` v1."""
    return integration_event(
        contracts.CaseSlaBreachedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "target": event.target,
            "priority": event.priority,
            "due_at": event.due_at,
            "detected_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Escalated)
def case_escalated(event: Case.Escalated) -> IntegrationEvent:
    """Case.Escalated as `case_escalated` v1."""
    return integration_event(
        contracts.CaseEscalatedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "level": event.level,
            "to": event.to,
            "reason": event.reason,
            "escalated_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Resolved)
def case_resolved(event: Case.Resolved) -> IntegrationEvent:
    """Case.Resolved as `case_resolved` v1."""
    return integration_event(
        contracts.CaseResolvedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "resolution": event.resolution,
            "within_sla": event.within_sla,
            "resolved_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Closed)
def case_closed(event: Case.Closed) -> IntegrationEvent:
    """Case.Closed as `case_closed` v1."""
    return integration_event(
        contracts.CaseClosedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "department": event.department,
            "priority": event.priority,
            "is_complaint": event.is_complaint,
            "closed_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.Reopened)
def case_reopened(event: Case.Reopened) -> IntegrationEvent:
    """Case.Reopened as `case_reopened` v1."""
    return integration_event(
        contracts.CaseReopenedV1,
        {"case_id": event.originator_id, "customer_id": event.customer_id, "reason": event.reason,
         "reopened_at": event.at},
        customer_id=event.customer_id,
    )


@translator.translates(Case.ComplaintRegistered)
def complaint_registered(event: Case.ComplaintRegistered) -> IntegrationEvent:
    """Case.ComplaintRegistered as `complaint_registered` v1."""
    return integration_event(
        contracts.ComplaintRegisteredV1,
        {"case_id": event.originator_id, "customer_id": event.customer_id, "registered_by": event.by,
         "registered_at": event.at},
        customer_id=event.customer_id,
    )


@translator.translates(Case.ComplaintAssessed)
def complaint_assessed(event: Case.ComplaintAssessed) -> IntegrationEvent:
    """Case.ComplaintAssessed as `complaint_assessed` v1."""
    return integration_event(
        contracts.ComplaintAssessedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "category": event.category,
            "severity": event.severity,
            "assessment": event.assessment,
            "assessed_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.ComplaintResolved)
def complaint_resolved(event: Case.ComplaintResolved) -> IntegrationEvent:
    """Case.ComplaintResolved as `complaint_resolved` v1."""
    return integration_event(
        contracts.ComplaintResolvedV1,
        {"case_id": event.originator_id, "customer_id": event.customer_id, "resolution": event.resolution,
         "resolved_at": event.at},
        customer_id=event.customer_id,
    )


@translator.translates(Case.ComplaintSummarised)
def complaint_summarised(event: Case.ComplaintSummarised) -> IntegrationEvent:
    """Case.ComplaintSummarised as `complaint_summarised` v1."""
    return integration_event(
        contracts.ComplaintSummarisedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "summary": event.summary,
            "root_cause": event.root_cause,
            "summarised_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.SurveyCompleted)
def survey_completed(event: Case.SurveyCompleted) -> IntegrationEvent:
    """Case.SurveyCompleted as `survey_completed` v1."""
    return integration_event(
        contracts.SurveyCompletedV1,
        {
            "case_id": event.originator_id,
            "customer_id": event.customer_id,
            "score": event.score,
            "comment": event.comment,
            "completed_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(FaqArticle.Published)
def faq_published(event: FaqArticle.Published) -> IntegrationEvent:
    """FaqArticle.Published as `faq_published` v1."""
    return integration_event(
        contracts.FaqPublishedV1,
        {
            "article_id": event.originator_id,
            "question": event.question,
            "keywords": event.keywords,
            "department": event.department,
            "published_at": event.at,
        },
    )


@translator.translates(FaqArticle.Retired)
def faq_retired(event: FaqArticle.Retired) -> IntegrationEvent:
    """FaqArticle.Retired as `faq_retired` v1."""
    return integration_event(
        contracts.FaqRetiredV1,
        {"article_id": event.originator_id, "reason": event.reason, "retired_at": event.at},
    )


@translator.translates(FaqArticle.Used)
def faq_used(event: FaqArticle.Used) -> IntegrationEvent:
    """FaqArticle.Used as `faq_used` v1."""
    return integration_event(
        contracts.FaqUsedV1,
        {
            "article_id": event.originator_id,
            "case_id": event.case_id,
            "customer_id": event.customer_id,
            "helpful": event.helpful,
            "used_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Survey.Requested)
def survey_requested(event: Survey.Requested) -> IntegrationEvent:
    """Survey.Requested as `survey_requested` v1: a survey asked after a delivery or a closed case."""
    return integration_event(
        contracts.SurveyRequestedV1,
        {
            "survey_id": event.originator_id,
            "customer_id": event.customer_id,
            "subject": event.subject,
            "subject_id": event.subject_id,
            "requested_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Survey.Answered)
def survey_answered(event: Survey.Answered) -> IntegrationEvent:
    """Survey.Answered as `survey_answered` v1: a delivered order's survey score."""
    return integration_event(
        contracts.SurveyAnsweredV1,
        {
            "survey_id": event.originator_id,
            "customer_id": event.customer_id,
            "subject": event.subject,
            "subject_id": event.subject_id,
            "score": event.score,
            "comment": event.comment,
            "answered_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Case.CustomerMerged, Case.CustomerUnmerged)
def case_customer_changed(event: Case.CustomerMerged | Case.CustomerUnmerged) -> IntegrationEvent:
    """Case.CustomerMerged (re-pointed to the survivor) and CustomerUnmerged (given back by an unmerge) as
    `case_customer_changed` v1."""
    return customer_changed(contracts.CaseCustomerChangedV1, "case_id", event, event.at)


@translator.translates(Survey.CustomerMerged, Survey.CustomerUnmerged)
def survey_customer_changed(event: Survey.CustomerMerged | Survey.CustomerUnmerged) -> IntegrationEvent:
    """Survey.CustomerMerged (re-pointed to the survivor) and CustomerUnmerged (given back by an unmerge) as
    `survey_customer_changed` v1."""
    return customer_changed(contracts.SurveyCustomerChangedV1, "survey_id", event, event.at)
