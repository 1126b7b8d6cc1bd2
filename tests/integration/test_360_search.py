"""Search and the 360 answer as customer360 serves them, on a real read model in PostgreSQL.

A query matches the start of a customer's name, of a word in it, or of the email, case-insensitively;
answers come a page at a time in the order of the first term each customer matched; `total` is exact
up to SEARCH_TOTAL_CAP and says `total_capped` past it; renames and a rebuild keep the search terms."""

from __future__ import annotations

import json
import uuid
from typing import Any

import psycopg2
import pytest

from crm_contracts.customer360 import Customer360Schema, SearchPageSchema
from crm_customer360 import readmodel
from crm_runtime.inbox import Inbox
from tests.support.databases import dsn

pytestmark = pytest.mark.integration


def register(envelopes: Any, name: str, email: str) -> tuple[str, dict[str, Any]]:
    customer_id = str(uuid.uuid4())
    envelope = envelopes.next(
        "customer",
        "customer_registered",
        customer_id,
        {"name": name, "email": email, "phone": None, "company": None, "source_channel": "web"},
    )
    return customer_id, envelope


def search(test_database: dict[str, str], schema: str, q: str, page: int = 1, size: int = 20) -> dict[str, Any]:
    conn = psycopg2.connect(dsn(test_database, schema))
    try:
        with conn, conn.cursor() as cur:
            text = readmodel.search_json(cur, q, page, size)
    finally:
        conn.close()
    answer = json.loads(text)
    assert SearchPageSchema().validate(answer) == {}
    return answer  # type: ignore[no-any-return]


def names(page: dict[str, Any]) -> list[str]:
    return [item["name"] for item in page["items"]]


def test_a_query_matches_the_start_of_a_name_a_word_of_it_or_an_email(read_schema, test_database, envelopes):
    people = {
        name: register(envelopes, name, email)
        for name, email in (
            ("Maria Garcia", "m.garcia@example.com"),
            ("Marta Smith", "marta@example.org"),
            ("Anna Mariani", "anna@example.net"),
            ("Li Na", "li.na@example.com"),
            ("Omar Hassan", "ohassan@example.com"),
        )
    }
    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    assert inbox.receive([envelope for _, envelope in people.values()]).applied == 5

    assert names(search(test_database, read_schema, "MARI")) == ["Maria Garcia", "Anna Mariani"]  # name, then word
    assert names(search(test_database, read_schema, "garc")) == ["Maria Garcia"]  # a word of the name
    assert names(search(test_database, read_schema, "m.gar")) == ["Maria Garcia"]  # the email
    assert names(search(test_database, read_schema, "li na")) == ["Li Na"]  # the whole name, with its space
    assert names(search(test_database, read_schema, "arcia")) == []  # the middle of a word is not a start
    assert names(search(test_database, read_schema, "100%_")) == []  # LIKE wildcards are plain characters
    found = search(test_database, read_schema, "mar")  # Maria, Marta (name and email), Mariani
    assert found["total"] == 3 and not found["total_capped"]
    assert sorted(names(found)) == ["Anna Mariani", "Maria Garcia", "Marta Smith"]  # each customer once
    everyone = search(test_database, read_schema, "")
    assert everyone["total"] == 5 and names(everyone) == sorted(names(everyone))


def test_pages_do_not_overlap_and_the_total_is_capped(read_schema, test_database, envelopes, monkeypatch):
    monkeypatch.setattr(readmodel, "SEARCH_TOTAL_CAP", 7)
    batch = [register(envelopes, f"Pat Number{n:02d}", f"pat{n:02d}@example.com")[1] for n in range(12)]
    Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None).receive(batch)

    first, second, third = (search(test_database, read_schema, "pat", page, 5) for page in (1, 2, 3))
    assert first["total"] == 7 and first["total_capped"]
    seen = [item["customer_id"] for page in (first, second, third) for item in page["items"]]
    assert len(seen) == len(set(seen)) == 12  # every customer once, though each matches name, word and email
    ten = search(test_database, read_schema, "pat number0")  # the whole names Pat Number00 to 09
    assert (ten["total"], ten["total_capped"]) == (7, True)
    two = search(test_database, read_schema, "pat number1")
    assert (two["total"], two["total_capped"]) == (2, False)


def test_a_rename_moves_the_customer_to_its_new_terms(read_schema, test_database, envelopes):
    customer_id, registered = register(envelopes, "Old Name", "someone@example.com")
    inbox = Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None)
    inbox.receive([registered])
    inbox.receive([envelopes.renamed(customer_id, "Fresh Label")])
    assert names(search(test_database, read_schema, "old")) == []
    assert names(search(test_database, read_schema, "label")) == ["Fresh Label"]
    assert names(search(test_database, read_schema, "someone")) == ["Fresh Label"]


def test_search_terms_of_a_view_folded_without_them_are_derived_once(read_schema, test_database, envelopes):
    customer_id, registered = register(envelopes, "Kept Customer", "kept@example.com")
    Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None).receive([registered])
    conn = psycopg2.connect(dsn(test_database, read_schema))
    with conn, conn.cursor() as cur:
        cur.execute("DELETE FROM customer_search")  # as a view folded by the version before search terms
        readmodel.create_indexes(cur)  # what a migration runs
        readmodel.create_indexes(cur)  # and again: nothing twice
        cur.execute("SELECT count(*) FROM customer_search WHERE customer_id = %s", (customer_id,))
        assert cur.fetchone()[0] == len(readmodel.search_terms("Kept Customer", "kept@example.com")) == 4
    conn.close()
    assert names(search(test_database, read_schema, "cust")) == ["Kept Customer"]


def test_the_360_answer_is_the_view_with_its_newest_timeline_and_event_count(read_schema, test_database, envelopes):
    customer_id, registered = register(envelopes, "Li Na", "li.na@example.com")
    paid = envelopes.order_paid(customer_id)
    Inbox(dsn(test_database, read_schema), readmodel.apply_batch, fetch=None).receive([registered, paid])
    conn = psycopg2.connect(dsn(test_database, read_schema))
    try:
        with conn, conn.cursor() as cur:
            answer = readmodel.customer_360(cur, customer_id)
            assert readmodel.customer_360(cur, str(uuid.uuid4())) is None
            cur.execute("SELECT doc FROM customer_view WHERE customer_id = %s", (customer_id,))
            doc = cur.fetchone()[0]
    finally:
        conn.close()
    assert answer is not None
    assert Customer360Schema().validate(answer) == {}
    assert {k: v for k, v in answer.items() if k not in ("timeline", "timeline_total", "analytics")} == doc
    assert answer["timeline_total"] == 2 and answer["analytics"] is None
    # Newest first; at the same instant, by origin.
    assert [e["type"] for e in answer["timeline"]] == ["customer_registered", "order_paid"]
