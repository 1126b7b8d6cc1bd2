"""A customer's rights in marketing (crm_runtime.rights), fed through the policies as the customer service
publishes them (customer_erased, customer_merged, customer_unmerged), on the in-memory store and on
PostgreSQL: a lead's personal fields are sealed under the lead's own key and shredded when the customer
it became is erased; a merge moves the absorbed customer's leads and reaches to the survivor by events,
an unmerge gives exactly those back; every reaction applied once."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest

from crm_marketing.application import Marketing
from crm_marketing.domain import Lead
from crm_marketing.targeting import SegmentMember
from tests.support.envelopes import Stream, customer_erased, customer_merged, customer_unmerged, payload

NOW = datetime(2027, 3, 10, 12, 0, tzinfo=UTC)
MERGE = "merge-1"


def campaign(marketing: Marketing, name: str = "Spring retail push", **target: Any) -> uuid.UUID:
    """An active CNY campaign on email and online; with `segment_id`, a planned one targeting that saved
    segment (its launch reaches the members)."""
    planned = marketing.plan_campaign(
        name, "qualified retail leads", {} if target else {"industries": ["retail"]}, ["email", "online"],
        date(2027, 3, 1), date(2027, 4, 30), Decimal("1000.00"), "CNY", **target,
    )
    if not target:
        marketing.launch_campaign(planned.id)
    return planned.id


def converted(marketing: Marketing, campaign_id: uuid.UUID, name: str, phone: str) -> Lead:
    lead = marketing.capture_lead("web_form", name, f"{name.split()[0].lower()}@example.com", phone,
                                  campaign_id=campaign_id, company="Bright Retail", role="Head of Purchasing",
                                  at=NOW)
    marketing.grade_lead(lead.id, "key", f"{name} runs 40 stores")
    marketing.qualify_lead(lead.id, f"{name} confirmed the budget")
    return marketing.convert_lead(lead.id, Decimal("12000.00"), "CNY")


def link(customer: Stream, lead: Lead, customer_id: uuid.UUID) -> dict[str, Any]:
    return customer.publish("lead_linked", payload("lead_linked", lead_id=lead.id, customer_id=customer_id,
                                                   campaign_id=lead.campaign_id))


# --- erasure ------------------------------------------------------------------------------------

def test_erasing_a_customer_shreds_the_keys_of_the_leads_it_became_and_only_those(marketing, inbox, customer):
    spring = campaign(marketing)
    lead = converted(marketing, spring, "Zhang Min", "+86 21 5555 0142")
    other = converted(marketing, spring, "Li Lei", "+86 10 5555 0100")
    customer_id, other_customer = uuid.uuid4(), uuid.uuid4()
    inbox.receive([link(customer, lead, customer_id), link(customer, other, other_customer)])
    assert marketing.erasure_state(customer_id) == "pending"  # the lead's key is stored
    assert marketing.erasure_state(uuid.uuid4()) == "done"  # never heard of: nothing to erase

    assert inbox.receive([customer_erased(customer, customer_id)]).applied == 1

    forgotten = marketing.lead(lead.id)
    assert (forgotten.name, forgotten.email, forgotten.phone, forgotten.company) == ("", None, None, None)
    assert forgotten.forgotten and forgotten.customer_id == customer_id
    assert (forgotten.status, forgotten.grade, forgotten.estimated_amount) == ("converted", "key", Decimal("12000.00"))
    history = list(marketing.events.get(lead.id))
    graded, qualified = (e for e in history if type(e) in (Lead.Graded, Lead.Qualified))
    assert (graded.reason, qualified.note) == (None, None)  # free text about the person, sealed too
    assert marketing.data_keys.erasure(lead.id) is not None and not marketing.data_keys.has_key(lead.id)
    kept = marketing.lead(other.id)
    assert (kept.name, kept.email) == ("Li Lei", "li@example.com")
    # Analytics keep anonymous facts: the campaign's results are untouched.
    assert marketing.campaign_results(spring).conversions == 2
    marketing.data_keys.ttl = 0  # the unwrapped keys cached by other replicas have expired
    assert marketing.erasure_state(customer_id) == "done"


def test_an_erasure_delivered_twice_changes_nothing_more(marketing, inbox, customer):
    lead = converted(marketing, campaign(marketing), "Zhang Min", "+86 21 5555 0142")
    customer_id = uuid.uuid4()
    inbox.receive([link(customer, lead, customer_id)])
    event = customer_erased(customer, customer_id)
    inbox.receive([event])
    version = marketing.lead(lead.id).version
    assert marketing.forget_customer(customer_id, "another request") is None
    assert inbox.receive([event]).duplicates == 1
    assert marketing.lead(lead.id).version == version
    assert marketing.data_keys.erasure(lead.id).request_id == f"DSR-{customer_id}"  # the first request stays


# --- merge and unmerge --------------------------------------------------------------------------

@pytest.fixture
def two_customers(marketing, inbox, customer) -> dict[str, Any]:
    """Customer A won by the spring campaign's lead, S (the survivor to be) by the summer campaign's;
    a third campaign, to a saved segment, reached A."""
    spring, summer = campaign(marketing), campaign(marketing, "Summer push")
    absorbed, survivor = uuid.uuid4(), uuid.uuid4()
    a_lead = converted(marketing, spring, "Zhang Min", "+86 21 5555 0142")
    s_lead = converted(marketing, summer, "Zhang M.", "+86 21 5555 0143")
    inbox.receive([link(customer, a_lead, absorbed), link(customer, s_lead, survivor)])
    loyal = campaign(marketing, "Thank you", segment_id=uuid.uuid4())
    marketing.launch_campaign(loyal, members=[SegmentMember(absorbed, {"email": True})], at=NOW)
    return {"A": absorbed, "S": survivor, "a_lead": a_lead.id, "s_lead": s_lead.id, "spring": spring,
            "summer": summer, "loyal": loyal}


def test_a_merge_moves_the_absorbed_customers_leads_and_reaches_to_the_survivor_once(marketing, inbox, customer,
                                                                                    two_customers):
    c = two_customers
    event = customer_merged(customer, c["A"], c["S"])
    assert inbox.receive([event]).applied == 1

    lead = marketing.lead(c["a_lead"])
    assert lead.customer_id == c["S"] and lead.merged_from == {MERGE: c["A"]}
    assert [type(e).__name__ for e in marketing.events.get(lead.id)][-1] == "MovedToSurvivor"
    survivor, absorbed = marketing.attribution(c["S"]), marketing.attribution(c["A"])
    assert survivor.lead_ids == [c["s_lead"], c["a_lead"]] and list(survivor.reached) == [c["loyal"]]
    assert absorbed.lead_ids == [] and absorbed.reached == {}
    # The survivor's revenue still counts for the campaign that won it first (its own lead's).
    assert survivor.source == (c["s_lead"], c["summer"])
    # Redelivered (a duplicate) or applied again (the same merge): nothing changes.
    versions = (lead.version, survivor.version, absorbed.version)
    assert inbox.receive([event]).duplicates == 1
    marketing.absorb_customer(c["A"], c["S"], MERGE)
    after = (marketing.lead(lead.id).version, marketing.attribution(c["S"]).version,
             marketing.attribution(c["A"]).version)
    assert after == versions


def test_an_unmerge_gives_back_exactly_what_the_merge_moved(marketing, inbox, customer, two_customers):
    c = two_customers
    inbox.receive([customer_merged(customer, c["A"], c["S"])])
    # After the merge a new lead becomes the survivor: it stays with the survivor.
    later = converted(marketing, c["spring"], "Zhang Minmin", "+86 21 5555 0144")
    inbox.receive([link(customer, later, c["S"])])

    assert inbox.receive([customer_unmerged(customer, c["A"], c["S"])]).applied == 1

    lead = marketing.lead(c["a_lead"])
    assert lead.customer_id == c["A"] and lead.merged_from == {}
    assert marketing.attribution(c["A"]).lead_ids == [c["a_lead"]]
    assert list(marketing.attribution(c["A"]).reached) == [c["loyal"]]
    assert marketing.attribution(c["S"]).lead_ids == [c["s_lead"], later.id]
    assert marketing.attribution(c["S"]).reached == {}
    assert marketing.lead(c["s_lead"]).customer_id == c["S"]
    version = marketing.lead(lead.id).version
    marketing.restore_customer(c["A"], c["S"], MERGE)  # again: nothing more
    assert marketing.lead(lead.id).version == version
    # A's paid orders count for A's campaign again.
    order = uuid.uuid4()
    marketing.attribute_order(c["A"], order, Decimal("500.00"), "CNY")
    assert order in marketing.campaign(c["spring"]).order_ids


def test_a_survivor_with_no_record_takes_over_the_absorbed_ones_attribution(marketing, inbox, customer):
    spring = campaign(marketing)
    lead = converted(marketing, spring, "Zhang Min", "+86 21 5555 0142")
    absorbed, survivor = uuid.uuid4(), uuid.uuid4()
    inbox.receive([link(customer, lead, absorbed), customer_merged(customer, absorbed, survivor)])
    order = uuid.uuid4()
    marketing.attribute_order(survivor, order, Decimal("800.00"), "CNY")  # a paid order of the survivor
    assert order in marketing.campaign(spring).order_ids
    assert marketing.lead(lead.id).customer_id == survivor


def test_merging_a_customer_marketing_never_heard_of_records_nothing(marketing, inbox, customer):
    absorbed, survivor = uuid.uuid4(), uuid.uuid4()
    inbox.receive([customer_merged(customer, absorbed, survivor), customer_unmerged(customer, absorbed, survivor)])
    assert marketing.attribution(absorbed) is None and marketing.attribution(survivor) is None


def test_erasing_the_survivor_shreds_the_leads_it_took_over(marketing, inbox, customer, two_customers):
    c = two_customers
    inbox.receive([customer_merged(customer, c["A"], c["S"]), customer_erased(customer, c["S"])])
    assert marketing.lead(c["a_lead"]).name == "" and marketing.lead(c["s_lead"]).name == ""


def test_a_launch_that_read_a_member_before_its_merge_reaches_the_survivor_once(marketing, inbox, customer,
                                                                                two_customers):
    c = two_customers
    inbox.receive([customer_merged(customer, c["A"], c["S"])])
    late = campaign(marketing, "Late", segment_id=uuid.uuid4())
    both = [SegmentMember(c["A"], {"email": True}), SegmentMember(c["S"], {"email": True})]
    assert marketing.launch_campaign(late, members=both, at=NOW).reached == {"email": 1, "online": 1}
    assert late in marketing.attribution(c["S"]).reached and late not in marketing.attribution(c["A"]).reached
