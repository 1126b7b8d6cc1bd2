"""Candidate duplicates in the 360 read model on real PostgreSQL (pg_trgm): by normalised email, by phone
in E.164, by a similar name at a similar company; erased customers are never candidates.

Real: PostgreSQL with pg_trgm, readmodel.apply_batch. Replaced: the customer origin's feed (envelopes)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from crm_customer360 import duplicates, readmodel
from crm_runtime.inbox import Inbox
from tests.integration.test_360_journey import live_view, read  # noqa: F401 - live_view is a fixture
from tests.support.databases import dsn

pytestmark = pytest.mark.integration


def registered(position: int, name: str, email: str | None, phone: str | None, company: str | None
               ) -> dict[str, Any]:
    customer_id = str(uuid.uuid4())
    return {"event_id": str(uuid.uuid4()), "type": "customer_registered", "version": 1, "origin": "customer",
            "position": position, "previous": position - 1, "occurred_at": f"2026-11-{position:02d}T09:00:00+00:00",
            "customer_id": customer_id, "correlation_id": None, "causation_id": None,
            "payload": {"customer_id": customer_id, "name": name, "email": email, "phone": phone, "company": company,
                        "source_channel": "web"}}


def test_candidates_by_email_phone_and_similar_name(live_view, test_database):  # noqa: F811
    events = [
        registered(1, "Zhang Xiaoming", "zhang.xiaoming@gmail.com", "+86 10 5555 0101", "Bright Retail"),
        registered(2, "Zhang Xiao-ming", "zhangxiaoming+shop@gmail.com", None, None),  # same gmail, dots and tag
        registered(3, "X. Zhang", None, "010 5555 0101", None),  # same number, national format
        registered(4, "Zhang Xiaomin", None, None, "Bright Retail Ltd"),  # similar name, similar company
        registered(5, "Wang Fang", "wang.fang@example.com", "+86 21 5555 0177", "Other Co"),  # nobody
    ]
    erased = {**registered(6, "Zhang Xiaoming", None, None, None)}
    gone = {"event_id": str(uuid.uuid4()), "type": "customer_erased", "version": 1, "origin": "customer",
            "position": 7, "previous": 6, "occurred_at": "2026-11-07T09:00:00+00:00",
            "customer_id": erased["customer_id"], "correlation_id": None, "causation_id": None,
            "payload": {"customer_id": erased["customer_id"], "request_id": "DSR-1",
                        "erased_at": "2026-11-07T09:00:00+00:00"}}
    inbox = Inbox(dsn(test_database, live_view), readmodel.apply_batch, fetch=None)
    try:
        assert inbox.receive([*events, erased, gone]).applied == 7
    finally:
        inbox.close()
    ids = [e["customer_id"] for e in events]

    found = read(test_database, live_view, duplicates.candidates_of, ids[0])
    by_id = {c["customer_id"]: {r["reason"] for r in c["reasons"]} for c in found}
    assert by_id[ids[1]] >= {"email"} and by_id[ids[2]] == {"phone"} and "name_company" in by_id[ids[3]]
    assert ids[4] not in by_id and erased["customer_id"] not in by_id
    assert found[0]["score"] == duplicates.EMAIL_SCORE and [c["score"] for c in found] == sorted(
        (c["score"] for c in found), reverse=True)

    # A registration's fields (not in the view yet) find the same customers.
    probe = duplicates.Probe("Zhang Xiaoming", "ZhangXiaoming@googlemail.com", None, None)
    assert {c["customer_id"] for c in read(test_database, live_view, duplicates.candidates, probe)} >= {ids[0], ids[1]}
    # A stricter threshold drops the fuzzy name match but keeps exact contacts.
    strict = read(test_database, live_view, duplicates.candidates_of, ids[0], 0.95)
    assert ids[3] not in {c["customer_id"] for c in strict} and ids[2] in {c["customer_id"] for c in strict}

    pairs = read(test_database, live_view, duplicates.duplicate_pairs)
    assert sorted([ids[0], ids[1]]) in [p["customer_ids"] for p in pairs["items"]]
    assert all(erased["customer_id"] not in p["customer_ids"] for p in pairs["items"])


@pytest.mark.parametrize(("email", "normal"), [
    ("Li.Na+Shop@Example.com ", "li.na@example.com"),
    ("l.i.n.a@googlemail.com", "lina@gmail.com"),
    ("nope", None),
])
def test_emails_normalise(email, normal):
    assert duplicates.normalise_email(email) == normal


@pytest.mark.parametrize(("phone", "normal"), [
    ("+86 10 5555 0101", "+861055550101"),
    ("(010) 5555-0101", "+861055550101"),
    ("13800138000", "+8613800138000"),
    ("12", None),
])
def test_phones_normalise_to_e164(phone, normal):
    assert duplicates.e164(phone, "CN") == normal
