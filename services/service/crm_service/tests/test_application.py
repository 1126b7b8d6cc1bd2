"""ServiceDesk on a real event store: the same suite on the in-memory store and on PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.errors import StaleVersionError
from crm_service.application import ServiceDesk
from crm_service.domain import (
    Case,
    CaseNotFoundError,
    CaseStateError,
    FaqArticle,
    FaqArticleNotFoundError,
    SurveyAlreadyCompletedError,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def later(**delta):
    return T0 + timedelta(**delta)


@pytest.fixture
def desk(event_store_env):
    app = ServiceDesk(env=event_store_env)
    yield app
    app.close()


def a_closed_case(desk, customer_id, subject="Where is my parcel?"):
    case = desk.open_case("web", subject, "", "li.na@example.com", customer_id, now=T0)
    desk.resolve_case(case.id, "re-sent", now=later(hours=1))
    return desk.close_case(case.id, now=later(hours=2))


def test_open_then_load(desk):
    customer = uuid4()
    opened = desk.open_case("email", "Invoice 42 is wrong", "see attached statement", "ap@acme.example", customer,
                            now=T0)
    loaded = desk.case(opened.id)
    assert loaded.matched_keywords == ["invoice", "statement"]
    assert (loaded.customer_id, loaded.department, loaded.priority, loaded.group, loaded.status) == (
        customer, "finance", "ordinary", "accounts_desk", "open"
    )
    assert loaded.acknowledged_at == T0 and loaded.first_response_due == later(hours=24)
    assert loaded.version == opened.version


def test_opening_with_a_command_id_twice_opens_one_case(desk):
    first = desk.open_case("email", "Parcel lost", "order 1001", "li.na@example.com", now=T0, command_id="k:1")
    head = desk.recorder.max_notification_id()
    again = desk.open_case("email", "Parcel lost", "order 1001", "li.na@example.com", now=T0, command_id="k:1")
    assert again.id == first.id == Case.id_for_command("k:1")
    assert desk.recorder.max_notification_id() == head
    assert desk.open_case("email", "Parcel lost", "", "li.na@example.com", now=T0, command_id="k:2").id != first.id


def test_a_racing_delivery_of_an_opening_answers_the_case_the_winner_opened(desk):
    winner = Case.open("chat", "Hello", "", "li.na", None, T0, desk.policy, case_id=Case.id_for_command("k:1"))
    desk.save(winner)
    assert desk.open_case("chat", "Hello", "", "li.na", now=T0, command_id="k:1").channel == "chat"


def test_drafting_with_a_command_id_twice_drafts_one_article(desk):
    first = desk.draft_faq("Where is my parcel?", "Track it online", ["parcel"], now=T0, command_id="k:1")
    head = desk.recorder.max_notification_id()
    again = desk.draft_faq("Where is my parcel?", "Track it online", ["parcel"], now=T0, command_id="k:1")
    assert again.id == first.id == FaqArticle.id_for_command("k:1")
    assert desk.recorder.max_notification_id() == head
    winner = FaqArticle.draft("Q", "A", [], None, T0, article_id=FaqArticle.id_for_command("k:2"))
    desk.save(winner)
    assert desk.draft_faq("Q", "A", now=T0, command_id="k:2").id == winner.id


def test_a_case_walks_its_lifecycle_with_expected_versions(desk):
    case = desk.open_case("phone", "Kettle is faulty", "", "+86 10 5555 0101", now=T0)
    case = desk.assign_case(case.id, "customer_care", "wang.wei", now=later(minutes=1), expected_version=case.version)
    case = desk.respond_to_case(case.id, "wang.wei", "We will replace it", now=later(minutes=5),
                                expected_version=case.version)
    case = desk.resolve_case(case.id, "replaced", now=later(hours=2), expected_version=case.version)
    case = desk.close_case(case.id, now=later(hours=3), expected_version=case.version)
    case = desk.reopen_case(case.id, "new one is faulty too", now=later(days=1), expected_version=case.version)
    loaded = desk.case(case.id)
    assert (loaded.status, loaded.agent, len(loaded.responses), loaded.reopen_count) == ("open", "wang.wei", 1, 1)
    assert loaded.first_response_at == later(minutes=5)


def test_a_stale_expected_version_changes_nothing(desk):
    case = desk.open_case("chat", "Price of X200?", "", "li.na", now=T0)
    desk.respond_to_case(case.id, "wang.wei", "It is 99", now=later(minutes=1), expected_version=case.version)
    with pytest.raises(StaleVersionError) as raised:
        desk.resolve_case(case.id, "answered", now=later(minutes=2), expected_version=case.version)
    assert raised.value.details["current_version"] == case.version + 1
    assert desk.case(case.id).status == "open"


def test_a_rule_violation_changes_nothing(desk):
    case = desk.open_case("chat", "Price of X200?", "", "li.na", now=T0)
    with pytest.raises(CaseStateError):
        desk.close_case(case.id, now=later(minutes=1))
    assert desk.case(case.id).version == case.version


def test_unknown_ids_are_not_found(desk):
    with pytest.raises(CaseNotFoundError):
        desk.respond_to_case(uuid4(), "a", "b", now=T0)
    with pytest.raises(FaqArticleNotFoundError):
        desk.publish_faq(uuid4(), now=T0)


def test_concurrent_responses_each_land_or_are_told_to_retry(desk):
    case = desk.open_case("chat", "Hello", "", "li.na", now=T0)

    def respond(i):
        try:
            desk.respond_to_case(case.id, f"agent{i}", "hi", now=later(minutes=1), expected_version=case.version)
            return True
        except StaleVersionError:
            return False

    with ThreadPoolExecutor(4) as pool:
        landed = sum(pool.map(respond, range(4)))
    assert landed == 1
    assert len(desk.case(case.id).responses) == 1


def test_sla_sweep_breaches_open_cases_once_and_escalates(desk):
    late = desk.open_case("email", "Where is my parcel?", "", "li.na", now=T0)
    answered = desk.open_case("email", "Delivery question", "", "wang.wei", now=T0)
    desk.respond_to_case(answered.id, "agent", "on its way", now=later(hours=1))
    closed = a_closed_case(desk, None)
    assert set(desk.open_case_ids()) == {late.id, answered.id}
    assert closed.id not in desk.open_case_ids()
    assert desk.check_all_slas(later(hours=25)) == {late.id: ["first_response"]}
    assert desk.check_all_slas(later(hours=26)) == {}
    assert desk.check_all_slas(later(days=6)) == {late.id: ["resolution"], answered.id: ["resolution"]}
    loaded = desk.case(late.id)
    assert (set(loaded.breaches), loaded.escalation_level, loaded.escalated_to) == (
        {"first_response", "resolution"}, 2, "department_head"
    )


def test_a_complaint_is_received_assessed_resolved_and_summarised(desk):
    case = desk.open_case("email", "Courier was rude", "", "li.na", uuid4(), now=T0)
    desk.flag_complaint(case.id, "wang.wei", now=later(minutes=1))
    desk.assess_complaint(case.id, "staff", "high", "rude courier", now=later(minutes=2))
    desk.resolve_case(case.id, "apologised, voucher sent", now=later(hours=1))
    desk.summarise_complaint(case.id, "rude courier", "courier not trained", now=later(hours=2))
    closed = desk.close_case(case.id, now=later(hours=3))
    assert (closed.complaint_stage, closed.complaint_category, closed.complaint_root_cause) == (
        "summarised", "staff", "courier not trained"
    )


def test_surveys_feed_the_customer_satisfaction_index(desk):
    customer = uuid4()
    first, second = a_closed_case(desk, customer), a_closed_case(desk, customer)
    assert desk.satisfaction_index(customer) is None
    desk.complete_survey(first.id, 5, "great", now=later(hours=3))
    desk.complete_survey(second.id, 3, None, now=later(hours=3))
    assert desk.satisfaction_index(customer) == Decimal("75.0")
    with pytest.raises(SurveyAlreadyCompletedError):
        desk.complete_survey(first.id, 1, None, now=later(hours=4))
    assert desk.satisfaction_index(customer) == Decimal("75.0")
    anonymous = a_closed_case(desk, None)
    assert desk.complete_survey(anonymous.id, 4, None, now=later(hours=3)).survey_score == 4


def test_published_faqs_are_suggested_until_retired_and_their_use_is_recorded(desk):
    parcel = desk.draft_faq("Where is my parcel?", "Track it online.", ["delivery", "tracking"], now=T0)
    desk.draft_faq("How do I read my invoice?", "Line by line.", ["billing"], now=T0)  # never published
    assert desk.suggest_faqs("where is my parcel") == []
    desk.publish_faq(parcel.id, now=T0)
    case = desk.open_case("web", "Parcel delivery late", "", "li.na", uuid4(), now=later(minutes=1))
    assert desk.case(case.id).suggested_faq_ids == [parcel.id]
    assert [s.article_id for s in desk.suggest_faqs_for_case(case.id)] == [parcel.id]
    article = desk.record_faq_use(parcel.id, case.id, helpful=True, now=later(minutes=2))
    assert (article.uses, article.helpfulness) == (1, Decimal("1.00"))
    desk.retire_faq(parcel.id, "new tracking portal", now=later(days=1))
    assert desk.suggest_faqs("where is my parcel") == []
    assert desk.faq(parcel.id).status == "retired"
