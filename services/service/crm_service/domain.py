"""After-sales cases, complaints, surveys and FAQ articles as event-sourced aggregates. Pure: no
framework, no driver.

Every command takes `now` explicitly, so SLA clocks are deterministic in tests and on replay. Every
command checks everything before it records anything: a command that raises changed nothing.

Priority classes are acted on (DOMAIN.md, email handling): "special" is routed to the senior
decision-makers' group, "important" to senior management, "emergency" to the crisis team and
escalated at once, and a "valuable suggestion" gets a prompt automatic thank-you reply (it is the
case's first response).

SLA deadlines on reclassification: a case's first classification counts its targets from opening.
A reclassification to a MORE urgent class counts the new class's targets from the reclassification,
but never later than a deadline already promised: due = min(reclassified_at + target, previous due).
So raising a case's priority never breaches it at once, and never postpones a promise. A
reclassification to a less urgent class (or the same one) counts from opening, as before.

Surveys: a fully delivered order and a closed case each get one satisfaction survey request
(Survey, its id derived from the subject, so a second request changes nothing). A delivery's
survey is answered on the Survey; a case's is answered on the case, as before.

A customer's rights (crm_service.application does the erasure): a case or survey remembers whose data
key seals its texts (`owner_id`: the customer it was first for, or itself); a merge re-points it to the
survivor by an event naming the merge (`repoint`), an unmerge gives it back (`give_back`, only the latest
re-pointing, so chains unwind latest first); neither touches its handling or its SLA clock.
CustomerSatisfaction counts the scores of customers merged into its customer, by merge.
"""

from __future__ import annotations

import math
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from eventsourcing.domain import Aggregate, event

from crm_contracts.errors import ConflictError, InvalidRequestError, NotFoundError, RuleViolationError
from crm_contracts.vocabulary.service import (
    CASE_CHANNELS,
    COMPLAINT_CATEGORIES,
    COMPLAINT_SEVERITIES,
    DEPARTMENTS,
    ESCALATION_TIERS,
    PRIORITIES,
    RULES_CLASSIFIER,
    SURVEY_MAX_SCORE,
    SURVEY_MIN_SCORE,
)

SERVICE_NAMESPACE = uuid.UUID("6b1e0c4a-2f7d-4e8b-a3c5-9d2f1e7b4a60")
KNOWLEDGE_BASE_ID = uuid.uuid5(SERVICE_NAMESPACE, "knowledge-base")
#: Cases and FAQ articles get ids derived from the command that created them, one namespace each,
#: so a redelivered command collides with its first run instead of creating a second one.
CASE_FROM_COMMAND_NAMESPACE = uuid.UUID("8e2a5c17-4b9d-4f03-a6e1-3c7b0d5f9a24")
FAQ_FROM_COMMAND_NAMESPACE = uuid.UUID("c41f7e90-2d6b-4a85-9b3e-e5a8c1f07d62")


# --- errors -------------------------------------------------------------------------------------

class CaseNotFoundError(NotFoundError):
    """No case has this id."""


class FaqArticleNotFoundError(NotFoundError):
    """No FAQ article has this id."""


class InvalidCaseDataError(InvalidRequestError):
    """A case command's input breaks a rule; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


class InvalidFaqDataError(InvalidRequestError):
    """An FAQ command's input breaks a rule; names the field."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


class CaseStateError(RuleViolationError):
    """The command is not allowed while the case is in its current status."""

    def __init__(self, case_id: uuid.UUID, status: str, action: str) -> None:
        super().__init__(f"case {case_id} is {status}: cannot {action}", status=status, action=action)


class CaseClockError(RuleViolationError):
    """A command dated before the case's last change: SLA clocks only make sense if history moves forward."""

    def __init__(self, case_id: uuid.UUID, last_changed_at: datetime) -> None:
        reason = f"must not be before the case's last change ({last_changed_at})"
        super().__init__(f"case {case_id}: now {reason}", fields={"now": [reason]},
                         last_changed_at=last_changed_at.isoformat())


class ComplaintStageError(RuleViolationError):
    """The complaint is not at the stage this command needs (receive -> assess -> resolve -> summarise)."""

    def __init__(self, case_id: uuid.UUID, stage: str | None, action: str) -> None:
        at = f"at stage {stage}" if stage else "not a complaint"
        super().__init__(f"case {case_id} is {at}: cannot {action}", stage=stage, action=action)


class ComplaintAlreadyRegisteredError(ConflictError):
    """The case is already flagged as a complaint."""

    def __init__(self, case_id: uuid.UUID) -> None:
        super().__init__(f"case {case_id} is already a complaint", case_id=str(case_id))


class SurveyAlreadyCompletedError(ConflictError):
    """A satisfaction survey was already completed for this subject."""

    def __init__(self, subject_id: uuid.UUID) -> None:
        super().__init__(f"a survey for {subject_id} was already completed", subject_id=str(subject_id))


class FaqStateError(RuleViolationError):
    """The command is not allowed while the FAQ article is in its current status."""

    def __init__(self, article_id: uuid.UUID, status: str, action: str) -> None:
        super().__init__(f"FAQ article {article_id} is {status}: cannot {action}", status=status, action=action)


# --- text matching ------------------------------------------------------------------------------

_WORD = re.compile(r"[a-z0-9]+|[\u3400-\u9fff\uf900-\ufaff]+")
_CJK = re.compile(r"[\u3400-\u9fff\uf900-\ufaff]")

#: Words too common to say anything about an FAQ match.
STOPWORDS = frozenset(
    "a an and are as at be but by can could do does for from have how i if in is it its me my no not of on or "
    "our please so that the there this to us was we what when where which who why will with would you your "
    "hello hi dear thanks thank regards".split()
)


def tokens(text: str) -> list[str]:
    """Lower-cased word tokens of `text`, in order, the way every rule here compares text.

    Latin words lose one plural `s` (longer than three letters, not `ss`), so "returns" matches
    "return" and "press" stays "press". Chinese has no spaces, so a run of CJK characters becomes its
    overlapping character pairs ("退货问题" -> 退货, 货问, 问题): a two-character keyword then matches
    anywhere inside a sentence, deterministically and without a dictionary.
    """
    found: list[str] = []
    for word in _WORD.findall(text.lower()):
        if _CJK.match(word):
            found.extend([word] if len(word) == 1 else [word[i : i + 2] for i in range(len(word) - 1)])
        elif len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
            found.append(word[:-1])
        else:
            found.append(word)
    return found


def contains_phrase(haystack: Sequence[str], phrase: Sequence[str]) -> bool:
    """Whether the token sequence `phrase` occurs contiguously in `haystack`."""
    n = len(phrase)
    if n == 0:
        return False
    return any(list(haystack[i : i + n]) == list(phrase) for i in range(len(haystack) - n + 1))


def search_terms(text: str) -> set[str]:
    """The distinct meaningful tokens of `text` (stopwords dropped), for FAQ matching."""
    return {t for t in tokens(text) if t not in STOPWORDS}


# --- configurable rules -------------------------------------------------------------------------

DEFAULT_DEPARTMENT_KEYWORDS: dict[str, tuple[str, ...]] = {
    # DOMAIN.md: sales handles price, supply, product info, stock.
    "sales": (
        "price", "pricing", "quote", "quotation", "cost", "supply", "availability", "available",
        "product info", "product information", "specification", "stock", "inventory", "catalogue",
        "catalog", "purchase", "价格", "报价", "供货", "产品信息", "库存",
    ),
    # product suggestions, faults, returns, delivery.
    "customer_service": (
        "suggestion", "fault", "faulty", "broken", "defect", "defective", "not working", "repair",
        "warranty", "return", "refund", "exchange", "delivery", "deliver", "delivered", "shipping",
        "parcel", "建议", "故障", "退货", "送货", "维修",
    ),
    # press, analysts, sponsors, community, investors.
    "public_relations": (
        "press", "journalist", "reporter", "media", "analyst", "sponsor", "sponsorship", "community",
        "investor", "investor relation", "shareholder", "记者", "分析家", "分析师", "赞助", "社区", "投资者",
    ),
    # CVs, interview requests.
    "human_resources": (
        "cv", "cvs", "resume", "curriculum vitae", "job application", "vacancy", "career", "interview",
        "interview request", "简历", "面试", "招聘",
    ),
    # payables, receivables, statements.
    "finance": (
        "invoice", "payable", "accounts payable", "receivable", "accounts receivable", "statement",
        "payment", "billing", "remittance", "应付", "应收", "财务报表", "发票", "付款",
    ),
}

DEFAULT_PRIORITY_KEYWORDS: dict[str, tuple[str, ...]] = {
    # Cross-department, escalate at once.
    "emergency": (
        "emergency", "outage", "safety", "injury", "injured", "fire", "data breach", "security breach",
        "recall", "紧急", "事故",
    ),
    # To senior management or a specific department.
    "important": (
        "urgent", "legal", "lawyer", "lawsuit", "regulator", "contract", "executive", "ceo", "重要", "律师",
    ),
    # Needs a senior decision.
    "special": ("special", "exception", "approval", "custom", "bespoke", "bulk", "wholesale", "特殊", "例外"),
    # Answer promptly and thank.
    "valuable_suggestion": (
        "suggestion", "suggest", "idea", "improve", "improvement", "feature request", "recommend", "建议", "改进",
    ),
}

DEFAULT_COMPLAINT_KEYWORDS: tuple[str, ...] = (
    "complaint", "complain", "unacceptable", "disappointed", "dissatisfied", "terrible", "投诉", "不满",
)


@dataclass(frozen=True)
class Classification:
    """What the rules made of a message."""

    department: str
    priority: str
    matched: list[str]
    complaint: bool


@dataclass(frozen=True)
class ClassificationRules:
    """Keyword rules for the two levels of DOMAIN.md's email handling, plus complaint detection.

    Department: each keyword found scores `subject_weight` in the subject and 1 in the body; the
    highest total wins, ties go to the department listed first, no match goes to
    `default_department`. Priority: the most urgent class with any keyword found wins
    (`priority_order`), else `default_priority`. Keywords are phrases compared as `tokens()`.
    """

    department_keywords: Mapping[str, tuple[str, ...]] = field(
        default_factory=lambda: dict(DEFAULT_DEPARTMENT_KEYWORDS)
    )
    priority_keywords: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_PRIORITY_KEYWORDS))
    complaint_keywords: tuple[str, ...] = DEFAULT_COMPLAINT_KEYWORDS
    priority_order: tuple[str, ...] = ("emergency", "important", "special", "valuable_suggestion")
    default_department: str = "customer_service"
    default_priority: str = "ordinary"
    subject_weight: int = 2

    def __post_init__(self) -> None:
        # A misconfigured rule is a deployment error, found when the application starts.
        for department in [*self.department_keywords, self.default_department]:
            if department not in DEPARTMENTS:
                raise ValueError(f"unknown department {department!r} in classification rules")
        for priority in [*self.priority_keywords, *self.priority_order, self.default_priority]:
            if priority not in PRIORITIES:
                raise ValueError(f"unknown priority {priority!r} in classification rules")

    def classify(self, subject: str, body: str) -> Classification:
        """Department, priority and complaint flag for a message, with the keywords that decided."""
        subject_tokens, body_tokens = tokens(subject), tokens(body)

        def found(keyword: str) -> int:
            phrase = tokens(keyword)
            return self.subject_weight * contains_phrase(subject_tokens, phrase) + contains_phrase(body_tokens, phrase)

        department, best, department_hits = self.default_department, 0, []
        for candidate, keywords in self.department_keywords.items():
            hits = [k for k in keywords if found(k)]
            score = sum(found(k) for k in hits)
            if score > best:
                department, best, department_hits = candidate, score, hits
        priority, priority_hits = self.default_priority, []
        for candidate in self.priority_order:
            hits = [k for k in self.priority_keywords.get(candidate, ()) if found(k)]
            if hits:
                priority, priority_hits = candidate, hits
                break
        complaint_hits = [k for k in self.complaint_keywords if found(k)]
        matched = list(dict.fromkeys([*department_hits, *priority_hits, *complaint_hits]))
        return Classification(department, priority, matched, bool(complaint_hits))


@dataclass(frozen=True)
class SlaTarget:
    """The promised deadlines of one priority class, counted in wall-clock time from opening."""

    first_response: timedelta
    resolution: timedelta


DEFAULT_SLA_TARGETS: dict[str, SlaTarget] = {
    # A valuable suggestion is answered promptly with thanks, but rarely needs a fix soon.
    "valuable_suggestion": SlaTarget(timedelta(hours=4), timedelta(days=7)),
    "ordinary": SlaTarget(timedelta(hours=24), timedelta(days=5)),
    "special": SlaTarget(timedelta(hours=8), timedelta(days=3)),
    "important": SlaTarget(timedelta(hours=2), timedelta(days=1)),
    "emergency": SlaTarget(timedelta(minutes=15), timedelta(hours=4)),
}


@dataclass(frozen=True)
class SlaPolicy:
    """First-response and resolution targets per priority class."""

    targets: Mapping[str, SlaTarget] = field(default_factory=lambda: dict(DEFAULT_SLA_TARGETS))

    def __post_init__(self) -> None:
        for priority in PRIORITIES:
            target = self.targets.get(priority)
            if target is None:
                raise ValueError(f"no SLA target for priority {priority!r}")
            if target.first_response <= timedelta(0) or target.resolution < target.first_response:
                raise ValueError(f"SLA target for {priority!r} must be positive, resolution after first response")

    def deadlines(self, priority: str, opened_at: datetime) -> tuple[datetime, datetime]:
        """(first response due, resolution due) of a case of `priority` opened at `opened_at`."""
        target = self.targets[priority]
        return opened_at + target.first_response, opened_at + target.resolution


DEFAULT_DEPARTMENT_GROUPS: dict[str, str] = {
    "sales": "sales_desk",
    "customer_service": "customer_care",
    "public_relations": "public_relations_office",
    "human_resources": "recruitment_team",
    "finance": "accounts_desk",
}

#: DOMAIN.md sends important messages to senior management and emergencies across departments.
DEFAULT_PRIORITY_GROUPS: dict[str, str] = {
    "special": "senior_decision_makers",
    "important": "senior_management",
    "emergency": "crisis_team",
}

#: Who sends the automatic replies (the thank-you for a valuable suggestion).
AUTO_REPLY_AGENT = "auto-reply"
DEFAULT_THANK_YOU_REPLY = (
    "Thank you for your suggestion. It has reached the team that can act on it, and we will tell you what "
    "becomes of it."
)
#: What a survey can be about: a delivered order or a closed case (crm_contracts.service says the same).
SURVEY_SUBJECTS = ("order", "case")


@dataclass(frozen=True)
class RoutingTable:
    """Which agent group has the skills for a case (ACD routing): by priority first, then department."""

    department_groups: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_DEPARTMENT_GROUPS))
    priority_groups: Mapping[str, str] = field(default_factory=lambda: dict(DEFAULT_PRIORITY_GROUPS))

    def __post_init__(self) -> None:
        missing = [d for d in DEPARTMENTS if d not in self.department_groups]
        if missing:
            raise ValueError(f"no agent group for departments {missing}")

    def group_for(self, department: str, priority: str) -> str:
        """The agent group a case of this department and priority is queued for."""
        return self.priority_groups.get(priority) or self.department_groups[department]


@dataclass(frozen=True)
class ServicePolicy:
    """Every configurable rule a case follows."""

    classification: ClassificationRules = field(default_factory=ClassificationRules)
    sla: SlaPolicy = field(default_factory=SlaPolicy)
    routing: RoutingTable = field(default_factory=RoutingTable)
    #: The prompt reply a valuable suggestion gets, sent as its first response.
    thank_you_reply: str = DEFAULT_THANK_YOU_REPLY


def escalation_tier(level: int) -> str:
    """Who escalation `level` (1, 2, ...) goes to; beyond the last tier it stays there."""
    return ESCALATION_TIERS[min(max(level, 1), len(ESCALATION_TIERS)) - 1]


# --- checks -------------------------------------------------------------------------------------

def check_text(field_name: str, value: Any, error: type[InvalidRequestError] = InvalidCaseDataError) -> None:
    """`value` must be a non-blank string."""
    if not isinstance(value, str) or not value.strip():
        raise error(field_name, "must not be blank")


def check_choice(field_name: str, value: Any, choices: Sequence[str]) -> None:
    """`value` must be one of `choices`."""
    if value not in choices:
        raise InvalidCaseDataError(field_name, f"must be one of {', '.join(choices)}")


def check_aware(now: Any, error: type[InvalidRequestError] = InvalidCaseDataError) -> None:
    """`now` must be a timezone-aware datetime: SLA deadlines compare instants, not wall clocks."""
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        raise error("now", "must be a timezone-aware datetime")


def check_score(score: Any) -> None:
    """A survey score is a whole number from 1 to 5."""
    if isinstance(score, bool) or not isinstance(score, int) or not SURVEY_MIN_SCORE <= score <= SURVEY_MAX_SCORE:
        raise InvalidCaseDataError("score", f"must be a whole number from {SURVEY_MIN_SCORE} to {SURVEY_MAX_SCORE}")


class FollowsItsCustomer(Aggregate):
    """A case or a survey: it follows its customer's merges and notes their erasure, each by an event.

    Re-pointing and forgetting are not changes of a case's handling, so its SLA clock
    (`last_changed_at`) does not move. Re-pointing is published (case_customer_changed,
    survey_customer_changed); Forgotten is internal. A subclass's created event sets `customer_id`,
    `merges = []` (the merges that re-pointed it, latest last: {"merge_id", "merged_from",
    "survivor_id"}) and `forgotten_at = None` (when the data key of its owner was shredded). The events
    are defined again on each subclass by eventsourcing (`Case.CustomerMerged`...), so they are stored
    and published under the subclass's topics.
    """

    if TYPE_CHECKING:  # set by the subclass's created event (no annotation here: it would be an init field)
        customer_id: uuid.UUID | None
        merges: list[dict[str, Any]]
        forgotten_at: datetime | None

    class CustomerMerged(Aggregate.Event):
        customer_id: uuid.UUID
        merged_from: uuid.UUID
        merge_id: str
        at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.customer_id = self.customer_id
            aggregate.merges.append(
                {"merge_id": self.merge_id, "merged_from": self.merged_from, "survivor_id": self.customer_id})

    class CustomerUnmerged(Aggregate.Event):
        customer_id: uuid.UUID
        survivor_id: uuid.UUID
        merge_id: str
        at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.customer_id = self.customer_id
            aggregate.merges.pop()

    class Forgotten(Aggregate.Event):
        customer_id: uuid.UUID | None
        request_id: str
        at: datetime

        def apply(self, aggregate: Any) -> None:
            aggregate.forgotten_at = self.at

    def repoint(self, survivor_id: uuid.UUID, merge_id: str, now: datetime) -> bool:
        """The customer was merged into `survivor_id`: the case or survey is the survivor's from now on
        (its later events and their published forms carry the survivor). False when it was re-pointed
        by this merge already, or has no customer. Routing, SLA clocks and status are untouched."""
        if self.customer_id is None or any(m["merge_id"] == merge_id for m in self.merges):
            return False
        self.trigger_event(self.CustomerMerged, customer_id=survivor_id, merged_from=self.customer_id,
                           merge_id=merge_id, at=now)
        return True

    def give_back(self, customer_id: uuid.UUID, merge_id: str, now: datetime) -> bool:
        """Undo the re-pointing of merge `merge_id`: it is `customer_id`'s again. False when its latest
        re-pointing is not that merge's (never re-pointed by it, or given back already)."""
        latest = self.merges[-1] if self.merges else None
        if latest is None or latest["merge_id"] != merge_id or latest["merged_from"] != customer_id:
            return False
        self.trigger_event(self.CustomerUnmerged, customer_id=customer_id, survivor_id=self.customer_id,
                           merge_id=merge_id, at=now)
        return True

    def forget(self, request_id: str, now: datetime) -> bool:
        """Note that the owner's data key was shredded (it now reads redacted); saved after the
        shredding so the listing rewrites its row. False when noted already."""
        if self.forgotten_at is not None:
            return False
        self.trigger_event(self.Forgotten, customer_id=self.customer_id, request_id=request_id, at=now)
        return True


# --- the case -----------------------------------------------------------------------------------

class Case(FollowsItsCustomer):
    """One customer message and everything done about it, from first contact to closing.

    Status: open -> resolved -> closed, and back to open by reopening. Flagged as a complaint, it
    also walks the stages received -> assessed -> resolved -> summarised; a complaint cannot be
    resolved before it is assessed, nor closed before it is summarised.
    """

    @event("Opened")
    def __init__(
        self,
        customer_id: uuid.UUID | None,
        channel: str,
        subject: str,
        body: str,
        sender: str,
        at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.customer_id = customer_id
        #: Whose data key seals this case's personal fields (crm_service.application.PERSONAL_DATA): the
        #: customer it was opened for, kept when a merge re-points the case (so erasing that customer
        #: later shreds what was written about them here, merged or not), or the case itself when it
        #: has no customer. Cases stored before sealing existed have none in their Opened event.
        self.owner_id: uuid.UUID = owner_id or customer_id or self.id
        #: Merges that re-pointed the case, latest last: {"merge_id", "merged_from", "survivor_id"}.
        self.merges: list[dict[str, Any]] = []
        #: When the data key of the case's owner was shredded (the customer erased).
        self.forgotten_at: datetime | None = None
        self.channel = channel
        self.subject = subject
        self.body = body
        self.sender = sender
        self.opened_at = at
        self.last_changed_at = at
        self.status = "open"
        self.department: str | None = None
        self.priority: str | None = None
        self.classified_by: str | None = None
        self.matched_keywords: list[str] = []
        self.first_response_due: datetime | None = None
        self.resolution_due: datetime | None = None
        self.acknowledged_at: datetime | None = None
        self.suggested_faq_ids: list[uuid.UUID] = []
        self.group: str | None = None
        self.agent: str | None = None
        self.responses: list[dict[str, Any]] = []
        self.first_response_at: datetime | None = None
        self.breaches: dict[str, datetime] = {}
        self.escalation_level = 0
        self.escalated_to: str | None = None
        self.resolution: str | None = None
        self.resolved_at: datetime | None = None
        self.closed_at: datetime | None = None
        self.reopen_count = 0
        self.is_complaint = False
        self.complaint_stage: str | None = None
        self.complaint_category: str | None = None
        self.complaint_severity: str | None = None
        self.complaint_assessment: str | None = None
        self.complaint_resolution: str | None = None
        self.complaint_summary: str | None = None
        self.complaint_root_cause: str | None = None
        self.survey_score: int | None = None
        self.survey_comment: str | None = None
        self.surveyed_at: datetime | None = None

    @classmethod
    def open(
        cls,
        channel: str,
        subject: str,
        body: str,
        sender: str,
        customer_id: uuid.UUID | None,
        now: datetime,
        policy: ServicePolicy,
        suggested_faq_ids: Sequence[uuid.UUID] = (),
        case_id: uuid.UUID | None = None,
    ) -> Case:
        """Open a case: classify and route it by the rules, and acknowledge it at once.

        With `case_id` (derived from the opening command), a redelivered command collides with its
        first run in the event store instead of opening a second case.
        """
        check_choice("channel", channel, CASE_CHANNELS)
        check_text("subject", subject)
        if not isinstance(body, str):
            raise InvalidCaseDataError("body", "must be text")  # a phone call may have an empty body
        check_text("sender", sender)
        check_aware(now)
        case_id = case_id or uuid.uuid4()
        facts: dict[str, Any] = {"customer_id": customer_id, "channel": channel, "subject": subject.strip(),
                                 "body": body, "sender": sender.strip(), "at": now,
                                 "owner_id": customer_id or case_id}
        case = cls._create(cls.Opened, id=case_id, **facts)  # type: ignore[attr-defined]
        found = policy.classification.classify(subject, body)
        case._route(found.department, found.priority, found.matched, RULES_CLASSIFIER, now, policy)
        # The automatic reply promises the first-response deadline (DOMAIN.md: a promise is kept).
        case._acknowledged(customer_id, case.sender, channel, case.first_response_due, list(suggested_faq_ids), now,
                           case.owner_id)
        case._thank_for_suggestion(now, policy)
        if found.complaint:
            case._complaint_registered(customer_id, RULES_CLASSIFIER, now)
        return case

    @staticmethod
    def id_for_command(command_id: str) -> uuid.UUID:
        """The id a case opened by command `command_id` gets: the same for every delivery."""
        return uuid.uuid5(CASE_FROM_COMMAND_NAMESPACE, command_id)

    # commands

    def classify(self, department: str, priority: str, by: str, now: datetime, policy: ServicePolicy) -> None:
        """Reclassify by hand; the SLA deadlines follow the new priority (module docstring: from the
        reclassification when it is more urgent)."""
        self._check_now(now)
        self._check_status("reclassify", "open")
        check_choice("department", department, DEPARTMENTS)
        check_choice("priority", priority, PRIORITIES)
        check_text("by", by)
        if (department, priority) != (self.department, self.priority):
            self._route(department, priority, [], by.strip(), now, policy)
            self._thank_for_suggestion(now, policy)

    def assign(self, group: str, agent: str | None, now: datetime) -> None:
        """Assign to an agent group, and optionally to one agent in it."""
        self._check_now(now)
        self._check_status("assign", "open")
        check_text("group", group)
        if agent is not None:
            check_text("agent", agent)
        group, agent = group.strip(), agent.strip() if agent else None
        if (group, agent) != (self.group, self.agent):
            self._assigned(self.customer_id, group, agent, now)

    def respond(self, agent: str, body: str, now: datetime) -> None:
        """Record an agent's response; the first one stops the first-response clock."""
        self._check_now(now)
        self._check_status("respond to", "open")
        check_text("agent", agent)
        check_text("body", body)
        # A late answer still breaches its promise: record that before the answer itself.
        self._record_breaches(now)
        self._responded(self.customer_id, agent.strip(), body, self.first_response_at is None, now, self.owner_id)

    def escalate(self, reason: str, now: datetime) -> None:
        """Escalate one level by hand."""
        self._check_now(now)
        self._check_status("escalate", "open")
        check_text("reason", reason)
        self._escalate(reason.strip(), now)

    def check_sla(self, now: datetime) -> list[str]:
        """Record each SLA target missed by `now` (once per target) and escalate; the targets newly breached."""
        self._check_now(now)
        return self._record_breaches(now)

    def resolve(self, resolution: str, now: datetime) -> None:
        """Resolve the case; a complaint must have been assessed first."""
        self._check_now(now)
        self._check_status("resolve", "open")
        check_text("resolution", resolution)
        if self.is_complaint and self.complaint_stage != "assessed":
            raise ComplaintStageError(self.id, self.complaint_stage, "resolve before the complaint is assessed")
        self._record_breaches(now)
        self._resolved(self.customer_id, resolution.strip(), "resolution" not in self.breaches, now, self.owner_id)
        if self.is_complaint:
            self._complaint_resolved(self.customer_id, resolution.strip(), now, self.owner_id)

    def close(self, now: datetime) -> None:
        """Close a resolved case; a complaint must have been summarised first."""
        self._check_now(now)
        self._check_status("close", "resolved")
        if self.is_complaint and self.complaint_stage != "summarised":
            raise ComplaintStageError(self.id, self.complaint_stage, "close before the complaint is summarised")
        self._closed(self.customer_id, self.department, self.priority, self.is_complaint, now)

    def reopen(self, reason: str, now: datetime) -> None:
        """Reopen a resolved or closed case; SLA deadlines stay those first promised."""
        self._check_now(now)
        self._check_status("reopen", "resolved", "closed")
        check_text("reason", reason)
        self._reopened(self.customer_id, reason.strip(), now)

    def flag_complaint(self, by: str, now: datetime) -> None:
        """Flag an open case as a complaint: the "receive" stage."""
        self._check_now(now)
        self._check_status("flag as a complaint", "open")
        check_text("by", by)
        if self.is_complaint:
            raise ComplaintAlreadyRegisteredError(self.id)
        self._complaint_registered(self.customer_id, by.strip(), now)

    def assess_complaint(self, category: str, severity: str, assessment: str, now: datetime) -> None:
        """Classify and assess the complaint (again, until it is resolved)."""
        self._check_now(now)
        if self.complaint_stage not in ("received", "assessed"):
            raise ComplaintStageError(self.id, self.complaint_stage, "assess")
        self._check_status("assess the complaint", "open")
        check_choice("category", category, COMPLAINT_CATEGORIES)
        check_choice("severity", severity, COMPLAINT_SEVERITIES)
        check_text("assessment", assessment)
        self._complaint_assessed(self.customer_id, category, severity, assessment.strip(), now, self.owner_id)

    def summarise_complaint(self, summary: str, root_cause: str, now: datetime) -> None:
        """Summarise a resolved complaint with its root cause, for analysis."""
        self._check_now(now)
        if self.complaint_stage not in ("resolved", "summarised"):
            raise ComplaintStageError(self.id, self.complaint_stage, "summarise")
        self._check_status("summarise the complaint", "resolved")
        check_text("summary", summary)
        check_text("root_cause", root_cause)
        self._complaint_summarised(self.customer_id, summary.strip(), root_cause.strip(), now, self.owner_id)

    def complete_survey(self, score: int, comment: str | None, now: datetime) -> None:
        """Record the satisfaction survey of a closed case: score 1-5 and a comment, once."""
        self._check_now(now)
        self._check_status("take a survey", "closed")
        check_score(score)
        if comment is not None and not isinstance(comment, str):
            raise InvalidCaseDataError("comment", "must be text")
        if self.survey_score is not None:
            raise SurveyAlreadyCompletedError(self.id)
        self._survey_completed(self.customer_id, score, comment.strip() if comment else None, now, self.owner_id)

    # checks

    def _check_now(self, now: datetime) -> None:
        check_aware(now)
        # SLA clocks only make sense if a case's history moves forward in time.
        if now < self.last_changed_at:
            raise CaseClockError(self.id, self.last_changed_at)

    def _check_status(self, action: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise CaseStateError(self.id, self.status, action)

    # decisions shared by several commands

    def _route(
        self, department: str, priority: str, matched: list[str], by: str, now: datetime, policy: ServicePolicy
    ) -> None:
        first_due, resolution_due = self._deadlines(priority, now, policy)
        self._classified(self.customer_id, department, priority, matched, by, first_due, resolution_due, now)
        group = policy.routing.group_for(department, priority)
        if group != self.group:
            self._assigned(self.customer_id, group, None, now)
        # DOMAIN.md: an emergency is cross-department and escalates at once, to the top.
        top = len(ESCALATION_TIERS)
        if priority == "emergency" and self.escalation_level < top:
            self._escalated(self.customer_id, top, escalation_tier(top), "emergency priority", now)

    def _deadlines(self, priority: str, now: datetime, policy: ServicePolicy) -> tuple[datetime, datetime]:
        """(first response due, resolution due) for a (re)classification to `priority` at `now`."""
        from_opening = policy.sla.deadlines(priority, self.opened_at)
        if self.priority is None or PRIORITIES.index(priority) <= PRIORITIES.index(self.priority):
            return from_opening
        first_due, resolution_due = policy.sla.deadlines(priority, now)
        return (
            min(first_due, self.first_response_due or first_due),
            min(resolution_due, self.resolution_due or resolution_due),
        )

    def _thank_for_suggestion(self, now: datetime, policy: ServicePolicy) -> None:
        """A valuable suggestion not yet answered gets the prompt thank-you reply (its first response)."""
        if self.priority == "valuable_suggestion" and self.first_response_at is None:
            self._responded(self.customer_id, AUTO_REPLY_AGENT, policy.thank_you_reply, True, now, self.owner_id)

    def _record_breaches(self, now: datetime) -> list[str]:
        if self.status != "open":
            return []
        due: list[tuple[str, datetime | None]] = [("resolution", self.resolution_due)]
        if self.first_response_at is None:
            due.insert(0, ("first_response", self.first_response_due))
        breached = [(t, d) for t, d in due if d is not None and now > d and t not in self.breaches]
        for target, due_at in breached:
            self._sla_breached(self.customer_id, target, due_at, self.priority, now)
            self._escalate(f"{target} SLA breached", now)
        return [t for t, _ in breached]

    def _escalate(self, reason: str, now: datetime) -> None:
        level = self.escalation_level + 1
        self._escalated(self.customer_id, level, escalation_tier(level), reason, now)

    # events: each carries the customer id, because its published form does

    @event("Classified")
    def _classified(
        self,
        customer_id: uuid.UUID | None,
        department: str,
        priority: str,
        matched: list[str],
        by: str,
        first_response_due: datetime,
        resolution_due: datetime,
        at: datetime,
    ) -> None:
        self.department = department
        self.priority = priority
        self.matched_keywords = list(matched)
        self.classified_by = by
        self.first_response_due = first_response_due
        self.resolution_due = resolution_due
        self.last_changed_at = at

    @event("Acknowledged")
    def _acknowledged(
        self,
        customer_id: uuid.UUID | None,
        sender: str,
        channel: str,
        respond_by: datetime | None,
        suggested_faq_ids: list[uuid.UUID],
        at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.acknowledged_at = at
        self.suggested_faq_ids = list(suggested_faq_ids)
        self.last_changed_at = at

    @event("Assigned")
    def _assigned(self, customer_id: uuid.UUID | None, group: str, agent: str | None, at: datetime) -> None:
        self.group = group
        self.agent = agent
        self.last_changed_at = at

    @event("Responded")
    def _responded(
        self, customer_id: uuid.UUID | None, agent: str, body: str, first: bool, at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.responses.append({"agent": agent, "body": body, "at": at})
        if self.first_response_at is None:
            self.first_response_at = at
        self.last_changed_at = at

    @event("SlaBreached")
    def _sla_breached(
        self, customer_id: uuid.UUID | None, target: str, due_at: datetime, priority: str | None, at: datetime
    ) -> None:
        self.breaches[target] = at
        self.last_changed_at = at

    @event("Escalated")
    def _escalated(self, customer_id: uuid.UUID | None, level: int, to: str, reason: str, at: datetime) -> None:
        self.escalation_level = level
        self.escalated_to = to
        self.last_changed_at = at

    @event("Resolved")
    def _resolved(
        self, customer_id: uuid.UUID | None, resolution: str, within_sla: bool, at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.status = "resolved"
        self.resolution = resolution
        self.resolved_at = at
        # A resolution answers the customer too: it stops a first-response clock still running.
        if self.first_response_at is None:
            self.first_response_at = at
        self.last_changed_at = at

    @event("Closed")
    def _closed(
        self,
        customer_id: uuid.UUID | None,
        department: str | None,
        priority: str | None,
        is_complaint: bool,
        at: datetime,
    ) -> None:
        self.status = "closed"
        self.closed_at = at
        self.last_changed_at = at

    @event("Reopened")
    def _reopened(self, customer_id: uuid.UUID | None, reason: str, at: datetime) -> None:
        self.status = "open"
        self.resolution = None
        self.resolved_at = None
        self.closed_at = None
        self.reopen_count += 1
        if self.is_complaint:
            # The complaint must be resolved (and summarised) again; its assessment stands.
            self.complaint_stage = "assessed" if self.complaint_category else "received"
        self.last_changed_at = at

    @event("ComplaintRegistered")
    def _complaint_registered(self, customer_id: uuid.UUID | None, by: str, at: datetime) -> None:
        self.is_complaint = True
        self.complaint_stage = "received"
        self.last_changed_at = at

    @event("ComplaintAssessed")
    def _complaint_assessed(
        self, customer_id: uuid.UUID | None, category: str, severity: str, assessment: str, at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.complaint_stage = "assessed"
        self.complaint_category = category
        self.complaint_severity = severity
        self.complaint_assessment = assessment
        self.last_changed_at = at

    @event("ComplaintResolved")
    def _complaint_resolved(
        self, customer_id: uuid.UUID | None, resolution: str, at: datetime, owner_id: uuid.UUID | None = None
    ) -> None:
        self.complaint_stage = "resolved"
        self.complaint_resolution = resolution
        self.last_changed_at = at

    @event("ComplaintSummarised")
    def _complaint_summarised(
        self, customer_id: uuid.UUID | None, summary: str, root_cause: str, at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.complaint_stage = "summarised"
        self.complaint_summary = summary
        self.complaint_root_cause = root_cause
        self.last_changed_at = at

    @event("SurveyCompleted")
    def _survey_completed(
        self, customer_id: uuid.UUID | None, score: int, comment: str | None, at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.survey_score = score
        self.survey_comment = comment
        self.surveyed_at = at
        self.last_changed_at = at


# --- customer satisfaction ----------------------------------------------------------------------

def satisfaction_index(scores: Iterable[int]) -> Decimal | None:
    """The customer satisfaction index (CSI), 0-100, of survey scores 1-5; None without scores.

    CSI = (mean score - 1) / 4 * 100, rounded half up to one decimal: the 1-5 scale mapped linearly
    onto 0-100, so all 1s give 0, all 5s give 100 and all 3s give 50.
    """
    values = list(scores)
    if not values:
        return None
    # (sum/n - 1) * 25 == (sum - n) * 25 / n, computed in Decimal so the rounding is exact.
    index = Decimal((sum(values) - len(values)) * 25) / Decimal(len(values))
    return index.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)


class CustomerSatisfaction(Aggregate):
    """One customer's survey scores, one per surveyed subject (a case), and the index they give.

    Its id is derived from the customer id, so concurrent surveys of one customer collide on the
    event store's version check instead of losing a score.
    """

    @staticmethod
    def id_for(customer_id: uuid.UUID) -> uuid.UUID:
        """The id of `customer_id`'s satisfaction record."""
        return uuid.uuid5(SERVICE_NAMESPACE, f"satisfaction:{customer_id}")

    @classmethod
    def create_id(cls, customer_id: uuid.UUID) -> uuid.UUID:
        """eventsourcing's hook: the id derived from the customer."""
        return cls.id_for(customer_id)

    @event("Started")
    def __init__(self, customer_id: uuid.UUID) -> None:
        self.customer_id = customer_id
        self.scores: dict[uuid.UUID, int] = {}
        #: Scores of customers merged into this one, by merge: {merge_id: {"merged_from", "scores"}}.
        self.absorbed: dict[str, dict[str, Any]] = {}

    def record(self, subject_id: uuid.UUID, score: int, now: datetime) -> None:
        """Record the survey score given for `subject_id`, once."""
        check_score(score)
        check_aware(now)
        if subject_id in self.scores:
            raise SurveyAlreadyCompletedError(subject_id)
        self._score_recorded(subject_id, score, now)

    @event("ScoreRecorded")
    def _score_recorded(self, subject_id: uuid.UUID, score: int, at: datetime) -> None:
        self.scores[subject_id] = score

    def absorb(self, merged_from: CustomerSatisfaction, merge_id: str) -> bool:
        """Count the scores of a customer merged into this one (its own and what it had absorbed) under
        `merge_id`; False when this merge counted them already or there are none."""
        scores = merged_from.all_scores()
        if merge_id in self.absorbed or not scores:
            return False
        self._scores_absorbed(merged_from.customer_id, merge_id,
                              [{"subject_id": subject, "score": score} for subject, score in scores.items()])
        return True

    def give_back(self, merge_id: str) -> bool:
        """Stop counting the scores absorbed under `merge_id` (the merge was undone); False if none."""
        if merge_id not in self.absorbed:
            return False
        self._scores_given_back(self.absorbed[merge_id]["merged_from"], merge_id)
        return True

    def all_scores(self) -> dict[uuid.UUID, int]:
        """Every score this customer's index counts: its own and those of customers merged into it."""
        found = {subject: score for merged in self.absorbed.values() for subject, score in merged["scores"].items()}
        return {**found, **self.scores}

    @event("ScoresAbsorbed")
    def _scores_absorbed(self, merged_from: uuid.UUID, merge_id: str, scores: list[dict[str, Any]]) -> None:
        self.absorbed[merge_id] = {"merged_from": merged_from,
                                   "scores": {entry["subject_id"]: entry["score"] for entry in scores}}

    @event("ScoresGivenBack")
    def _scores_given_back(self, merged_from: uuid.UUID, merge_id: str) -> None:
        del self.absorbed[merge_id]

    @property
    def index(self) -> Decimal | None:
        """This customer's satisfaction index, 0-100 (see `satisfaction_index`), over `all_scores`."""
        return satisfaction_index(self.all_scores().values())


# --- surveys ------------------------------------------------------------------------------------

class SurveyNotFoundError(NotFoundError):
    """No survey has this id."""


class SurveyStateError(RuleViolationError):
    """The survey cannot be answered: it was answered already, or it is a case's (answered on the case)."""

    def __init__(self, survey_id: uuid.UUID, why: str) -> None:
        super().__init__(f"survey {survey_id}: {why}", survey_id=str(survey_id))


class Survey(FollowsItsCustomer):
    """A satisfaction survey asked of a customer after a delivered order or a closed case: one per
    subject (its id is derived from the subject), requested once, answered once."""

    @staticmethod
    def id_for(subject: str, subject_id: uuid.UUID) -> uuid.UUID:
        """The id of the survey about `subject` `subject_id`."""
        return uuid.uuid5(SERVICE_NAMESPACE, f"survey:{subject}:{subject_id}")

    @classmethod
    def create_id(cls, subject: str, subject_id: uuid.UUID) -> uuid.UUID:
        """eventsourcing's hook: the id derived from the subject."""
        return cls.id_for(subject, subject_id)

    @event("Requested")
    def __init__(self, subject: str, subject_id: uuid.UUID, customer_id: uuid.UUID | None, at: datetime) -> None:
        self.subject = subject
        self.subject_id = subject_id
        self.customer_id = customer_id
        #: Whose data key seals the answer's comment: the customer asked (kept across merges, as a
        #: case's `owner_id`), or the survey itself when it has no customer.
        self.owner_id: uuid.UUID = customer_id or self.id
        self.merges: list[dict[str, Any]] = []
        self.forgotten_at: datetime | None = None
        self.requested_at = at
        self.status = "requested"
        self.score: int | None = None
        self.comment: str | None = None
        self.answered_at: datetime | None = None

    @classmethod
    def request(cls, subject: str, subject_id: uuid.UUID, customer_id: uuid.UUID | None, at: datetime) -> Survey:
        """Ask for a survey about a delivered order or a closed case."""
        check_choice("subject", subject, SURVEY_SUBJECTS)
        if not isinstance(subject_id, uuid.UUID):
            raise InvalidCaseDataError("subject_id", "must be a UUID")
        check_aware(at)
        return cls(subject=subject, subject_id=subject_id, customer_id=customer_id, at=at)

    def answer(self, score: int, comment: str | None, now: datetime) -> None:
        """Record the customer's answer to a delivery's survey: score 1-5 and a comment, once."""
        check_aware(now)
        check_score(score)
        if comment is not None and not isinstance(comment, str):
            raise InvalidCaseDataError("comment", "must be text")
        if self.subject != "order":
            raise SurveyStateError(self.id, "a case's survey is answered on the case")
        if self.status != "requested":
            raise SurveyStateError(self.id, "it was answered already")
        self._answered(self.customer_id, self.subject, self.subject_id, score,
                       comment.strip() if comment else None, max(now, self.requested_at), self.owner_id)

    @event("Answered")
    def _answered(
        self,
        customer_id: uuid.UUID | None,
        subject: str,
        subject_id: uuid.UUID,
        score: int,
        comment: str | None,
        at: datetime,
        owner_id: uuid.UUID | None = None,
    ) -> None:
        self.status = "answered"
        self.score = score
        self.comment = comment
        self.answered_at = at


# --- FAQ ----------------------------------------------------------------------------------------

def check_keywords(keywords: Any) -> list[str]:
    """Keywords are a list of non-blank strings; returns them stripped and without repeats."""
    if not isinstance(keywords, list | tuple) or not all(isinstance(k, str) and k.strip() for k in keywords):
        raise InvalidFaqDataError("keywords", "must be a list of non-blank words")
    return list(dict.fromkeys(k.strip().lower() for k in keywords))


class FaqArticle(Aggregate):
    """A prepared answer in the knowledge base: drafted, published, retired; its use is measured."""

    @event("Drafted")
    def __init__(self, question: str, answer: str, keywords: list[str], department: str | None, at: datetime) -> None:
        self.question = question
        self.answer = answer
        self.keywords = list(keywords)
        self.department = department
        self.status = "draft"
        self.drafted_at = at
        self.published_at: datetime | None = None
        self.retired_at: datetime | None = None
        self.uses = 0
        self.helpful_votes = 0
        self.unhelpful_votes = 0

    @classmethod
    def draft(
        cls,
        question: str,
        answer: str,
        keywords: list[str],
        department: str | None,
        now: datetime,
        article_id: uuid.UUID | None = None,
    ) -> FaqArticle:
        """Draft a new article; with `article_id` (derived from the drafting command), a redelivered
        command collides with its first run instead of drafting twice."""
        check_text("question", question, InvalidFaqDataError)
        check_text("answer", answer, InvalidFaqDataError)
        cleaned = check_keywords(keywords)
        if department is not None and department not in DEPARTMENTS:
            raise InvalidFaqDataError("department", f"must be one of {', '.join(DEPARTMENTS)}")
        check_aware(now, InvalidFaqDataError)
        facts: dict[str, Any] = {"question": question.strip(), "answer": answer.strip(), "keywords": cleaned,
                                 "department": department, "at": now}
        if article_id is None:
            return cls(**facts)
        return cls._create(cls.Drafted, id=article_id, **facts)  # type: ignore[attr-defined]

    @staticmethod
    def id_for_command(command_id: str) -> uuid.UUID:
        """The id an article drafted by command `command_id` gets: the same for every delivery."""
        return uuid.uuid5(FAQ_FROM_COMMAND_NAMESPACE, command_id)

    def revise(self, question: str, answer: str, keywords: list[str], now: datetime) -> None:
        """Rewrite a draft."""
        self._check_status("revise", "draft")
        check_text("question", question, InvalidFaqDataError)
        check_text("answer", answer, InvalidFaqDataError)
        cleaned = check_keywords(keywords)
        check_aware(now, InvalidFaqDataError)
        self._revised(question.strip(), answer.strip(), cleaned, now)

    def publish(self, now: datetime) -> None:
        """Publish a draft: from now on it is suggested for matching cases."""
        self._check_status("publish", "draft")
        check_aware(now, InvalidFaqDataError)
        self._published(self.question, self.keywords, self.department, now)

    def retire(self, reason: str, now: datetime) -> None:
        """Retire a published article; it is suggested no more. Retiring is final."""
        self._check_status("retire", "published")
        check_text("reason", reason, InvalidFaqDataError)
        check_aware(now, InvalidFaqDataError)
        self._retired(reason.strip(), now)

    def record_use(
        self, case_id: uuid.UUID | None, customer_id: uuid.UUID | None, helpful: bool | None, now: datetime
    ) -> None:
        """Record that the article was used (for a case, when given), and whether it helped, when known."""
        self._check_status("record a use of", "published")
        if helpful is not None and not isinstance(helpful, bool):
            raise InvalidFaqDataError("helpful", "must be true, false or absent")
        check_aware(now, InvalidFaqDataError)
        self._used(case_id, customer_id, helpful, now)

    @property
    def helpfulness(self) -> Decimal | None:
        """Share of helpfulness votes that said helpful, 0-1 to two decimals; None without votes."""
        votes = self.helpful_votes + self.unhelpful_votes
        if not votes:
            return None
        return (Decimal(self.helpful_votes) / Decimal(votes)).quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)

    def terms(self) -> list[str]:
        """The search terms this article is suggested by: its question's and keywords' tokens."""
        return sorted(search_terms(" ".join([self.question, *self.keywords])))

    def _check_status(self, action: str, *allowed: str) -> None:
        if self.status not in allowed:
            raise FaqStateError(self.id, self.status, action)

    @event("Revised")
    def _revised(self, question: str, answer: str, keywords: list[str], at: datetime) -> None:
        self.question = question
        self.answer = answer
        self.keywords = list(keywords)

    @event("Published")
    def _published(self, question: str, keywords: list[str], department: str | None, at: datetime) -> None:
        self.status = "published"
        self.published_at = at

    @event("Retired")
    def _retired(self, reason: str, at: datetime) -> None:
        self.status = "retired"
        self.retired_at = at

    @event("Used")
    def _used(
        self, case_id: uuid.UUID | None, customer_id: uuid.UUID | None, helpful: bool | None, at: datetime
    ) -> None:
        self.uses += 1
        if helpful is True:
            self.helpful_votes += 1
        elif helpful is False:
            self.unhelpful_votes += 1


@dataclass(frozen=True)
class FaqSuggestion:
    """A published article suggested for a text, with how well it matched."""

    article_id: uuid.UUID
    score: float
    matched: list[str]


class KnowledgeBase(Aggregate):
    """The published FAQ articles and their search terms: what suggestions are chosen from.

    One per service (a fixed id). Publishing and retiring save it with the article in one
    transaction, so it never lists a retired article.
    """

    @classmethod
    def create_id(cls) -> uuid.UUID:
        """eventsourcing's hook: the one fixed id."""
        return KNOWLEDGE_BASE_ID

    @event("Started")
    def __init__(self) -> None:
        self.articles: dict[uuid.UUID, list[str]] = {}

    @event("Listed")
    def list_article(self, article_id: uuid.UUID, terms: list[str]) -> None:
        """List a published article under its search terms."""
        self.articles[article_id] = list(terms)

    def unlist(self, article_id: uuid.UUID) -> None:
        """Stop suggesting an article."""
        if article_id in self.articles:
            self._unlisted(article_id)

    @event("Unlisted")
    def _unlisted(self, article_id: uuid.UUID) -> None:
        del self.articles[article_id]

    def suggest(self, text: str, limit: int = 3, min_score: float = 0.1) -> list[FaqSuggestion]:
        """The best-matching articles for `text`, best first.

        Score = |T ∩ A| / sqrt(|T| * |A|) (the cosine of the two term sets, 0-1), where T is the
        text's search terms and A an article's. Only scores of at least `min_score` count; ties go
        to the lower article id, so the same text always gets the same suggestions.
        """
        wanted = search_terms(text)
        found: list[FaqSuggestion] = []
        for article_id, terms in self.articles.items():
            common = wanted & set(terms)
            if not common:
                continue
            score = round(len(common) / math.sqrt(len(wanted) * len(terms)), 4)
            if score >= min_score:
                found.append(FaqSuggestion(article_id, score, sorted(common)))
        found.sort(key=lambda s: (-s.score, str(s.article_id)))
        return found[:limit]
