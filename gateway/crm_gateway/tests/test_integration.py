"""The gateway and the customer service in this process as real nameko containers, over real RabbitMQ
(a virtual host of this session's) and PostgreSQL (migrated by crm-migrate), driven over real HTTP.
customer360 is deliberately not started: its endpoints must answer 503, not hang."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import requests
from nameko.standalone.rpc import ClusterRpcProxy

from crm_customer.service import CustomerService
from crm_gateway.auth import READ, WRITE, issue_token
from crm_gateway.tests.conftest import SECRET, running_gateway

pytestmark = pytest.mark.integration


@pytest.fixture
def gateway_url(test_database, nameko_config, monkeypatch) -> Iterator[str]:
    """The URL of a running gateway, with a running customer service behind it."""
    with running_gateway(test_database, nameko_config, monkeypatch, [CustomerService]) as url:
        yield url


def test_register_read_and_change_a_customer_over_http(gateway_url, nameko_config, http):
    http.headers["Authorization"] = "Bearer " + issue_token("integration", (READ, WRITE), secret=SECRET)
    correlation_id = f"it-{uuid.uuid4().hex[:12]}"
    email = f"li.na+{uuid.uuid4().hex[:8]}@example.com"
    registration = {"name": "Li Na", "email": email, "source_channel": "event"}

    assert requests.get(f"{gateway_url}/openapi.json", timeout=10).status_code == 200
    assert http.get(f"{gateway_url}/health/ready", timeout=10).json()["ready"] is True

    created = http.post(f"{gateway_url}/v1/customers", json=registration, timeout=10,
                        headers={"Idempotency-Key": correlation_id, "X-Correlation-Id": correlation_id})
    assert created.status_code == 201, created.text
    assert created.headers["ETag"] == '"1"' and created.headers["X-Correlation-Id"] == correlation_id
    location = created.headers["Location"]
    customer_id = created.json()["id"]
    assert location == f"/v1/customers/{customer_id}"

    replay = http.post(f"{gateway_url}/v1/customers", json=registration, headers={"Idempotency-Key": correlation_id},
                       timeout=10)
    assert (replay.status_code, replay.json(), replay.headers["Idempotent-Replayed"]) == (201, created.json(), "true")

    fetched = http.get(gateway_url + location, timeout=10)
    assert (fetched.status_code, fetched.headers["ETag"], fetched.json()["email"]) == (200, '"1"', email)

    assert http.patch(gateway_url + location, json={"company": "Acme"}, timeout=10).status_code == 428
    changed = http.patch(gateway_url + location, json={"company": "Acme"}, headers={"If-Match": '"1"'}, timeout=10)
    assert (changed.status_code, changed.headers["ETag"], changed.json()["company"]) == (200, '"2"', "Acme")
    stale = http.patch(gateway_url + location, json={"company": "Other"}, headers={"If-Match": '"1"'}, timeout=10)
    assert (stale.status_code, stale.json()["error"]["code"]) == (412, "stale_version")

    taken = http.post(f"{gateway_url}/v1/customers", json={**registration, "name": "Someone Else"}, timeout=10)
    assert taken.status_code == 409 and taken.json()["error"]["details"]["existing_customer_id"] == customer_id

    invalid = http.post(f"{gateway_url}/v1/customers", json={"name": "", "email": email, "x": 1}, timeout=10)
    assert invalid.status_code == 422 and set(invalid.json()["error"]["fields"]) == {"name", "x"}

    # customer360 is not running: a clear 503 naming it, quickly.
    view = http.get(f"{gateway_url}/v1/customers/{customer_id}/360", timeout=10)
    assert view.status_code == 503 and "customer360" in view.json()["error"]["message"]

    # The correlation id travelled with the RPC call into the customer's stored events.
    with ClusterRpcProxy(nameko_config, timeout=10) as rpc:
        envelopes = rpc.customer.events_since(0, 5000)
    registered = [e for e in envelopes if e["customer_id"] == customer_id and e["type"] == "customer_registered"]
    assert [e["correlation_id"] for e in registered] == [correlation_id]


def test_hostile_input_over_real_http_is_answered_at_the_edge(gateway_url, http):
    """Through eventlet's real WSGI server: a chunked body is read (not taken as empty) and capped while
    it streams; Content-Length over the limit, NUL and bytes that are not UTF-8 in a query are refused."""
    http.headers["Authorization"] = "Bearer " + issue_token("integration", (READ, WRITE), secret=SECRET)
    json_type = {"Content-Type": "application/json"}
    email = f"chunked+{uuid.uuid4().hex[:8]}@example.com"

    chunked = http.post(f"{gateway_url}/v1/customers", headers=json_type, timeout=10,
                        data=iter([b'{"name": "Li Na", ', f'"email": "{email}"}}'.encode()]))
    assert chunked.status_code == 201, chunked.text

    endless = http.post(f"{gateway_url}/v1/customers", headers=json_type, timeout=10,
                        data=(b'{"name": "' + b"x" * 1000 for _ in range(100)))
    assert (endless.status_code, endless.json()["error"]["code"]) == (413, "body_too_large")

    declared = http.post(f"{gateway_url}/v1/customers", headers=json_type, timeout=10,
                         data=b'{"name": "' + b"x" * 70_000 + b'"}')
    assert declared.status_code == 413

    for query in ("q=%00", "q=%ED%A0%80", "q=a%C0b"):
        refused = http.get(f"{gateway_url}/v1/customers?{query}", timeout=10)
        assert refused.status_code == 422 and "q" in refused.json()["error"]["fields"], (query, refused.text)
