"""The dashboard in a real headless browser (Debian's Chromium through Selenium and chromium-driver) against
a seeded platform: a person signs in, sees the funnel, the CLV distribution, the RFM grid, loyalty type by
churn risk and the customers at risk with the figures the API answers, finds a customer and reads their 360
view with its timeline; no console error, no request leaves the gateway's origin. Without signing in, the
page sends you to sign in and its data calls are 401; signing out ends the session.

The platform is one of the test's own (customer360 and the gateway, CRM_DASHBOARD_USERS set), seeded with
tests/support/history.py's generated base: its envelopes published to the platform's broker as the six
services' relays would publish them (ConfirmingPublisher), applied by customer360 like any live event, then
the analytics refreshed through the API. A platform of its own, because a generated history in the shared
one would be events no origin there can replay (its rebuild tests would see them vanish).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

from conftest import rabbit_vhost
from crm_customer360 import readmodel
from crm_gateway.auth import SESSION_COOKIE, hash_password
from crm_runtime.relay import ConfirmingPublisher
from tests.support import browser
from tests.support.databases import query
from tests.support.history import History, generate
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]

if browser.MISSING:
    pytest.skip(browser.MISSING, allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402 - only when a browser can run
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

DASHBOARD_GATEWAY_PORT = int(os.environ.get("CRM_E2E_DASHBOARD_PORT", "18300"))
USER, PASSWORD = "analyst", "a long and winding passphrase"
#: The seeded base: enough customers for every behaviour, loyalty type and RFM cell to show.
CUSTOMERS = 400
#: Waits for a condition (never an assertion on speed).
WITHIN = 60


@pytest.fixture(scope="module")
def seeded(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory
           ) -> Iterator[tuple[RunningPlatform, History]]:
    """customer360 and the gateway, the generated history applied, the analytics refreshed."""
    history = generate(CUSTOMERS, seed=5)
    with rabbit_vhost(infra, "crm_dashboard") as amqp_uri, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("dashboard")), label="dashboard", amqp_uri=amqp_uri,
        gateway_port=DASHBOARD_GATEWAY_PORT, service_base_port=DASHBOARD_GATEWAY_PORT + 1,
        settings={"CRM_RESTART": "off", "CRM_SERVICES": "customer360,gateway",
                  "CRM_DASHBOARD_USERS": f"{USER}:{hash_password(PASSWORD)}"}, timeout=90,
    ) as platform:
        publisher = ConfirmingPublisher(amqp_uri)
        try:
            for start in range(0, len(history.envelopes), 500):
                publisher.publish(history.envelopes[start:start + 500])
        finally:
            publisher.drop()
        heads: dict[str, int] = {}
        for envelope in history.envelopes:
            heads[envelope["origin"]] = envelope["position"]

        def applied() -> bool:
            rows = dict(query(platform.env, readmodel.SCHEMA, "SELECT origin, position FROM inbox_tracking"))
            assert {origin: rows.get(origin) for origin in heads} == heads
            return True

        eventually(applied, timeout=180, interval=1)
        refreshed = platform.http("POST", "/v1/admin/refresh-analytics", token=platform.admin_token, timeout=300)
        assert refreshed.status_code == 200, refreshed.text
        assert refreshed.json()["customers"] == CUSTOMERS
        yield platform, history


@pytest.fixture
def chromium() -> Iterator[Any]:
    with browser.chromium() as driver:
        yield driver


def sign_in(driver: Any, gateway: str, password: str = PASSWORD) -> None:
    driver.get(f"{gateway}/dashboard")
    WebDriverWait(driver, WITHIN).until(lambda d: d.current_url == f"{gateway}/dashboard/login")
    driver.find_element(By.ID, "username").send_keys(USER)
    driver.find_element(By.ID, "password").send_keys(password)
    driver.find_element(By.ID, "signin-button").click()


def loaded(driver: Any) -> None:
    WebDriverWait(driver, WITHIN).until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-loaded"))


def table_rows(driver: Any, css: str) -> list[list[str]]:
    return [[cell.text for cell in tr.find_elements(By.CSS_SELECTOR, "th, td")]
            for tr in driver.find_elements(By.CSS_SELECTOR, css)]


def cells_of(report: dict[str, Any], measure: str) -> dict[str, int]:
    return {f"{r['row']}|{r['column']}": r["customers"] for r in report["rows"] if r["measure"] == measure}


def shown_cells(driver: Any, table_id: str) -> dict[str, int]:
    return {td.get_attribute("data-cell"): int(td.text)
            for td in driver.find_elements(By.CSS_SELECTOR, f"#{table_id} td[data-cell]")}


def test_an_analyst_signs_in_and_sees_the_figures_the_api_answers(seeded, chromium):
    platform, history = seeded
    gateway = platform.gateway
    sign_in(chromium, gateway)
    loaded(chromium)
    assert urlsplit(chromium.current_url).path == "/dashboard"
    assert chromium.find_element(By.ID, "signed-in-as").text == f"signed in as {USER}"
    assert chromium.find_element(By.ID, "status").get_attribute("hidden") is not None  # no load failed
    cookie = next(c for c in chromium.get_cookies() if c["name"] == SESSION_COOKIE)
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"

    # The funnel: every stage of the ladder with the API's count and conversion.
    funnel = platform.http("GET", "/v1/reports/funnel").json()
    expected = [(r["stage"], r["customers"]) for r in funnel["rows"] if r["entry_month"] == "all"]
    shown = [(tr.get_attribute("data-stage"), int(tr.find_elements(By.TAG_NAME, "td")[1].text))
             for tr in chromium.find_elements(By.CSS_SELECTOR, "#funnel tbody tr")]
    assert shown == expected and shown[0] == ("prospect", CUSTOMERS)
    assert sum(1 for _, n in shown if n) >= 2  # buyers as well as prospects

    # The CLV distribution, the RFM grid and loyalty type by churn risk: the analytics report's cells.
    report = platform.http("GET", "/v1/reports/analytics").json()
    rfm = cells_of(report, "rfm_grid")
    assert rfm and {k: v for k, v in shown_cells(chromium, "rfm-grid").items() if v} == rfm
    loyalty = cells_of(report, "loyalty_by_churn_risk")
    assert {k.split("|")[0] for k in loyalty} == {"super_value", "incentive", "monopoly", "inertia", "price"}
    assert {k: v for k, v in shown_cells(chromium, "loyalty-matrix").items() if v} == loyalty
    clv = {(bucket, currency): int(n) for bucket, currency, n in table_rows(chromium, "#clv tbody tr")}
    assert clv == {tuple(k.split("|")): v for k, v in cells_of(report, "clv_distribution").items()}
    charts = chromium.execute_script(
        "return ['funnel-chart', 'clv-chart'].map(id => Chart.getChart(document.getElementById(id))"
        "?.data.datasets.flatMap(d => d.data).reduce((a, b) => a + b, 0))")
    assert charts == [sum(n for _, n in expected), sum(clv.values())]

    # The customers at risk: those the API lists, in its order.
    at_risk = platform.http("GET", "/v1/analytics/customers", params={"churn_risk": "high", "page_size": 15}).json()
    assert at_risk["items"]
    assert [tr.get_attribute("data-customer") for tr in chromium.find_elements(By.CSS_SELECTOR, "#churn-list tbody tr")
            ] == [item["customer_id"] for item in at_risk["items"]]

    # One customer's 360 view: search by email, pick, see the figures and the timeline.
    loyal = next(cid for cid, kind in history.behaviour.items() if kind == "loyal")
    email = next(e["payload"]["email"] for e in history.envelopes
                 if e["type"] == "customer_registered" and e["customer_id"] == loyal)
    view = platform.http("GET", f"/v1/customers/{loyal}/360").json()
    chromium.find_element(By.ID, "search-q").send_keys(email)
    chromium.find_element(By.CSS_SELECTOR, "#search button").click()
    WebDriverWait(chromium, WITHIN).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"#search-results button[data-customer='{loyal}']"))
    chromium.find_element(By.CSS_SELECTOR, f"#search-results button[data-customer='{loyal}']").click()
    WebDriverWait(chromium, WITHIN).until(
        lambda d: d.find_element(By.ID, "customer-360").get_attribute("data-customer") == loyal)
    assert view["profile"]["name"] in chromium.find_element(By.ID, "customer-name").text
    facts = chromium.find_element(By.ID, "customer-facts").text
    assert view["analytics"]["rfm"]["score"] in facts
    assert str(view["analytics"]["loyalty"]["type"]).replace("_", " ") in facts
    timeline = table_rows(chromium, "#timeline tbody tr")
    assert len(timeline) == len(view["timeline"]) > 1
    assert [row[2] for row in timeline] == [entry["type"] for entry in view["timeline"]]
    assert timeline[0][3] == view["timeline"][0]["summary"]

    # Nothing failed, nothing left the gateway's origin, nothing was logged as an error.
    network = browser.network_of(chromium)
    assert network.failed == []
    assert {urlsplit(url).netloc for url in network.requested if url.startswith("http")} == {urlsplit(gateway).netloc}
    assert {url: status for url, status in network.statuses.items() if status >= 400} == {}
    assert {f"{gateway}/v1/reports/funnel", f"{gateway}/v1/reports/analytics",
            f"{gateway}/dashboard/static/chartjs/chart.umd.min.js"} <= set(network.statuses)
    assert browser.console_errors(chromium) == []


def test_without_signing_in_nothing_is_readable_and_signing_out_ends_the_session(seeded, chromium):
    platform, _ = seeded
    gateway = platform.gateway
    data_calls = ["/v1/reports/funnel", "/v1/reports/analytics", "/v1/analytics/customers?churn_risk=high",
                  "/v1/customers?q=c1", "/dashboard/session"]
    for path in data_calls:
        assert requests.get(f"{gateway}{path}", timeout=10).status_code == 401, path

    chromium.get(f"{gateway}/dashboard")
    assert chromium.current_url == f"{gateway}/dashboard/login"
    statuses = chromium.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "Promise.all(arguments[0].map(p => fetch(p).then(r => r.status))).then(done);", data_calls)
    assert statuses == [401] * len(data_calls)

    # A wrong password: 401, said without naming which part was wrong; still on the sign-in page.
    sign_in(chromium, gateway, password="not the password")
    error = WebDriverWait(chromium, WITHIN).until(lambda d: d.find_element(By.ID, "signin-error").text)
    assert error == "wrong user name or password"
    assert chromium.current_url == f"{gateway}/dashboard/login"

    sign_in(chromium, gateway)
    loaded(chromium)
    token = next(c["value"] for c in chromium.get_cookies() if c["name"] == SESSION_COOKIE)
    cookies = {SESSION_COOKIE: token}
    assert requests.get(f"{gateway}/v1/reports/funnel", cookies=cookies, timeout=10).status_code == 200
    assert requests.post(f"{gateway}/v1/customers", json={"name": "X", "email": "x@example.com"}, cookies=cookies,
                         timeout=10).status_code == 401  # the cookie reads, never writes

    chromium.find_element(By.ID, "logout").click()
    WebDriverWait(chromium, WITHIN).until(lambda d: d.current_url == f"{gateway}/dashboard/login")
    assert not [c for c in chromium.get_cookies() if c["name"] == SESSION_COOKIE]
    assert requests.get(f"{gateway}/v1/reports/funnel", cookies=cookies, timeout=10).status_code == 401
    chromium.get(f"{gateway}/dashboard")
    assert chromium.current_url == f"{gateway}/dashboard/login"
