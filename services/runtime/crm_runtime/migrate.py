"""`crm-migrate`: create the database, every service's schema and tables, explicitly and once.

Services start with CREATE_TABLE=false (two processes creating eventsourcing's tables at once fail,
STACK.md). Packages declare what to migrate under the entry-point group `crm.migrations`: either a
ServiceApplication subclass (its event store, the relay's cursor table, and the listing projection's
tables, crm_runtime.listing: generic, so every event-sourced schema has them, used or not) or a
function taking a psycopg2 cursor whose search_path is the entry's schema.
"""

from __future__ import annotations

import logging
import sys
from importlib.metadata import entry_points

import psycopg2
from psycopg2 import sql

from crm_runtime import config
from crm_runtime.eventstore import ServiceApplication
from crm_runtime.listing import create_listing_tables
from crm_runtime.relay import create_cursor_table

log = logging.getLogger("crm_runtime.migrate")


def ensure_database() -> None:
    params = config.postgres_params()
    dbname = params["dbname"]
    conn = psycopg2.connect(**{**{k: v for k, v in params.items() if v}, "dbname": "postgres"})
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,))
        if cur.fetchone() is None:
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
            print(f"created database {dbname}")
    conn.close()


def migrate(only: list[str] | None = None) -> list[str]:
    """Migrate every registered schema (or those named in `only`); return the schemas migrated."""
    ensure_database()
    done = []
    for entry in sorted(entry_points(group="crm.migrations"), key=lambda e: e.name):
        if only and entry.name not in only:
            continue
        target = entry.load()
        conn = psycopg2.connect(config.postgres_dsn())
        try:
            with conn, conn.cursor() as cur:
                cur.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(entry.name)))
            if isinstance(target, type) and issubclass(target, ServiceApplication):
                target(create_table=True).close()
                with conn:
                    create_cursor_table(conn, entry.name)
                    create_listing_tables(conn, entry.name)
            else:
                with conn, conn.cursor() as cur:
                    cur.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(entry.name)))
                    target(cur)
        finally:
            conn.close()
        done.append(entry.name)
        print(f"migrated schema {entry.name}")
    return done


def main() -> None:
    migrate(sys.argv[1:] or None)


if __name__ == "__main__":
    main()
