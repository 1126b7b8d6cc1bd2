"""ServiceDesk: the service context's commands (load, call, save) and queries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from crm_contracts.errors import NotFoundError, StaleVersionError
from crm_runtime.eventstore import ServiceApplication
from crm_service.domain import (
    Case,
    CaseNotFoundError,
    CustomerSatisfaction,
    FaqArticle,
    FaqArticleNotFoundError,
    FaqSuggestion,
    KnowledgeBase,
    ServicePolicy,
)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


class ServiceDesk(ServiceApplication):
    """After-sales cases, complaints, satisfaction surveys and the FAQ knowledge base."""

    service = "service"
    policy = ServicePolicy()
    #: How many FAQ articles a new case's acknowledgement points to.
    suggestions_per_case = 3

    # --- cases ----------------------------------------------------------------------------------

    def open_case(
        self,
        channel: str,
        subject: str,
        body: str,
        sender: str,
        customer_id: UUID | None = None,
        now: datetime | None = None,
    ) -> Case:
        """Open a case: classified, routed and acknowledged at once, pointing to matching FAQs."""
        suggestions = self.suggest_faqs(f"{subject}\n{body}", self.suggestions_per_case)
        case = Case.open(
            channel, subject, body, sender, customer_id, _now(now), self.policy, [s.article_id for s in suggestions]
        )
        self._save(case)
        return case

    def classify_case(
        self,
        case_id: UUID,
        department: str,
        priority: str,
        by: str,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> Case:
        """Reclassify a case by hand."""
        return self._change_case(
            case_id, expected_version, lambda c: c.classify(department, priority, by, _now(now), self.policy)
        )

    def assign_case(
        self,
        case_id: UUID,
        group: str,
        agent: str | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> Case:
        """Assign a case to an agent group (and agent)."""
        return self._change_case(case_id, expected_version, lambda c: c.assign(group, agent, _now(now)))

    def respond_to_case(
        self, case_id: UUID, agent: str, body: str, now: datetime | None = None, expected_version: int | None = None
    ) -> Case:
        """Record an agent's response to a case."""
        return self._change_case(case_id, expected_version, lambda c: c.respond(agent, body, _now(now)))

    def escalate_case(
        self, case_id: UUID, reason: str, now: datetime | None = None, expected_version: int | None = None
    ) -> Case:
        """Escalate a case one level by hand."""
        return self._change_case(case_id, expected_version, lambda c: c.escalate(reason, _now(now)))

    def check_sla(self, case_id: UUID, now: datetime | None = None) -> list[str]:
        """Record the SLA targets a case has missed by `now` and escalate; the targets newly breached."""
        case = self.case(case_id)
        breached = case.check_sla(_now(now))
        if breached:
            self._save(case)
        return breached

    def check_all_slas(self, now: datetime | None = None) -> dict[UUID, list[str]]:
        """Run `check_sla` over every open case; the cases that breached a target, with the targets."""
        at = _now(now)
        found: dict[UUID, list[str]] = {}
        for case_id in self.open_case_ids():
            breached = self.check_sla(case_id, at)
            if breached:
                found[case_id] = breached
        return found

    def resolve_case(
        self, case_id: UUID, resolution: str, now: datetime | None = None, expected_version: int | None = None
    ) -> Case:
        """Resolve a case."""
        return self._change_case(case_id, expected_version, lambda c: c.resolve(resolution, _now(now)))

    def close_case(self, case_id: UUID, now: datetime | None = None, expected_version: int | None = None) -> Case:
        """Close a resolved case."""
        return self._change_case(case_id, expected_version, lambda c: c.close(_now(now)))

    def reopen_case(
        self, case_id: UUID, reason: str, now: datetime | None = None, expected_version: int | None = None
    ) -> Case:
        """Reopen a resolved or closed case."""
        return self._change_case(case_id, expected_version, lambda c: c.reopen(reason, _now(now)))

    def flag_complaint(
        self, case_id: UUID, by: str, now: datetime | None = None, expected_version: int | None = None
    ) -> Case:
        """Flag a case as a complaint (the complaint is received)."""
        return self._change_case(case_id, expected_version, lambda c: c.flag_complaint(by, _now(now)))

    def assess_complaint(
        self,
        case_id: UUID,
        category: str,
        severity: str,
        assessment: str,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> Case:
        """Classify and assess a complaint."""
        return self._change_case(
            case_id, expected_version, lambda c: c.assess_complaint(category, severity, assessment, _now(now))
        )

    def summarise_complaint(
        self,
        case_id: UUID,
        summary: str,
        root_cause: str,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> Case:
        """Summarise a resolved complaint with its root cause."""
        return self._change_case(
            case_id, expected_version, lambda c: c.summarise_complaint(summary, root_cause, _now(now))
        )

    def complete_survey(
        self,
        case_id: UUID,
        score: int,
        comment: str | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> Case:
        """Record a closed case's satisfaction survey; it feeds the customer's satisfaction index."""
        at = _now(now)
        case = self.case(case_id, expected_version)
        case.complete_survey(score, comment, at)
        if case.customer_id is None:
            self._save(case)
            return case
        satisfaction = self._satisfaction(case.customer_id) or CustomerSatisfaction(customer_id=case.customer_id)
        satisfaction.record(case.id, score, at)
        self._save(case, satisfaction)
        return case

    def case(self, case_id: UUID, expected_version: int | None = None) -> Case:
        """Load a case; with `expected_version`, insist it is the current version."""
        return self._load(case_id, expected_version, CaseNotFoundError, "case")

    def open_case_ids(self) -> list[UUID]:
        """Ids of the cases open now, oldest first.

        Scans the notification log for the events that change a case's status: enough for the
        domain layer and a periodic SLA sweep; a service under load would keep a read model instead.
        """
        topics = [get_topic(cls) for cls in (Case.Opened, Case.Resolved, Case.Reopened)]
        status: dict[UUID, bool] = {}
        start = 1
        while True:
            page = self.recorder.select_notifications(start=start, limit=1000, topics=topics)
            for notification in page:
                status[notification.originator_id] = notification.topic != topics[1]
            if len(page) < 1000:
                break
            start = page[-1].id + 1
        return [case_id for case_id, is_open in status.items() if is_open]

    # --- satisfaction ---------------------------------------------------------------------------

    def satisfaction_index(self, customer_id: UUID) -> Decimal | None:
        """The customer's satisfaction index, 0-100 (mean survey score 1-5 mapped linearly), or None."""
        satisfaction = self._satisfaction(customer_id)
        return satisfaction.index if satisfaction else None

    def _satisfaction(self, customer_id: UUID) -> CustomerSatisfaction | None:
        try:
            return self.repository.get(CustomerSatisfaction.id_for(customer_id))
        except AggregateNotFoundError:
            return None

    # --- FAQ ------------------------------------------------------------------------------------

    def draft_faq(
        self,
        question: str,
        answer: str,
        keywords: list[str] | None = None,
        department: str | None = None,
        now: datetime | None = None,
    ) -> FaqArticle:
        """Draft an FAQ article."""
        article = FaqArticle.draft(question, answer, keywords or [], department, _now(now))
        self._save(article)
        return article

    def revise_faq(
        self,
        article_id: UUID,
        question: str,
        answer: str,
        keywords: list[str] | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> FaqArticle:
        """Rewrite a draft FAQ article."""
        article = self.faq(article_id, expected_version)
        article.revise(question, answer, keywords or [], _now(now))
        self._save(article)
        return article

    def publish_faq(
        self, article_id: UUID, now: datetime | None = None, expected_version: int | None = None
    ) -> FaqArticle:
        """Publish an FAQ article and list it in the knowledge base, in one transaction."""
        article = self.faq(article_id, expected_version)
        article.publish(_now(now))
        knowledge_base = self.knowledge_base()
        knowledge_base.list_article(article.id, article.terms())
        self._save(article, knowledge_base)
        return article

    def retire_faq(
        self, article_id: UUID, reason: str, now: datetime | None = None, expected_version: int | None = None
    ) -> FaqArticle:
        """Retire an FAQ article and unlist it, in one transaction."""
        article = self.faq(article_id, expected_version)
        article.retire(reason, _now(now))
        knowledge_base = self.knowledge_base()
        knowledge_base.unlist(article.id)
        self._save(article, knowledge_base)
        return article

    def record_faq_use(
        self,
        article_id: UUID,
        case_id: UUID | None = None,
        helpful: bool | None = None,
        now: datetime | None = None,
    ) -> FaqArticle:
        """Record that an FAQ article was used (for a case, when given) and whether it helped."""
        article = self.faq(article_id)
        customer_id = self.case(case_id).customer_id if case_id is not None else None
        article.record_use(case_id, customer_id, helpful, _now(now))
        self._save(article)
        return article

    def suggest_faqs(self, text: str, limit: int = 3) -> list[FaqSuggestion]:
        """Published FAQ articles matching `text`, best first (KnowledgeBase.suggest explains the score)."""
        return self.knowledge_base().suggest(text, limit)

    def suggest_faqs_for_case(self, case_id: UUID, limit: int = 3) -> list[FaqSuggestion]:
        """Published FAQ articles matching a case's subject and body, best first."""
        case = self.case(case_id)
        return self.suggest_faqs(f"{case.subject}\n{case.body}", limit)

    def faq(self, article_id: UUID, expected_version: int | None = None) -> FaqArticle:
        """Load an FAQ article; with `expected_version`, insist it is the current version."""
        return self._load(article_id, expected_version, FaqArticleNotFoundError, "FAQ article")

    def knowledge_base(self) -> KnowledgeBase:
        """The knowledge base index (an empty one before the first article is published)."""
        try:
            return self.repository.get(KnowledgeBase.create_id())
        except AggregateNotFoundError:
            return KnowledgeBase()

    # --- load and save --------------------------------------------------------------------------

    def _load(self, aggregate_id: UUID, expected_version: int | None, missing: type[NotFoundError], noun: str) -> Any:
        try:
            aggregate = self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            raise missing(f"{noun} {aggregate_id} not found", id=str(aggregate_id)) from None
        if expected_version is not None and aggregate.version != expected_version:
            raise StaleVersionError(
                f"{noun} {aggregate_id} is at version {aggregate.version}, not {expected_version}",
                current_version=aggregate.version,
            )
        return aggregate

    def _change_case(self, case_id: UUID, expected_version: int | None, command: Callable[[Case], Any]) -> Case:
        case = self.case(case_id, expected_version)
        command(case)
        self._save(case)
        return case

    def _save(self, *aggregates: Aggregate) -> None:
        """Save aggregates in one transaction; losing a race is a stale version, to reload and retry."""
        try:
            self.save(*aggregates)
        except IntegrityError:
            ids = ", ".join(str(a.id) for a in aggregates)
            raise StaleVersionError(f"{ids} changed concurrently; reload and retry") from None
