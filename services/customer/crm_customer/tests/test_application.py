"""Customers on a real event store: the same suite on the in-memory store and on PostgreSQL."""

from concurrent.futures import ThreadPoolExecutor

import pytest

from crm_contracts.errors import StaleVersionError
from crm_customer.application import Customers
from crm_customer.domain import CustomerNotFoundError, EmailTakenError
from crm_customer.publishing import translator
from crm_runtime.eventstore import command_metadata
from crm_runtime.feed import EventFeed


@pytest.fixture
def customers(event_store_env):
    app = Customers(env=event_store_env)
    yield app
    app.close()


def test_register_then_load(customers):
    registered = customers.register("Li Na", "li.na@example.com", company="Acme")
    loaded = customers.customer(registered.id)
    assert (loaded.name, loaded.email, loaded.company, loaded.version) == ("Li Na", "li.na@example.com", "Acme", 1)


def test_a_taken_email_is_a_conflict_naming_the_holder(customers):
    first = customers.register("Li Na", "li.na@example.com")
    with pytest.raises(EmailTakenError) as raised:
        customers.register("Someone Else", "LI.NA@example.com")
    assert raised.value.details["existing_customer_id"] == str(first.id)


def test_changing_email_releases_the_old_one_and_claims_the_new(customers):
    first = customers.register("Li Na", "old@example.com")
    customers.register("Wang Wei", "taken@example.com")
    with pytest.raises(EmailTakenError):
        customers.change_profile(first.id, None, {"email": "taken@example.com"})
    customers.change_profile(first.id, 1, {"email": "new@example.com"})
    assert customers.holder_of("new@example.com") == first.id
    assert customers.holder_of("old@example.com") is None
    assert customers.register("Zhao Lei", "old@example.com").email == "old@example.com"


def test_a_stale_expected_version_changes_nothing(customers):
    customer = customers.register("Li Na", "li.na@example.com")
    customers.change_profile(customer.id, 1, {"company": "Acme"})
    with pytest.raises(StaleVersionError):
        customers.change_profile(customer.id, 1, {"company": "Other"})
    assert customers.customer(customer.id).company == "Acme"


def test_unknown_customer_is_not_found(customers):
    from uuid import uuid4

    with pytest.raises(CustomerNotFoundError):
        customers.record_consent(uuid4(), "email", True, "web")


def test_concurrent_registrations_of_one_email_leave_exactly_one_holder(customers):
    def register(i):
        try:
            return customers.register(f"Racer {i}", "race@example.com").id
        except EmailTakenError:
            return None

    with ThreadPoolExecutor(8) as pool:
        winners = [w for w in pool.map(register, range(8)) if w]
    assert len(winners) == 1
    assert customers.holder_of("race@example.com") == winners[0]


def test_feed_publishes_every_customer_event_with_metadata_and_a_previous_chain(customers):
    with command_metadata("corr-1", "cause-1"):
        customer = customers.register("Li Na", "li.na@example.com")
    customers.record_consent(customer.id, "email", True, "web form")
    customers.set_credit_rating(customer.id, "A")
    customers.grade(customer.id, 5, 4, 4)
    customers.change_profile(customer.id, None, {"name": "Li Na (Acme)"})
    envelopes = EventFeed(customers, translator).events_since(0, 100)
    assert [e["type"] for e in envelopes] == [
        "customer_registered",
        "customer_consent_changed",
        "customer_credit_rating_changed",
        "customer_graded",
        "customer_profile_changed",
    ]
    assert envelopes[0]["correlation_id"] == "corr-1" and envelopes[0]["causation_id"] == "cause-1"
    assert envelopes[0]["previous"] == 0
    for before, after in zip(envelopes, envelopes[1:]):
        assert after["previous"] == before["position"]
    assert {e["customer_id"] for e in envelopes} == {str(customer.id)}
    again = EventFeed(customers, translator).events_since(envelopes[1]["position"], 2)
    assert again == envelopes[2:4]


def test_a_registration_delivered_twice_registers_once(customers):
    from crm_customer.domain import Customer

    customer_id = Customer.id_for_registration("caller:key-1")
    first = customers.register("Li Na", "li.na@example.com", customer_id=customer_id)
    again = customers.register("Li Na", "li.na@example.com", customer_id=customer_id)
    assert again.id == first.id == customer_id and again.version == 1
    assert customers.holder_of("li.na@example.com") == customer_id
    with pytest.raises(EmailTakenError):
        customers.register("Li Na", "li.na@example.com", customer_id=Customer.id_for_registration("caller:key-2"))
