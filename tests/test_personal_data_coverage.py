"""The 360 view forgets, in an erased customer's timeline, every field a service seals as personal: a
field sealed by a service but kept by the view's `forget_payload` would stay readable in the live view
while a rebuild (from the redacted events) shows it empty, so the two would differ and the person leak."""

from __future__ import annotations

import pytest

from crm_customer.application import Customers
from crm_customer360.view import PERSONAL_KEY_PARTS, forget_payload
from crm_marketing.application import Marketing
from crm_order.application import Orders
from crm_sales.application import Opportunities
from crm_service.application import ServiceDesk

APPLICATIONS = (Customers, Marketing, Orders, Opportunities, ServiceDesk)


@pytest.mark.parametrize("application", APPLICATIONS, ids=lambda app: app.__name__)
def test_every_sealed_field_is_forgotten_by_the_360_timeline(application: type) -> None:
    for event_class, spec in application.personal_data.items():
        for field in spec.redacted:
            assert forget_payload({field: "Li Na"}) == {}, (
                f"{application.__name__}: {event_class.__qualname__}.{field} is sealed as personal but the 360 "
                f"timeline keeps it: add a part of its name to PERSONAL_KEY_PARTS {PERSONAL_KEY_PARTS}")
