"""A customer's rights in the service context (crm_runtime.rights), driven through the policy inbox with
contract-shaped customer events, on the in-memory store and on PostgreSQL: erasure shreds the keys that
seal the customer's case texts and survey comments; a merge re-points every case and survey of the
absorbed customer to the survivor (and its scores to the survivor's index); an unmerge gives back
exactly what that merge moved; each is idempotent."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from crm_runtime.feed import EventFeed
from crm_runtime.policy import PolicyInbox
from crm_runtime.rights import CustomerErasedError
from crm_service.application import ServiceDesk
from crm_service.domain import Case, Survey
from crm_service.policies import policies
from crm_service.publishing import translator
from tests.support.envelopes import Stream, customer_erased, customer_merged, customer_unmerged

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)
LI_NA, WANG_WEI, ZHAO_LEI = UUID(int=0xA1), UUID(int=0xB2), UUID(int=0xC3)
SUBJECT, BODY, SENDER = "Broken kettle from Li Na", "Li Na, 12 Jinqiao Road, phone 139 0000 1234", "li.na@example.org"


def later(**delta: float) -> datetime:
    return T0 + timedelta(**delta)


@pytest.fixture
def desk(event_store_env: dict[str, str]) -> Iterator[ServiceDesk]:
    app = ServiceDesk(env={**event_store_env, "GROUP_COMMIT": "false"})
    assert app.data_keys is not None
    app.data_keys.ttl = 0  # no cache: a shredded key is gone at once (erasure_state waits out the TTL)
    yield app
    app.close()


@pytest.fixture
def customers() -> Stream:
    return Stream("customer")


@pytest.fixture
def inbox(desk: ServiceDesk) -> PolicyInbox:
    return PolicyInbox(desk, policies, fetch=None)


def a_case_with_everything(desk: ServiceDesk, customer: UUID | None, subject: str = SUBJECT) -> Case:
    """A complaint answered, assessed, resolved, summarised, closed and surveyed."""
    case = desk.open_case("email", subject, BODY, SENDER, customer, now=T0)
    desk.flag_complaint(case.id, "wang.agent", now=later(minutes=5))
    desk.respond_to_case(case.id, "wang.agent", "Dear Li Na, we will replace it", now=later(minutes=10))
    desk.assess_complaint(case.id, "product_quality", "medium", "Li Na's kettle leaks", now=later(minutes=20))
    desk.resolve_case(case.id, "New kettle sent to Li Na", now=later(minutes=30))
    desk.summarise_complaint(case.id, "Li Na got a new kettle", "seal defect", now=later(minutes=40))
    desk.close_case(case.id, now=later(minutes=50))
    return desk.complete_survey(case.id, 2, "Li Na: slow, but fine", now=later(minutes=60))


def stored_bytes(desk: ServiceDesk, originator: UUID) -> bytes:
    return b"".join(bytes(e.state) for e in desk.recorder.select_events(originator))


# --- erasure -----------------------------------------------------------------------------------


def test_a_case_s_texts_are_sealed_and_read_redacted_once_the_customer_is_forgotten(desk, inbox, customers):
    case = a_case_with_everything(desk, LI_NA)
    survey = desk.request_survey("order", uuid4(), LI_NA, T0)
    desk.answer_survey(survey.id, 4, "Li Na: quick delivery", now=later(hours=1))
    assert b"Li Na" not in stored_bytes(desk, case.id) + stored_bytes(desk, survey.id)  # sealed at rest
    assert desk.case(case.id).body == BODY  # ... and read back in clear
    assert desk.erasure_state(LI_NA) == "pending"

    forget = customer_erased(customers, LI_NA)
    assert inbox.receive([forget]).applied == 1
    read = desk.case(case.id)
    assert (read.subject, read.body, read.sender, read.resolution) == ("", "", "", "")
    assert [r["body"] for r in read.responses] == [""]
    assert (read.complaint_assessment, read.complaint_resolution, read.complaint_summary) == ("", "", "")
    assert read.survey_comment is None and desk.survey(survey.id).comment is None
    # What analytics keep: ids, dates, classification, scores, the operator's root cause.
    assert (read.customer_id, read.status, read.survey_score, read.complaint_root_cause) == (
        LI_NA, "closed", 2, "seal defect")
    assert read.forgotten_at is not None and desk.survey(survey.id).forgotten_at is not None
    assert desk.satisfaction_index(LI_NA) is not None
    assert desk.erasure_state(LI_NA) == "done"
    # Published again (a gap pull, a replay): redacted too.
    opened = next(e for e in EventFeed(desk, translator).events_since(0, 100) if e["type"] == "case_opened")
    assert (opened["payload"]["subject"], opened["payload"]["sender"]) == ("", "")

    version = desk.case(case.id).version
    assert inbox.receive([forget]).duplicates == 1
    desk.forget_customer(LI_NA, "DSR-again")  # a second request changes nothing either
    assert desk.case(case.id).version == version


def test_an_erased_customer_s_cases_take_no_new_text_but_keep_their_clocks(desk, customers, inbox):
    case = desk.open_case("email", SUBJECT, BODY, SENDER, LI_NA, now=T0)
    assert inbox.receive([customer_erased(customers, LI_NA)]).applied == 1
    with pytest.raises(CustomerErasedError):
        desk.respond_to_case(case.id, "wang.agent", "Dear Li Na", now=later(minutes=1))
    with pytest.raises(CustomerErasedError):
        desk.open_case("web", "Another one", "from Li Na", SENDER, LI_NA, now=T0)
    # No text: the SLA sweep, escalation and routing go on.
    assert desk.check_sla(case.id, now=later(days=10)) == ["first_response", "resolution"]
    desk.assign_case(case.id, "customer_care", "zhou.agent", now=later(days=10))
    assert desk.case(case.id).escalation_level == 2


def test_a_case_without_a_customer_is_sealed_under_its_own_key_and_forgetting_others_leaves_it(desk, inbox, customers):
    anonymous = desk.open_case("phone", SUBJECT, BODY, SENDER, None, now=T0)
    theirs = desk.open_case("web", "Zhao's question", "Zhao Lei asks", "zhao@example.org", ZHAO_LEI, now=T0)
    assert b"Li Na" not in stored_bytes(desk, anonymous.id)
    assert inbox.receive([customer_erased(customers, LI_NA)]).applied == 1
    assert desk.case(anonymous.id).body == BODY and desk.case(theirs.id).body == "Zhao Lei asks"
    assert desk.erasure_state(ZHAO_LEI) == "pending" and desk.erasure_state(uuid4()) == "done"


# --- merge and unmerge -------------------------------------------------------------------------


def test_a_merge_re_points_every_case_and_survey_and_published_events_carry_the_survivor(desk, inbox, customers):
    open_case = desk.open_case("email", "Refund please", "I want my money back", SENDER, LI_NA, now=T0)
    closed = a_case_with_everything(desk, LI_NA)
    survey = desk.request_survey("order", uuid4(), LI_NA, T0)
    desk.answer_survey(survey.id, 5, "great", now=later(hours=1))
    own = desk.open_case("web", "Wang's case", "hello", "wang@example.org", WANG_WEI, now=T0)
    other = desk.open_case("web", "Zhao's case", "hello", "zhao@example.org", ZHAO_LEI, now=T0)
    assert desk.satisfaction_index(LI_NA) == Decimal("62.5") and desk.satisfaction_index(WANG_WEI) is None

    merge = customer_merged(customers, LI_NA, WANG_WEI, "m-1")
    assert inbox.receive([merge]).applied == 1
    for record in (desk.case(open_case.id), desk.case(closed.id), desk.survey(survey.id)):
        assert record.customer_id == WANG_WEI
        assert record.merges == [{"merge_id": "m-1", "merged_from": LI_NA, "survivor_id": WANG_WEI}]
    assert desk.case(own.id).merges == [] and desk.case(other.id).customer_id == ZHAO_LEI
    assert desk.case(open_case.id).body == "I want my money back"  # still readable: sealed under Li Na's key
    assert desk.satisfaction_index(WANG_WEI) == Decimal("62.5")  # Li Na's scores count for the survivor
    assert set(desk.records_of(WANG_WEI)) == {open_case.id, closed.id, survey.id, own.id}
    assert desk.records_of(LI_NA) == []

    # Redelivered: nothing changes.
    versions = [desk.case(open_case.id).version, desk.survey(survey.id).version]
    assert inbox.receive([merge]).duplicates == 1
    desk.absorb_customer(LI_NA, WANG_WEI, "m-1")
    assert [desk.case(open_case.id).version, desk.survey(survey.id).version] == versions

    # The open case keeps working: SLA sweep, response, routing; what it publishes names the survivor.
    assert desk.check_sla(open_case.id, now=later(days=6)) == ["first_response", "resolution"]
    desk.respond_to_case(open_case.id, "wang.agent", "On its way", now=later(days=6, minutes=1))
    feed = EventFeed(desk, translator).events_since(0, 1000)
    after = [e for e in feed if e["payload"].get("case_id") == str(open_case.id)
             and e["type"] in ("case_sla_breached", "case_escalated", "case_responded")]
    assert len(after) == 5 and {e["customer_id"] for e in after} == {str(WANG_WEI)}
    assert {e["payload"]["customer_id"] for e in after} == {str(WANG_WEI)}
    # A new case or survey of the absorbed customer goes to the survivor.
    assert desk.open_case("web", "Again", "me again", SENDER, LI_NA, now=later(days=7)).customer_id == WANG_WEI
    assert desk.request_survey("order", uuid4(), LI_NA, later(days=7)).customer_id == WANG_WEI


def test_an_unmerge_gives_back_what_the_merge_moved_and_the_survivor_keeps_what_came_after(desk, inbox, customers):
    hers = a_case_with_everything(desk, LI_NA)
    survey = desk.request_survey("order", uuid4(), LI_NA, T0)
    own = desk.open_case("web", "Wang's case", "hello", "wang@example.org", WANG_WEI, now=T0)
    assert inbox.receive([customer_merged(customers, LI_NA, WANG_WEI, "m-1")]).applied == 1
    after_merge = desk.open_case("web", "New after merge", "hi", SENDER, LI_NA, now=later(days=1))
    desk.reopen_case(hers.id, "still leaking", now=later(days=1))
    desk.respond_to_case(hers.id, "wang.agent", "Dear Li Na, a technician comes", now=later(days=1, hours=1))

    undo = customer_unmerged(customers, LI_NA, WANG_WEI, "m-1")
    assert inbox.receive([undo]).applied == 1
    assert desk.case(hers.id).customer_id == LI_NA and desk.case(hers.id).merges == []
    assert desk.survey(survey.id).customer_id == LI_NA
    assert desk.case(after_merge.id).customer_id == WANG_WEI and desk.case(own.id).customer_id == WANG_WEI
    assert desk.satisfaction_index(WANG_WEI) is None and desk.satisfaction_index(LI_NA) == 25
    assert desk.open_case("web", "Back", "me", SENDER, LI_NA, now=later(days=2)).customer_id == LI_NA
    version = desk.case(hers.id).version
    assert inbox.receive([undo]).duplicates == 1
    desk.restore_customer(LI_NA, WANG_WEI, "m-1")
    assert desk.case(hers.id).version == version

    # Erasing Li Na now shreds what was written on her case while it was Wang Wei's too (her key).
    assert inbox.receive([customer_erased(customers, LI_NA)]).applied == 1
    assert [r["body"] for r in desk.case(hers.id).responses] == ["", ""]
    assert desk.case(after_merge.id).subject == "New after merge"  # the survivor's: not hers any more
    assert desk.erasure_state(LI_NA) == "done"


def test_erasing_a_survivor_shreds_the_keys_of_the_customers_merged_into_it(desk, inbox, customers):
    hers = desk.open_case("email", SUBJECT, BODY, SENDER, LI_NA, now=T0)
    his = desk.open_case("email", "Wang's kettle", "Wang Wei writes", "wang@example.org", WANG_WEI, now=T0)
    assert inbox.receive([customer_merged(customers, LI_NA, WANG_WEI, "m-1"),
                          customer_erased(customers, WANG_WEI)]).applied == 2
    assert desk.case(hers.id).body == "" and desk.case(his.id).body == ""
    assert desk.case(hers.id).forgotten_at is not None
    assert desk.erasure_state(WANG_WEI) == "done"


def test_a_chain_of_merges_is_undone_latest_first(desk, inbox, customers):
    hers = desk.open_case("email", SUBJECT, BODY, SENDER, LI_NA, now=T0)
    his = desk.open_case("email", "Wang's", "Wang writes", "wang@example.org", WANG_WEI, now=T0)
    assert inbox.receive([customer_merged(customers, LI_NA, WANG_WEI, "m-1"),
                          customer_merged(customers, WANG_WEI, ZHAO_LEI, "m-2")]).applied == 2
    assert desk.case(hers.id).customer_id == desk.case(his.id).customer_id == ZHAO_LEI
    assert desk.final_customer(LI_NA) == ZHAO_LEI
    # An unmerge out of order (the customer service refuses it) leaves everything where it is.
    desk.restore_customer(LI_NA, WANG_WEI, "m-1")
    assert desk.case(hers.id).customer_id == ZHAO_LEI

    assert inbox.receive([customer_unmerged(customers, WANG_WEI, ZHAO_LEI, "m-2")]).applied == 1
    assert desk.case(hers.id).customer_id == desk.case(his.id).customer_id == WANG_WEI
    assert inbox.receive([customer_unmerged(customers, LI_NA, WANG_WEI, "m-1")]).applied == 1
    assert (desk.case(hers.id).customer_id, desk.case(his.id).customer_id) == (LI_NA, WANG_WEI)
    assert desk.final_customer(LI_NA) == LI_NA


def test_a_rebuilt_case_equals_the_live_one_through_merge_unmerge_and_erasure(desk, inbox, customers):
    case = a_case_with_everything(desk, LI_NA)
    inbox.receive([customer_merged(customers, LI_NA, WANG_WEI, "m-1"),
                   customer_unmerged(customers, LI_NA, WANG_WEI, "m-1"), customer_erased(customers, LI_NA)])
    events = [desk.mapper.to_domain_event(stored) for stored in desk.recorder.select_events(case.id)]
    rebuilt = None
    for domain_event in events:
        rebuilt = domain_event.mutate(rebuilt)
    assert vars(rebuilt) == vars(desk.case(case.id))
    assert isinstance(rebuilt, Case) and not isinstance(rebuilt, Survey)
