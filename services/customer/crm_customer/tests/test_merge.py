"""Merge and unmerge of customers: the domain's rules (pure), then the application on the in-memory store
and on PostgreSQL (moves, chains, idempotency, races, claims, erasure, what the feed publishes)."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime

import pytest

from crm_contracts import customer as contracts
from crm_contracts.errors import ConflictError, MovedError, StaleVersionError
from crm_contracts.fields import schema_of
from crm_customer.application import Customers
from crm_customer.domain import (
    AlreadyMergedError,
    Customer,
    EmailTakenError,
    InvalidCustomerDataError,
    LaterMergeFirstError,
    MergeNotFoundError,
    MergeOfErasedError,
    merge_customers,
    merge_source,
    unmerge_customers,
)
from crm_customer.publishing import translator
from crm_runtime.feed import EventFeed

AT = datetime(2026, 11, 20, 9, 30, tzinfo=UTC)
LATER = datetime(2026, 11, 21, 9, 30, tzinfo=UTC)


def a_customer(name: str = "Li Na", **consents: bool) -> Customer:
    customer = Customer.register(name, f"{uuid.uuid4().hex[:8]}@example.com", None, None, "web")
    for channel, granted in consents.items():
        customer.record_consent(channel, granted, "web form", AT)
    return customer


def granted(customer: Customer, channel: str) -> bool | None:
    entry = customer.consents.get(channel)
    return None if entry is None else entry["granted"]


# --- the domain's rules --------------------------------------------------------------------------

def test_a_merge_records_merged_on_each_absorbed_and_what_the_survivor_took_in():
    survivor, first, second = a_customer(), a_customer(), a_customer()
    merge = merge_customers("m-1", survivor, [first, second], AT)
    assert (merge.merge_id, merge.survivor_id, merge.absorbed) == ("m-1", survivor.id, [first.id, second.id])
    for absorbed in (first, second):
        assert (absorbed.merged_into, absorbed.merge_id) == (survivor.id, "m-1")
        assert isinstance(absorbed.collect_events()[-1], Customer.Merged)
    assert set(survivor.absorbed) == {str(first.id), str(second.id)}
    assert not survivor.merged


def test_merging_a_customer_into_itself_is_invalid_naming_absorb():
    survivor = a_customer()
    with pytest.raises(InvalidCustomerDataError) as raised:
        merge_customers("m-1", survivor, [survivor], AT)
    assert "absorb" in raised.value.details["fields"]
    assert not survivor.absorbed and not survivor.merged


@pytest.mark.parametrize("erased", ["survivor", "absorbed"])
def test_an_erased_customer_on_either_side_is_a_conflict_saying_why(erased):
    survivor, absorbed = a_customer(), a_customer()
    (survivor if erased == "survivor" else absorbed).erase("dsr-1", AT)
    with pytest.raises(MergeOfErasedError) as raised:
        merge_customers("m-1", survivor, [absorbed], AT)
    assert raised.value.code == "conflict" and "erased" in raised.value.message
    assert not absorbed.merged and not survivor.absorbed


def test_a_customer_merged_elsewhere_already_is_a_conflict():
    first, second, absorbed = a_customer(), a_customer(), a_customer()
    merge_customers("m-1", first, [absorbed], AT)
    with pytest.raises(AlreadyMergedError) as raised:
        merge_customers("m-2", second, [absorbed], AT)
    assert raised.value.details["survivor_id"] == str(first.id)
    assert absorbed.merged_into == first.id and not second.absorbed


@pytest.mark.parametrize(
    ("survivor_consent", "absorbed_consents", "merged"),
    [
        (True, [True, True], True),  # everyone agreed: still granted
        (True, [True, False], False),  # one withdrew: withdrawn
        (True, [True, None], False),  # one never gave it: withdrawn
        (None, [True], None),  # the survivor never gave it: still none
        (False, [True], False),  # the survivor withdrew it: still withdrawn
    ],
)
def test_the_most_restrictive_consent_wins_on_the_survivor(survivor_consent, absorbed_consents, merged):
    survivor = a_customer(**({} if survivor_consent is None else {"email": survivor_consent}))
    absorbed = [a_customer(**({} if given is None else {"email": given})) for given in absorbed_consents]
    merge_customers("m-1", survivor, absorbed, AT)
    assert granted(survivor, "email") is merged


def test_unmerge_restores_the_survivors_own_consent_unless_recorded_anew_since():
    survivor, absorbed = a_customer(email=True, sms=True), a_customer(email=False, sms=False)
    merge = merge_customers("m-1", survivor, [absorbed], AT)
    assert survivor.consents["email"]["source"] == merge_source("m-1")
    survivor.record_consent("sms", False, "phone call", LATER)  # an operator's decision after the merge
    unmerge_customers(merge, survivor, [absorbed], LATER)
    assert survivor.consents["email"] == {"granted": True, "source": "web form", "at": AT}
    assert survivor.consents["sms"]["source"] == "phone call" and not survivor.consents["sms"]["granted"]
    assert not absorbed.merged and granted(absorbed, "email") is False  # its own, untouched
    assert not survivor.absorbed and not survivor.withdrawn_by_merge and merge.undone


def test_a_partial_unmerge_restores_a_consent_only_when_no_one_left_restricts_it():
    survivor = a_customer(email=True, sms=True)
    denies_email, denies_sms = a_customer(email=False, sms=True), a_customer(email=True, sms=False)
    merge = merge_customers("m-1", survivor, [denies_email, denies_sms], AT)
    unmerge_customers(merge, survivor, [denies_email], LATER)
    assert granted(survivor, "email") is True  # the one who withdrew it has gone
    assert granted(survivor, "sms") is False  # the one who withdrew it is still merged
    assert merge.still_merged() == [denies_sms.id] and not merge.undone
    unmerge_customers(merge, survivor, [denies_sms], LATER)
    assert granted(survivor, "sms") is True and merge.undone


def test_a_consent_a_later_merge_would_withdraw_is_not_restored_by_undoing_the_first():
    survivor = a_customer(email=True)
    first, second = a_customer(email=False), a_customer(email=False)
    merge_1 = merge_customers("m-1", survivor, [first], AT)
    merge_customers("m-2", survivor, [second], AT)
    unmerge_customers(merge_1, survivor, [first], LATER)
    assert granted(survivor, "email") is False  # `second` still withholds it


def test_a_consent_granted_again_after_a_merge_is_withdrawn_by_the_next_merge_that_withholds_it():
    survivor = a_customer(email=True)
    merge_customers("m-1", survivor, [a_customer(email=False)], AT)
    survivor.record_consent("email", True, "customer asked again", LATER)
    merge_customers("m-2", survivor, [a_customer(email=False)], LATER)
    assert granted(survivor, "email") is False
    assert survivor.withdrawn_by_merge["email"]["before"]["source"] == "customer asked again"


def test_unmerging_when_the_survivor_was_merged_since_asks_for_the_later_merge_first():
    top, middle, bottom = a_customer(), a_customer(), a_customer()
    first = merge_customers("m-1", middle, [bottom], AT)
    merge_customers("m-2", top, [middle], AT)
    with pytest.raises(LaterMergeFirstError) as raised:
        unmerge_customers(first, middle, [bottom], LATER)
    assert "unmerge the later merge first" in raised.value.message
    assert raised.value.details["later_merge_id"] == "m-2"
    assert bottom.merged_into == middle.id


def test_unmerging_an_erased_customer_is_a_conflict():
    survivor, absorbed = a_customer(), a_customer()
    merge = merge_customers("m-1", survivor, [absorbed], AT)
    survivor.erase("dsr-1", LATER)
    with pytest.raises(MergeOfErasedError):
        unmerge_customers(merge, survivor, [absorbed], LATER)


def test_a_merge_names_only_its_own_customers_for_unmerge():
    survivor, absorbed = a_customer(), a_customer()
    merge = merge_customers("m-1", survivor, [absorbed], AT)
    with pytest.raises(InvalidCustomerDataError) as raised:
        merge.still_merged([uuid.uuid4()])
    assert "customer_ids" in raised.value.details["fields"]


# --- the application ------------------------------------------------------------------------------

@pytest.fixture
def customers(event_store_env):
    app = Customers(env=event_store_env)
    yield app
    app.close()


def registered(customers: Customers, n: int) -> list[Customer]:
    return [customers.register(f"Customer {i}", f"c{i}-{uuid.uuid4().hex[:6]}@example.com") for i in range(n)]


def test_reads_and_commands_of_an_absorbed_customer_are_moved_to_the_survivor(customers):
    survivor, absorbed = registered(customers, 2)
    merge = customers.merge(survivor.id, [absorbed.id], "m-1")
    assert customers.merge_of("m-1").absorbed == [absorbed.id] and merge.survivor_id == survivor.id
    with pytest.raises(MovedError) as raised:
        customers.customer(absorbed.id)
    assert raised.value.details == {"customer_id": str(absorbed.id), "survivor_id": str(survivor.id)}
    assert raised.value.code == "moved"
    with pytest.raises(MovedError):
        customers.record_consent(absorbed.id, "email", True, "web")
    with pytest.raises(MovedError):
        customers.change_profile(absorbed.id, None, {"company": "Acme"})
    assert customers.customer(survivor.id).absorbed.keys() == {str(absorbed.id)}


def test_a_merge_into_a_merged_customer_goes_to_its_final_survivor(customers):
    top, middle, bottom, newcomer = registered(customers, 4)
    customers.merge(middle.id, [bottom.id], "m-1")
    customers.merge(top.id, [middle.id], "m-2")
    with pytest.raises(MovedError) as raised:
        customers.customer(bottom.id)
    assert raised.value.details["survivor_id"] == str(top.id)  # the end of the chain
    assert customers.merge(bottom.id, [newcomer.id], "m-3").survivor_id == top.id
    with pytest.raises(InvalidCustomerDataError) as itself:
        customers.merge(bottom.id, [top.id], "m-4")  # `bottom` answers as `top`: into itself
    assert "absorb" in itself.value.details["fields"]


def test_unmerge_in_reverse_order_gives_everyone_back(customers):
    top, middle, bottom = registered(customers, 3)
    customers.merge(middle.id, [bottom.id], "m-1")
    customers.merge(top.id, [middle.id], "m-2")
    with pytest.raises(LaterMergeFirstError):
        customers.unmerge("m-1")
    assert customers.unmerge("m-2").undone
    assert customers.unmerge("m-1").undone
    for customer in (top, middle, bottom):
        loaded = customers.customer(customer.id)
        assert not loaded.merged and not loaded.absorbed


def test_merge_and_unmerge_take_effect_once_per_command_and_per_merge_id(customers):
    survivor, absorbed, other = registered(customers, 3)
    first = customers.merge(survivor.id, [absorbed.id], command_id="cmd-1")
    again = customers.merge(survivor.id, [absorbed.id], command_id="cmd-1")
    assert first.merge_id == again.merge_id and first.merge_id.startswith("merge-")
    by_id = customers.merge(survivor.id, [absorbed.id], first.merge_id, command_id="cmd-2")
    assert by_id.version == first.version  # the same merge id for the same customers: that merge, as it is
    with pytest.raises(ConflictError) as reused:
        customers.merge(survivor.id, [other.id], first.merge_id)
    assert "merge_id" in reused.value.details["fields"]
    events = len(customers.recorder.select_notifications(1, 1000))
    customers.unmerge(first.merge_id, command_id="cmd-3")
    after_one = len(customers.recorder.select_notifications(1, 1000))
    customers.unmerge(first.merge_id, command_id="cmd-3")
    customers.unmerge(first.merge_id, command_id="cmd-4")  # given back already: nothing to do
    assert len(customers.recorder.select_notifications(1, 1000)) == after_one > events
    assert [e["type"] for e in published(customers)].count("customer_merged") == 1


def test_unmerging_some_of_a_merge(customers):
    survivor, first, second = registered(customers, 3)
    customers.merge(survivor.id, [first.id, second.id], "m-1")
    merge = customers.unmerge("m-1", [second.id])
    assert merge.still_merged() == [first.id] and not merge.undone
    assert not customers.customer(second.id).merged
    with pytest.raises(MovedError):
        customers.customer(first.id)
    with pytest.raises(InvalidCustomerDataError):
        customers.unmerge("m-1", [survivor.id])
    with pytest.raises(MergeNotFoundError):
        customers.unmerge("no-such-merge")


def test_concurrent_merges_of_one_customer_let_exactly_one_win(customers):
    absorbed, *survivors = registered(customers, 5)

    def merge(index: int) -> str:
        try:
            customers.merge(survivors[index].id, [absorbed.id], f"race-{index}")
            return "won"
        except AlreadyMergedError:
            return "refused"

    with ThreadPoolExecutor(4) as pool:
        outcomes = list(pool.map(merge, range(4)))
    assert outcomes.count("won") == 1 and outcomes.count("refused") == 3
    winner = survivors[outcomes.index("won")]
    with pytest.raises(MovedError) as raised:
        customers.customer(absorbed.id)
    assert raised.value.details["survivor_id"] == str(winner.id)
    assert [bool(customers.customer(s.id).absorbed) for s in survivors].count(True) == 1


def test_a_command_on_the_survivor_racing_a_merge_is_never_lost(customers):
    survivor, absorbed = registered(customers, 2)
    customers.record_consent(survivor.id, "email", True, "web")
    customers.record_consent(absorbed.id, "email", True, "web")

    def act(index: int) -> None:
        if index == 0:
            customers.merge(survivor.id, [absorbed.id], "m-race")
            return
        for _ in range(5):
            try:
                customers.set_credit_rating(survivor.id, "A", reason="annual review")
                return
            except StaleVersionError:  # lost the race to the merge: retried on fresh state, as a client would
                continue

    with ThreadPoolExecutor(2) as pool:
        list(pool.map(act, range(2)))
    loaded = customers.customer(survivor.id)
    assert loaded.credit_rating == "A" and str(absorbed.id) in loaded.absorbed


def test_an_absorbed_customers_email_answers_the_survivor_and_returns_on_unmerge(customers):
    survivor = customers.register("Li Na", "li.na@example.com")
    absorbed = customers.register("Li Na", "lina@example.com", phone="+86 10 5555 0101")
    customers.merge(survivor.id, [absorbed.id], "m-1")
    assert customers.holder_of("lina@example.com") == survivor.id
    assert customers.holder_of_phone("+86 10 5555 0101") == survivor.id
    with pytest.raises(EmailTakenError) as raised:
        customers.register("Li Na again", "LiNa@example.com")  # never a silent duplicate
    assert raised.value.details["existing_customer_id"] == str(survivor.id)
    customers.unmerge("m-1")
    assert customers.holder_of("lina@example.com") == absorbed.id


def test_merging_or_unmerging_an_erased_customer_is_a_conflict(customers):
    survivor, absorbed, erased = registered(customers, 3)
    customers.erase(erased.id, "dsr-1")
    with pytest.raises(MergeOfErasedError):
        customers.merge(survivor.id, [erased.id], "m-1")
    with pytest.raises(MergeOfErasedError):
        customers.merge(erased.id, [absorbed.id], "m-2")
    assert not customers.customer(absorbed.id).merged
    customers.merge(survivor.id, [absorbed.id], "m-3")
    with pytest.raises(MovedError):
        customers.erase(absorbed.id, "dsr-2")  # the survivor is the person now: erase it
    customers.erase(survivor.id, "dsr-3")
    assert customers._load(absorbed.id).erased  # the same person's duplicate goes with it
    assert customers.holder_of(absorbed.email) is None  # its claim released
    with pytest.raises(MergeOfErasedError):
        customers.unmerge("m-3")


def test_a_lead_naming_an_absorbed_customer_links_to_the_survivor(customers):
    from decimal import Decimal

    from crm_customer.domain import ConvertedLead

    survivor, absorbed = registered(customers, 2)
    customers.merge(survivor.id, [absorbed.id], "m-1")
    lead = ConvertedLead(uuid.uuid4(), absorbed.id, None, "Li Na", None, "+86 10 5555 0199", None, "web_form",
                         Decimal("100"), "CNY", None, None)
    assert customers.link_lead(lead).id == survivor.id
    assert customers.customer_of_lead(lead.lead_id).id == survivor.id


def published(customers: Customers) -> list[dict]:
    return EventFeed(customers, translator).events_since(0, 1000)


def test_the_feed_publishes_merged_and_unmerged_as_the_contract_says(customers):
    survivor, first, second = registered(customers, 3)
    customers.merge(survivor.id, [first.id, second.id], "m-1")
    customers.unmerge("m-1", [first.id])
    envelopes = [e for e in published(customers) if e["type"] in ("customer_merged", "customer_unmerged")]
    assert [(e["type"], e["customer_id"]) for e in envelopes] == [
        ("customer_merged", str(first.id)), ("customer_merged", str(second.id)),
        ("customer_unmerged", str(first.id))]
    for envelope in envelopes:
        schema = contracts.CustomerMergedV1 if envelope["type"] == "customer_merged" else contracts.CustomerUnmergedV1
        payload = schema_of(schema).load(envelope["payload"])
        assert (payload["survivor_id"], payload["merge_id"]) == (survivor.id, "m-1")
        assert payload["customer_id"] == uuid.UUID(envelope["customer_id"])


def test_consents_withdrawn_by_a_merge_come_back_on_unmerge_as_stored(customers):
    survivor, absorbed = registered(customers, 2)
    customers.record_consent(survivor.id, "email", True, "web form", AT)
    customers.record_consent(absorbed.id, "email", False, "phone call", AT)
    customers.merge(survivor.id, [absorbed.id], "m-1")
    merged = customers.customer(survivor.id)  # loaded back from the store
    assert merged.consents["email"]["granted"] is False
    assert merged.withdrawn_by_merge["email"]["before"] == {"granted": True, "source": "web form", "at": AT}
    customers.unmerge("m-1")
    assert customers.customer(survivor.id).consents["email"] == {"granted": True, "source": "web form", "at": AT}
    assert customers.customer(absorbed.id).consents["email"]["granted"] is False
    changes = [e["payload"] for e in published(customers) if e["type"] == "customer_consent_changed"
               and e["customer_id"] == str(survivor.id)]
    assert [(c["granted"], c["source"]) for c in changes] == [(True, "web form"), (False, "merge m-1"),
                                                               (True, "web form")]
