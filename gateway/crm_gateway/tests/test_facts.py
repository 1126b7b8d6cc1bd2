"""Facts coming back from ERP and SCM: confirmation, shipment, delivery, payment and return of an order,
sent with the narrow scope crm:facts, each with the ERP's own id as its idempotency key. A resend changes
nothing; an unknown order is 404, an over-shipment or an overpayment 409 naming the field, a body that does
not fit the published contract 422.

Unit part: scopes (the order service is a mock). Integration part: the gateway and the real order service
(nameko containers over this session's broker and database).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests

from crm_gateway.auth import FACTS, READ, WRITE, issue_token
from crm_gateway.tests.conftest import SECRET, body, running_gateway
from crm_order.service import OrderService

ORDER = "9c4e2f7a-1b3d-4e5f-8a6b-7c8d9e0f1a2b"
FACTS_CALLS = [
    ("confirm", {"reference": "ERP-SO-1"}, "confirm"),
    ("shipments", {"shipment_id": "SHP-1", "carrier": "SF Express", "lines": {"LIC": 1}}, "ship"),
    ("deliveries", {"shipment_id": "SHP-1"}, "record_delivery"),
    ("payments", {"payment_id": "PAY-1", "amount": "10.00", "currency": "CNY", "method": "bank_transfer"},
     "record_payment"),
    ("returns", {"return_id": "RMA-1", "lines": {"LIC": 1}, "refund": "1.00", "currency": "CNY"}, "record_return"),
]


@pytest.mark.parametrize(("path", "payload", "method"), FACTS_CALLS)
def test_a_facts_token_sends_facts_and_nothing_else(api, order, path, payload, method):
    getattr(order, method).return_value = {"order_id": ORDER, "version": 2}
    api.token = issue_token("erp", (FACTS,), secret=SECRET)
    answer = api.post(f"/v1/orders/{ORDER}/{path}", payload, headers={"If-Match": "*"})
    assert answer.status_code == 200, body(answer)
    assert api.get(f"/v1/orders/{ORDER}").status_code == 403
    assert api.post(f"/v1/orders/{ORDER}/cancel", {"reason": "no"}, headers={"If-Match": "*"}).status_code == 403


@pytest.mark.parametrize(("path", "payload", "method"), FACTS_CALLS)
def test_a_read_token_may_not_send_facts(api, order, path, payload, method):
    api.token = issue_token("reader", (READ,), secret=SECRET)
    answer = api.post(f"/v1/orders/{ORDER}/{path}", payload, headers={"If-Match": "*"})
    assert answer.status_code == 403 and 'scope="crm:facts"' in answer.headers["WWW-Authenticate"]
    getattr(order, method).assert_not_called()


# --- against the real order service -------------------------------------------------------------------

@pytest.fixture
def gateway_url(test_database, nameko_config, monkeypatch) -> Iterator[str]:
    with running_gateway(test_database, nameko_config, monkeypatch, [OrderService]) as url:
        yield url


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_facts_sent_twice_move_the_order_once_and_what_does_not_fit_is_refused(gateway_url, http):
    writer = {"Authorization": f"Bearer {issue_token('sales', (READ, WRITE), secret=SECRET)}"}
    erp = {"Authorization": f"Bearer {issue_token('erp', (FACTS,), secret=SECRET)}"}
    placed = http.post(f"{gateway_url}/v1/orders", headers=writer, json={
        "customer_id": str(uuid.uuid4()), "currency": "CNY",
        "lines": [{"sku": "LIC", "description": "licence", "quantity": 2, "unit_price": "100.00"}],
        "shipping_address": {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}})
    assert placed.status_code == 201, placed.text
    order = placed.json()["order_id"]

    def send(path: str, payload: dict, **headers: str) -> requests.Response:
        return http.post(f"{gateway_url}/v1/orders/{order}/{path}", json=payload, headers={**erp, **headers})

    def version() -> int:
        return int(http.get(f"{gateway_url}/v1/orders/{order}", headers=writer).json()["version"])

    facts = [("confirm", {"reference": "ERP-SO-42"}),
             ("shipments", {"shipment_id": "SHP-1", "carrier": "SF Express", "lines": {"LIC": 2}}),
             ("deliveries", {"shipment_id": "SHP-1"}),
             ("payments", {"payment_id": "PAY-1", "amount": "150.00", "currency": "CNY", "method": "bank_transfer"})]
    for path, payload in facts:
        first = send(path, payload, **{"If-Match": "*"})
        assert first.status_code == 200, (path, first.text)
        moved_to = version()
        again = send(path, payload, **{"If-Match": "*"})
        assert again.status_code == 200, (path, again.text)
        assert version() == moved_to, f"resending {path} changed the order"

    assert send("shipments", {"shipment_id": "SHP-2", "carrier": "SF", "lines": {"LIC": 1}}).status_code == 409
    overpaid = send("payments", {"payment_id": "PAY-2", "amount": "60.00", "currency": "CNY", "method": "card"})
    assert overpaid.status_code == 409 and "amount" in overpaid.json()["error"]["fields"]
    other_payment = send("payments", {"payment_id": "PAY-1", "amount": "10.00", "currency": "CNY", "method": "card"})
    assert other_payment.status_code == 409  # the same ERP id for another payment is a conflict, not a resend
    unknown = http.post(f"{gateway_url}/v1/orders/{uuid.uuid4()}/payments", headers=erp,
                        json={"payment_id": "PAY-9", "amount": "1.00", "currency": "CNY", "method": "card"})
    assert unknown.status_code == 404
    misfit = send("shipments", {"shipment_id": "SHP-3", "carrier": "SF", "lines": {"LIC": "two"}})
    assert misfit.status_code == 422 and "lines" in str(misfit.json()["error"]["fields"])
