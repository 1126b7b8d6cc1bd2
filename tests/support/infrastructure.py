"""Where the real RabbitMQ and PostgreSQL for tests come from.

Where a Docker engine answers, testcontainers starts throwaway containers. Where none does (this
project's CI machine has only the docker client), the servers named by the environment are used,
with the local defaults of crm_runtime.config.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg2
import requests
from psycopg2 import sql


@dataclass(frozen=True)
class Infrastructure:
    """Connection settings of the PostgreSQL server and RabbitMQ broker the tests use."""

    postgres: dict[str, str]
    amqp_uri: str
    rabbit_management_uri: str

    def env(self, dbname: str) -> dict[str, str]:
        """Environment variables that point crm_runtime at this infrastructure and database."""
        return {
            "POSTGRES_HOST": self.postgres["host"],
            "POSTGRES_PORT": self.postgres["port"],
            "POSTGRES_USER": self.postgres["user"],
            "POSTGRES_PASSWORD": self.postgres["password"],
            "POSTGRES_DBNAME": dbname,
            "AMQP_URI": self.amqp_uri,
        }


def docker_engine_available() -> bool:
    if os.environ.get("CRM_TESTS_USE_DOCKER", "auto") == "never":
        return False
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:  # noqa: BLE001 - any failure means "no engine here"
        return False


@contextlib.contextmanager
def infrastructure() -> Iterator[Infrastructure]:
    """Containers where Docker runs, else the environment's (or local default) servers."""
    if docker_engine_available():
        from testcontainers.postgres import PostgresContainer
        from testcontainers.rabbitmq import RabbitMqContainer

        with PostgresContainer("postgres:15", driver=None) as pg, RabbitMqContainer(
            "rabbitmq:3.10-management"
        ).with_exposed_ports(5672, 15672) as rabbit:
            host = rabbit.get_container_host_ip()
            yield Infrastructure(
                postgres={
                    "host": pg.get_container_host_ip(),
                    "port": str(pg.get_exposed_port(5432)),
                    "user": pg.username,
                    "password": pg.password,
                },
                amqp_uri=f"amqp://guest:guest@{host}:{rabbit.get_exposed_port(5672)}/",
                rabbit_management_uri=f"http://guest:guest@{host}:{rabbit.get_exposed_port(15672)}",
            )
        return
    from crm_runtime import config

    params = config.postgres_params()
    yield Infrastructure(
        postgres={k: params[k] for k in ("host", "port", "user", "password")},
        amqp_uri=config.amqp_uri(),
        rabbit_management_uri=config.setting(
            "RABBIT_MANAGEMENT_URI", "http://guest:guest@127.0.0.1:15672"
        ),
    )


def drop_database(postgres: dict[str, str], dbname: str) -> None:
    """Drop `dbname`, disconnecting whoever still uses it."""
    conn = psycopg2.connect(dbname="postgres", **postgres)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (dbname,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(dbname)))
    finally:
        conn.close()


def recreate_database(postgres: dict[str, str], dbname: str) -> None:
    """Drop and create `dbname`, so a test session starts from nothing."""
    drop_database(postgres, dbname)
    conn = psycopg2.connect(dbname="postgres", **postgres)
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
    finally:
        conn.close()


@contextlib.contextmanager
def rabbit_vhost(infra: Infrastructure, prefix: str) -> Iterator[str]:
    """A RabbitMQ virtual host of the caller's own, deleted afterwards; yields its AMQP URI."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    scheme, rest = infra.rabbit_management_uri.rstrip("/").split("://", 1)
    credentials, host = rest.split("@", 1)
    user, _, password = credentials.partition(":")
    auth = (user, password)
    url = f"{scheme}://{host}/api"
    requests.put(f"{url}/vhosts/{name}", auth=auth, timeout=10).raise_for_status()
    requests.put(
        f"{url}/permissions/{name}/{auth[0]}",
        json={"configure": ".*", "write": ".*", "read": ".*"},
        auth=auth,
        timeout=10,
    ).raise_for_status()
    try:
        yield infra.amqp_uri.rstrip("/") + "/" + name
    finally:
        requests.delete(f"{url}/vhosts/{name}", auth=auth, timeout=10)
