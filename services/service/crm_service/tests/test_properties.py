"""Property tests: under random command sequences a case never reaches an illegal state, a failed
command changes nothing, an SLA breach is recorded at most once per target, a survey score stays 1-5,
and replaying the recorded events rebuilds the same case."""

import copy
from collections import Counter
from datetime import UTC, datetime, timedelta
from uuid import uuid4

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from crm_contracts.errors import CrmError
from crm_contracts.vocabulary.service import (
    CASE_STATUSES,
    COMPLAINT_CATEGORIES,
    COMPLAINT_SEVERITIES,
    COMPLAINT_STAGES,
    DEPARTMENTS,
    ESCALATION_TIERS,
    PRIORITIES,
    SLA_TARGETS,
)
from crm_service.domain import Case, CustomerSatisfaction, InvalidCaseDataError, ServicePolicy, satisfaction_index

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
POLICY = ServicePolicy()
SUBJECTS = ["Where is my parcel", "Emergency: fire", "Urgent contract", "This is unacceptable", "An idea", "简历"]
TEXT = st.sampled_from(["", "  ", "done", "wang.wei"])
MINUTES = st.integers(min_value=-5, max_value=3 * 24 * 60)


class CaseMachine(RuleBasedStateMachine):
    """Drives one case with random commands at random (mostly forward) times."""

    @initialize(subject=st.sampled_from(SUBJECTS), customer=st.booleans())
    def open_case(self, subject, customer):
        self.now = T0
        self.case = Case.open("chat", subject, "", "li.na", uuid4() if customer else None, T0, POLICY)
        self.events = list(self.case.collect_events())

    def attempt(self, minutes, command):
        """Run `command` at now + minutes; a command that raises must leave the case exactly as it was."""
        at = self.now + timedelta(minutes=minutes)
        before = copy.deepcopy(vars(self.case))
        try:
            command(at)
        except CrmError:
            assert self.case.collect_events() == []
            assert vars(self.case) == before
            return
        recorded = self.case.collect_events()
        if recorded:
            self.now = at
        self.events.extend(recorded)

    @rule(minutes=MINUTES, agent=TEXT, body=TEXT)
    def respond(self, minutes, agent, body):
        self.attempt(minutes, lambda at: self.case.respond(agent, body, at))

    @rule(minutes=MINUTES, group=TEXT, agent=st.none() | TEXT)
    def assign(self, minutes, group, agent):
        self.attempt(minutes, lambda at: self.case.assign(group, agent, at))

    @rule(minutes=MINUTES, department=st.sampled_from([*DEPARTMENTS, "marketing"]),
          priority=st.sampled_from([*PRIORITIES, "whenever"]))
    def classify(self, minutes, department, priority):
        self.attempt(minutes, lambda at: self.case.classify(department, priority, "agent", at, POLICY))

    @rule(minutes=MINUTES, reason=TEXT)
    def escalate(self, minutes, reason):
        self.attempt(minutes, lambda at: self.case.escalate(reason, at))

    @rule(minutes=MINUTES)
    def check_sla(self, minutes):
        self.attempt(minutes, lambda at: self.case.check_sla(at))

    @rule(minutes=MINUTES, resolution=TEXT)
    def resolve(self, minutes, resolution):
        self.attempt(minutes, lambda at: self.case.resolve(resolution, at))

    @rule(minutes=MINUTES)
    def close(self, minutes):
        self.attempt(minutes, lambda at: self.case.close(at))

    @rule(minutes=MINUTES, reason=TEXT)
    def reopen(self, minutes, reason):
        self.attempt(minutes, lambda at: self.case.reopen(reason, at))

    @rule(minutes=MINUTES, by=TEXT)
    def flag_complaint(self, minutes, by):
        self.attempt(minutes, lambda at: self.case.flag_complaint(by, at))

    @rule(minutes=MINUTES, category=st.sampled_from([*COMPLAINT_CATEGORIES, "weather"]),
          severity=st.sampled_from(COMPLAINT_SEVERITIES), assessment=TEXT)
    def assess_complaint(self, minutes, category, severity, assessment):
        self.attempt(minutes, lambda at: self.case.assess_complaint(category, severity, assessment, at))

    @rule(minutes=MINUTES, summary=TEXT, root_cause=TEXT)
    def summarise_complaint(self, minutes, summary, root_cause):
        self.attempt(minutes, lambda at: self.case.summarise_complaint(summary, root_cause, at))

    @rule(minutes=MINUTES, score=st.integers(min_value=-1, max_value=7), comment=st.none() | TEXT)
    def complete_survey(self, minutes, score, comment):
        self.attempt(minutes, lambda at: self.case.complete_survey(score, comment, at))

    @invariant()
    def status_and_timestamps_agree(self):
        case = self.case
        assert case.status in CASE_STATUSES
        assert (case.resolved_at is not None) == (case.status in ("resolved", "closed"))
        assert (case.closed_at is not None) == (case.status == "closed")
        assert (case.resolution is not None) == (case.status in ("resolved", "closed"))
        assert case.department in DEPARTMENTS and case.priority in PRIORITIES
        assert case.opened_at <= case.last_changed_at == self.now
        # The first response, or a resolution before it, stops the first-response clock.
        if case.responses:
            assert case.first_response_at is not None and case.first_response_at <= case.responses[0]["at"]
        if case.status != "open":
            assert case.first_response_at is not None

    @invariant()
    def complaint_stage_matches_status(self):
        case = self.case
        if not case.is_complaint:
            assert case.complaint_stage is None
            return
        assert case.complaint_stage in COMPLAINT_STAGES
        allowed = {"open": {"received", "assessed"}, "resolved": {"resolved", "summarised"}, "closed": {"summarised"}}
        assert case.complaint_stage in allowed[case.status]

    @invariant()
    def sla_breaches_are_recorded_at_most_once_per_target(self):
        breached = Counter(e.target for e in self.events if type(e).__name__ == "SlaBreached")
        assert set(breached) <= set(SLA_TARGETS)
        assert all(count == 1 for count in breached.values())
        assert set(breached) == set(self.case.breaches)
        assert self.case.escalation_level >= len(breached)
        assert self.case.escalated_to in (None, *ESCALATION_TIERS)

    @invariant()
    def a_survey_score_stays_within_1_to_5(self):
        surveys = [e for e in self.events if type(e).__name__ == "SurveyCompleted"]
        assert len(surveys) <= 1
        assert self.case.survey_score is None or 1 <= self.case.survey_score <= 5

    def teardown(self):
        if not hasattr(self, "case"):
            return
        replayed = None
        for recorded in self.events:
            replayed = recorded.mutate(replayed)
        assert vars(replayed) == vars(self.case)


TestCaseStateMachine = CaseMachine.TestCase
TestCaseStateMachine.settings = settings(max_examples=100, stateful_step_count=30, deadline=None)


@settings(deadline=None)
@given(offsets=st.lists(st.integers(min_value=0, max_value=10 * 24 * 60), min_size=1, max_size=20))
def test_check_sla_breaches_each_target_once_exactly_when_its_deadline_passed(offsets):
    case = Case.open("web", "Where is my parcel", "", "li.na", None, T0, POLICY)
    case.collect_events()
    times = [T0 + timedelta(minutes=m) for m in sorted(offsets)]
    for at in times:
        case.check_sla(at)
    breached = Counter(e.target for e in case.collect_events() if type(e).__name__ == "SlaBreached")
    expected = {t for t, due in (("first_response", case.first_response_due), ("resolution", case.resolution_due))
                if times[-1] > due}
    assert set(breached) == expected and all(n == 1 for n in breached.values())


@given(score=st.integers() | st.floats(allow_nan=True) | st.booleans() | st.none() | st.text(max_size=2))
def test_a_survey_accepts_exactly_the_whole_scores_1_to_5(score):
    case = Case.open("web", "hello", "", "li.na", None, T0, POLICY)
    case.resolve("done", T0)
    case.close(T0)
    valid = isinstance(score, int) and not isinstance(score, bool) and 1 <= score <= 5
    try:
        case.complete_survey(score, None, T0)
    except InvalidCaseDataError:
        assert not valid and case.survey_score is None
    else:
        assert valid and case.survey_score == score


@given(scores=st.lists(st.integers(min_value=1, max_value=5), min_size=1, max_size=50))
def test_the_satisfaction_index_stays_within_0_to_100(scores):
    satisfaction = CustomerSatisfaction(customer_id=uuid4())
    for score in scores:
        satisfaction.record(uuid4(), score, T0)
    assert 0 <= satisfaction.index <= 100
    assert satisfaction.index == satisfaction_index(scores)
    assert (satisfaction.index == 100) == all(s == 5 for s in scores)
