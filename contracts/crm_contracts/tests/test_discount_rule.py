"""Discounts have one rule across sales and order (crm_contracts.sales.percent): a percentage in
hundredths, as a string like money (a JSON number is refused); finer input such as 12.345 is refused with the
field named, never rounded."""

from __future__ import annotations

from decimal import Decimal

import pytest

from crm_contracts.fields import schema_of
from crm_contracts.order import OrderLineRequest
from crm_contracts.sales import QuoteLineRequest

LINE = {"sku": "CRM-SEAT", "description": "CRM seat", "quantity": 1, "unit_price": "240.00"}
SCHEMAS = [QuoteLineRequest, OrderLineRequest]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
@pytest.mark.parametrize("discount", ["12.345", 12.345, "0.001", "-1", "100.01", "NaN", "ten", True, 0, 10])
def test_sales_and_order_refuse_the_same_discounts(schema, discount):
    errors = schema_of(schema).validate({**LINE, "discount": discount})
    assert list(errors) == ["discount"]


@pytest.mark.parametrize("schema", SCHEMAS, ids=lambda s: s.__name__)
@pytest.mark.parametrize(("discount", "loaded"), [("12.34", "12.34"), ("12.5", "12.50"), ("10", "10.00"),
                                                  ("12.340", "12.34"), ("0", "0.00"), ("100", "100.00")])
def test_sales_and_order_accept_the_same_discounts(schema, discount, loaded):
    assert schema_of(schema).load({**LINE, "discount": discount})["discount"] == Decimal(loaded)
