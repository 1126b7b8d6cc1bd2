"""Gateway unit tests: one worker of GatewayService (nameko's worker_factory) driven with werkzeug test
requests routed by the service's own `@http` rules.

Real: routing rules, auth (JWTs signed with a test secret), schemas, error mapping, and, where a test
asks for `idempotency_store`, PostgreSQL. Replaced: the clients of every service (customer, customer360,
marketing, sales, order, service, loyalty) are mocks, so no broker is needed and each test says what the
service answers.

Integration tests (marked) use `running_gateway` instead: the gateway and the services it needs as real
nameko containers in this process, over a RabbitMQ virtual host of this session's and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import eventlet
import pytest
import requests
from nameko.containers import ServiceContainer
from nameko.testing.services import worker_factory
from werkzeug.routing import Map, Rule
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request, Response

from crm_gateway.auth import ADMIN, READ, WRITE, issue_token
from crm_gateway.idempotency import IdempotencyStore
from crm_gateway.service import GatewayService
from crm_runtime.migrate import migrate
from tests.support.webhooks import migrated_gateway_dsn

SECRET = "test-secret-for-the-gateway-unit-tests-" + "0123456789" * 3
CUSTOMER_ID = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"


def customer_answer(version: int = 1, **overrides: Any) -> dict[str, Any]:
    """What the customer service answers for a customer (the fields the gateway relies on)."""
    return {"id": CUSTOMER_ID, "version": version, "name": "Li Na", "email": "li.na@example.com", **overrides}


def http_routes(service_cls: type) -> Map:
    """The service's `@http` rules as a werkzeug Map whose endpoints are the handler names."""
    rules = []
    for name in dir(service_cls):
        for entrypoint in getattr(getattr(service_cls, name), "nameko_entrypoints", ()):
            if hasattr(entrypoint, "url"):
                rules.append(Rule(entrypoint.url, methods=entrypoint.method.split(","), endpoint=name))
    return Map(rules)


class Api:
    """Calls a worker's handlers the way nameko's web server would, by method and path."""

    routes = http_routes(GatewayService)

    def __init__(self, worker: Any) -> None:
        self.worker = worker
        self.token: str | None = issue_token("tester", (READ, WRITE, ADMIN), secret=SECRET)

    def request(
        self,
        method: str,
        path: str,
        json_body: Any = None,
        data: str | bytes | None = None,
        headers: dict[str, str] | None = None,
        content_type: str | None = None,
    ) -> Response:
        headers = dict(headers or {})
        if self.token and "Authorization" not in headers:
            headers["Authorization"] = f"Bearer {self.token}"
        if json_body is not None:
            data, content_type = json.dumps(json_body), content_type or "application/json"
        builder = EnvironBuilder(
            path=path, method=method, data=data, headers=list(headers.items()), content_type=content_type
        )
        request = Request(builder.get_environ())
        name, values = self.routes.bind("localhost").match(request.path, method=method)
        return getattr(self.worker, name)(request, **values)

    def get(self, path: str, **kwargs: Any) -> Response:
        return self.request("GET", path, **kwargs)

    def post(self, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request("POST", path, json_body, **kwargs)

    def patch(self, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request("PATCH", path, json_body, **kwargs)

    def put(self, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request("PUT", path, json_body, **kwargs)

    def call(self, method: str, path: str, json_body: Any = None, **kwargs: Any) -> Response:
        return self.request(method.upper(), path, json_body, **kwargs)


def body(response: Response) -> Any:
    """The JSON body of a response."""
    return json.loads(response.get_data())


@pytest.fixture(autouse=True)
def jwt_secret(monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test signs and checks tokens with the test secret."""
    monkeypatch.setenv("CRM_JWT_SECRET", SECRET)
    return SECRET


@pytest.fixture
def customer() -> MagicMock:
    """The customer service's RPC proxy; answers a customer at version 1 unless a test says otherwise."""
    proxy = MagicMock(name="customer")
    for method in ("register", "get", "change_profile", "record_consent", "set_credit_rating", "grade"):
        getattr(proxy, method).return_value = customer_answer()
    return proxy


@pytest.fixture
def customer360() -> MagicMock:
    """The customer360 service's RPC proxy."""
    return MagicMock(name="customer360")


@pytest.fixture
def marketing() -> MagicMock:
    """The marketing service's client."""
    return MagicMock(name="marketing")


@pytest.fixture
def sales() -> MagicMock:
    """The sales service's client."""
    return MagicMock(name="sales")


@pytest.fixture
def order() -> MagicMock:
    """The order service's client."""
    return MagicMock(name="order")


@pytest.fixture
def service() -> MagicMock:
    """The service (after-sales) service's client."""
    return MagicMock(name="service")


@pytest.fixture
def loyalty() -> MagicMock:
    """The loyalty service's client."""
    return MagicMock(name="loyalty")


@pytest.fixture
def clients(customer: MagicMock, customer360: MagicMock, marketing: MagicMock, sales: MagicMock, order: MagicMock,
            service: MagicMock, loyalty: MagicMock) -> dict[str, MagicMock]:
    """Every service client of the gateway, by its attribute name."""
    return {"customer": customer, "customer360": customer360, "customer360_reads": customer360,
            "customer360_admin": customer360,
            "marketing": marketing, "sales": sales, "order": order, "service": service, "loyalty": loyalty}


@pytest.fixture
def unused_store() -> IdempotencyStore:
    """A store that never connects: requests without Idempotency-Key never touch it."""
    return IdempotencyStore("dbname=no_database_here host=/nonexistent")


@pytest.fixture
def api(clients: dict[str, MagicMock], unused_store: IdempotencyStore) -> Api:
    """The gateway with mocked services and no database."""
    return Api(worker_factory(GatewayService, **clients, idempotency=unused_store))


@pytest.fixture
def idempotency_store(test_database: dict[str, str], postgres_schema: str) -> Iterator[IdempotencyStore]:
    """An IdempotencyStore on a fresh PostgreSQL schema, migrated by the gateway's own migration."""
    store = IdempotencyStore(migrated_gateway_dsn(test_database, postgres_schema))
    yield store
    store.close()


@pytest.fixture
def idempotent_api(clients: dict[str, MagicMock], idempotency_store: IdempotencyStore) -> Api:
    """The gateway with mocked services and real idempotency keys in PostgreSQL."""
    return Api(worker_factory(GatewayService, **clients, idempotency=idempotency_store))


# --- integration: real containers -------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]  # type: ignore[no-any-return]


@pytest.fixture
def nameko_config(amqp_vhost: str) -> dict[str, Any]:
    return {"AMQP_URI": amqp_vhost, "serializer": "json"}


@contextlib.contextmanager
def running_gateway(
    test_database: dict[str, str], nameko_config: dict[str, Any], monkeypatch: pytest.MonkeyPatch,
    services: list[type[Any]],
) -> Iterator[str]:
    """The URL of a running gateway with `services` running behind it (each migrated first)."""
    for name, value in test_database.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMQP_URI", nameko_config["AMQP_URI"])
    monkeypatch.setenv("RELAY_ENABLED", "false")  # nothing here needs the events published
    monkeypatch.setenv("GATEWAY_RPC_TIMEOUT", "5")
    migrate([*(service.name for service in services), "gateway"])
    gateway_port = free_port()
    containers = [
        ServiceContainer(cls, {**nameko_config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{free_port()}"})
        for cls in services
    ]
    containers.append(
        ServiceContainer(GatewayService, {**nameko_config, "WEB_SERVER_ADDRESS": f"127.0.0.1:{gateway_port}"})
    )
    for container in containers:
        container.start()
    try:
        yield f"http://127.0.0.1:{gateway_port}"
    finally:
        # Each container takes seconds to stop its AMQP consumers; stopping them side by side saves that.
        for stopping in [eventlet.spawn(container.stop) for container in containers]:
            stopping.wait()


@pytest.fixture
def http() -> Iterator[requests.Session]:
    """An HTTP client; closed before the containers stop (an open keep-alive connection delays their stop)."""
    with requests.Session() as session:
        yield session
