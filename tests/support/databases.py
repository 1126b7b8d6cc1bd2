"""Small helpers to reach the test database from tests."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterable
from typing import Any

import psycopg2
import pytest


def dsn(env: dict[str, str], schema: str | None = None) -> str:
    """A libpq DSN from a test environment dict (POSTGRES_*), optionally with a search_path."""
    parts = [
        f"host={env['POSTGRES_HOST']}",
        f"port={env['POSTGRES_PORT']}",
        f"dbname={env['POSTGRES_DBNAME']}",
        f"user={env['POSTGRES_USER']}",
    ]
    if env.get("POSTGRES_PASSWORD"):
        parts.append(f"password={env['POSTGRES_PASSWORD']}")
    if schema:
        parts.append(f"options='-c search_path={schema}'")
    return " ".join(parts)


def query(env: dict[str, str], schema: str | None, statement: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Run one statement in its own transaction and return its rows (if any)."""
    conn = psycopg2.connect(dsn(env, schema))
    try:
        with conn, conn.cursor() as cur:
            cur.execute(statement, params)
            return cur.fetchall() if cur.description else []
    finally:
        conn.close()


def stored_topics(env: dict[str, str], schema: str) -> dict[str, int]:
    """topic -> how many events a service's event store holds (every `*_events` table of its schema)."""
    tables = query(env, None, "SELECT table_name FROM information_schema.tables WHERE table_schema = %s "
                              "AND table_name LIKE '%%\\_events'", (schema,))
    counts: dict[str, int] = {}
    for (table,) in tables:
        for topic, count in query(env, schema, f'SELECT topic, count(*) FROM "{table}" GROUP BY topic'):
            counts[topic] = counts.get(topic, 0) + count
    return counts


def pg_dump(env: dict[str, str], schema: str | None = None) -> bytes:
    """`pg_dump` of the test database (data and definitions), as the server has it: of one schema, or
    of every schema without `schema`. Skips the test when pg_dump is not installed."""
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump is not installed")
    args = [pg_dump, "-h", env["POSTGRES_HOST"], "-p", env["POSTGRES_PORT"], "-U", env["POSTGRES_USER"],
            "-d", env["POSTGRES_DBNAME"], *(["-n", schema] if schema else []), "--no-owner"]
    done = subprocess.run(args, capture_output=True, check=True, env={"PGPASSWORD": env.get("POSTGRES_PASSWORD", "")},
                          timeout=120)
    return done.stdout


def leaked(dumped: bytes, secrets: Iterable[str]) -> list[str]:
    """Which of `secrets` a dump holds: as text (any case), or as the hex pg_dump writes bytea in."""
    lowered = dumped.lower()
    return [s for s in secrets if s.lower().encode() in lowered or s.encode().hex().encode() in lowered]
