"""Shared by the listing tests of the runtime and of each service: an application on a fresh
PostgreSQL schema of the test database, with the listing tables migrated, and a psycopg2 connection.

Real: PostgreSQL (the root conftest's `test_database` and `postgres_schema` fixtures). The projector
is driven synchronously with `project_pending()` unless a test runs its loop."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg2

from crm_runtime.listing import create_listing_tables


def postgres_env(test_database: dict[str, str], schema: str) -> dict[str, str]:
    """eventsourcing settings for an application whose event store is `schema` (tables created)."""
    return {
        "PERSISTENCE_MODULE": "eventsourcing.postgres",
        **{k: v for k, v in test_database.items() if k.startswith("POSTGRES_")},
        "POSTGRES_SCHEMA": schema,
        "CREATE_TABLE": "true",
        "POSTGRES_POOL_SIZE": "2",
        "GROUP_COMMIT": "false",
    }


def dsn_of(test_database: dict[str, str]) -> str:
    """A libpq DSN of the test database."""
    params = {k.removeprefix("POSTGRES_").lower(): v for k, v in test_database.items() if k.startswith("POSTGRES_")}
    return " ".join(f"{k}={v}" for k, v in params.items() if v)


@contextmanager
def listing_connection(test_database: dict[str, str], schema: str) -> Iterator[Any]:
    """A psycopg2 connection to the test database, with `schema`'s listing tables migrated."""
    conn = psycopg2.connect(dsn_of(test_database))
    try:
        with conn:
            create_listing_tables(conn, schema)
        yield conn
    finally:
        conn.close()


@contextmanager
def listed_service(service_class: type, app: Any, test_database: dict[str, str], schema: str) -> Iterator[Any]:
    """A worker of `service_class` (nameko's worker_factory) over `app`, with its real lists in `schema`.

    Yields (worker, project): call `project()` to bring the lists up to date before listing."""
    from nameko.testing.services import worker_factory

    from crm_runtime.listing import ListingProjector

    listing = service_class.listing.listing.in_schema(schema)  # type: ignore[attr-defined]  # its own, another schema
    with listing_connection(test_database, schema) as conn:
        worker = worker_factory(service_class, application=app, db=conn, listing=listing)
        projector = ListingProjector(app, listing, dsn_of(test_database))
        yield worker, projector.project_pending


@contextmanager
def listed_application(app_class: type, service_class: type, test_database: dict[str, str],
                       schema: str) -> Iterator[tuple[Any, Any, Any]]:
    """An application of `app_class` whose event store is `schema`, with a worker of `service_class`
    over it (`listed_service`); yields (app, worker, project) and closes the application afterwards."""
    app = app_class(env=postgres_env(test_database, schema))
    try:
        with listed_service(service_class, app, test_database, schema) as (worker, project):
            yield app, worker, project
    finally:
        app.close()
