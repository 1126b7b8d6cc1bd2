"""The resources of the five lifecycle services behind /v1, one table per concern: creating (201, Location,
ETag), If-Match required (428 missing, 412 stale) or optional, bad bodies (422 naming the field), lists
(filters and paging through a query contract, unknown filter 422), reads (ETag, 304), and idempotent
replays. The services are mocks (conftest); each row names the client and the RPC method it expects."""

from __future__ import annotations

from typing import Any

import pytest

from crm_contracts.errors import ServiceError
from crm_gateway.tests.conftest import CUSTOMER_ID, body

ID = "5b7e1c2d-8a4f-4e6b-9d3c-1f0a2b3c4d5e"
QUOTE_ID = "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d"
ANSWER = {"id": ID, "order_id": ID, "customer_id": CUSTOMER_ID, "version": 3}
GRANT_ANSWER = {"redemption": {"points": 100}, "account": {**ANSWER, "version": 4}}

_ADDRESS = {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}
_LINE = {"sku": "CRM-PRO-1Y", "description": "CRM Pro licence", "quantity": 10, "unit_price": "1200.00"}

_CAMPAIGN: dict[str, Any] = {
    "name": "Spring push", "objective": "50 leads", "segment": {"industries": ["retail"]}, "channels": ["email"],
    "starts_on": "2027-03-01", "ends_on": "2027-04-30", "budget": "24000.00", "currency": "CNY",
}
_OPPORTUNITY: dict[str, Any] = {
    "customer_id": CUSTOMER_ID, "title": "50 seats", "owner": "rep-wang", "amount": "12000.00", "currency": "CNY",
    "expected_close_date": "2026-12-31",
}
_ORDER: dict[str, Any] = {"customer_id": CUSTOMER_ID, "currency": "CNY", "lines": [_LINE]}
_PAYMENT: dict[str, Any] = {"payment_id": "PAY-1", "amount": "5.00", "currency": "CNY", "method": "card"}

#: (path, body, client, RPC method, Location of the answer)
CREATES = [
    ("/v1/campaigns", _CAMPAIGN, "marketing", "plan_campaign", f"/v1/campaigns/{ID}"),
    ("/v1/leads", {"channel": "web_form", "name": "Zhang Min", "phone": "+86 21 5555 0101"},
     "marketing", "capture_lead", f"/v1/leads/{ID}"),
    ("/v1/opportunities", _OPPORTUNITY, "sales", "open_opportunity", f"/v1/opportunities/{ID}"),
    ("/v1/orders", _ORDER, "order", "place", f"/v1/orders/{ID}"),
    ("/v1/cases", {"channel": "email", "subject": "Parcel not delivered", "sender": "li.na@example.com"},
     "service", "open_case", f"/v1/cases/{ID}"),
    ("/v1/faqs", {"question": "Where is my parcel?", "answer": "Track it online."},
     "service", "draft_faq", f"/v1/faqs/{ID}"),
]

#: (method, path, body or None, client, RPC method): a person decides, so If-Match is required.
DECISIONS = [
    ("post", f"/v1/campaigns/{ID}/close", {"actual_cost": "23500.00"}, "marketing", "close_campaign"),
    ("put", f"/v1/leads/{ID}/grade", {"grade": "key"}, "marketing", "grade_lead"),
    ("post", f"/v1/leads/{ID}/qualify", {}, "marketing", "qualify_lead"),
    ("post", f"/v1/leads/{ID}/disqualify", {"reason": "no budget"}, "marketing", "disqualify_lead"),
    ("post", f"/v1/leads/{ID}/convert", {"estimated_amount": "1.00", "currency": "CNY"}, "marketing", "convert_lead"),
    ("put", f"/v1/opportunities/{ID}/stage", {"stage": "proposal"}, "sales", "move_stage"),
    ("put", f"/v1/opportunities/{ID}/amount", {"amount": "13500.00"}, "sales", "change_amount"),
    ("put", f"/v1/opportunities/{ID}/close-date", {"expected_close_date": "2027-01-31"}, "sales",
     "change_expected_close_date"),
    ("put", f"/v1/opportunities/{ID}/owner", {"owner": "rep-zhao"}, "sales", "reassign"),
    ("post", f"/v1/opportunities/{ID}/quotes", {"lines": [_LINE]}, "sales", "send_quote"),
    ("post", f"/v1/opportunities/{ID}/win", None, "sales", "win"),
    ("post", f"/v1/opportunities/{ID}/lose", {"reason": "competitor"}, "sales", "lose"),
    ("put", f"/v1/orders/{ID}/shipping-address", {"shipping_address": _ADDRESS}, "order", "set_shipping_address"),
    ("post", f"/v1/orders/{ID}/confirm", {}, "order", "confirm"),
    ("post", f"/v1/orders/{ID}/cancel", {"reason": "changed mind"}, "order", "cancel"),
    ("put", f"/v1/cases/{ID}/classification", {"department": "finance", "priority": "important", "by": "wang"},
     "service", "classify_case"),
    ("post", f"/v1/cases/{ID}/resolve", {"resolution": "re-sent"}, "service", "resolve_case"),
    ("post", f"/v1/cases/{ID}/close", None, "service", "close_case"),
    ("post", f"/v1/cases/{ID}/reopen", {"reason": "still missing"}, "service", "reopen_case"),
    ("put", f"/v1/cases/{ID}/complaint/assessment", {"category": "delivery", "severity": "low", "assessment": "lost"},
     "service", "assess_complaint"),
    ("put", f"/v1/cases/{ID}/complaint/summary", {"summary": "lost", "root_cause": "scan"}, "service",
     "summarise_complaint"),
    ("put", f"/v1/faqs/{ID}", {"question": "Where?", "answer": "Here."}, "service", "revise_faq"),
    ("post", f"/v1/faqs/{ID}/publish", None, "service", "publish_faq"),
    ("post", f"/v1/faqs/{ID}/retire", {"reason": "outdated"}, "service", "retire_faq"),
]

#: (method, path, body or None, client, RPC method): appends and recomputations, If-Match optional.
APPENDS = [
    ("put", f"/v1/customers/{ID}/addresses/shipping", {"address": _ADDRESS}, "customer", "set_address"),
    ("post", f"/v1/campaigns/{ID}/launch", None, "marketing", "launch_campaign"),
    ("post", f"/v1/campaigns/{ID}/responses", {"channel": "email", "count": 25}, "marketing", "record_response"),
    ("post", f"/v1/leads/{ID}/engagements", {"kind": "reply"}, "marketing", "record_engagement"),
    ("post", f"/v1/leads/{ID}/rescore", None, "marketing", "rescore_lead"),
    ("post", f"/v1/orders/{ID}/shipments", {"shipment_id": "SHP-1", "carrier": "SF", "lines": {"CRM-PRO-1Y": 4}},
     "order", "ship"),
    ("post", f"/v1/orders/{ID}/deliveries", {"shipment_id": "SHP-1"}, "order", "record_delivery"),
    ("post", f"/v1/orders/{ID}/payments", _PAYMENT, "order", "record_payment"),
    ("post", f"/v1/orders/{ID}/returns", {"return_id": "RMA-1", "lines": {"CRM-PRO-1Y": 1}, "refund": "1.00",
                                          "currency": "CNY"}, "order", "record_return"),
    ("post", f"/v1/cases/{ID}/responses", {"agent": "wang", "body": "On its way."}, "service", "respond_to_case"),
    ("put", f"/v1/cases/{ID}/assignment", {"group": "care"}, "service", "assign_case"),
    ("post", f"/v1/cases/{ID}/escalations", {"reason": "angry"}, "service", "escalate_case"),
    ("post", f"/v1/cases/{ID}/complaint", {"by": "wang"}, "service", "flag_complaint"),
    ("put", f"/v1/cases/{ID}/survey", {"score": 4}, "service", "complete_survey"),
    ("put", f"/v1/surveys/{ID}/answer", {"score": 5}, "service", "answer_survey"),
    ("post", f"/v1/faqs/{ID}/uses", {"helpful": True}, "service", "record_faq_use"),
    ("post", f"/v1/loyalty-accounts/{CUSTOMER_ID}/tier-review", {}, "loyalty", "review_tier"),
]

#: (method, path, bad body, the field the error names)
BAD_BODIES = [
    ("post", "/v1/campaigns", {**_CAMPAIGN, "ends_on": "2027-01-01"}, "ends_on"),
    ("post", "/v1/leads", {"channel": "web_form", "name": "Zhang Min"}, "email"),
    ("post", "/v1/opportunities", {**_OPPORTUNITY, "amount": "12.345"}, "amount"),
    ("post", "/v1/orders", {**_ORDER, "lines": [{**_LINE, "discount": "12.345"}]}, "lines.0.discount"),
    ("post", "/v1/cases", {"channel": "fax", "subject": "x", "sender": "y"}, "channel"),
    ("post", "/v1/faqs", {"question": "?", "answer": "!", "colour": "red"}, "colour"),
    ("post", f"/v1/campaigns/{ID}/responses", {"channel": "email", "count": 0}, "count"),
    ("post", f"/v1/orders/{ID}/payments", {"payment_id": "P", "amount": "0", "currency": "CNY", "method": "card"},
     "amount"),
    ("post", f"/v1/loyalty-accounts/{CUSTOMER_ID}/redemptions", {"reward_code": "V", "points": 0}, "points"),
    ("put", f"/v1/loyalty-accounts/{CUSTOMER_ID}", {"customer_id": CUSTOMER_ID}, "customer_id"),
]

#: (collection path, client, RPC method, a valid filter)
LISTS = [
    ("/v1/campaigns", "marketing", "list_campaigns", {"status": "active"}),
    ("/v1/leads", "marketing", "list_leads", {"campaign_id": ID, "grade": "key"}),
    ("/v1/opportunities", "sales", "list_opportunities", {"owner": "rep-wang", "status": "open"}),
    ("/v1/orders", "order", "list_orders", {"customer_id": CUSTOMER_ID, "status": "shipped"}),
    ("/v1/cases", "service", "list_cases", {"priority": "important", "complaint_category": "delivery"}),
    ("/v1/faqs", "service", "list_faqs", {"status": "published"}),
    ("/v1/loyalty-accounts", "loyalty", "list_accounts", {"tier": "gold"}),
]

#: (item path, client, RPC method, the id it is called with)
READS = [
    (f"/v1/campaigns/{ID}", "marketing", "get_campaign", ID),
    (f"/v1/leads/{ID}", "marketing", "get_lead", ID),
    (f"/v1/opportunities/{ID}", "sales", "get_opportunity", ID),
    (f"/v1/orders/{ID}", "order", "get", ID),
    (f"/v1/cases/{ID}", "service", "get_case", ID),
    (f"/v1/faqs/{ID}", "service", "get_faq", ID),
    (f"/v1/surveys/{ID}", "service", "get_survey", ID),
    (f"/v1/loyalty-accounts/{CUSTOMER_ID}", "loyalty", "get", CUSTOMER_ID),
]


def _send(api: Any, method: str, path: str, json_body: Any, headers: dict[str, str] | None = None) -> Any:
    return api.call(method, path, json_body, headers=headers or {})


def _ids(rows: list[tuple[Any, ...]]) -> list[str]:
    return [f"{row[0]} {row[1]}" for row in rows]


# --- creating -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "payload", "client", "method", "location"), CREATES, ids=[r[0] for r in CREATES])
def test_create_is_201_with_location_and_etag(api, clients, path, payload, client, method, location):
    getattr(clients[client], method).return_value = ANSWER
    response = api.post(path, payload)
    assert response.status_code == 201, body(response)
    assert (response.headers["Location"], response.headers["ETag"]) == (location, '"3"')
    sent, command_id = getattr(clients[client], method).call_args.args
    assert sent == payload and command_id  # the body as sent, under a command id


def test_enrolment_is_a_put_on_the_customer_and_its_body_may_be_left_out(api, loyalty):
    loyalty.enrol.return_value = {**ANSWER, "version": 1}
    response = api.request("PUT", f"/v1/loyalty-accounts/{CUSTOMER_ID}")
    assert response.status_code == 201, body(response)
    assert response.headers["Location"] == f"/v1/loyalty-accounts/{CUSTOMER_ID}"
    assert loyalty.enrol.call_args.args[0] == {"customer_id": CUSTOMER_ID}


@pytest.mark.parametrize("path", ["/v1/loyalty-accounts/{id}/redemptions", "/v1/loyalty-accounts/{id}/benefits"])
def test_a_redemption_or_benefit_is_201_with_the_account_version_as_etag(api, loyalty, path):
    loyalty.redeem.return_value = loyalty.grant_benefit.return_value = GRANT_ANSWER
    payload = ({"reward_code": "VOUCHER-100", "points": 100} if "redemptions" in path
               else {"level": "social", "kind": "personal_call", "description": "call after the complaint"})
    response = api.post(path.format(id=CUSTOMER_ID), payload)
    assert (response.status_code, response.headers["ETag"]) == (201, '"4"'), body(response)


# --- If-Match -------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "payload", "client", "rpc"), DECISIONS, ids=_ids(DECISIONS))
def test_a_decision_without_if_match_is_428_and_calls_nothing(api, clients, method, path, payload, client, rpc):
    response = _send(api, method, path, payload)
    assert response.status_code == 428
    assert body(response)["error"]["fields"] == {"If-Match": ["is required"]}
    getattr(clients[client], rpc).assert_not_called()


@pytest.mark.parametrize(("method", "path", "payload", "client", "rpc"), DECISIONS, ids=_ids(DECISIONS))
def test_a_decision_on_a_stale_version_is_412(api, clients, method, path, payload, client, rpc):
    getattr(clients[client], rpc).side_effect = ServiceError("stale_version", "version 2 is not current")
    response = _send(api, method, path, payload, {"If-Match": '"2"'})
    assert (response.status_code, body(response)["error"]["code"]) == (412, "stale_version")


@pytest.mark.parametrize(("method", "path", "payload", "client", "rpc"), DECISIONS, ids=_ids(DECISIONS))
def test_a_decision_passes_the_version_and_a_command_id(api, clients, method, path, payload, client, rpc):
    getattr(clients[client], rpc).return_value = ANSWER
    response = _send(api, method, path, payload, {"If-Match": '"2"'})
    assert (response.status_code, response.headers["ETag"]) == (200, '"3"'), body(response)
    call = getattr(clients[client], rpc).call_args
    assert call.args[-1] == 2 and call.kwargs["command_id"]
    if payload is not None:
        assert call.args[-2] == payload


@pytest.mark.parametrize(("method", "path", "payload", "client", "rpc"), APPENDS, ids=_ids(APPENDS))
def test_an_append_needs_no_if_match_but_takes_one(api, clients, method, path, payload, client, rpc):
    getattr(clients[client], rpc).return_value = ANSWER
    response = _send(api, method, path, payload)
    assert (response.status_code, response.headers["ETag"]) == (200, '"3"'), body(response)
    assert getattr(clients[client], rpc).call_args.args[-1] is None
    _send(api, method, path, payload, {"If-Match": '"3"'})
    assert getattr(clients[client], rpc).call_args.args[-1] == 3


def test_quotes_are_accepted_and_rejected_by_their_own_id(api, sales):
    sales.accept_quote.return_value = sales.reject_quote.return_value = ANSWER
    quote = f"/v1/opportunities/{ID}/quotes/{QUOTE_ID}"
    assert api.post(f"{quote}/accept").status_code == 428
    assert api.post(f"{quote}/accept", headers={"If-Match": '"2"'}).status_code == 200
    assert sales.accept_quote.call_args.args == (ID, QUOTE_ID, 2)
    response = api.post(f"{quote}/reject", {"reason": "too dear"}, headers={"If-Match": '"2"'})
    assert response.status_code == 200
    assert sales.reject_quote.call_args.args == (ID, QUOTE_ID, {"reason": "too dear"}, 2)


# --- bad input ------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path", "payload", "field"), BAD_BODIES, ids=[r[3] for r in BAD_BODIES])
def test_a_bad_body_is_422_naming_the_field(api, clients, method, path, payload, field):
    response = _send(api, method, path, payload, {"If-Match": '"1"'})
    assert response.status_code == 422, body(response)
    assert field in body(response)["error"]["fields"]
    assert not any(call for client in clients.values() for call in client.method_calls)


@pytest.mark.parametrize("path", ["/v1/campaigns/nope/launch", "/v1/orders/1/confirm", "/v1/cases/x"])
def test_a_path_id_that_is_not_a_uuid_is_404(api, path):
    response = api.get(path) if path.count("/") == 3 else api.post(path, {}, headers={"If-Match": '"1"'})
    assert response.status_code == 404


# --- lists ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "client", "rpc", "filters"), LISTS, ids=[r[0] for r in LISTS])
def test_a_list_passes_its_filters_and_paging(api, clients, path, client, rpc, filters):
    page = {"items": [], "page": 2, "page_size": 5, "total": 0, "total_exact": True}
    getattr(clients[client], rpc).return_value = page
    query = "&".join(f"{name}={value}" for name, value in filters.items())
    response = api.get(f"{path}?{query}&page=2&page_size=5")
    assert (response.status_code, body(response)) == (200, page)
    getattr(clients[client], rpc).assert_called_once_with(filters, 2, 5)


@pytest.mark.parametrize(("path", "client", "rpc", "filters"), LISTS, ids=[r[0] for r in LISTS])
@pytest.mark.parametrize(("query", "field"), [("colour=red", "colour"), ("page_size=101", "page_size"),
                                              ("page=0", "page"), ("status=nope", "status")])
def test_a_bad_list_query_is_422_naming_the_parameter(api, clients, path, client, rpc, filters, query, field):
    if field == "status" and path == "/v1/loyalty-accounts":
        query, field = "tier=nope", "tier"
    response = api.get(f"{path}?{query}")
    assert response.status_code == 422
    assert field in body(response)["error"]["fields"]
    getattr(clients[client], rpc).assert_not_called()


def test_a_list_defaults_to_the_first_page_of_20_without_filters(api, marketing):
    marketing.list_campaigns.return_value = {"items": [], "page": 1, "page_size": 20, "total": 0}
    api.get("/v1/campaigns")
    marketing.list_campaigns.assert_called_once_with({}, 1, 20)


# --- reads ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("path", "client", "rpc", "called_with"), READS, ids=[r[0] for r in READS])
def test_a_read_has_the_version_as_etag_and_304_when_current(api, clients, path, client, rpc, called_with):
    getattr(clients[client], rpc).return_value = {**ANSWER, "version": 7}
    response = api.get(path)
    assert (response.status_code, response.headers["ETag"]) == (200, '"7"')
    getattr(clients[client], rpc).assert_called_with(called_with)
    assert api.get(path, headers={"If-None-Match": '"7"'}).status_code == 304
    assert api.get(path, headers={"If-None-Match": '"6"'}).status_code == 200


@pytest.mark.parametrize(("path", "client", "rpc", "expected_call"), [
    (f"/v1/campaigns/{ID}/results", "marketing", "campaign_results", (ID,)),
    ("/v1/sales/pipeline", "sales", "pipeline", ()),
    ("/v1/sales/forecast/by-month", "sales", "forecast_by_month", ()),
    ("/v1/sales/forecast/by-rep", "sales", "forecast_by_rep", ()),
    ("/v1/sales/win-rate?owner=rep-wang", "sales", "win_rate", ("rep-wang",)),
    ("/v1/sales/win-rate", "sales", "win_rate", (None,)),
    (f"/v1/customers/{CUSTOMER_ID}/satisfaction", "service", "satisfaction_index", (CUSTOMER_ID,)),
    (f"/v1/cases/{ID}/faq-suggestions", "service", "suggest_faqs_for_case", (ID,)),
    ("/v1/faqs/suggestions?q=where%20is%20my%20parcel", "service", "suggest_faqs",
     ({"text": "where is my parcel", "limit": 3},)),
])
def test_derived_views_call_their_query(api, clients, path, client, rpc, expected_call):
    getattr(clients[client], rpc).return_value = []
    assert api.get(path).status_code == 200
    getattr(clients[client], rpc).assert_called_once_with(*expected_call)


def test_where_are_my_orders_lists_a_customers_orders(api, order):
    order.orders_of_customer.return_value = [ANSWER]
    response = api.get(f"/v1/customers/{CUSTOMER_ID}/orders")
    assert body(response) == {"customer_id": CUSTOMER_ID, "orders": [ANSWER]}


def test_faq_suggestions_need_a_question(api, service):
    response = api.get("/v1/faqs/suggestions")
    assert (response.status_code, list(body(response)["error"]["fields"])) == (422, ["q"])


# --- idempotent replays (PostgreSQL) --------------------------------------------------------------------

REPLAYS = [(path, payload, client, method) for path, payload, client, method, _ in CREATES] + [
    (f"/v1/loyalty-accounts/{CUSTOMER_ID}/redemptions", {"reward_code": "VOUCHER-100", "points": 100}, "loyalty",
     "redeem"),
    (f"/v1/orders/{ID}/payments", _PAYMENT, "order", "record_payment"),
]


@pytest.mark.parametrize(("path", "payload", "client", "method"), REPLAYS, ids=[r[0] for r in REPLAYS])
def test_a_replay_with_the_same_key_returns_the_first_answer(idempotent_api, clients, path, payload, client, method):
    getattr(clients[client], method).return_value = GRANT_ANSWER if method == "redeem" else ANSWER
    headers = {"Idempotency-Key": f"replay-{method}"}
    first = idempotent_api.post(path, payload, headers=headers)
    second = idempotent_api.post(path, payload, headers=headers)
    assert first.status_code in (200, 201), body(first)
    assert (second.status_code, second.get_data()) == (first.status_code, first.get_data())
    assert second.headers["Idempotent-Replayed"] == "true" and second.headers["ETag"] == first.headers["ETag"]
    getattr(clients[client], method).assert_called_once()
