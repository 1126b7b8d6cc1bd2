"""End-to-end level: the platform's real processes, started the way `make run` starts them
(crm_runtime.platform.LocalPlatform), driven only over HTTP through the gateway.

Real: every process, RabbitMQ, PostgreSQL. Isolated: a database, a RabbitMQ virtual host, ports and a
run directory of this session's own, so a running `make run` is never touched. Tests may look into
the database or broker to check an effect, and may kill processes; they never call a service directly
to cause one.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import kombu
import pytest
import requests

from conftest import rabbit_vhost
from crm_runtime.platform import LocalPlatform
from tests.support.infrastructure import Infrastructure, drop_database
from tests.support.polling import eventually

E2E_GATEWAY_PORT = int(os.environ.get("CRM_E2E_GATEWAY_PORT", "18000"))
E2E_SERVICE_BASE_PORT = int(os.environ.get("CRM_E2E_SERVICE_BASE_PORT", "18101"))
JWT_SECRET = "e2e-secret-" + uuid.uuid4().hex


@dataclass
class RunningPlatform:
    """The platform under test, and how to talk to it."""

    platform: LocalPlatform
    env: dict[str, str]
    gateway: str
    token: str
    admin_token: str

    def http(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        return requests.request(method, f"{self.gateway}{path}", headers=headers, timeout=30, **kwargs)

    def register(self, **fields: Any) -> requests.Response:
        body = {"name": "Li Na", "email": f"{uuid.uuid4().hex[:12]}@example.com", **fields}
        return self.http("POST", "/v1/customers", json=body)

    def view(self, customer_id: str) -> dict[str, Any]:
        """The 360 view once it exists (polls: the read model lags the command)."""

        def visible() -> dict[str, Any]:
            response = self.http("GET", f"/v1/customers/{customer_id}/360")
            assert response.status_code == 200, response.text
            return response.json()

        return eventually(visible, timeout=30)

    def health(self, name: str) -> dict[str, Any]:
        port = self.platform.processes[name].port
        return requests.get(f"http://127.0.0.1:{port}/health/ready", timeout=5).json()

    def amqp(self) -> kombu.Connection:
        return kombu.Connection(self.env["AMQP_URI"])


def make_token(scopes: str) -> str:
    from crm_gateway.auth import issue_token

    return issue_token(subject="e2e-tests", scopes=scopes.split(), secret=JWT_SECRET)


@pytest.fixture(scope="session")
def e2e_vhost(infra: Infrastructure) -> Iterator[str]:
    """The platform's own virtual host: what other tests publish never reaches its queues."""
    with rabbit_vhost(infra, "crm_e2e") as uri:
        yield uri


@pytest.fixture(scope="session")
def running_platform(infra: Infrastructure, e2e_vhost: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[RunningPlatform]:
    dbname = f"crm_e2e_{os.getpid()}"
    env = {
        **infra.env(dbname),
        "AMQP_URI": e2e_vhost,
        "CRM_JWT_SECRET": JWT_SECRET,
        "GATEWAY_PORT": str(E2E_GATEWAY_PORT),
        "SERVICE_BASE_PORT": str(E2E_SERVICE_BASE_PORT),
        "CATCH_UP_INTERVAL": "5",
        "LOG_LEVEL": "INFO",
    }
    run_dir = Path(tmp_path_factory.mktemp("platform"))
    platform = LocalPlatform(run_dir, env)
    platform.migrate()
    try:
        platform.start(timeout=90)
        yield RunningPlatform(
            platform, env, f"http://127.0.0.1:{E2E_GATEWAY_PORT}", make_token("crm:read crm:write"),
            make_token("crm:read crm:write crm:admin"),
        )
    finally:
        platform.stop()
        for log in sorted(run_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- last lines of {log.name} ---", *tail, sep="\n")
        drop_database(infra.postgres, dbname)
