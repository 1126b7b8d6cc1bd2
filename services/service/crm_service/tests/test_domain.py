"""The service context's aggregates and rules, alone: no store, no broker."""

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.errors import InvalidRequestError
from crm_service.domain import (
    Case,
    CaseClockError,
    CaseStateError,
    ClassificationRules,
    ComplaintAlreadyRegisteredError,
    ComplaintStageError,
    CustomerSatisfaction,
    FaqArticle,
    FaqStateError,
    InvalidCaseDataError,
    InvalidFaqDataError,
    KnowledgeBase,
    RoutingTable,
    ServicePolicy,
    SlaPolicy,
    SlaTarget,
    SurveyAlreadyCompletedError,
    escalation_tier,
    satisfaction_index,
    tokens,
)

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
POLICY = ServicePolicy()
CUSTOMER = uuid4()


def a_case(subject="Question about my account", body="Can you help me?", **overrides):
    fields = {"channel": "email", "subject": subject, "body": body, "sender": "li.na@example.com",
              "customer_id": CUSTOMER, "now": T0, "policy": POLICY}
    fields.update(overrides)
    return Case.open(**fields)


def names(events):
    return [type(e).__name__ for e in events]


def later(**delta):
    return T0 + timedelta(**delta)


# --- opening, classification and routing --------------------------------------------------------

def test_opening_classifies_routes_and_acknowledges_at_once():
    faq = uuid4()
    case = a_case("Parcel not delivered", "Order 1001 never arrived", suggested_faq_ids=[faq])
    assert names(case.collect_events()) == ["Opened", "Classified", "Assigned", "Acknowledged"]
    assert (case.status, case.department, case.priority, case.group) == (
        "open", "customer_service", "ordinary", "customer_care"
    )
    assert case.acknowledged_at == T0 and case.suggested_faq_ids == [faq]
    assert case.first_response_due == later(hours=24) and case.resolution_due == later(days=5)


@pytest.mark.parametrize(
    ("subject", "body", "department"),
    [
        ("What is the price of the X200?", "", "sales"),
        ("Stock question", "Is the X200 in stock?", "sales"),
        ("Need product information", "spec sheet please", "sales"),
        ("询问价格", "请问库存情况", "sales"),
        ("My parcel was not delivered", "", "customer_service"),
        ("Faulty kettle", "it is broken, I want to return it", "customer_service"),
        ("退货", "产品故障", "customer_service"),
        ("Press enquiry", "I am a journalist at the Daily", "public_relations"),
        ("Investor relations", "shareholders meeting", "public_relations"),
        ("Sponsorship of the community run", "", "public_relations"),
        ("My CV", "please find my resume attached", "human_resources"),
        ("Interview request", "", "human_resources"),
        ("应聘", "附上我的简历", "human_resources"),
        ("Invoice 42", "accounts payable query", "finance"),
        ("Monthly statement", "receivables do not match", "finance"),
        ("Hello", "just saying hello", "customer_service"),
    ],
)
def test_department_rules_follow_the_email_handling_notes(subject, body, department):
    assert ClassificationRules().classify(subject, body).department == department


def test_the_subject_outweighs_the_body_and_ties_go_to_the_first_department():
    rules = ClassificationRules()
    assert rules.classify("Invoice", "price").department == "finance"
    assert rules.classify("Invoice and price", "").department == "sales"


@pytest.mark.parametrize(
    ("subject", "body", "priority"),
    [
        ("A suggestion", "an idea to improve your app", "valuable_suggestion"),
        ("Where is my parcel", "", "ordinary"),
        ("Bulk order", "we need a special discount approval", "special"),
        ("Urgent", "our lawyer will contact you", "important"),
        ("Safety issue", "the heater caught fire", "emergency"),
        ("Emergency and a suggestion", "", "emergency"),
        ("紧急", "", "emergency"),
    ],
)
def test_priority_rules_pick_the_most_urgent_class_found(subject, body, priority):
    assert ClassificationRules().classify(subject, body).priority == priority


@pytest.mark.parametrize(
    ("text", "complaint"),
    [("This is unacceptable", True), ("I want to complain", True), ("我要投诉", True), ("Thanks a lot", False)],
)
def test_complaint_keywords_flag_a_complaint_on_opening(text, complaint):
    case = a_case(text, "")
    assert case.is_complaint is complaint
    assert ("ComplaintRegistered" in names(case.collect_events())) is complaint


def test_classification_rules_are_configurable():
    rules = ClassificationRules(
        department_keywords={"finance": ("refund",)}, default_department="sales", priority_keywords={}
    )
    assert rules.classify("refund please", "").department == "finance"
    assert rules.classify("hello", "").department == "sales"
    assert rules.classify("emergency", "").priority == "ordinary"
    with pytest.raises(ValueError):
        ClassificationRules(default_department="marketing")


def test_emergency_routes_to_the_crisis_team_and_escalates_at_once():
    case = a_case("Emergency: a fire", "")
    assert names(case.collect_events()) == ["Opened", "Classified", "Assigned", "Escalated", "Acknowledged"]
    assert (case.group, case.escalation_level, case.escalated_to) == ("crisis_team", 3, "senior_management")
    assert case.first_response_due == later(minutes=15)


def test_important_cases_go_to_senior_management():
    assert a_case("Urgent contract question").group == "senior_management"


def test_routing_and_sla_are_configurable():
    groups = {"sales": "s", "customer_service": "c", "public_relations": "p", "human_resources": "h", "finance": "f"}
    targets = {p: SlaTarget(timedelta(minutes=1), timedelta(minutes=2)) for p in SlaPolicy().targets}
    policy = ServicePolicy(sla=SlaPolicy(targets), routing=RoutingTable(groups, {}))
    case = a_case("Urgent price question", policy=policy)
    assert (case.group, case.first_response_due, case.resolution_due) == ("s", later(minutes=1), later(minutes=2))
    with pytest.raises(ValueError):
        SlaPolicy({"ordinary": SlaTarget(timedelta(hours=1), timedelta(hours=2))})
    with pytest.raises(ValueError):
        RoutingTable({"sales": "s"})


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"channel": "fax"}, "channel"),
        ({"subject": "  "}, "subject"),
        ({"sender": ""}, "sender"),
        ({"now": datetime(2026, 11, 20, 9, 0)}, "now"),
    ],
)
def test_opening_with_bad_data_names_the_field(overrides, field):
    with pytest.raises(InvalidCaseDataError) as raised:
        a_case(**overrides)
    assert field in raised.value.details["fields"]


def test_reclassifying_moves_deadlines_and_group_and_may_escalate():
    case = a_case("Where is my parcel")
    case.collect_events()
    case.classify("finance", "emergency", "wang.wei", later(minutes=5), POLICY)
    assert names(case.collect_events()) == ["Classified", "Assigned", "Escalated"]
    assert (case.department, case.priority, case.classified_by) == ("finance", "emergency", "wang.wei")
    assert case.first_response_due == later(minutes=5 + 15)  # a more urgent class counts from reclassifying
    case.classify("finance", "emergency", "wang.wei", later(minutes=6), POLICY)
    assert case.collect_events() == []


# --- responses, SLA and escalation --------------------------------------------------------------

def test_the_first_response_stops_the_first_response_clock():
    case = a_case()
    case.respond("wang.wei", "We are on it", later(hours=1))
    case.respond("wang.wei", "Fixed soon", later(hours=30))
    responded = [e for e in case.collect_events() if type(e).__name__ == "Responded"]
    assert [e.first for e in responded] == [True, False]
    assert case.first_response_at == later(hours=1)
    assert "first_response" not in case.breaches


def test_check_sla_records_each_breach_once_and_escalates():
    case = a_case()
    case.collect_events()
    assert case.check_sla(later(hours=23)) == []
    assert case.check_sla(later(hours=25)) == ["first_response"]
    assert names(case.collect_events()) == ["SlaBreached", "Escalated"]
    assert case.check_sla(later(hours=26)) == []
    assert case.check_sla(later(days=6)) == ["resolution"]
    assert case.check_sla(later(days=7)) == []
    assert (case.escalation_level, case.escalated_to) == (2, "department_head")
    assert set(case.breaches) == {"first_response", "resolution"}


def test_a_late_first_response_records_its_breach_first():
    case = a_case()
    case.collect_events()
    case.respond("wang.wei", "Sorry for the wait", later(hours=30))
    assert names(case.collect_events()) == ["SlaBreached", "Escalated", "Responded"]
    assert case.check_sla(later(hours=31)) == []


def test_no_sla_runs_on_a_resolved_case_and_resolution_stops_the_first_response_clock():
    case = a_case()
    case.resolve("answered by phone", later(hours=1))
    assert case.first_response_at == later(hours=1)
    assert case.check_sla(later(days=30)) == []
    case.reopen("still broken", later(days=30))
    assert case.check_sla(later(days=30)) == ["resolution"]


def test_resolving_late_says_the_sla_was_missed():
    case = a_case()
    case.collect_events()
    case.respond("wang.wei", "looking", later(hours=1))
    case.resolve("done", later(days=6))
    resolved = [e for e in case.collect_events() if type(e).__name__ == "Resolved"]
    assert resolved[0].within_sla is False


def test_manual_escalation_climbs_the_tiers_and_stays_at_the_top():
    case = a_case()
    for minutes in range(1, 5):
        case.escalate("customer is upset", later(minutes=minutes))
    assert (case.escalation_level, case.escalated_to) == (4, "senior_management")
    assert [escalation_tier(n) for n in (1, 2, 3, 9)] == [
        "team_lead", "department_head", "senior_management", "senior_management"
    ]


def test_time_must_not_run_backwards():
    case = a_case()
    case.respond("wang.wei", "hi", later(hours=2))
    with pytest.raises(CaseClockError) as raised:
        case.respond("wang.wei", "earlier", later(hours=1))
    assert "now" in raised.value.details["fields"]


# --- resolve, close, reopen ---------------------------------------------------------------------

def test_lifecycle_resolve_close_reopen():
    case = a_case()
    case.assign("customer_care", "wang.wei", later(minutes=1))
    case.respond("wang.wei", "On it", later(minutes=2))
    case.resolve("replaced the part", later(hours=3))
    case.close(later(hours=4))
    assert (case.status, case.resolved_at, case.closed_at) == ("closed", later(hours=3), later(hours=4))
    case.reopen("broke again", later(days=1))
    assert (case.status, case.resolution, case.resolved_at, case.closed_at, case.reopen_count) == (
        "open", None, None, None, 1
    )


@pytest.mark.parametrize(
    ("setup", "command"),
    [
        ([], lambda c, t: c.close(t)),
        ([], lambda c, t: c.reopen("x", t)),
        ([], lambda c, t: c.complete_survey(5, None, t)),
        (["resolve"], lambda c, t: c.respond("a", "b", t)),
        (["resolve"], lambda c, t: c.resolve("again", t)),
        (["resolve"], lambda c, t: c.assign("g", None, t)),
        (["resolve", "close"], lambda c, t: c.flag_complaint("a", t)),
        (["resolve", "close"], lambda c, t: c.escalate("why", t)),
        (["resolve", "close"], lambda c, t: c.classify("sales", "ordinary", "a", t, POLICY)),
    ],
)
def test_commands_not_allowed_in_a_status_change_nothing(setup, command):
    case = a_case()
    if "resolve" in setup:
        case.resolve("done", later(hours=1))
    if "close" in setup:
        case.close(later(hours=2))
    case.collect_events()
    version = case.version
    with pytest.raises(CaseStateError):
        command(case, later(hours=3))
    assert case.collect_events() == [] and case.version == version


def test_an_invalid_response_records_no_breach_either():
    case = a_case()
    case.collect_events()
    with pytest.raises(InvalidCaseDataError):
        case.respond("wang.wei", "   ", later(days=30))
    assert case.collect_events() == [] and case.breaches == {}


# --- complaints ---------------------------------------------------------------------------------

def test_a_complaint_walks_receive_assess_resolve_summarise():
    case = a_case()
    case.flag_complaint("wang.wei", later(minutes=1))
    with pytest.raises(ComplaintAlreadyRegisteredError):
        case.flag_complaint("wang.wei", later(minutes=1))
    with pytest.raises(ComplaintStageError):
        case.resolve("done", later(minutes=2))
    case.assess_complaint("delivery", "medium", "courier lost it", later(minutes=3))
    case.resolve("re-sent", later(hours=1))
    with pytest.raises(ComplaintStageError):
        case.close(later(hours=2))
    case.summarise_complaint("lost parcel", "hand-over not scanned", later(hours=2))
    case.close(later(hours=3))
    stages = [n for n in names(case.collect_events()) if n.startswith("Complaint")]
    assert stages == ["ComplaintRegistered", "ComplaintAssessed", "ComplaintResolved", "ComplaintSummarised"]
    assert (case.complaint_stage, case.complaint_root_cause) == ("summarised", "hand-over not scanned")


def test_reopening_a_complaint_needs_it_resolved_and_summarised_again():
    case = a_case("This is unacceptable")
    case.assess_complaint("service", "high", "rude reply", later(minutes=1))
    case.resolve("apologised", later(minutes=2))
    case.summarise_complaint("rude reply", "training", later(minutes=3))
    case.close(later(minutes=4))
    case.reopen("not satisfied", later(minutes=5))
    assert case.complaint_stage == "assessed"
    with pytest.raises(ComplaintStageError):
        case.summarise_complaint("x", "y", later(minutes=6))


@pytest.mark.parametrize(
    ("category", "severity", "field"), [("weather", "low", "category"), ("service", "apocalyptic", "severity")]
)
def test_complaint_assessment_uses_the_vocabulary(category, severity, field):
    case = a_case("unacceptable")
    with pytest.raises(InvalidCaseDataError) as raised:
        case.assess_complaint(category, severity, "x", later(minutes=1))
    assert field in raised.value.details["fields"]


def test_assessing_a_case_that_is_no_complaint_is_a_stage_error():
    with pytest.raises(ComplaintStageError):
        a_case().assess_complaint("service", "low", "x", later(minutes=1))


# --- surveys and satisfaction -------------------------------------------------------------------

def closed_case():
    case = a_case()
    case.resolve("done", later(hours=1))
    case.close(later(hours=2))
    return case


def test_a_survey_follows_closing_once():
    case = closed_case()
    case.complete_survey(4, " quick ", later(hours=3))
    assert (case.survey_score, case.survey_comment) == (4, "quick")
    with pytest.raises(SurveyAlreadyCompletedError):
        case.complete_survey(5, None, later(hours=4))


@pytest.mark.parametrize("score", [0, 6, -1, 4.5, "5", True, None])
def test_a_survey_score_is_a_whole_number_from_1_to_5(score):
    with pytest.raises(InvalidCaseDataError) as raised:
        closed_case().complete_survey(score, None, later(hours=3))
    assert "score" in raised.value.details["fields"]


@pytest.mark.parametrize(
    ("scores", "index"),
    [([], None), ([1], Decimal("0.0")), ([5], Decimal("100.0")), ([3], Decimal("50.0")),
     ([4, 5], Decimal("87.5")), ([5, 4, 4], Decimal("83.3")), ([2, 2, 3], Decimal("33.3"))],
)
def test_satisfaction_index_maps_the_mean_score_onto_0_to_100(scores, index):
    assert satisfaction_index(scores) == index


def test_customer_satisfaction_keeps_one_score_per_subject():
    satisfaction = CustomerSatisfaction(customer_id=CUSTOMER)
    assert satisfaction.id == CustomerSatisfaction.id_for(CUSTOMER)
    first, second = uuid4(), uuid4()
    satisfaction.record(first, 5, T0)
    satisfaction.record(second, 3, T0)
    assert satisfaction.index == Decimal("75.0")
    with pytest.raises(SurveyAlreadyCompletedError):
        satisfaction.record(first, 1, T0)


# --- FAQ ----------------------------------------------------------------------------------------

def an_article(question="Where is my parcel?", keywords=("delivery", "tracking")):
    return FaqArticle.draft(question, "Track it on our site.", list(keywords), "customer_service", T0)


def test_faq_article_lifecycle_and_usage():
    article = an_article()
    article.revise("Where is my parcel now?", "Track it.", ["Delivery", "delivery", "tracking"], T0)
    assert article.keywords == ["delivery", "tracking"]
    article.publish(T0)
    with pytest.raises(FaqStateError):
        article.revise("x", "y", [], T0)
    article.record_use(uuid4(), CUSTOMER, True, T0)
    article.record_use(None, None, False, T0)
    article.record_use(None, None, True, T0)
    article.record_use(None, None, None, T0)
    assert (article.uses, article.helpful_votes, article.unhelpful_votes) == (4, 2, 1)
    assert article.helpfulness == Decimal("0.67")
    article.retire("outdated", T0)
    with pytest.raises(FaqStateError):
        article.record_use(None, None, True, T0)
    with pytest.raises(FaqStateError):
        article.publish(T0)
    assert names(article.collect_events()) == [
        "Drafted", "Revised", "Published", "Used", "Used", "Used", "Used", "Retired"
    ]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"question": ""}, "question"), ({"answer": " "}, "answer"), ({"keywords": ["ok", ""]}, "keywords"),
     ({"department": "marketing"}, "department")],
)
def test_drafting_with_bad_data_names_the_field(overrides, field):
    fields = {"question": "Q?", "answer": "A.", "keywords": [], "department": None, "now": T0}
    fields.update(overrides)
    with pytest.raises(InvalidFaqDataError) as raised:
        FaqArticle.draft(**fields)
    assert field in raised.value.details["fields"]
    assert isinstance(raised.value, InvalidRequestError)


def test_tokens_fold_plurals_and_pair_chinese_characters():
    assert tokens("Returns, PRESS and CVs!") == ["return", "press", "and", "cvs"]
    assert tokens("退货问题") == ["退货", "货问", "问题"]


def test_suggestions_rank_by_term_overlap_deterministically():
    parcel, invoice, retired = an_article(), an_article("How do I read my invoice?", ["billing"]), an_article()
    kb = KnowledgeBase()
    for article in (parcel, invoice, retired):
        kb.list_article(article.id, article.terms())
    kb.unlist(retired.id)
    found = kb.suggest("My parcel delivery is late, where is it?")
    assert [s.article_id for s in found] == [parcel.id]
    assert found[0].matched == ["delivery", "parcel"]
    # Stopwords dropped: T = {parcel, delivery, late}, A = {parcel, delivery, tracking}: 2 / sqrt(3 * 3).
    assert found[0].score == 0.6667
    assert kb.suggest("the weather today") == []
    assert kb.suggest("parcel and invoice", limit=1) == kb.suggest("parcel and invoice", limit=1)
