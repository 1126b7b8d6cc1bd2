"""What the service context publishes: every payload on its feed validates against its contract, and
every public domain event has a translation."""

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from crm_runtime.feed import EventFeed
from crm_service.application import ServiceDesk
from crm_service.domain import Case, CustomerSatisfaction, FaqArticle, KnowledgeBase, Survey
from crm_service.publishing import translator
from tests.support.publishing import assert_published_under_contracts
from tests.support.publishing import domain_event_classes as domain_events

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
CUSTOMER, SURVIVOR = uuid4(), uuid4()

PUBLISHED = {
    "case_opened", "case_acknowledged", "case_classified", "case_assigned", "case_responded",
    "case_sla_breached", "case_escalated", "case_resolved", "case_closed", "case_reopened",
    "complaint_registered", "complaint_assessed", "complaint_resolved", "complaint_summarised",
    "survey_completed", "faq_published", "faq_retired", "faq_used", "survey_requested", "survey_answered",
    "case_customer_changed", "survey_customer_changed",
}


#: Noting an erasure is internal too: customer_erased says it all.
INTERNAL = {FaqArticle.Drafted, FaqArticle.Revised, *domain_events(KnowledgeBase),
            *domain_events(CustomerSatisfaction), Case.Forgotten, Survey.Forgotten}


def later(**delta):
    return T0 + timedelta(**delta)


@pytest.fixture
def desk(event_store_env):
    """On both stores: what PostgreSQL hands back (UUIDs, aware datetimes) must serialise the same."""
    app = ServiceDesk(env=event_store_env)
    yield app
    app.close()


def drive_every_event(desk):
    """Commands that between them record every kind of domain event the service has."""
    article = desk.draft_faq("Where is my parcel?", "Track it online.", ["delivery"], "customer_service", now=T0)
    desk.revise_faq(article.id, "Where is my parcel now?", "Track it online.", ["delivery", "tracking"], now=T0)
    desk.publish_faq(article.id, now=T0)
    case = desk.open_case("email", "Parcel not delivered, unacceptable", "", "li.na", CUSTOMER, now=T0)
    desk.record_faq_use(article.id, case.id, helpful=False, now=later(minutes=1))
    desk.check_sla(case.id, now=later(hours=25))
    desk.respond_to_case(case.id, "wang.wei", "Sorry, checking", now=later(hours=26))
    desk.classify_case(case.id, "customer_service", "important", "wang.wei", now=later(hours=27))
    desk.assess_complaint(case.id, "delivery", "medium", "courier lost it", now=later(hours=28))
    desk.escalate_case(case.id, "customer threatens to cancel", now=later(hours=29))
    desk.resolve_case(case.id, "re-sent by express", now=later(hours=30))
    desk.summarise_complaint(case.id, "lost parcel", "hand-over not scanned", now=later(hours=31))
    desk.close_case(case.id, now=later(hours=32))
    desk.complete_survey(case.id, 4, "fixed in the end", now=later(hours=33))
    desk.reopen_case(case.id, "second parcel lost too", now=later(days=3))
    desk.retire_faq(article.id, "new tracking portal", now=later(days=4))
    survey = desk.request_survey("order", uuid4(), CUSTOMER, later(days=5))
    desk.answer_survey(survey.id, 5, "arrived early", now=later(days=6))
    desk.absorb_customer(CUSTOMER, SURVIVOR, "m-1")
    desk.restore_customer(CUSTOMER, SURVIVOR, "m-1")
    return case


def test_every_published_payload_validates_against_its_contract(desk):
    drive_every_event(desk)
    envelopes = EventFeed(desk, translator).events_since(0, 1000)
    assert {e["type"] for e in envelopes} == PUBLISHED
    assert_published_under_contracts(envelopes, "service")
    changes = [(e["type"], e["payload"]["previous_customer_id"], e["customer_id"], e["payload"]["change"])
               for e in envelopes if e["type"].endswith("_customer_changed")]
    customer, survivor = str(CUSTOMER), str(SURVIVOR)
    assert changes == [("case_customer_changed", customer, survivor, "merged"),
                       ("survey_customer_changed", customer, survivor, "merged"),
                       ("case_customer_changed", survivor, customer, "unmerged"),
                       ("survey_customer_changed", survivor, customer, "unmerged")]
    for envelope in envelopes:
        if envelope["type"].startswith(("case_", "complaint_", "survey_")):
            assert envelope["customer_id"] == envelope["payload"]["customer_id"]
            if not envelope["type"].endswith("_customer_changed"):
                assert envelope["customer_id"] == str(CUSTOMER)


def test_every_public_domain_event_has_a_translation_and_internal_ones_none():
    public = (domain_events(Case) | domain_events(FaqArticle) | domain_events(Survey)) - INTERNAL
    assert set(translator.published_classes) == public
    assert not INTERNAL & set(translator.published_classes)

