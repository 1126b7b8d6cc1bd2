"""Priority classes acted on ("special" to senior decision-makers, a prompt thank-you for a valuable
suggestion), SLA deadlines counted from a reclassification to a more urgent class, and satisfaction
surveys after a delivery or a closed case. Pure domain."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from crm_service.domain import (
    AUTO_REPLY_AGENT,
    Case,
    InvalidCaseDataError,
    ServicePolicy,
    Survey,
    SurveyStateError,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
POLICY = ServicePolicy()
CUSTOMER = uuid4()


def later(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


def a_case(subject: str, body: str = "") -> Case:
    return Case.open("email", subject, body, "li.na@example.com", CUSTOMER, T0, POLICY)


def test_a_special_request_goes_to_the_senior_decision_makers():
    case = a_case("Special pricing exception for a bulk order")
    assert (case.priority, case.group) == ("special", "senior_decision_makers")


def test_a_valuable_suggestion_gets_a_prompt_thank_you_as_its_first_response():
    case = a_case("A suggestion to improve your app")
    assert case.priority == "valuable_suggestion"
    assert [type(e).__name__ for e in case.collect_events()][-2:] == ["Acknowledged", "Responded"]
    assert (case.first_response_at, case.responses[0]["agent"]) == (T0, AUTO_REPLY_AGENT)
    assert case.responses[0]["body"] == POLICY.thank_you_reply
    assert case.check_sla(later(days=1)) == []  # the thanks kept the first-response promise


def test_reclassifying_to_a_suggestion_thanks_once_and_only_if_not_answered_yet():
    case = a_case("Question about my account")
    case.classify("customer_service", "valuable_suggestion", "wang.wei", later(minutes=10), POLICY)
    assert [r["agent"] for r in case.responses] == [AUTO_REPLY_AGENT]
    answered = a_case("Question about my account")
    answered.respond("wang.wei", "Here is how", later(minutes=5))
    answered.classify("customer_service", "valuable_suggestion", "wang.wei", later(minutes=10), POLICY)
    assert [r["agent"] for r in answered.responses] == ["wang.wei"]


def test_raising_the_priority_counts_the_new_targets_from_the_reclassification():
    case = a_case("Question about my account")  # ordinary: first response within 24 h
    case.classify("customer_service", "important", "wang.wei", later(hours=20), POLICY)  # important: 2 h
    assert case.first_response_due == later(hours=22)
    assert case.resolution_due == later(hours=20 + 24)
    assert case.check_sla(later(hours=21)) == []  # not breached the moment it was raised


def test_raising_the_priority_never_postpones_a_deadline_already_promised():
    case = a_case("Question about my account")  # first response due at 24 h
    case.classify("customer_service", "important", "wang.wei", later(hours=23), POLICY)
    assert case.first_response_due == later(hours=24)  # min(23 h + 2 h, 24 h)


def test_lowering_the_priority_counts_from_opening():
    case = a_case("Urgent: contract question")  # important
    case.classify("customer_service", "ordinary", "wang.wei", later(hours=1), POLICY)
    assert (case.first_response_due, case.resolution_due) == (later(hours=24), later(days=5))


def test_a_delivery_survey_is_requested_then_answered_once():
    order_id = uuid4()
    survey = Survey.request("order", order_id, CUSTOMER, T0)
    assert survey.id == Survey.id_for("order", order_id) != Survey.id_for("case", order_id)
    survey.answer(5, "  arrived early ", later(days=1))
    assert (survey.status, survey.score, survey.comment) == ("answered", 5, "arrived early")
    with pytest.raises(SurveyStateError):
        survey.answer(4, None, later(days=2))


def test_a_case_survey_is_answered_on_the_case_not_here():
    survey = Survey.request("case", uuid4(), CUSTOMER, T0)
    with pytest.raises(SurveyStateError):
        survey.answer(4, None, later(days=1))


@pytest.mark.parametrize(("subject", "score"), [("invoice", 3), ("order", 0), ("order", 6)])
def test_bad_survey_input_names_the_field(subject, score):
    with pytest.raises(InvalidCaseDataError):
        Survey.request(subject, uuid4(), CUSTOMER, T0).answer(score, None, T0)
