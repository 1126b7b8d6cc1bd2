"""The service context's policies, driven through a PolicyInbox with contract-shaped envelopes, on the
in-memory store and on PostgreSQL: the delivery that completes an order and a closed case each ask for
one satisfaction survey, however often the event is delivered (or the case closed again)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from uuid import uuid4

import pytest

from crm_runtime.policy import PolicyInbox
from crm_service.application import ServiceDesk
from crm_service.domain import Survey, SurveyNotFoundError
from crm_service.policies import policies
from tests.support.envelopes import Stream, payload


@pytest.fixture
def desk(event_store_env: dict[str, str]) -> Iterator[ServiceDesk]:
    """The service application on a fresh store (on both backends), closed afterwards."""
    app = ServiceDesk(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def inbox(desk: ServiceDesk) -> PolicyInbox:
    return PolicyInbox(desk, policies, fetch=None)


def test_a_full_delivery_asks_for_one_survey_and_a_partial_one_none(desk: ServiceDesk, inbox: PolicyInbox) -> None:
    customer_id, order_id = uuid4(), uuid4()
    orders = Stream("order")
    partial = orders.publish("order_delivered", payload(
        "order_delivered", customer_id=customer_id, order_id=order_id, fully_delivered=False))
    full = orders.publish("order_delivered", payload(
        "order_delivered", customer_id=customer_id, order_id=order_id, shipment_id="SHP-0002",
        fully_delivered=True))
    assert inbox.receive([partial]).applied == 1
    with pytest.raises(SurveyNotFoundError):
        desk.survey_about("order", order_id)
    outcome = inbox.receive([full, full, partial])
    assert (outcome.applied, outcome.duplicates, outcome.failed) == (1, 2, [])
    survey = desk.survey_about("order", order_id)
    assert (survey.customer_id, survey.status, survey.version) == (customer_id, "requested", 1)
    assert survey.requested_at == datetime.fromisoformat(full["payload"]["delivered_at"])

    answered = desk.answer_survey(survey.id, 5, "arrived early", now=survey.requested_at)
    assert answered.status == "answered"
    assert desk.satisfaction_index(customer_id) == 100


def test_a_closed_case_asks_for_one_survey_even_if_closed_again(desk: ServiceDesk, inbox: PolicyInbox) -> None:
    customer_id, case_id = uuid4(), uuid4()
    service = Stream("service")
    closed = service.publish("case_closed", payload("case_closed", customer_id=customer_id, case_id=case_id))
    reopened = service.publish("case_reopened", payload("case_reopened", customer_id=customer_id, case_id=case_id))
    closed_again = service.publish("case_closed", payload(
        "case_closed", customer_id=customer_id, case_id=case_id, closed_at="2026-11-25T10:00:00+00:00"))
    outcome = inbox.receive([closed, reopened, closed_again, closed])
    assert (outcome.applied, outcome.duplicates, outcome.failed) == (3, 1, [])
    survey = desk.survey(Survey.id_for("case", case_id))
    assert (survey.subject_id, survey.version) == (case_id, 1)
    assert desk.tracked_position("service") == 3
