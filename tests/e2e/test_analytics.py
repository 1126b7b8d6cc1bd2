"""Analytics on the live platform, over HTTP: a refresh stores the figures with its instant, the 360 view
shows them, the view as of that instant equals the live one, a bad instant is refused, reports answer as
JSON and CSV, and the base is queryable by its figures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from crm_contracts.analytics import AnalyticsPageSchema, ReportSchema, SegmentSchema
from crm_contracts.customer360 import Customer360Schema

pytestmark = pytest.mark.e2e


def test_analytics_refreshed_shown_as_of_an_instant_reported_and_queried(running_platform):
    before = datetime.now(UTC) - timedelta(days=1)
    cid = running_platform.register(name="Analytics Li", source_channel="web").json()["id"]
    running_platform.view(cid)

    refreshed = running_platform.http("POST", "/v1/admin/refresh-analytics", token=running_platform.admin_token)
    assert refreshed.status_code == 200, refreshed.text
    instant = refreshed.json()["as_of"]
    assert refreshed.json()["customers"] >= 1

    live = running_platform.http("GET", f"/v1/customers/{cid}/360").json()
    assert Customer360Schema().validate(live) == {}
    figures = live["analytics"]
    assert (figures["as_of"], figures["model_as_of"]) == (instant, instant)
    assert figures["rfm"] is None and figures["loyalty"]["type"] is None  # registered, never bought

    then = running_platform.http("GET", f"/v1/customers/{cid}/360", params={"as_of": instant})
    assert then.status_code == 200, then.text
    shown = then.json()
    assert shown.pop("as_of") == instant and shown == live

    for bad in ("2026-01-01T00:00:00", (datetime.now(UTC) + timedelta(days=2)).isoformat()):
        refused = running_platform.http("GET", f"/v1/customers/{cid}/360", params={"as_of": bad})
        assert refused.status_code == 422 and "as_of" in refused.json()["error"]["fields"], refused.text
    assert running_platform.http("GET", f"/v1/customers/{cid}/360",
                                 params={"as_of": before.isoformat()}).status_code == 404

    funnel = running_platform.http("GET", "/v1/reports/funnel").json()
    assert ReportSchema().validate(funnel) == {}
    prospects = next(r for r in funnel["rows"] if r["entry_month"] == "all" and r["stage"] == "prospect")
    assert prospects["customers"] >= 1
    csv = running_platform.http("GET", "/v1/reports/funnel", params={"format": "csv"})
    assert csv.headers["Content-Type"].startswith("text/csv")
    assert csv.text.splitlines()[0] == "entry_month,stage,customers,conversion"
    summary = running_platform.http("GET", "/v1/reports/analytics").json()
    assert ReportSchema().validate(summary) == {} and summary["as_of"] == instant

    page = running_platform.http("GET", "/v1/analytics/customers", params={"page_size": 100}).json()
    assert AnalyticsPageSchema().validate(page) == {} and page["model_as_of"] == instant
    assert page["total"] >= 1

    saved = running_platform.http("POST", "/v1/segments", json={
        "name": "prospects reachable online",
        "criteria": {"lifecycle_stage": "prospect", "campaign_channel": "online"}})
    assert saved.status_code == 201, saved.text
    segment = saved.json()
    assert SegmentSchema().validate(segment) == {} and segment["members"] >= 1
    members = running_platform.http("GET", f"/v1/segments/{segment['id']}/members", params={"format": "csv"})
    assert cid in members.text and members.text.splitlines()[0].startswith("customer_id,")
    assert running_platform.http("GET", f"/v1/segments/{segment['id']}").json()["members"] == segment["members"]
