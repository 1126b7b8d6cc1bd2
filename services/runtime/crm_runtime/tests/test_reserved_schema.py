"""A service's schema may be an SQL reserved word (the order service's is `order`): eventsourcing 9.5.6
looks its composite types up unquoted, so crm_runtime quotes them (eventstore.py)."""

from __future__ import annotations

import psycopg2
import pytest

from crm_customer.application import Customers
from tests.support.databases import dsn


@pytest.mark.integration
def test_an_application_works_in_a_schema_named_by_a_reserved_word(test_database: dict[str, str]) -> None:
    conn = psycopg2.connect(dsn(test_database))
    conn.autocommit = True
    with conn.cursor() as cur:
        cur.execute('CREATE SCHEMA IF NOT EXISTS "select"')
    try:
        app = Customers(env={**test_database, "POSTGRES_SCHEMA": "select", "CREATE_TABLE": "true"})
        registered = app.register("Li Na", "reserved@example.com")
        assert app.customer(registered.id).name == "Li Na"
        app.close()
    finally:
        with conn.cursor() as cur:
            cur.execute('DROP SCHEMA "select" CASCADE')
        conn.close()
