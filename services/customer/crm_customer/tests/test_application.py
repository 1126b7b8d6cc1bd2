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

    first = customers.register("Li Na", "li.na@example.com", command_id="command-1")
    again = customers.register("Li Na", "li.na@example.com", command_id="command-1")
    assert again.id == first.id == Customer.id_for_registration("command-1") and again.version == 1
    assert customers.holder_of("li.na@example.com") == first.id
    with pytest.raises(EmailTakenError):
        customers.register("Li Na", "li.na@example.com", command_id="command-2")


# Each customer command with a command id, and what the customer looks like after it ran once.
COMMANDS = {
    "change_profile": (lambda app, cid, command_id: app.change_profile(cid, None, {"company": "Acme"}, command_id),
                       lambda customer: customer.company == "Acme"),
    "record_consent": (lambda app, cid, command_id: app.record_consent(cid, "email", True, "web",
                                                                       command_id=command_id),
                       lambda customer: customer.consents["email"]["granted"] is True),
    "set_credit_rating": (lambda app, cid, command_id: app.set_credit_rating(cid, "AA", command_id=command_id),
                          lambda customer: customer.credit_rating == "AA"),
    "grade": (lambda app, cid, command_id: app.grade(cid, 5, 4, 4, command_id=command_id),
              lambda customer: customer.grade == "key"),
}


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_a_command_id_applied_twice_changes_the_customer_once_and_answers_the_current_state(customers, command):
    run, took_effect = COMMANDS[command]
    customer = customers.register("Li Na", "li.na@example.com", command_id="register")
    first = run(customers, customer.id, "command-1")
    customers.change_profile(customer.id, None, {"phone": "+86 10 5555 0101"}, "meanwhile")
    again = run(customers, customer.id, "command-1")  # redelivered, or retried after a lost reply
    assert took_effect(first) and first.version == 2
    assert (again.version, again.phone) == (3, "+86 10 5555 0101")  # the customer as it is now
    assert customers.customer(customer.id).version == 3


def test_a_retry_with_the_if_match_of_the_first_attempt_answers_the_current_state_not_412(customers):
    customer = customers.register("Li Na", "li.na@example.com")
    customers.change_profile(customer.id, 1, {"company": "Acme"}, command_id="patch-1")
    again = customers.change_profile(customer.id, 1, {"company": "Acme"}, command_id="patch-1")
    assert (again.version, again.company) == (2, "Acme")
    with pytest.raises(StaleVersionError):  # another command with that version is still stale
        customers.change_profile(customer.id, 1, {"company": "Acme"}, command_id="patch-2")


def test_processed_commands_are_never_published(customers):
    customer = customers.register("Li Na", "li.na@example.com", command_id="register")
    customers.record_consent(customer.id, "email", True, "web", command_id="consent")
    customers.record_consent(customer.id, "email", True, "web", command_id="consent")
    envelopes = EventFeed(customers, translator).events_since(0, 100)
    assert [e["type"] for e in envelopes] == ["customer_registered", "customer_consent_changed"]


def test_changing_phone_releases_the_old_number_and_a_customer_keeps_an_email_or_a_phone(customers):
    from crm_customer.domain import InvalidCustomerDataError, PhoneTakenError

    by_phone = customers.register("Wang Wei", None, phone="+86 10 5555 0101")
    customers.register("Li Na", "li.na@example.com", phone="+86 10 5555 0199")
    with pytest.raises(PhoneTakenError):
        customers.change_profile(by_phone.id, None, {"phone": "+86 10 5555 0199"})
    customers.change_profile(by_phone.id, None, {"phone": "+86 (10) 5555-0101"})  # the same number, rewritten
    assert customers.holder_of_phone("+861055550101") == by_phone.id
    customers.change_profile(by_phone.id, None, {"phone": "+86 10 5555 0102"})
    assert customers.holder_of_phone("+861055550101") is None
    assert customers.holder_of_phone("+861055550102") == by_phone.id
    with pytest.raises(InvalidCustomerDataError):
        customers.change_profile(by_phone.id, None, {"phone": None})


def test_an_address_is_kept_per_kind_and_published_for_order(customers):
    from tests.support.publishing import assert_published_under_contracts

    customer = customers.register("Li Na", "addr@example.com")
    home = {"recipient": "Li Na", "line1": "88 Jianguo Road", "line2": None, "city": "Beijing", "region": None,
            "postal_code": "100022", "country": "CN", "phone": None}
    customers.set_address(customer.id, "shipping", home, command_id="c-1")
    customers.set_address(customer.id, "shipping", home, command_id="c-1")  # a retried command: once
    assert customers.customer(customer.id).addresses["shipping"]["address"] == home
    assert customers.customer(customer.id).version == 2
    envelopes = EventFeed(customers, translator).events_since(0, 100)
    assert [e["type"] for e in envelopes] == ["customer_registered", "customer_address_changed"]
    assert_published_under_contracts(envelopes, "customer")
    with pytest.raises(Exception, match="kind"):
        customers.set_address(customer.id, "holiday", home)
