"""The customer service's policies, fed by a PolicyInbox on the in-memory store and on PostgreSQL with
contract-shaped envelopes (tests.support.envelopes): what reaches the customer service, and what it then
publishes (its feed), with each reaction applied exactly once."""

from __future__ import annotations

import uuid
from typing import Any

import pytest

from crm_customer.application import Customers
from crm_customer.domain import Customer, PhoneTakenError
from crm_customer.policies import policies
from crm_customer.publishing import translator
from crm_runtime.feed import EventFeed
from crm_runtime.policy import PolicyInbox
from tests.support.envelopes import Stream, payload
from tests.support.publishing import assert_published_under_contracts

LEAD = uuid.UUID("7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d")
CAMPAIGN = uuid.UUID("8c1d2e3f-4a5b-4c6d-9e7f-0a1b2c3d4e5f")


@pytest.fixture
def customers(event_store_env: dict[str, str]) -> Any:
    app = Customers(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield app
    app.close()


@pytest.fixture
def inbox(customers: Customers) -> PolicyInbox:
    return PolicyInbox(customers, policies, fetch=None)


@pytest.fixture
def marketing() -> Stream:
    """What marketing publishes, in order."""
    return Stream("marketing")


def converted(lead_id: uuid.UUID = LEAD, **overrides: Any) -> dict[str, Any]:
    """A lead_converted payload (the contract's sample), naming no customer unless `customer_id` is given."""
    return payload("lead_converted", **{"lead_id": lead_id, "customer_id": None, **overrides})


def published(customers: Customers) -> list[dict[str, Any]]:
    envelopes = EventFeed(customers, translator).events_since(0, 100)
    if envelopes:
        assert_published_under_contracts(envelopes, "customer")
    return envelopes


def lead_linked(customers: Customers) -> list[dict[str, Any]]:
    return [e["payload"] for e in published(customers) if e["type"] == "lead_linked"]


def test_a_converted_lead_registers_its_customer_once_even_when_delivered_twice(customers, inbox, marketing):
    event = marketing.publish("lead_converted", converted())
    first, again = inbox.receive([event]), inbox.receive([event])
    assert (first.applied, again.applied, again.duplicates) == (1, 0, 1)
    customer = customers.customer(Customer.id_for_lead(LEAD))  # its id derives from the lead
    assert (customer.name, customer.email, customer.phone) == ("Zhang Min", "zhang.min@example.com", "+86 21 5555 0142")
    assert customers.holder_of("zhang.min@example.com") == customers.holder_of_phone("+862155550142") == customer.id
    envelopes = published(customers)
    assert [e["type"] for e in envelopes] == ["customer_registered", "lead_linked"]
    assert envelopes[1]["payload"] == {
        "lead_id": str(LEAD), "customer_id": str(customer.id), "campaign_id": str(CAMPAIGN), "new_customer": True,
        "matched_by": "registered", "name": "Zhang Min", "company": "Bright Retail",
        "estimated_amount": "12000.00", "currency": "CNY", "expected_close_date": "2027-06-30",
        "sales_owner": "rep-wang-wei",
    }
    # The reaction ran as a command caused by the event, in the conversation it belongs to.
    assert {(e["correlation_id"], e["causation_id"]) for e in envelopes} == {("test-correlation", event["event_id"])}
    assert customers.tracked_position("marketing") == 1


def test_a_second_conversion_of_the_lead_links_the_same_customer_and_publishes_nothing_new(customers, inbox, marketing):
    inbox.receive([marketing.publish("lead_converted", converted())])
    before = published(customers)
    outcome = inbox.receive([marketing.publish("lead_converted", converted(email="other@example.com"))])
    assert outcome.applied == 1 and customers.tracked_position("marketing") == 2  # tracked, alone
    assert published(customers) == before
    assert customers.customer_of_lead(LEAD).id == Customer.id_for_lead(LEAD)


def test_a_lead_with_only_a_phone_registers_a_customer_known_by_phone(customers, inbox, marketing):
    inbox.receive([marketing.publish("lead_converted", converted(email=None, phone="+86 21 5555 0177"))])
    customer = customers.customer(Customer.id_for_lead(LEAD))
    assert (customer.email, customer.phone, customer.source_channel) == (None, "+86 21 5555 0177", "web")
    assert customers.holder_of_phone("+86 (21) 5555-0177") == customer.id
    assert published(customers)[0]["payload"]["email"] is None


def test_an_existing_email_links_its_customer_instead_of_registering(customers, inbox, marketing):
    existing = customers.register("Zhang Min", "Zhang.Min@example.com", command_id="register-1")
    inbox.receive([marketing.publish("lead_converted", converted())])
    linked = customers.customer(existing.id)
    assert (linked.version, linked.lead_ids, linked.phone) == (2, [LEAD], None)  # the profile is left as it was
    assert customers.customer_of_lead(LEAD).id == existing.id
    assert [(p["customer_id"], p["new_customer"], p["matched_by"]) for p in lead_linked(customers)] == [
        (str(existing.id), False, "email")
    ]
    assert [e["type"] for e in published(customers)].count("customer_registered") == 1


def test_a_lead_whose_email_is_new_links_the_holder_of_its_phone(customers, inbox, marketing):
    existing = customers.register("Zhang Min", None, phone="+86 21 5555 0142")
    inbox.receive([marketing.publish("lead_converted", converted(email="new@example.com"))])
    assert [(p["customer_id"], p["matched_by"]) for p in lead_linked(customers)] == [(str(existing.id), "phone")]


def test_a_lead_that_names_its_customer_links_it_even_with_other_contacts(customers, inbox, marketing):
    named = customers.register("Zhang Min", "z.min@bright.example.com")
    customers.register("Someone Else", "zhang.min@example.com")
    inbox.receive([marketing.publish("lead_converted", converted(customer_id=named.id))])
    assert [(p["customer_id"], p["matched_by"]) for p in lead_linked(customers)] == [(str(named.id), "customer_id")]


def test_a_lead_naming_an_unknown_customer_is_matched_like_any_lead(customers, inbox, marketing):
    inbox.receive([marketing.publish("lead_converted", converted(customer_id=uuid.uuid4()))])
    assert [(p["customer_id"], p["matched_by"]) for p in lead_linked(customers)] == [
        (str(Customer.id_for_lead(LEAD)), "registered")
    ]


def test_two_leads_of_one_person_make_one_customer_with_two_links(customers, inbox, marketing):
    other = uuid.UUID("00000000-0000-0000-0000-0000000000b2")
    inbox.receive([marketing.publish("lead_converted", converted()),
                   marketing.publish("lead_converted", converted(lead_id=other))])
    assert [(p["lead_id"], p["new_customer"]) for p in lead_linked(customers)] == [
        (str(LEAD), True), (str(other), False)
    ]
    assert customers.customer(Customer.id_for_lead(LEAD)).lead_ids == [LEAD, other]


def test_a_second_replica_reacting_to_the_same_conversion_changes_nothing(customers, event_store_env, marketing):
    replica = (Customers(env={**event_store_env, "GROUP_COMMIT": "false"})
               if "POSTGRES_SCHEMA" in event_store_env else customers)
    try:
        one, two = PolicyInbox(customers, policies, fetch=None), PolicyInbox(replica, policies, fetch=None)
        event = marketing.publish("lead_converted", converted())
        one._position("marketing")
        two._position("marketing")  # both have read position 0, as two replicas racing would
        assert one.receive([event]).applied == 1
        assert two._apply(event) is False
        assert [e["type"] for e in published(customers)] == ["customer_registered", "lead_linked"]
    finally:
        if replica is not customers:
            replica.close()


def test_registration_takes_an_email_or_a_phone_and_one_phone_is_one_customers(customers):
    by_phone = customers.register("Wang Wei", None, phone="+86 10 5555 0101", command_id="register-1")
    assert (by_phone.email, customers.holder_of_phone("+861055550101")) == (None, by_phone.id)
    with pytest.raises(PhoneTakenError):
        customers.register("Someone Else", "someone@example.com", phone="+86 (10) 5555-0101")
