"""Campaigns to a saved segment: the consent mapping (crm_marketing.targeting), asking customer360 for the
members with their consents, and the launch that reaches them: a customer without consent for the
campaign's channel is never reached; online advertising needs none; launching twice reaches once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm_contracts import marketing as contracts
from crm_contracts.errors import ServiceError
from crm_contracts.fields import schema_of
from crm_contracts.vocabulary.marketing import CAMPAIGN_CONSENT_DEFAULT, campaign_consent_mapping
from crm_marketing.application import Marketing
from crm_marketing.domain import CampaignStatusError, InvalidCampaignDataError
from crm_marketing.publishing import translator
from crm_marketing.targeting import SegmentMember, members_of_segment, reachable_channels
from crm_runtime.feed import EventFeed

NOW = datetime(2027, 5, 1, 8, 0, tzinfo=UTC)
MAPPING = campaign_consent_mapping(CAMPAIGN_CONSENT_DEFAULT)


# --- the mapping --------------------------------------------------------------------------------

def test_the_default_mapping_is_the_documented_one():
    assert MAPPING == {"email": "email", "telephone": "phone", "sms": "sms", "traditional": "post", "online": None}


def test_a_mapping_is_read_from_its_setting_and_a_malformed_one_is_refused():
    assert campaign_consent_mapping(" email = email , online= ,") == {"email": "email", "online": None}
    with pytest.raises(ValueError, match="'telephone'"):
        campaign_consent_mapping("email=email,telephone")


@pytest.mark.parametrize(("consents", "reachable"), [
    ({}, ["online"]),
    ({"email": True}, ["email", "online"]),
    ({"email": False, "phone": True, "post": True}, ["telephone", "traditional", "online"]),
    ({"email": True, "phone": True, "post": True}, ["email", "telephone", "traditional", "online"]),
])
def test_a_channel_needing_consent_reaches_only_who_granted_it(consents, reachable):
    member = SegmentMember(uuid.uuid4(), consents)
    assert reachable_channels(["email", "telephone", "traditional", "online"], member, MAPPING) == reachable


def test_a_channel_the_mapping_does_not_name_reaches_nobody():
    member = SegmentMember(uuid.uuid4(), {"email": True, "phone": True, "sms": True, "post": True})
    assert reachable_channels(["email", "online"], member, {"email": "email"}) == ["email"]


# --- asking customer360 -------------------------------------------------------------------------

class Customer360:
    """customer360's two answers marketing uses, over a handful of customers: a saved segment's criteria,
    and the customers matching criteria (tier, consent granted), a page at a time."""

    def __init__(self, segments: dict[str, dict[str, Any]], customers: dict[uuid.UUID, dict[str, Any]]) -> None:
        self.segments, self.customers, self.calls = segments, customers, 0

    def get_segment(self, segment_id: str) -> dict[str, Any]:
        if segment_id not in self.segments:
            raise ServiceError("not_found", f"no segment {segment_id}")
        return {"id": segment_id, "criteria": self.segments[segment_id]}

    def customer_analytics(self, filters: dict[str, Any], page: int, page_size: int) -> dict[str, Any]:
        self.calls += 1
        matching = sorted(str(cid) for cid, facts in self.customers.items()
                          if all(facts["consents"].get(value) if name == "consent" else facts.get(name) == value
                                 for name, value in filters.items()))
        items = [{"customer_id": cid} for cid in matching[(page - 1) * page_size: page * page_size]]
        return {"items": items, "page": page, "page_size": page_size, "total": len(matching)}


GOLD_EMAIL, GOLD_PHONE, GOLD_NONE, SILVER_EMAIL = (uuid.uuid4() for _ in range(4))
CUSTOMERS = {
    GOLD_EMAIL: {"tier": "gold", "consents": {"email": True}},
    GOLD_PHONE: {"tier": "gold", "consents": {"phone": True, "email": False}},
    GOLD_NONE: {"tier": "gold", "consents": {}},
    SILVER_EMAIL: {"tier": "silver", "consents": {"email": True}},
}
GOLD = uuid.uuid4()


def test_the_members_come_with_the_consents_the_campaigns_channels_need():
    customer360 = Customer360({str(GOLD): {"tier": "gold"}}, CUSTOMERS)
    members = {m.customer_id: dict(m.consents) for m in members_of_segment(customer360, GOLD, ["email"], MAPPING)}
    assert members == {GOLD_EMAIL: {"email": True}}
    everyone = members_of_segment(customer360, GOLD, ["email", "online"], MAPPING)
    assert {m.customer_id: dict(m.consents) for m in everyone} == {
        GOLD_EMAIL: {"email": True}, GOLD_PHONE: {}, GOLD_NONE: {}}


def test_a_segment_demanding_another_consent_keeps_its_members_only():
    customer360 = Customer360({str(GOLD): {"tier": "gold", "consent": "phone"}}, {
        **CUSTOMERS, GOLD_EMAIL: {"tier": "gold", "consents": {"email": True, "phone": False}},
        SILVER_EMAIL: {"tier": "gold", "consents": {"email": True, "phone": True}},
    })
    members = members_of_segment(customer360, GOLD, ["email"], MAPPING)
    assert {m.customer_id: dict(m.consents) for m in members} == {SILVER_EMAIL: {"email": True}}


def test_members_are_read_page_after_page():
    many = {uuid.uuid4(): {"tier": "gold", "consents": {"email": True}} for _ in range(250)}
    customer360 = Customer360({str(GOLD): {"tier": "gold"}}, many)
    assert len(members_of_segment(customer360, GOLD, ["email"], MAPPING)) == 250
    assert customer360.calls == 3


# --- planning and launching ---------------------------------------------------------------------

@pytest.fixture
def marketing(event_store_env):
    app = Marketing(env=event_store_env)
    yield app
    app.close()


def plan(marketing: Marketing, channels: list[str], segment_id: uuid.UUID | None = GOLD, **criteria: Any) -> Any:
    return marketing.plan_campaign("Thank you", "keep gold customers", criteria, channels, date(2027, 5, 1),
                                   date(2027, 5, 31), Decimal("500.00"), "CNY", segment_id=segment_id)


def members(*channels: str) -> list[SegmentMember]:
    return members_of_segment(Customer360({str(GOLD): {"tier": "gold"}}, CUSTOMERS), GOLD, channels, MAPPING)


def test_a_launch_reaches_only_members_who_consented_to_the_campaigns_channel(marketing):
    campaign = plan(marketing, ["email"])
    launched = marketing.launch_campaign(campaign.id, members=members("email"), at=NOW)
    assert launched.status == "active" and launched.reached == {"email": 1}
    assert marketing.attribution(GOLD_EMAIL).reached == {campaign.id: ("email",)}
    assert marketing.attribution(GOLD_PHONE) is None and marketing.attribution(GOLD_NONE) is None
    assert marketing.attribution(SILVER_EMAIL) is None  # not in the segment


def test_a_member_given_without_the_consent_is_never_reached(marketing):
    campaign = plan(marketing, ["email", "telephone"])
    refused = [SegmentMember(GOLD_NONE, {"email": False, "phone": False}), SegmentMember(GOLD_PHONE, {})]
    launched = marketing.launch_campaign(campaign.id, members=refused, at=NOW)
    assert launched.reached == {"email": 0, "telephone": 0}
    assert marketing.attribution(GOLD_NONE) is None and marketing.attribution(GOLD_PHONE) is None


def test_online_advertising_reaches_every_member_and_the_rest_only_with_consent(marketing):
    campaign = plan(marketing, ["email", "online"])
    launched = marketing.launch_campaign(campaign.id, members=members("email", "online"), at=NOW)
    assert launched.reached == {"email": 1, "online": 3}
    assert marketing.attribution(GOLD_EMAIL).reached[campaign.id] == ("email", "online")
    assert marketing.attribution(GOLD_NONE).reached[campaign.id] == ("online",)


def test_launching_twice_reaches_once(marketing):
    campaign = plan(marketing, ["email"])
    marketing.launch_campaign(campaign.id, members=members("email"), at=NOW)
    record = marketing.attribution(GOLD_EMAIL)
    with pytest.raises(CampaignStatusError):
        marketing.launch_campaign(campaign.id, members=members("email"), at=NOW)
    assert marketing.attribution(GOLD_EMAIL).version == record.version
    reached = [e for e in EventFeed(marketing, translator).events_since(0, 100)
               if e["type"] == "campaign_member_reached"]
    assert [(e["customer_id"], e["payload"]["channels"]) for e in reached] == [(str(GOLD_EMAIL), ["email"])]
    assert reached[0]["payload"]["segment_id"] == str(GOLD)


def test_a_member_reached_by_two_campaigns_is_reached_by_each_once(marketing):
    first, second = plan(marketing, ["email"]), plan(marketing, ["email"])
    marketing.launch_campaign(first.id, members=members("email"), at=NOW)
    marketing.launch_campaign(second.id, members=[*members("email"), *members("email")], at=NOW)
    assert set(marketing.attribution(GOLD_EMAIL).reached) == {first.id, second.id}
    assert marketing.campaign(second.id).reached == {"email": 1}


def test_a_campaign_names_criteria_or_a_saved_segment_not_both(marketing):
    with pytest.raises(InvalidCampaignDataError) as refused:
        plan(marketing, ["email"], industries=["retail"])
    assert list(refused.value.details["fields"]) == ["segment"]
    assert plan(marketing, ["email"]).segment == {}
    with pytest.raises(InvalidCampaignDataError):
        plan(marketing, ["email"], segment_id=None)  # neither


@pytest.mark.parametrize(("body", "field"), [
    ({"segment": {"industries": ["retail"]}, "segment_id": str(GOLD)}, "segment"),
    ({}, "segment"),
    ({"segment_id": "not-a-uuid"}, "segment_id"),
])
def test_a_plan_request_names_the_audience_field_it_refuses(body, field):
    request = {"name": "Thank you", "objective": "keep gold customers", "channels": ["email"],
               "starts_on": "2027-05-01", "ends_on": "2027-05-31", "budget": "500.00", "currency": "CNY", **body}
    errors = schema_of(contracts.PlanCampaignRequest).validate(request)
    assert list(errors) == [field]

