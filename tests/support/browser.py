"""A real headless browser for tests: Debian's Chromium driven by Selenium through chromium-driver, with its
console and network logs kept, so a test can check what a page fetched and whether it logged an error."""

from __future__ import annotations

import contextlib
import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
#: Why a browser test cannot run here (None: it can).
MISSING = (None if CHROMIUM and CHROMEDRIVER else
           "Chromium and chromium-driver are not installed (apt-get install chromium chromium-driver)")


@contextlib.contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Selenium WebDriver) logging the browser console and the network."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM  # type: ignore[assignment]
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                     "--no-first-run", "--disable-extensions", "--disable-background-networking",
                     "--window-size=1400,1000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Network:
    """What a page asked for and got: every URL requested, the status of each response, the failures."""

    requested: list[str] = field(default_factory=list)
    statuses: dict[str, int] = field(default_factory=dict)
    failed: list[str] = field(default_factory=list)


def network_of(driver: Any) -> Network:
    """The page's network since the last call (the performance log is read, and emptied, by this call)."""
    network = Network()
    by_id: dict[str, str] = {}
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        params = message.get("params", {})
        if message["method"] == "Network.requestWillBeSent":
            by_id[params["requestId"]] = params["request"]["url"]
            network.requested.append(params["request"]["url"])
        elif message["method"] == "Network.responseReceived":
            network.statuses[params["response"]["url"]] = params["response"]["status"]
        elif message["method"] == "Network.loadingFailed":
            network.failed.append(f"{by_id.get(params['requestId'], '?')}: {params.get('errorText')}")
    return network


def console_errors(driver: Any) -> list[dict[str, Any]]:
    """The browser console's SEVERE entries since the last call."""
    return [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
