"""The analytics routes and the 360 view as of an instant, over mocked services (conftest): what reaches
customer360, and which queries are refused before it (422 naming the parameter)."""

from __future__ import annotations

import pytest

from crm_gateway.tests.conftest import CUSTOMER_ID, body


def test_the_360_view_without_as_of_is_the_live_view(api, customer360):
    customer360.view.return_value = {"customer_id": CUSTOMER_ID}
    assert api.get(f"/v1/customers/{CUSTOMER_ID}/360").status_code == 200
    customer360.view.assert_called_once_with(CUSTOMER_ID)


@pytest.mark.parametrize(("given", "passed"), [
    ("2027-03-01T00:00:00%2B08:00", "2027-03-01T00:00:00+08:00"),
    ("2027-03-01T00:00:00Z", "2027-03-01T00:00:00+00:00"),
])
def test_the_360_view_as_of_an_instant_with_its_offset(api, customer360, given, passed):
    customer360.view.return_value = {"customer_id": CUSTOMER_ID}
    assert api.get(f"/v1/customers/{CUSTOMER_ID}/360?as_of={given}").status_code == 200
    customer360.view.assert_called_once_with(CUSTOMER_ID, as_of=passed)


@pytest.mark.parametrize("given", ["2027-03-01T00:00:00", "2027-03-01", "yesterday", "2027-03-01T00:00:00 08:00"])
def test_an_as_of_without_an_offset_or_not_an_instant_is_422(api, customer360, given):
    answer = api.get(f"/v1/customers/{CUSTOMER_ID}/360?as_of={given}")
    assert answer.status_code == 422 and "as_of" in body(answer)["error"]["fields"]
    customer360.view.assert_not_called()


def test_customers_by_analytics_pass_the_filters_given(api, customer360):
    customer360.customer_analytics.return_value = {"items": [], "page": 2, "page_size": 50, "total": 0,
                                                   "model_as_of": None}
    answer = api.get("/v1/analytics/customers?loyalty_type=super_value&churn_risk=low&clv_min=100.50"
                     "&page=2&page_size=50")
    assert answer.status_code == 200
    customer360.customer_analytics.assert_called_once_with(
        {"lifecycle_stage": None, "consent": None, "tier": None, "grade": None, "campaign_channel": None,
         "rfm_segment": None,
         "loyalty_type": "super_value", "churn_risk": "low", "clv_min": "100.50", "clv_max": None}, 2, 50)


@pytest.mark.parametrize(("query", "field"), [
    ("rfm_segment=vip", "rfm_segment"), ("loyalty_type=fanatic", "loyalty_type"), ("churn_risk=extreme", "churn_risk"),
    ("clv_min=1.234", "clv_min"), ("clv_max=lots", "clv_max"), ("page_size=101", "page_size"), ("colour=red", "colour"),
    ("consent=fax", "consent"), ("lifecycle_stage=vip", "lifecycle_stage"), ("tier=iron", "tier"),
    ("format=xml", "format"),
])
def test_each_bad_analytics_parameter_is_422_naming_it(api, customer360, query, field):
    answer = api.get(f"/v1/analytics/customers?{query}")
    assert answer.status_code == 422 and field in body(answer)["error"]["fields"]
    customer360.customer_analytics.assert_not_called()


def test_refreshing_the_analytics_is_for_admins(api, customer360):
    customer360.refresh_analytics.return_value = {"as_of": "2027-03-01T00:00:00+00:00", "customers": 2, "buyers": 1}
    assert api.post("/v1/admin/refresh-analytics").status_code == 200
    api.token = None
    assert api.post("/v1/admin/refresh-analytics").status_code == 401


# --- reports: JSON and CSV ---------------------------------------------------------------------------

FUNNEL = {"report": "funnel", "as_of": "2027-03-01T00:00:00+00:00", "columns": ["entry_month", "stage", "conversion"],
          "rows": [{"entry_month": "2027-01", "stage": "prospect", "conversion": None},
                   {"entry_month": "2027-01", "stage": "lead", "conversion": "0.7500"}]}


def test_a_report_as_json_and_as_csv(api, customer360):
    customer360.report.return_value = FUNNEL
    assert body(api.get("/v1/reports/funnel")) == FUNNEL
    answer = api.get("/v1/reports/funnel?format=csv")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    assert answer.get_data(as_text=True) == ("entry_month,stage,conversion\r\n2027-01,prospect,\r\n"
                                             "2027-01,lead,0.7500\r\n")
    customer360.report.assert_called_with("funnel")
    assert api.get("/v1/reports/funnel?format=xml").status_code == 422


def test_campaign_roi_reads_every_page_and_a_csv_cell_is_never_a_formula(api, marketing):
    def campaign(n: int) -> dict:
        return {"id": f"c{n}", "name": "=HYPERLINK(\"x\")" if n == 0 else f"Campaign {n}", "status": "closed",
                "currency": "CNY", "budget": "100.00", "results": {"responses": n, "roi_percent": "-12.50"}}

    pages = {1: [campaign(n) for n in range(100)], 2: [campaign(100)]}
    marketing.list_campaigns.side_effect = lambda filters, page, size: {"items": pages.get(page, []), "total": 101}
    rows = body(api.get("/v1/reports/campaigns"))["rows"]
    assert len(rows) == 101 and rows[100]["responses"] == 100
    lines = api.get("/v1/reports/campaigns?format=csv").get_data(as_text=True).splitlines()
    assert lines[1].startswith("c0,\"'=HYPERLINK(\"\"x\"\")\",closed") and lines[1].endswith(",'-12.50")


def test_pipeline_and_forecast_come_from_sales(api, sales):
    sales.pipeline.return_value = [{"key": "proposal", "currency": "CNY", "count": 2, "amount": "10.00",
                                    "weighted_amount": "5.00"}]
    sales.forecast_by_month.return_value = [{"key": "2027-04", "currency": "CNY", "count": 1, "amount": "3.00",
                                             "weighted_amount": "1.50"}]
    assert body(api.get("/v1/reports/pipeline"))["rows"] == [
        {"stage": "proposal", "currency": "CNY", "count": 2, "amount": "10.00", "weighted_amount": "5.00"}]
    assert api.get("/v1/reports/forecast?format=csv").get_data(as_text=True).splitlines()[1] == \
        "2027-04,CNY,1,3.00,1.50"


def test_customers_by_analytics_export_every_match_as_csv(api, customer360):
    def item(n: int) -> dict:
        return {"customer_id": f"id-{n}", "name": f"Customer {n}", "email": None, "lifecycle_stage": "loyal",
                "as_of": "2027-03-01T00:00:00+00:00", "rfm_segment": "champions", "loyalty_type": "super_value",
                "churn_risk": "low", "retention_clv": "1.00", "migration_clv": "2.00", "historic_value": "3.00"}

    pages = {1: [item(n) for n in range(100)], 2: [item(100)]}
    customer360.customer_analytics.side_effect = lambda filters, page, size: {
        "items": pages.get(page, []), "page": page, "page_size": size, "total": 101, "model_as_of": None}
    answer = api.get("/v1/analytics/customers?consent=email&lifecycle_stage=loyal&format=csv")
    lines = answer.get_data(as_text=True).splitlines()
    assert answer.mimetype == "text/csv" and len(lines) == 102
    assert lines[0].startswith("customer_id,name,email,lifecycle_stage") and lines[101].startswith("id-100,")
    filters = customer360.customer_analytics.call_args.args[0]
    assert (filters["consent"], filters["lifecycle_stage"]) == ("email", "loyal")


# --- saved segments ---------------------------------------------------------------------------------------

SEGMENT_ID = "6d1c2b3a-4e5f-4a6b-8c7d-9e0f1a2b3c4d"


def test_saving_a_segment_sends_the_criteria_given_as_strings_and_answers_where_it_is(api, customer360):
    customer360.save_segment.return_value = {"id": SEGMENT_ID, "name": "x", "criteria": {}, "members": 3,
                                             "created_at": "2026-12-01T00:00:00+00:00", "model_as_of": None}
    answer = api.post("/v1/segments", {"name": "Loyal by email",
                                       "criteria": {"loyalty_type": "super_value", "campaign_channel": "email",
                                                    "clv_min": "1000.00"}})
    assert answer.status_code == 201 and answer.headers["Location"] == f"/v1/segments/{SEGMENT_ID}"
    sent = customer360.save_segment.call_args.args[0]
    assert sent == {"name": "Loyal by email", "criteria": {"loyalty_type": "super_value",
                                                           "campaign_channel": "email", "clv_min": "1000.00"}}


@pytest.mark.parametrize(("sent", "field"), [
    ({"criteria": {}}, "name"), ({"name": "x"}, "criteria"),
    ({"name": "x", "criteria": {"tier": "iron"}}, "criteria.tier"),
    ({"name": "x", "criteria": {"page": 2}}, "criteria.page"),
])
def test_a_bad_segment_is_422_naming_the_field(api, customer360, sent, field):
    answer = api.post("/v1/segments", sent)
    assert answer.status_code == 422 and field in body(answer)["error"]["fields"]
    customer360.save_segment.assert_not_called()


def test_segment_members_a_page_or_every_one_as_csv(api, customer360):
    customer360.segment_members.return_value = {"items": [{"customer_id": "c1", "name": "=cmd()"}], "page": 1,
                                                "page_size": 100, "total": 1, "model_as_of": None}
    assert body(api.get(f"/v1/segments/{SEGMENT_ID}/members?page=1&page_size=5"))["total"] == 1
    customer360.segment_members.assert_called_with(SEGMENT_ID, 1, 5)
    lines = api.get(f"/v1/segments/{SEGMENT_ID}/members?format=csv").get_data(as_text=True).splitlines()
    assert lines[1].startswith("c1,'=cmd()")
    assert api.get("/v1/segments/not-a-uuid/members").status_code == 404
    assert api.call("DELETE", f"/v1/segments/{SEGMENT_ID}").status_code == 204


def test_an_unknown_report_is_404_and_asks_no_service(api, customer360, sales, marketing):
    assert api.get("/v1/reports/salaries").status_code == 404
    assert not customer360.method_calls and not sales.method_calls and not marketing.method_calls
