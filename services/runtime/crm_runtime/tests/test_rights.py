"""crm_runtime.rights: the customer's rights every service applies through its policies (erasure by
crypto-shredding, merge, unmerge), on the in-memory store and on PostgreSQL (`event_store_env`)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest
from eventsourcing.domain import Aggregate, event

from crm_runtime.crypto import PersonalFields
from crm_runtime.eventstore import ServiceApplication
from crm_runtime.policy import Policies, PolicyInbox
from crm_runtime.rights import (
    CustomerErasedError,
    erasure_state_of,
    forget_subjects,
    react_to_customer_rights,
    record_merge,
    record_unmerge,
    records_of,
    refusing_erased_customers,
    subjects_of,
    survivor_path,
)

LI_NA = uuid.UUID("3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e")
SURVIVOR = uuid.UUID("9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a")


class Booking(Aggregate):
    """A record of a customer, with one personal field sealed under the customer's key."""

    def __init__(self, customer_id: uuid.UUID, guest: str) -> None:
        self.customer_id = customer_id
        self.guest = guest

    @event("Moved")
    def move(self, customer_id: uuid.UUID) -> None:
        self.customer_id = customer_id


class Bookings(ServiceApplication):
    """A service holding one booking per customer and noting what the customer service told it."""

    service = "bookings"
    personal_data: ClassVar[dict[type, PersonalFields]] = {
        Booking.Created: PersonalFields({"guest": ""}, subject="customer_id"),
    }

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(env)
        self.told: list[tuple[Any, ...]] = []

    def book(self, customer_id: uuid.UUID, guest: str) -> uuid.UUID:
        booking = Booking(customer_id, guest)
        self.save(booking)
        return booking.id

    def forget_customer(self, customer_id: uuid.UUID, request_id: str) -> None:
        assert self.data_keys is not None
        forget_subjects(self.data_keys, [customer_id], request_id)
        self.told.append(("forget", customer_id, request_id))

    def erasure_state(self, customer_id: uuid.UUID) -> str:
        return erasure_state_of(self.data_keys, [customer_id])

    def absorb_customer(self, customer_id: uuid.UUID, survivor_id: uuid.UUID, merge_id: str) -> None:
        self.told.append(("absorb", customer_id, survivor_id, merge_id))

    def restore_customer(self, customer_id: uuid.UUID, survivor_id: uuid.UUID, merge_id: str) -> None:
        self.told.append(("restore", customer_id, survivor_id, merge_id))


@pytest.fixture
def app(event_store_env: dict[str, str]) -> Any:
    bookings = Bookings(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield bookings
    bookings.close()


def customer_event(position: int, type_: str, payload: dict[str, Any]) -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "origin": "customer", "type": type_, "position": position,
            "previous": position - 1, "correlation_id": None, "payload": payload}


def test_the_three_reactions_call_the_application_with_loaded_payloads(app: Bookings) -> None:
    policies = Policies("bookings")
    react_to_customer_rights(policies)
    assert policies.bindings == ["customer.#"]
    at = "2026-11-20T09:30:00+00:00"
    outcome = PolicyInbox(app, policies, fetch=None).receive([
        customer_event(1, "customer_merged", {"customer_id": str(LI_NA), "survivor_id": str(SURVIVOR),
                                              "merge_id": "merge-7", "merged_at": at}),
        customer_event(2, "customer_unmerged", {"customer_id": str(LI_NA), "survivor_id": str(SURVIVOR),
                                                "merge_id": "merge-7", "unmerged_at": at}),
        customer_event(3, "customer_erased", {"customer_id": str(LI_NA), "request_id": "DSR-42", "erased_at": at}),
    ])
    assert outcome.applied == 3
    assert app.told == [("absorb", LI_NA, SURVIVOR, "merge-7"), ("restore", LI_NA, SURVIVOR, "merge-7"),
                        ("forget", LI_NA, "DSR-42")]


def test_forgetting_shreds_the_key_so_the_record_reads_redacted_and_asking_again_changes_nothing(
    app: Bookings,
) -> None:
    booking_id = app.book(LI_NA, "Li Na")
    other_id = app.book(SURVIVOR, "Zhang Min")
    assert app.repository.get(booking_id).guest == "Li Na"

    app.forget_customer(LI_NA, "DSR-42")
    app.forget_customer(LI_NA, "DSR-43")

    assert app.repository.get(booking_id).guest == ""
    assert app.repository.get(other_id).guest == "Zhang Min"
    assert app.data_keys is not None
    record = app.data_keys.erasure(LI_NA)
    assert record is not None and record.request_id == "DSR-42" and record.shredded_at is not None


def test_erasure_state_waits_out_the_key_cache_and_is_done_for_a_customer_never_held(app: Bookings) -> None:
    assert app.data_keys is not None
    assert app.erasure_state(uuid.uuid4()) == "done"
    app.book(LI_NA, "Li Na")
    assert app.erasure_state(LI_NA) == "pending"  # held, not forgotten

    app.forget_customer(LI_NA, "DSR-42")
    record = app.data_keys.erasure(LI_NA)
    assert record is not None and record.shredded_at is not None
    ttl = timedelta(seconds=app.data_keys.ttl)
    assert erasure_state_of(app.data_keys, [LI_NA], now=record.shredded_at + ttl / 2) == "pending"
    assert erasure_state_of(app.data_keys, [LI_NA], now=record.shredded_at + ttl) == "done"
    assert erasure_state_of(app.data_keys, [LI_NA], now=datetime.now(UTC) + ttl) == "done"


def test_erasure_state_is_pending_while_any_subject_still_has_a_key(app: Bookings) -> None:
    assert app.data_keys is not None
    app.book(LI_NA, "Li Na")
    app.book(SURVIVOR, "Li Na")
    forget_subjects(app.data_keys, [LI_NA], "DSR-42")
    later = datetime.now(UTC) + timedelta(seconds=app.data_keys.ttl + 1)
    assert erasure_state_of(app.data_keys, [LI_NA], now=later) == "done"
    assert erasure_state_of(app.data_keys, [LI_NA, SURVIVOR], now=later) == "pending"
    assert erasure_state_of(None, [LI_NA]) == "done"  # a service that seals nothing holds nothing personal


def test_a_record_of_an_erased_customer_takes_anonymous_facts_but_nothing_personal(app: Bookings) -> None:
    assert app.data_keys is not None
    app.book(LI_NA, "Li Na")
    forget_subjects(app.data_keys, [LI_NA], "DSR-42")
    redacted = Booking(LI_NA, "")  # every personal field as it reads once shredded: stored, needing no key
    app.save(redacted)
    assert app.repository.get(redacted.id).guest == ""
    with pytest.raises(CustomerErasedError) as refused, refusing_erased_customers():
        app.save(Booking(LI_NA, "Li Na"))
    assert refused.value.code == "conflict" and refused.value.details == {"customer_id": str(LI_NA)}


def test_merges_are_recorded_once_and_followed_to_the_final_survivor(app: Bookings) -> None:
    first, middle = uuid.uuid4(), uuid.uuid4()
    app.save(*record_merge(app.repository, first, middle, "m1"))
    assert record_merge(app.repository, first, middle, "m1") == []  # a redelivery changes nothing
    app.save(*record_merge(app.repository, middle, SURVIVOR, "m2"))

    assert survivor_path(app.repository, first) == [(first, middle, "m1"), (middle, SURVIVOR, "m2")]
    assert survivor_path(app.repository, SURVIVOR) == []
    assert subjects_of(app.repository, SURVIVOR) == [SURVIVOR, middle, first]

    app.save(*record_unmerge(app.repository, middle, SURVIVOR, "m2"))
    assert record_unmerge(app.repository, middle, SURVIVOR, "m2") == []
    assert survivor_path(app.repository, first) == [(first, middle, "m1")]
    assert subjects_of(app.repository, SURVIVOR) == [SURVIVOR]
    assert subjects_of(app.repository, middle) == [middle, first]


def test_the_records_of_a_customer_are_read_from_the_store_without_decrypting(app: Bookings) -> None:
    assert app.data_keys is not None
    mine, moved, theirs = app.book(LI_NA, "Li Na"), app.book(LI_NA, "Li Na"), app.book(SURVIVOR, "Zhang Min")
    booking: Booking = app.repository.get(moved)
    booking.move(SURVIVOR)
    app.save(booking)
    forget_subjects(app.data_keys, [LI_NA], "DSR-42")  # nothing to decrypt with any more: not needed
    owner_events = (Booking.Created, Booking.Moved)  # type: ignore[attr-defined]
    assert records_of(app, [LI_NA], owner_events) == [mine]
    assert records_of(app, [SURVIVOR], owner_events) == [moved, theirs]
    assert records_of(app, [uuid.uuid4()], owner_events) == []
