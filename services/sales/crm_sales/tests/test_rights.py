"""A customer's rights in the sales service, driven through its policies with contract-shaped envelopes
(customer_merged, customer_unmerged, customer_erased), on the in-memory store and on PostgreSQL:
opportunities (quotes included) follow a merge and come back on unmerge; an erasure shreds the key
sealing titles and reasons, and the pipeline keeps its anonymous facts."""

from __future__ import annotations

from decimal import Decimal
from uuid import UUID, uuid4

import pytest

from crm_runtime.feed import EventFeed
from crm_runtime.policy import PolicyInbox
from crm_runtime.rights import CustomerErasedError, record_merge
from crm_sales.application import Opportunities
from crm_sales.policies import policies
from crm_sales.publishing import translator
from crm_sales.tests.test_application import LINES, open_one, to_stage, won_one
from tests.support.envelopes import Stream, customer_erased, customer_merged, customer_unmerged

AT = "2026-11-20T09:30:00+00:00"


def apply(opportunities: Opportunities, envelope: dict) -> None:
    outcome = PolicyInbox(opportunities, policies, fetch=None).receive([envelope])
    assert outcome.failed == [] and not outcome.parked


def owners(opportunities: Opportunities, *ids: UUID) -> list[UUID]:
    return [opportunities.opportunity(opportunity_id).customer_id for opportunity_id in ids]


def test_a_merge_re_points_opportunities_and_an_unmerge_gives_back_exactly_what_it_moved(
    opportunities: Opportunities, customer: Stream,
) -> None:
    absorbed, survivor = uuid4(), uuid4()
    open_ = open_one(opportunities, customer_id=absorbed).id
    won = won_one(opportunities, customer_id=absorbed).id
    own = open_one(opportunities, customer_id=survivor).id
    delivery = customer_merged(customer, absorbed, survivor, "merge-7")
    apply(opportunities, delivery)
    versions = [opportunities.opportunity(i).version for i in (open_, won, own)]
    PolicyInbox(opportunities, policies, fetch=None).receive([delivery])  # redelivered: a duplicate
    opportunities.absorb_customer(absorbed, survivor, "merge-7")  # asked again: nothing new

    assert owners(opportunities, open_, won, own) == [survivor] * 3
    assert [opportunities.opportunity(i).version for i in (open_, won, own)] == versions
    assert opportunities.opportunity(won).merges == [{"merge_id": "merge-7", "merged_from": absorbed}]
    # Commands keep working on a re-pointed opportunity, and what it publishes names the survivor.
    to_stage(opportunities, open_, "proposal")
    quote = opportunities.send_quote(open_, LINES).current_quote
    assert quote is not None
    after = open_one(opportunities, customer_id=absorbed).id  # opened for the absorbed id: follows the merge
    since = open_one(opportunities, customer_id=survivor).id
    assert owners(opportunities, after, since) == [survivor, survivor]

    apply(opportunities, customer_unmerged(customer, absorbed, survivor, "merge-7"))
    opportunities.restore_customer(absorbed, survivor, "merge-7")  # asked again: nothing new

    assert owners(opportunities, open_, won, after) == [absorbed] * 3
    assert owners(opportunities, own, since) == [survivor, survivor]
    assert opportunities.opportunity(open_).current_quote.quote_id == quote.quote_id  # the quotes came along
    envelopes = [e for e in EventFeed(opportunities, translator).events_since(0, 500)
                 if e["payload"].get("opportunity_id") == str(open_)]
    assert [(e["type"], e["payload"]["customer_id"]) for e in envelopes] == [
        ("opportunity_opened", str(absorbed)), ("opportunity_customer_changed", str(survivor)),
        ("opportunity_stage_changed", str(survivor)), ("opportunity_stage_changed", str(survivor)),
        ("quote_sent", str(survivor)), ("opportunity_customer_changed", str(absorbed)),
    ]


def test_an_erasure_seals_titles_and_reasons_and_the_pipeline_keeps_the_anonymous_facts(
    opportunities: Opportunities, customer: Stream,
) -> None:
    li_na = uuid4()
    rejected = open_one(opportunities, customer_id=li_na, title="Bright Retail (Li Na)")
    to_stage(opportunities, rejected.id, "proposal")
    quote = opportunities.send_quote(rejected.id, LINES).current_quote
    opportunities.reject_quote(rejected.id, quote.quote_id, "Li Na says the price is too high")
    lost = open_one(opportunities, customer_id=li_na)
    opportunities.lose(lost.id, "Li Na went with a competitor")
    still_open = open_one(opportunities, customer_id=li_na)
    assert opportunities.erasure_state(li_na) == "pending"

    delivery = customer_erased(customer, li_na, "DSR-42", erased_at=AT)
    apply(opportunities, delivery)
    version = opportunities.opportunity(lost.id).version
    opportunities.forget_customer(li_na, "DSR-42")  # asked again: nothing new

    assert opportunities.opportunity(lost.id).version == version
    assert [opportunities.opportunity(i).title for i in (rejected.id, lost.id, still_open.id)] == ["", "", ""]
    assert opportunities.opportunity(rejected.id).quotes[0].rejection_reason is None
    assert opportunities.opportunity(lost.id).lost_reason == ""
    assert opportunities.opportunity(lost.id).amount == Decimal("12000.00")
    assert opportunities.win_rate().lost == 1  # the pipeline's facts are still there
    # The opportunity goes on; a reason given now is not kept; nothing new is opened for the customer.
    opportunities.lose(still_open.id, "Li Na asked to be forgotten")
    assert opportunities.opportunity(still_open.id).lost_reason == ""
    with pytest.raises(CustomerErasedError):
        open_one(opportunities, customer_id=li_na)
    opportunities.data_keys.ttl = 0
    assert opportunities.erasure_state(li_na) == "done"
    assert opportunities.erasure_state(uuid4()) == "done"


def test_erasing_a_survivor_shreds_the_keys_of_the_customers_merged_into_it(opportunities: Opportunities,
                                                                            customer: Stream) -> None:
    absorbed, survivor = uuid4(), uuid4()
    opportunity_id = open_one(opportunities, customer_id=absorbed, title="Zhang Min").id
    apply(opportunities, customer_merged(customer, absorbed, survivor, "merge-7"))
    apply(opportunities, customer_erased(customer, survivor, "DSR-43", erased_at=AT))
    assert opportunities.opportunity(opportunity_id).title == ""  # sealed under the absorbed customer's key
    assert not opportunities.data_keys.has_key(absorbed) and not opportunities.data_keys.has_key(survivor)


def test_an_opportunity_the_merge_missed_follows_it_with_its_next_command(opportunities: Opportunities,
                                                                        customer: Stream) -> None:
    absorbed, survivor = uuid4(), uuid4()
    straggler = open_one(opportunities, customer_id=absorbed).id
    # As if committed while the merge's reaction was looking for the opportunities: only the merge is recorded.
    opportunities.save(*record_merge(opportunities.repository, absorbed, survivor, "merge-7"))
    opportunities.move_to_stage(straggler, "qualification")
    assert owners(opportunities, straggler) == [survivor]
    apply(opportunities, customer_unmerged(customer, absorbed, survivor, "merge-7"))
    assert owners(opportunities, straggler) == [absorbed]


def test_a_reason_given_while_merged_goes_with_the_opportunity_and_is_erased_with_its_own_customer(
    opportunities: Opportunities, customer: Stream,
) -> None:
    absorbed, survivor = uuid4(), uuid4()
    opportunity_id = open_one(opportunities, customer_id=absorbed).id
    apply(opportunities, customer_merged(customer, absorbed, survivor, "merge-7"))
    opportunities.lose(opportunity_id, "Zhang Min chose a competitor")  # while the survivor's
    apply(opportunities, customer_unmerged(customer, absorbed, survivor, "merge-7"))
    apply(opportunities, customer_erased(customer, absorbed, "DSR-44", erased_at=AT))
    assert opportunities.opportunity(opportunity_id).lost_reason == ""  # sealed under the absorbed customer's key
    assert not opportunities.data_keys.has_key(survivor)  # the survivor never needed a key here
