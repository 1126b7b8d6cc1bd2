"""The Customer and EmailClaim aggregates, alone: no store, no broker."""

from datetime import UTC, datetime
from decimal import Decimal
from uuid import uuid4

import pytest

from crm_customer.domain import (
    ContactIds,
    Customer,
    EmailClaim,
    EmailTakenError,
    GradingRule,
    InvalidCustomerDataError,
)


def a_customer(**overrides):
    fields = {"name": "Li Na", "email": "Li.Na@Example.com ", "phone": None, "company": "Acme", "source_channel": "web"}
    fields.update(overrides)
    return Customer.register(**fields)


def test_registering_normalises_the_email_and_records_one_event():
    customer = a_customer()
    assert customer.email == "li.na@example.com"
    assert [type(e).__name__ for e in customer.collect_events()] == ["Registered"]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [({"name": "  "}, "name"), ({"source_channel": "fax"}, "source_channel")],
)
def test_registering_with_bad_data_names_the_field(overrides, field):
    with pytest.raises(InvalidCustomerDataError) as raised:
        a_customer(**overrides)
    assert field in raised.value.details["fields"]


def test_profile_change_records_only_the_fields_that_changed():
    customer = a_customer()
    customer.collect_events()
    customer.change_profile({"company": "Acme", "phone": "+86 10 5555 0101"})
    (changed,) = customer.collect_events()
    assert changed.changes == {"phone": "+86 10 5555 0101"}
    customer.change_profile({"phone": "+86 10 5555 0101"})
    assert customer.collect_events() == []


def test_profile_change_rejects_unknown_fields():
    with pytest.raises(InvalidCustomerDataError):
        a_customer().change_profile({"credit_rating": "AAA"})


def test_consent_is_kept_per_channel_with_time_and_source():
    customer = a_customer()
    at = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
    customer.record_consent("email", True, "web form", at)
    customer.record_consent("sms", False, "call centre", at)
    assert customer.consents["email"] == {"granted": True, "source": "web form", "at": at}
    assert customer.consents["sms"]["granted"] is False
    with pytest.raises(InvalidCustomerDataError):
        customer.record_consent("pigeon", True, "x", at)


def test_credit_rating_must_be_on_the_scale_with_a_non_negative_limit():
    customer = a_customer()
    customer.set_credit_rating("AA", Decimal("1000.00"), "review")
    assert (customer.credit_rating, customer.credit_limit) == ("AA", Decimal("1000.00"))
    with pytest.raises(InvalidCustomerDataError):
        customer.set_credit_rating("Z", None, None)
    with pytest.raises(InvalidCustomerDataError):
        customer.set_credit_rating("A", Decimal("-1"), None)


@pytest.mark.parametrize(
    ("scores", "grade"),
    [((5, 4, 4), "key"), ((3, 2, 2), "ordinary"), ((1, 1, 1), "seed"), ((5, 5, 5), "key")],
)
def test_grading_weighs_value_structure_and_loyalty(scores, grade):
    customer = a_customer()
    customer.grade_on(GradingRule(), *scores, reason=None)
    assert customer.grade == grade
    assert customer.grade_scores == dict(zip(("value", "structure", "loyalty"), scores))


def test_grading_rule_is_configurable_and_checks_the_score_range():
    assert GradingRule(key_at=30).grade_for(5, 5, 5) == "ordinary"
    with pytest.raises(InvalidCustomerDataError):
        GradingRule().grade_for(6, 1, 1)


def test_an_email_claim_belongs_to_one_customer_until_released():
    first, second = uuid4(), uuid4()
    ids = ContactIds(b"k" * 32)
    claim = EmailClaim.create(ids.email("a@example.com"), holder=first)
    assert claim.id == ids.email("A@example.com ")
    with pytest.raises(EmailTakenError) as raised:
        claim.claim(second, "a@example.com")
    assert raised.value.details["existing_customer_id"] == str(first)
    claim.release()
    claim.claim(second, "a@example.com")
    assert claim.holder == second
