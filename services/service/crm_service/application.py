"""ServiceDesk: the service context's commands (load, call, save) and queries."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError
from eventsourcing.utils import get_topic

from crm_contracts.errors import NotFoundError, StaleVersionError
from crm_runtime.commands import IdempotentApplication
from crm_runtime.crypto import PersonalFields
from crm_runtime.rights import (
    erasure_state_of,
    forget_subjects,
    record_merge,
    record_unmerge,
    records_of,
    refusing_erased_customers,
    subjects_of,
    survivor_path,
)
from crm_service.domain import (
    Case,
    CaseNotFoundError,
    CustomerSatisfaction,
    FaqArticle,
    FaqArticleNotFoundError,
    FaqSuggestion,
    KnowledgeBase,
    ServicePolicy,
    Survey,
    SurveyNotFoundError,
)

A = TypeVar("A", bound=Aggregate)

#: The personal fields of the service's events, sealed under the data key of the record's owner
#: (`owner_id`: the customer the case or survey was first for, or the record itself when it has
#: none; crm_runtime.crypto), with what each reads as once that customer is erased. Personal: what
#: the person wrote or what names or reaches them (the message's subject and body, the sender's
#: address, answers written to them, resolutions and complaint texts about their matter, survey
#: comments). Not personal (kept for analytics): ids, dates, channels, departments, priorities, SLA
#: facts, scores, categories, agents' and groups' names, and operators' reasons (escalation, reopening)
#: and a complaint's root cause, as the customer service keeps its operators' notes.
PERSONAL_DATA: dict[type, PersonalFields] = {
    Case.Opened: PersonalFields({"subject": "", "body": "", "sender": ""}, subject="owner_id"),
    Case.Acknowledged: PersonalFields({"sender": ""}, subject="owner_id"),
    Case.Responded: PersonalFields({"body": ""}, subject="owner_id"),
    Case.Resolved: PersonalFields({"resolution": ""}, subject="owner_id"),
    Case.ComplaintAssessed: PersonalFields({"assessment": ""}, subject="owner_id"),
    Case.ComplaintResolved: PersonalFields({"resolution": ""}, subject="owner_id"),
    Case.ComplaintSummarised: PersonalFields({"summary": ""}, subject="owner_id"),
    Case.SurveyCompleted: PersonalFields({"comment": None}, subject="owner_id"),
    Survey.Answered: PersonalFields({"comment": None}, subject="owner_id"),
}

#: The events that say whose a case or survey is (each carries it as `customer_id`): what `records_of` folds.
_OWNERSHIP_EVENTS = (Case.Opened, Case.CustomerMerged, Case.CustomerUnmerged,
                     Survey.Requested, Survey.CustomerMerged, Survey.CustomerUnmerged)


def _now(now: datetime | None) -> datetime:
    return now or datetime.now(UTC)


class ServiceDesk(IdempotentApplication):
    """After-sales cases, complaints, satisfaction surveys and the FAQ knowledge base.

    Every command takes the id of the call that carries it (`command_id`): a command delivered or
    retried twice takes effect once and answers the case or article as it is now (crm_runtime.commands).
    """

    service = "service"
    policy = ServicePolicy()
    personal_data: ClassVar[dict[type, PersonalFields]] = PERSONAL_DATA
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
        command_id: str | None = None,
    ) -> Case:
        """Open a case: classified, routed and acknowledged at once, pointing to matching FAQs.

        With a `command_id`, the case's id is derived from it, so a command delivered twice answers
        the case its first delivery opened.
        """
        case_id = Case.id_for_command(command_id) if command_id is not None else None

        def open_case() -> Case:
            suggestions = self.suggest_faqs(f"{subject}\n{body}", self.suggestions_per_case)
            suggested = [s.article_id for s in suggestions]
            customer = self.final_customer(customer_id)
            case = Case.open(channel, subject, body, sender, customer, _now(now), self.policy, suggested, case_id)
            return self._create(case, case_id, self.case)

        return self._once(command_id, open_case, case_id, self.case)

    def classify_case(
        self,
        case_id: UUID,
        department: str,
        priority: str,
        by: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Reclassify a case by hand."""
        return self._change_case(
            case_id, expected_version, lambda c: c.classify(department, priority, by, _now(now), self.policy),
            command_id,
        )

    def assign_case(
        self,
        case_id: UUID,
        group: str,
        agent: str | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Assign a case to an agent group (and agent)."""
        return self._change_case(case_id, expected_version, lambda c: c.assign(group, agent, _now(now)), command_id)

    def respond_to_case(
        self,
        case_id: UUID,
        agent: str,
        body: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Record an agent's response to a case."""
        return self._change_case(case_id, expected_version, lambda c: c.respond(agent, body, _now(now)), command_id)

    def escalate_case(
        self,
        case_id: UUID,
        reason: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Escalate a case one level by hand."""
        return self._change_case(case_id, expected_version, lambda c: c.escalate(reason, _now(now)), command_id)

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
        self,
        case_id: UUID,
        resolution: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Resolve a case."""
        return self._change_case(case_id, expected_version, lambda c: c.resolve(resolution, _now(now)), command_id)

    def close_case(
        self,
        case_id: UUID,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Close a resolved case."""
        return self._change_case(case_id, expected_version, lambda c: c.close(_now(now)), command_id)

    def reopen_case(
        self,
        case_id: UUID,
        reason: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Reopen a resolved or closed case."""
        return self._change_case(case_id, expected_version, lambda c: c.reopen(reason, _now(now)), command_id)

    def flag_complaint(
        self,
        case_id: UUID,
        by: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Flag a case as a complaint (the complaint is received)."""
        return self._change_case(case_id, expected_version, lambda c: c.flag_complaint(by, _now(now)), command_id)

    def assess_complaint(
        self,
        case_id: UUID,
        category: str,
        severity: str,
        assessment: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Classify and assess a complaint."""
        return self._change_case(
            case_id, expected_version, lambda c: c.assess_complaint(category, severity, assessment, _now(now)),
            command_id,
        )

    def summarise_complaint(
        self,
        case_id: UUID,
        summary: str,
        root_cause: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Summarise a resolved complaint with its root cause."""
        return self._change_case(
            case_id, expected_version, lambda c: c.summarise_complaint(summary, root_cause, _now(now)),
            command_id,
        )

    def complete_survey(
        self,
        case_id: UUID,
        score: int,
        comment: str | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Case:
        """Record a closed case's satisfaction survey; it feeds the customer's satisfaction index."""

        def survey() -> Case:
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

        return self._once(command_id, survey, case_id, self.case)

    # --- surveys --------------------------------------------------------------------------------

    def request_survey(self, subject: str, subject_id: UUID, customer_id: UUID | None, at: datetime) -> Survey:
        """The delivery and case-closed policies' command: ask for a satisfaction survey, once per
        subject (a second request answers the first survey). One save; dated by the event."""
        existing = self._existing_survey(Survey.id_for(subject, subject_id))
        if existing is not None:
            return existing
        survey = Survey.request(subject, subject_id, self.final_customer(customer_id), at)
        return self._create(survey, survey.id, self.survey)

    def answer_survey(
        self,
        survey_id: UUID,
        score: int,
        comment: str | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Survey:
        """Record the answer to a delivered order's survey; it feeds the customer's satisfaction index."""

        def answer() -> Survey:
            at = _now(now)
            survey = self.survey(survey_id, expected_version)
            survey.answer(score, comment, at)
            if survey.customer_id is None:
                self._save(survey)
                return survey
            satisfaction = self._satisfaction(survey.customer_id) or CustomerSatisfaction(
                customer_id=survey.customer_id
            )
            satisfaction.record(survey.subject_id, score, at)
            self._save(survey, satisfaction)
            return survey

        return self._once(command_id, answer, survey_id, self.survey)

    def survey(self, survey_id: UUID, expected_version: int | None = None) -> Survey:
        """Load a survey; with `expected_version`, insist it is the current version."""
        return self._load(survey_id, expected_version, SurveyNotFoundError, "survey")

    def survey_about(self, subject: str, subject_id: UUID) -> Survey:
        """The survey about an order or a case."""
        return self.survey(Survey.id_for(subject, subject_id))

    def _existing_survey(self, survey_id: UUID) -> Survey | None:
        try:
            return self.repository.get(survey_id)
        except AggregateNotFoundError:
            return None

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
        command_id: str | None = None,
    ) -> FaqArticle:
        """Draft an FAQ article; with a `command_id`, the article's id is derived from it, so a command
        delivered twice answers the article its first delivery drafted."""
        article_id = FaqArticle.id_for_command(command_id) if command_id is not None else None

        def draft() -> FaqArticle:
            article = FaqArticle.draft(question, answer, keywords or [], department, _now(now), article_id)
            return self._create(article, article_id, self.faq)

        return self._once(command_id, draft, article_id, self.faq)

    def revise_faq(
        self,
        article_id: UUID,
        question: str,
        answer: str,
        keywords: list[str] | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> FaqArticle:
        """Rewrite a draft FAQ article."""

        def revise() -> FaqArticle:
            article = self.faq(article_id, expected_version)
            article.revise(question, answer, keywords or [], _now(now))
            self._save(article)
            return article

        return self._once(command_id, revise, article_id, self.faq)

    def publish_faq(
        self,
        article_id: UUID,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> FaqArticle:
        """Publish an FAQ article and list it in the knowledge base, in one transaction."""

        def publish() -> FaqArticle:
            article = self.faq(article_id, expected_version)
            article.publish(_now(now))
            knowledge_base = self.knowledge_base()
            knowledge_base.list_article(article.id, article.terms())
            self._save(article, knowledge_base)
            return article

        return self._once(command_id, publish, article_id, self.faq)

    def retire_faq(
        self,
        article_id: UUID,
        reason: str,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> FaqArticle:
        """Retire an FAQ article and unlist it, in one transaction."""

        def retire() -> FaqArticle:
            article = self.faq(article_id, expected_version)
            article.retire(reason, _now(now))
            knowledge_base = self.knowledge_base()
            knowledge_base.unlist(article.id)
            self._save(article, knowledge_base)
            return article

        return self._once(command_id, retire, article_id, self.faq)

    def record_faq_use(
        self,
        article_id: UUID,
        case_id: UUID | None = None,
        helpful: bool | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> FaqArticle:
        """Record that an FAQ article was used (for a case, when given) and whether it helped."""

        def use() -> FaqArticle:
            article = self.faq(article_id, expected_version)
            customer_id = self.case(case_id).customer_id if case_id is not None else None
            article.record_use(case_id, customer_id, helpful, _now(now))
            self._save(article)
            return article

        return self._once(command_id, use, article_id, self.faq)

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

    # --- a customer's rights: erasure, merge, unmerge (crm_runtime.rights) -------------------------

    def final_customer(self, customer_id: UUID | None) -> UUID | None:
        """The customer a new record of `customer_id` belongs to: its final survivor if it was merged
        (a command racing the merge, or a caller that has not followed the redirect)."""
        path = survivor_path(self.repository, customer_id) if customer_id is not None else []
        return path[-1][1] if path else customer_id

    def records_of(self, customer_id: UUID) -> list[UUID]:
        """Ids of the cases and surveys that belong to `customer_id` now, oldest first: folded from the
        event store (crm_runtime.rights.records_of), not the lagging listing, so a reaction to a merge or
        an erasure sees every record committed before it. It reads every case's and survey's ownership
        events: a merge or an erasure costs a scan of them, acceptable for operations this rare."""
        return records_of(self, [customer_id], _OWNERSHIP_EVENTS)

    def _records(self, customer_id: UUID) -> list[Case | Survey]:
        return [self.repository.get(record_id) for record_id in self.records_of(customer_id)]

    def forget_customer(self, customer_id: UUID, request_id: str) -> None:
        """Erase the customer here: the data keys of the customer and of every customer merged into it
        (their re-pointed records hold data sealed under their own keys) shredded, then each of the
        customer's cases and surveys noted as forgotten, in one save, so the listing rewrites their
        rows from state that now reads redacted. Idempotent."""
        assert self.data_keys is not None  # PERSONAL_DATA is declared
        forget_subjects(self.data_keys, subjects_of(self.repository, customer_id), request_id)
        at = datetime.now(UTC)
        forgotten = [record for record in self._records(customer_id) if record.forget(request_id, at)]
        if forgotten:
            self.save(*forgotten)

    def erasure_state(self, customer_id: UUID) -> str:
        """Where the customer's erasure stands here: "done" once every key `forget_customer` shreds is
        shredded (and CRM_DATA_KEY_TTL has passed), or if this service never sealed anything of theirs."""
        return erasure_state_of(self.data_keys, subjects_of(self.repository, customer_id))

    def absorb_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The customer was merged into `survivor_id`: each of its cases and surveys is re-pointed to
        the survivor by an event naming `customer_id` and `merge_id` (published events of the record
        carry the survivor from then on; routing, SLA clocks and status stay as they were), its survey
        scores count in the survivor's satisfaction index, and new records of it go to the survivor.
        One save; a redelivered merge changes nothing."""
        at = datetime.now(UTC)
        changed: list[Aggregate] = [record for record in self._records(customer_id)
                                    if record.repoint(survivor_id, merge_id, at)]
        changed.extend(record_merge(self.repository, customer_id, survivor_id, merge_id))
        scores = self._satisfaction(customer_id)
        if scores is not None:
            counted = self._satisfaction(survivor_id) or CustomerSatisfaction(customer_id=survivor_id)
            if counted.absorb(scores, merge_id):
                changed.append(counted)
        self._save_changed(*changed)

    def restore_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """Undo merge `merge_id` for `customer_id`: every case and survey it re-pointed to the survivor
        is the customer's again (what was opened on the survivor after the merge stays with the
        survivor), its scores leave the survivor's index. One save; idempotent."""
        at = datetime.now(UTC)
        changed: list[Aggregate] = [record for record in self._records(survivor_id)
                                    if record.give_back(customer_id, merge_id, at)]
        changed.extend(record_unmerge(self.repository, customer_id, survivor_id, merge_id))
        counted = self._satisfaction(survivor_id)
        if counted is not None and counted.give_back(merge_id):
            changed.append(counted)
        self._save_changed(*changed)

    def _save_changed(self, *aggregates: Aggregate) -> None:
        """Save those with new events, in one transaction (a policy's reaction saves once)."""
        changed = [aggregate for aggregate in aggregates if aggregate.pending_events]
        if changed:
            self._save(*changed)

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Save; writing new personal data of an erased customer (a case's text, a response, a survey
        comment: their key is gone) is a conflict (409) saying why, and changes nothing."""
        with refusing_erased_customers():
            return super().save(*objs, **kwargs)

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

    def _create(self, aggregate: A, given_id: UUID | None, load: Callable[[UUID], A]) -> A:
        """Save a new aggregate; if its id was given (derived from a command) and is taken, that
        command ran before, and the aggregate it created is the answer."""
        try:
            self.save(aggregate)
        except IntegrityError:
            if given_id is None:
                raise
            return load(given_id)
        return aggregate

    def _once(
        self, command_id: str | None, command: Callable[[], A], aggregate_id: UUID | None, load: Callable[[UUID], A]
    ) -> A:
        """Run `command` once per `command_id`; a repeat answers the aggregate as it is now."""
        if aggregate_id is None:
            return command()
        return self.once(command_id, command, lambda: load(aggregate_id))

    def _change_case(
        self,
        case_id: UUID,
        expected_version: int | None,
        command: Callable[[Case], Any],
        command_id: str | None = None,
    ) -> Case:
        def change() -> Case:
            case = self.case(case_id, expected_version)
            command(case)
            self._save(case)
            return case

        return self._once(command_id, change, case_id, self.case)

    def _save(self, *aggregates: Aggregate) -> None:
        """Save aggregates in one transaction; losing a race is a stale version, to reload and retry."""
        try:
            self.save(*aggregates)
        except IntegrityError:
            ids = ", ".join(str(a.id) for a in aggregates)
            raise StaleVersionError(f"{ids} changed concurrently; reload and retry") from None
