"""Configuration from the environment, with defaults that work on a developer's machine."""

from __future__ import annotations

import os


def setting(name: str, default: str) -> str:
    """One setting: the environment variable `name`, else `default`."""
    return os.environ.get(name) or default


def amqp_uri() -> str:
    return setting("AMQP_URI", "amqp://guest:guest@127.0.0.1:5672/")


def postgres_params() -> dict[str, str]:
    """Connection parameters of the platform's PostgreSQL (each service uses its own schema)."""
    return {
        "host": setting("POSTGRES_HOST", "127.0.0.1"),
        "port": setting("POSTGRES_PORT", "5432"),
        "dbname": setting("POSTGRES_DBNAME", "crm"),
        "user": setting("POSTGRES_USER", "postgres"),
        "password": setting("POSTGRES_PASSWORD", ""),
    }


def postgres_dsn(schema: str | None = None) -> str:
    """A libpq DSN for psycopg2; with `schema`, the session's search_path is that schema."""
    params = postgres_params()
    dsn = " ".join(f"{k}={v}" for k, v in params.items() if v)
    if schema:
        dsn += f" options='-c search_path={schema}'"
    return dsn
