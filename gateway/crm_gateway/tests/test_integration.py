"""The gateway and the customer service in this process as real nameko containers, over real RabbitMQ
(a virtual host of this session's) and PostgreSQL (migrated by crm-migrate), driven over real HTTP.
customer360 is deliberately not started: its endpoints must answer 503, not hang."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator

import eventlet
import pytest
import requests
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy

from crm_customer.service import CustomerService
from crm_gateway.auth import READ, WRITE, issue_token
from crm_gateway.service import GatewayService
from crm_gateway.tests.conftest import SECRET
from crm_runtime.migrate import migrate

pytestmark = pytest.mark.integration


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def nameko_config(amqp_vhost: str) -> dict:
    return {"AMQP_URI": amqp_vhost, "serializer": "json"}


@pytest.fixture
def gateway_url(test_database, nameko_config, monkeypatch) -> Iterator[str]:
    """The URL of a running gateway, with a running customer service behind it."""
    for name, value in test_database.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMQP_URI", nameko_config["AMQP_URI"])
    monkeypatch.setenv("RELAY_ENABLED", "false")  # nothing here consumes events
    monkeypatch.setenv("GATEWAY_RPC_TIMEOUT", "5")
    migrate(["customer", "gateway"])
    gateway_port = free_port()
    containers = [
        ServiceContainer(CustomerService, {**nameko_config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"}),
        ServiceContainer(GatewayService, {**nameko_config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{gateway_port}"}),
    ]
    for container in containers:
        container.start()
    yield f"http://127.0.0.1:{gateway_port}"
    # Each container takes seconds to stop its AMQP consumers; stopping them side by side saves that.
    for stopping in [eventlet.spawn(container.stop) for container in containers]:
        stopping.wait()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """An HTTP client; closed before the containers stop (an open keep-alive connection delays their stop)."""
    with requests.Session() as session:
        yield session


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
