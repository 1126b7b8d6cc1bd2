"""Fixtures for every test level.

What is real here: the eventsourcing in-memory store for unit tests, and real PostgreSQL and
RabbitMQ (testcontainers where Docker runs, the environment's servers otherwise) for the rest.
nameko runs on eventlet, so the process is monkey-patched first (STACK.md: without it, nameko's
fixtures can hang under plain pytest).
"""

import warnings

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import os  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

import psycopg2  # noqa: E402
import pytest  # noqa: E402
from psycopg2 import sql  # noqa: E402

import crm_runtime  # noqa: E402,F401 - sets PSYCOPG_WAIT_FUNC before psycopg is imported
from tests.support.infrastructure import (  # noqa: E402
    Infrastructure,
    drop_database,
    infrastructure,
    rabbit_vhost,
    recreate_database,
)

#: One database per pytest process, so test sessions running side by side never meet.
TEST_DATABASE = os.environ.get("CRM_TEST_DATABASE", f"crm_test_{os.getpid()}")


@pytest.fixture(scope="session")
def infra() -> Iterator[Infrastructure]:
    """The real PostgreSQL server and RabbitMQ broker of this test session."""
    with infrastructure() as found:
        yield found


@pytest.fixture(scope="session")
def test_database(infra: Infrastructure) -> Iterator[dict[str, str]]:
    """A fresh database for this session, dropped at its end; yields the environment pointing at it."""
    recreate_database(infra.postgres, TEST_DATABASE)
    yield infra.env(TEST_DATABASE)
    drop_database(infra.postgres, TEST_DATABASE)


@pytest.fixture
def postgres_schema(test_database: dict[str, str]) -> Iterator[str]:
    """A new, empty PostgreSQL schema for one test, dropped afterwards."""
    schema = f"t_{uuid.uuid4().hex[:12]}"
    params = {k.removeprefix("POSTGRES_").lower(): v for k, v in test_database.items() if k.startswith("POSTGRES_")}
    conn = psycopg2.connect(**params)
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield schema
    with conn.cursor() as cur:
        cur.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    conn.close()


@pytest.fixture(params=["memory", "postgres"])
def event_store_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """eventsourcing settings for an application under test: the same suite runs on the in-memory
    store and on PostgreSQL (a fresh schema per test). Pass it as `App(env=event_store_env)`."""
    if request.param == "memory":
        return {"PERSISTENCE_MODULE": "eventsourcing.popo"}
    database = request.getfixturevalue("test_database")
    schema = request.getfixturevalue("postgres_schema")
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        **database,
        "POSTGRES_SCHEMA": schema,
        "CREATE_TABLE": "true",
        "POSTGRES_POOL_SIZE": "2",
    }


@pytest.fixture(scope="session")
def amqp_vhost(infra: Infrastructure) -> Iterator[str]:
    """The integration tests' RabbitMQ virtual host (so they never meet a running platform's queues)."""
    with rabbit_vhost(infra, "crm_test") as uri:
        yield uri
