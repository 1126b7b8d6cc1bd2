"""The OpenAPI document says exactly what the gateway does: schemathesis (every check it has) generates
requests from /openapi.json, valid and invalid, and sends them to a running gateway with every service
behind it, as real nameko containers in this process over RabbitMQ and PostgreSQL.

Bounded and deterministic: a fixed seed, deterministic generation, a capped number of cases per
operation and phase, one worker. It fails on any 5xx, any answer outside its documented status codes,
headers or schema, any valid request refused and any invalid request accepted.

The trade-off of MAX_EXAMPLES: the document has ~120 operations and every one meets every phase (examples,
coverage, fuzzing, stateful) under `--checks all`, so the run's length grows with operations x examples.
The coverage phase, which does not depend on MAX_EXAMPLES, walks each schema's boundaries (missing and
extra fields, lengths, enums, formats) deterministically and finds most contract drift; the random phases
are kept short (a few examples each) so the whole run fits about three minutes on a quiet 2-core machine. Deeper
random exploration is worth a local run with a larger `--max-examples`, not every CI run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from crm_customer.service import CustomerService
from crm_customer360.service import Customer360Service
from crm_gateway.auth import ADMIN, READ, WRITE, issue_token
from crm_gateway.tests.conftest import SECRET, running_gateway
from crm_loyalty.service import LoyaltyService
from crm_marketing.service import MarketingService
from crm_order.service import OrderService
from crm_sales.service import SalesService
from crm_service.service import CustomerCareService

pytestmark = [pytest.mark.integration, pytest.mark.timeout(960)]

#: The gateway calls every service, and a 360 rebuild reads every origin's feed.
SERVICES = [CustomerService, Customer360Service, MarketingService, SalesService, OrderService, CustomerCareService,
            LoyaltyService]
HERE = Path(__file__).parent
SEED = 20261201
#: Per operation and phase (see the module docstring for the trade-off).
MAX_EXAMPLES = 3


@pytest.fixture
def platform_url(test_database, nameko_config, monkeypatch) -> Iterator[str]:
    """A running gateway with every service behind it."""
    monkeypatch.setenv("EVENTS_MAX_WAIT", "0")  # a long poll of /v1/events answers at once: answers are judged here
    monkeypatch.setenv("WEBHOOKS_ENABLED", "false")  # no deliveries to the URLs it generates: only answers count
    with running_gateway(test_database, nameko_config, monkeypatch, SERVICES) as url:
        yield url


def test_the_gateway_does_what_its_openapi_document_says(platform_url: str, tmp_path: Path) -> None:
    token = issue_token("schemathesis", (READ, WRITE, ADMIN), secret=SECRET)
    command = [
        str(Path(sys.executable).parent / "schemathesis"), "--config-file", str(HERE / "schemathesis.toml"),
        "run", f"{platform_url}/openapi.json",
        "--checks", "all",
        "--seed", str(SEED), "--generation-deterministic",
        "--max-examples", str(MAX_EXAMPLES),
        "--workers", "1",
        "--request-timeout", "15",
        "--no-color",
        "--report", "junit", "--report-dir", str(tmp_path),
    ]
    started = time.monotonic()
    # eventlet patches subprocess: waiting here lets the gateway's green threads serve the requests.
    environment = {**os.environ, "SCHEMATHESIS_HOOKS": "crm_gateway.tests.schemathesis_hooks",
                   "CRM_SCHEMATHESIS_TOKEN": token}
    result = subprocess.run(command, capture_output=True, text=True, timeout=900, check=False, cwd=tmp_path,
                            env=environment)
    elapsed = time.monotonic() - started
    print(result.stdout[-6000:], f"\nschemathesis took {elapsed:.1f} s")
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-4000:]
