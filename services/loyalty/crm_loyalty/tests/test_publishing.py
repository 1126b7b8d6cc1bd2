"""Publishing: every loyalty event the application stores comes out of the feed as a payload that
validates against its published contract, and every public domain event has a translation."""

from __future__ import annotations

from decimal import Decimal
from uuid import uuid4

import pytest

from crm_contracts.catalog import catalog
from crm_loyalty.domain import Account
from crm_loyalty.publishing import translator
from crm_loyalty.tests.support import T0, days
from crm_runtime.feed import EventFeed
from tests.support.publishing import assert_published_under_contracts, domain_event_classes

PUBLISHED = {
    "loyalty_account_enrolled", "points_earned", "points_redeemed", "points_expired", "tier_changed",
    "retention_benefit_granted", "points_taken_back",
}


@pytest.fixture
def customer_id():
    return uuid4()


@pytest.fixture
def envelopes(accounts, customer_id):
    """The feed after a customer earned into silver (one order delivered twice), redeemed, was granted a
    benefit, and let the rest expire."""
    accounts.enrol(customer_id, T0)
    order_id = uuid4()
    accounts.earn(customer_id, order_id, Decimal("1200.00"), "CNY", T0, now=T0)
    accounts.earn(customer_id, order_id, Decimal("1200.00"), "CNY", T0, now=T0)
    accounts.redeem(customer_id, "VOUCHER-100", 1000, now=T0 + days(1))
    accounts.grant_benefit(customer_id, "social", "personal_call", "thank-you call", "first order", now=T0 + days(2))
    accounts.expire(customer_id, now=T0 + days(60))
    accounts.take_back_points(customer_id, order_id, "return:R1", Decimal("600.00"), "CNY", T0 + days(61))
    return EventFeed(accounts, translator).events_since(0, 1000)


def test_every_payload_validates_against_its_contract(envelopes, customer_id):
    assert {e["type"] for e in envelopes} == PUBLISHED
    assert_published_under_contracts(envelopes, "loyalty")
    for envelope in envelopes:
        contract = catalog.get(envelope["type"], envelope["version"])
        # Complete, and nothing a consumer cannot find in the contract.
        assert set(envelope["payload"]) == set(contract.schema().fields), envelope["type"]
        assert envelope["customer_id"] == envelope["payload"]["customer_id"] == str(customer_id)


def test_the_feed_tells_the_story_in_order(envelopes):
    assert [e["type"] for e in envelopes] == [
        "loyalty_account_enrolled", "points_earned", "tier_changed", "retention_benefit_granted",
        "points_redeemed", "retention_benefit_granted", "points_expired", "tier_changed", "points_taken_back",
    ]
    payloads = [e["payload"] for e in envelopes]
    assert (payloads[1]["points"], payloads[1]["balance"], payloads[1]["amount"]) == (1200, 1200, "1200.00")
    assert (payloads[2]["to_tier"], payloads[2]["direction"]) == ("silver", "up")
    assert (payloads[4]["points"], payloads[4]["balance"]) == (1000, 200)
    assert (payloads[6]["points"], payloads[6]["balance"], len(payloads[6]["lots"])) == (200, 0, 1)
    assert (payloads[7]["to_tier"], payloads[7]["direction"], payloads[7]["reason"]) == ("bronze", "down", "expire")
    # Half the order refunded: half its points, all spent or expired already, become a debt.
    taken = payloads[8]
    assert (taken["points"], taken["owed"], taken["lots"], taken["balance"]) == (600, 600, [], 0)


def test_every_public_domain_event_has_a_translation():
    domain_events = domain_event_classes(Account)
    # Every account event is public: the 360 view follows points, tiers and benefits.
    assert domain_events == set(translator.published_classes)

