"""/docs in a real headless browser (Debian's Chromium driven by Selenium through chromium-driver): the page
loads every asset from the gateway itself (no request leaves it, none fails), Swagger UI reads
/openapi.json and shows every operation of every resource; /asyncapi.html shows every channel.

Real: a running gateway (a nameko container on this session's broker and database), Chromium.
Skipped, saying why, only when Chromium or its driver is not installed (`apt-get install chromium
chromium-driver`; .ci/run installs them).
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from crm_contracts import asyncapi
from crm_gateway.openapi import document
from crm_gateway.tests.conftest import running_gateway

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if CHROMIUM is None or CHROMEDRIVER is None:
    pytest.skip("Chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)",
                allow_module_level=True)

from selenium import webdriver  # noqa: E402 - only when a browser can run
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

#: How long Swagger UI may take to fetch and render the document (a wait for a condition, not an assertion).
RENDER_WITHIN = 60


@pytest.fixture
def gateway_url(test_database, nameko_config, monkeypatch) -> Iterator[str]:
    """A running gateway; no service behind it is needed to serve documents."""
    with running_gateway(test_database, nameko_config, monkeypatch, []) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def network_of(driver: Any) -> tuple[dict[str, int], list[str]]:
    """The URL -> status of every response the page received, and the URLs whose loading failed."""
    statuses: dict[str, int] = {}
    requested: dict[str, str] = {}
    failed: list[str] = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            requested[params["requestId"]] = params["request"]["url"]
        elif message["method"] == "Network.responseReceived":
            statuses[params["response"]["url"]] = params["response"]["status"]
        elif message["method"] == "Network.loadingFailed":
            failed.append(f"{requested.get(params['requestId'], '?')}: {params.get('errorText')}")
    return statuses, failed


def test_docs_render_every_operation_from_assets_shipped_with_the_gateway(gateway_url, browser):
    browser.get(f"{gateway_url}/docs")
    operations = [(method, path) for path, ops in document()["paths"].items() for method in ops]
    WebDriverWait(browser, RENDER_WITHIN).until(
        lambda driver: len(driver.find_elements(By.CSS_SELECTOR, ".opblock")) >= len(operations))

    shown = {(block.find_element(By.CSS_SELECTOR, ".opblock-summary-method").text.lower(),
              block.find_element(By.CSS_SELECTOR, ".opblock-summary-path").get_attribute("data-path"))
             for block in browser.find_elements(By.CSS_SELECTOR, ".opblock")}
    assert shown == set(operations)
    tags = {tag for ops in document()["paths"].values() for op in ops.values() for tag in op.get("tags", [])}
    for tag in tags:
        assert browser.find_elements(By.ID, f"operations-tag-{tag}"), f"no section for {tag}"

    statuses, failed = network_of(browser)
    assert failed == []
    origin = urlsplit(gateway_url).netloc
    assert {urlsplit(url).netloc for url in statuses if url.startswith("http")} == {origin}
    assert {url: status for url, status in statuses.items() if status >= 400} == {}
    assert f"{gateway_url}/openapi.json" in statuses
    assert [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"] == []


def test_the_event_catalog_page_shows_every_channel(gateway_url, browser):
    browser.get(f"{gateway_url}/asyncapi.html")
    WebDriverWait(browser, RENDER_WITHIN).until(expected_conditions.presence_of_element_located((By.TAG_NAME, "h1")))
    for channel in asyncapi.document()["channels"]:
        assert browser.find_element(By.ID, channel).find_element(By.TAG_NAME, "h2").text == channel
