"""Platforms of a test's own: the real processes under their supervisor (crm_runtime.platform), each
platform with its own database, RabbitMQ virtual host, ports and run directory."""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import kombu
import psycopg2
import requests

from crm_customer360 import readmodel
from crm_runtime.platform import LocalPlatform
from tests.support.databases import dsn, query
from tests.support.infrastructure import Infrastructure, drop_database
from tests.support.polling import eventually

JWT_SECRET = "e2e-secret-" + uuid.uuid4().hex
#: Connection pools of a test platform's processes. The defaults (up to ~40 connections per process
#: under load) let two test platforms side by side exhaust a PostgreSQL server's 100 connections
#: ("too many clients"), failing the tests that share the server.
SMALL_POOLS = {"POSTGRES_POOL_SIZE": "2", "POSTGRES_MAX_OVERFLOW": "4", "READ_POOL_SIZE": "4",
               "IDEMPOTENCY_POOL_SIZE": "4"}


def make_token(scopes: str) -> str:
    from crm_gateway.auth import issue_token

    return issue_token(subject="e2e-tests", scopes=scopes.split(), secret=JWT_SECRET)


@dataclass
class RunningPlatform:
    """The platform under test, and how to talk to it.

    `env` reaches its database and broker directly (for the tests' own checks), even when the
    platform itself goes through a test's outage proxies.
    """

    platform: LocalPlatform
    env: dict[str, str]
    gateway: str
    token: str
    admin_token: str
    gateways: list[str] = field(default_factory=list)

    def http(self, method: str, path: str, *, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.token}", **kwargs.pop("headers", {})}
        kwargs.setdefault("timeout", 30)
        return requests.request(method, f"{self.gateway}{path}", headers=headers, **kwargs)

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

    def read_model(self) -> dict[str, list[tuple[Any, ...]]]:
        """Every row of the live 360 read model and its inbox tracking (readmodel.all_rows)."""
        conn = psycopg2.connect(dsn(self.env, readmodel.SCHEMA))
        try:
            with conn, conn.cursor() as cur:
                tables = readmodel.all_rows(cur)
                cur.execute("SELECT origin, position FROM inbox_tracking WHERE position > 0 ORDER BY origin")
                tables["inbox_tracking"] = cur.fetchall()
                return tables
        finally:
            conn.close()

    def stored_events(self) -> dict[str, int]:
        """customer id -> how many events the customer service stored for it (its event store)."""
        (table,), = query(self.env, None, "SELECT table_name FROM information_schema.tables WHERE "
                                          "table_schema = 'customer' AND table_name LIKE '%\\_events'")
        return dict(query(self.env, "customer", f"SELECT originator_id::text, count(*) FROM {table} "
                                                "WHERE topic LIKE %s GROUP BY originator_id", ("%:Customer.%",)))

    def viewed_events(self) -> dict[str, int]:
        """customer id -> how many customer events the 360 view applied for it."""
        return dict(query(self.env, readmodel.SCHEMA, "SELECT customer_id::text, (doc->'events'->>'customer')::int "
                                                      "FROM customer_view"))

    def rebuild_changes_nothing(self) -> int:
        """Rebuild the 360 view through the API once the live view is quiet; assert nothing changed;
        return how many events the rebuild read."""
        live = eventually(lambda: (rows := self.read_model()) == self.read_model() and rows, timeout=60, interval=1)
        response = self.http("POST", "/v1/admin/rebuild-360", token=self.admin_token, timeout=600)
        assert response.status_code == 200, response.text
        rebuilt = self.read_model()
        for table in live:
            assert rebuilt[table] == live[table], f"the rebuilt {table} differs from the live one"
        return int(response.json()["events"])


@contextlib.contextmanager
def platform_of_its_own(
    infra: Infrastructure,
    run_dir: Path,
    *,
    label: str,
    amqp_uri: str,
    gateway_port: int,
    service_base_port: int,
    settings: dict[str, str] | None = None,
    platform_env: dict[str, str] | None = None,
    timeout: float = 120,
) -> Iterator[RunningPlatform]:
    """Migrate a fresh database `crm_<label>_<pid>`, start every process under a supervisor bound to
    this pytest process, yield the running platform; stop it, show each log's tail, drop the database.

    `settings`: extra environment (CRM_REPLICAS, CRM_RESTART...). `platform_env`: what only the
    platform's processes see (proxy ports in front of the broker or database).
    """
    dbname = f"crm_{label}_{os.getpid()}"
    env = {**infra.env(dbname), "AMQP_URI": amqp_uri}
    process_env = {
        **env,
        "CRM_JWT_SECRET": JWT_SECRET,
        "GATEWAY_PORT": str(gateway_port),
        "SERVICE_BASE_PORT": str(service_base_port),
        "CATCH_UP_INTERVAL": "5",
        "LOG_LEVEL": "INFO",
        "CRM_SUPERVISOR_OWNER_PID": str(os.getpid()),
        **SMALL_POOLS,
        **(settings or {}),
        **(platform_env or {}),
    }
    platform = LocalPlatform(run_dir, process_env)
    drop_database(infra.postgres, dbname)
    platform.migrate()
    try:
        platform.start(timeout=timeout)
        gateways = [f"http://127.0.0.1:{platform.processes[n].port}" for n in platform.services("gateway")]
        yield RunningPlatform(
            platform, {**process_env, **env}, gateways[0], make_token("crm:read crm:write"),
            make_token("crm:read crm:write crm:admin"), gateways,
        )
    finally:
        platform.stop()
        for log in sorted(run_dir.glob("*.log")):
            tail = log.read_text(errors="replace").splitlines()[-15:]
            print(f"--- last lines of {log.name} ---", *tail, sep="\n")
        drop_database(infra.postgres, dbname)
