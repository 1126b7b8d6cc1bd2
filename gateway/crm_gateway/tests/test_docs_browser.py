"""/docs in a real headless browser (Debian's Chromium driven by Selenium through chromium-driver): the page
loads every asset from the gateway itself (no request leaves it, none fails), Swagger UI reads
/openapi.json and shows every operation of every resource; /asyncapi.html shows every channel.

Real: a running gateway (a nameko container on this session's broker and database), Chromium.
Skipped, saying why, only when Chromium or its driver is not installed (`apt-get install chromium
chromium-driver`; .ci/run installs them).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest

from crm_contracts import asyncapi
from crm_gateway.openapi import document
from crm_gateway.tests.conftest import running_gateway
from tests.support.browser import MISSING, chromium, console_errors, network_of

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

if MISSING:
    pytest.skip(MISSING, allow_module_level=True)

from selenium.webdriver.common.by import By  # noqa: E402 - only when a browser can run
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
    with chromium() as driver:
        yield driver


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

    network = network_of(browser)
    assert network.failed == []
    statuses = network.statuses
    origin = urlsplit(gateway_url).netloc
    assert {urlsplit(url).netloc for url in statuses if url.startswith("http")} == {origin}
    assert {url: status for url, status in statuses.items() if status >= 400} == {}
    assert f"{gateway_url}/openapi.json" in statuses
    assert console_errors(browser) == []


def test_the_event_catalog_page_shows_every_channel(gateway_url, browser):
    browser.get(f"{gateway_url}/asyncapi.html")
    WebDriverWait(browser, RENDER_WITHIN).until(expected_conditions.presence_of_element_located((By.TAG_NAME, "h1")))
    for channel in asyncapi.document()["channels"]:
        assert browser.find_element(By.ID, channel).find_element(By.TAG_NAME, "h2").text == channel
