"""The request schemas the gateway will use load into exactly what the application and domain accept."""

from __future__ import annotations

from decimal import Decimal

import pytest
from marshmallow import ValidationError

from crm_contracts.sales import (
    LoseOpportunityRequest,
    MoveStageRequest,
    OpenOpportunityRequest,
    OpportunitySchema,
    PipelineTotalsSchema,
    SendQuoteRequest,
)
from crm_sales.application import Opportunities

OPEN_BODY = {"customer_id": "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e", "title": "50 CRM seats",
             "owner": "rep-wang-wei", "amount": "12000.00", "currency": "CNY", "expected_close_date": "2026-12-31"}
QUOTE_BODY = {"lines": [{"sku": "CRM-SEAT", "description": "CRM seat, annual", "quantity": 50,
                         "unit_price": "240.00", "discount": "10.00"},
                        {"sku": "ONBOARD", "description": "Onboarding workshop", "quantity": 1,
                         "unit_price": "1500.00"}]}


@pytest.fixture
def opportunities():
    app = Opportunities(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    yield app
    app.close()


def test_loaded_requests_drive_the_application_and_the_result_dumps(opportunities):
    opportunity = opportunities.open(**OpenOpportunityRequest().load(OPEN_BODY))
    opportunities.move_to_stage(opportunity.id, **MoveStageRequest().load({"stage": "qualification"}))
    opportunities.move_to_stage(opportunity.id, **MoveStageRequest().load({"stage": "proposal", "probability": 60}))
    quote = opportunities.send_quote(opportunity.id, **SendQuoteRequest().load(QUOTE_BODY)).current_quote
    assert quote.total == Decimal("12300.00")
    opportunities.lose(opportunity.id, **LoseOpportunityRequest().load({"reason": "budget cut"}))
    dumped = OpportunitySchema().dump(opportunities.opportunity(opportunity.id))
    assert (dumped["stage"], dumped["weighted_amount"], dumped["quotes"][0]["total"]) == ("lost", "0.00", "12300.00")
    assert [h["stage"] for h in dumped["stage_history"]] == ["prospecting", "qualification", "proposal", "lost"]
    assert PipelineTotalsSchema(many=True).dump(opportunities.pipeline()) == []


@pytest.mark.parametrize(
    ("schema", "body", "field"),
    [
        (OpenOpportunityRequest, {**OPEN_BODY, "currency": "XXX"}, "currency"),
        (OpenOpportunityRequest, {**OPEN_BODY, "stage": "won"}, "stage"),
        (MoveStageRequest, {"stage": "won"}, "stage"),
        (MoveStageRequest, {"stage": "proposal", "probability": 101}, "probability"),
        (SendQuoteRequest, {"lines": []}, "lines"),
        (SendQuoteRequest, {"lines": [{**QUOTE_BODY["lines"][0], "quantity": 1.5}]}, "lines"),
        (LoseOpportunityRequest, {}, "reason"),
    ],
)
def test_bad_request_bodies_name_the_field(schema, body, field):
    with pytest.raises(ValidationError) as raised:
        schema().load(body)
    assert field in raised.value.messages
