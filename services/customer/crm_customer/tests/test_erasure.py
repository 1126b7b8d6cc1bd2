"""Crypto-shredding erasure in the customer service, on the in-memory store and on PostgreSQL.

Real: the application, its mapper and data keys (memory or the `data_keys`/`erasure_ledger` tables),
the feed the relay publishes from. Nothing is mocked: the stored bytes are read back from the recorder.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

import pytest
from cryptography.exceptions import InvalidTag

from crm_customer.application import Customers
from crm_customer.domain import (
    EMAIL_CLAIM_NAMESPACE,
    ConvertedLead,
    CustomerErasedError,
    CustomerNotFoundError,
    EmailClaim,
)
from crm_customer.publishing import translator
from crm_runtime.crypto import ErasureRecord, KeyEncryptionKey
from crm_runtime.feed import EventFeed

NAME, EMAIL, PHONE, STREET = "Zhou Xiaoyan", "zhou.xiaoyan@example.com", "+86 21 5555 0177", "77 Huaihai Road"
SECRETS = (NAME, EMAIL, PHONE, STREET, "Zhou Group", "zhou.new@example.com")


@pytest.fixture
def customers(event_store_env):
    app = Customers(env=event_store_env)
    yield app
    app.close()


def a_customer(customers: Customers):
    customer = customers.register(NAME, EMAIL, PHONE, company="Zhou Group")
    customers.set_address(customer.id, "shipping", {"recipient": NAME, "line1": STREET, "city": "Shanghai",
                                                    "country": "CN"})
    customers.change_profile(customer.id, None, {"email": "zhou.new@example.com"})
    customers.record_consent(customer.id, "email", True, "web form")
    return customers.customer(customer.id)


def stored_bytes(customers: Customers) -> bytes:
    """Every stored event's state, as the database holds it."""
    notifications = customers.recorder.select_notifications(start=1, limit=10_000)
    return b"".join(n.state for n in notifications)


def test_personal_fields_are_never_stored_in_clear_but_read_back(customers):
    customer = a_customer(customers)
    stored = stored_bytes(customers)
    for secret in SECRETS:
        assert secret.encode() not in stored, secret
    assert (customer.name, customer.email, customer.phone) == (NAME, "zhou.new@example.com", PHONE)
    assert customer.addresses["shipping"]["address"]["line1"] == STREET


def test_published_events_carry_the_personal_data_in_clear(customers):
    a_customer(customers)
    registered = EventFeed(customers, translator).events_since(0, 1)[0]
    assert (registered["payload"]["name"], registered["payload"]["email"]) == (NAME, EMAIL)


def test_claim_ids_are_a_keyed_hash_not_a_uuid5_of_the_address(customers):
    customer = a_customer(customers)
    claim_id = customers.claim_id(EmailClaim, "zhou.new@example.com")
    assert claim_id != uuid.uuid5(EMAIL_CLAIM_NAMESPACE, "zhou.new@example.com")
    assert customers.repository.get(claim_id).holder == customer.id
    assert customers.holder_of("ZHOU.NEW@example.com ") == customer.id


def test_erasure_shreds_the_key_so_the_customer_loads_as_erased(customers):
    customer = a_customer(customers)
    erasure = customers.erase(customer.id, "DSR-1")
    assert erasure.request_id == "DSR-1" and erasure.erased_at and erasure.shredded_at
    erased = customers.customer(customer.id)
    assert erased.erased
    assert (erased.name, erased.email, erased.phone, erased.company, erased.addresses) == (None, None, None, None, {})
    assert not customers.data_keys.has_key(customer.id)
    with pytest.raises(CustomerErasedError):
        customers.change_profile(customer.id, None, {"name": "Back Again"})
    with pytest.raises(CustomerErasedError):
        customers.set_address(customer.id, "billing", {"recipient": "x", "line1": "y", "city": "z", "country": "CN"})


def test_after_erasure_the_feed_keeps_its_chain_and_redacts_every_personal_field(customers):
    customer = a_customer(customers)
    before = EventFeed(customers, translator).events_since(0, 100)
    customers.erase(customer.id, "DSR-2")
    after = EventFeed(customers, translator).events_since(0, 100)
    # A republished envelope is the same envelope (id, position, chain); only personal fields are gone.
    assert [(e["event_id"], e["position"], e["previous"], e["type"]) for e in after[:-1]] == [
        (e["event_id"], e["position"], e["previous"], e["type"]) for e in before]
    assert after[-1]["type"] == "customer_erased" and after[-1]["payload"]["request_id"] == "DSR-2"
    assert after[-1]["previous"] == before[-1]["position"]
    text = repr(after)
    for secret in SECRETS:
        assert secret not in text, secret
    assert after[0]["payload"]["name"] == "" and after[0]["payload"]["email"] is None
    assert not EventFeed(customers, translator).read(0, 100).unpublishable  # nothing turned into poison


def test_erasure_is_idempotent_and_frees_the_contacts_for_a_new_customer(customers):
    customer = a_customer(customers)
    first = customers.erase(customer.id, "DSR-3")
    again = customers.erase(customer.id, "DSR-other")
    assert again == first  # the first request stays in the ledger
    assert customers.customer(customer.id).version == first_version_after(customers, customer.id)
    assert customers.holder_of("zhou.new@example.com") is None and customers.holder_of_phone(PHONE) is None
    newcomer = customers.register(NAME, "zhou.new@example.com", PHONE)
    assert newcomer.id != customer.id and customers.customer(newcomer.id).name == NAME


def first_version_after(customers: Customers, customer_id: uuid.UUID) -> int:
    """The version an erased customer stays at: one Erased event after its history, and no more."""
    events = customers.recorder.select_events(customer_id)
    assert events[-1].topic.endswith("Customer.Erased")
    assert sum(1 for e in events if e.topic.endswith("Customer.Erased")) == 1
    return events[-1].originator_version


def test_a_lead_naming_an_erased_customer_or_its_email_becomes_a_new_customer(customers):
    customer = a_customer(customers)
    customers.erase(customer.id)
    lead = ConvertedLead(
        lead_id=uuid.uuid4(), customer_id=customer.id, campaign_id=None, name=NAME, email="zhou.new@example.com",
        phone=None, company=None, channel="web_form", estimated_amount=Decimal("10.00"), currency="CNY",
        expected_close_date=None, sales_owner=None,
    )
    linked = customers.link_lead(lead)
    assert linked.id != customer.id and not linked.erased


def test_an_erasure_cut_short_is_finished_from_the_ledger(customers):
    customer = a_customer(customers)
    customers.data_keys.record_erasure(customer.id, "DSR-4")  # the process died right after the ledger
    assert customers.reconcile_erasures() == [customer.id]
    assert customers.customer(customer.id).erased and not customers.data_keys.has_key(customer.id)
    assert customers.reconcile_erasures() == []  # nothing left to do


def test_a_restore_from_before_the_erasure_is_shredded_again_from_the_ledger_file(customers, tmp_path,
                                                                                  monkeypatch):
    ledger_file = tmp_path / "erasures.jsonl"
    monkeypatch.setenv("CRM_ERASURE_LEDGER_FILE", str(ledger_file))
    customer = a_customer(customers)
    customers.erase(customer.id, "DSR-5")
    records = Customers.read_ledger_file(str(ledger_file))
    assert [(r.subject, r.request_id) for r in records] == [(customer.id, "DSR-5")]

    # "Restore": a store where the customer was never erased (a backup from before), then the ledger.
    restored = Customers(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
    again = restored.register(NAME, EMAIL, PHONE)
    lost = ErasureRecord(again.id, "DSR-5", records[0].requested_at)
    assert restored.reconcile_erasures([lost]) == [again.id]
    assert restored.customer(again.id).erased and not restored.data_keys.has_key(again.id)


def test_a_data_key_is_wrapped_by_the_key_encryption_key(customers):
    customer = a_customer(customers)
    wrapped = customers.data_keys._load(customer.id)
    assert wrapped is not None and len(wrapped) == 12 + 32 + 16  # nonce, key, tag
    with pytest.raises(InvalidTag):  # another KEK (or another customer's id) does not unwrap it
        KeyEncryptionKey(b"\x01" * 32).unwrap(customer.id, wrapped)
    with pytest.raises(InvalidTag):
        customers.data_keys.kek.unwrap(uuid.uuid4(), wrapped)


def test_erasing_an_unknown_customer_is_not_found_and_records_nothing(customers):
    unknown = uuid.uuid4()
    with pytest.raises(CustomerNotFoundError):
        customers.erase(unknown)
    assert customers.data_keys.erasure(unknown) is None


def test_legacy_uuid5_claims_are_moved_to_keyed_ids(customers):
    customer = customers.register(NAME, EMAIL)
    # A claim as the first version stored it: its id a uuid5 of the address (and no keyed claim yet).
    keyed = customers.repository.get(customers.claim_id(EmailClaim, EMAIL))
    keyed.release()
    legacy = EmailClaim.create(uuid.uuid5(EMAIL_CLAIM_NAMESPACE, EMAIL), customer.id)
    customers.save(keyed, legacy)
    assert customers.holder_of(EMAIL) is None
    assert customers.rekey_claims([customer.id]) == 1
    assert customers.holder_of(EMAIL) == customer.id
    assert customers.repository.get(legacy.id).holder is None
    assert customers.rekey_claims([customer.id]) == 0


def test_a_feed_page_fetches_every_key_it_needs_in_one_query(event_store_env):
    writer = Customers(env=event_store_env)
    names = [f"Reader {i}" for i in range(5)]
    for i, name in enumerate(names):
        writer.register(name, f"reader{i}@example.com")
    reader = writer if "POSTGRES_SCHEMA" not in event_store_env else Customers(env=event_store_env)
    try:
        keys = reader.data_keys
        keys._cache.clear()  # a fresh relay process: nothing cached
        one_by_one = []
        load = keys._load
        keys._load = lambda subject: one_by_one.append(subject) or load(subject)  # type: ignore[method-assign]
        envelopes = EventFeed(reader, translator).events_since(0, 100)
        assert [e["payload"]["name"] for e in envelopes if e["type"] == "customer_registered"] == names
        assert one_by_one == []  # every key came with the page's one query
    finally:
        if reader is not writer:
            reader.close()
        writer.close()
