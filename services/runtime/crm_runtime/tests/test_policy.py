"""PolicyInbox: a policy's command and the tracked position commit together, so every reaction
happens once, in each origin's order, whatever is redelivered or raced. Runs on the in-memory store
and on PostgreSQL (the `event_store_env` fixture)."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event

from crm_runtime.eventstore import ServiceApplication
from crm_runtime.policy import Policies, PolicyInbox

TALLY_ID = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


class Tally(Aggregate):
    """Counts the things it was told about."""

    def __init__(self) -> None:
        self.things: list[str] = []

    @staticmethod
    def create_id() -> uuid.UUID:
        return TALLY_ID

    @event("Counted")
    def count(self, thing: str) -> None:
        self.things.append(thing)


class Tallies(ServiceApplication):
    service = "tally"

    def count(self, thing: str) -> None:
        try:
            tally: Tally = self.repository.get(TALLY_ID)
        except AggregateNotFoundError:
            tally = Tally()
        tally.count(thing)
        self.save(tally)

    def things(self) -> list[str]:
        try:
            return list(self.repository.get(TALLY_ID).things)
        except AggregateNotFoundError:
            return []


policies = Policies("tally")


@policies.reacts_to("shop", "thing_sold")
def handle_shop_thing_sold(app: Tallies, envelope: dict[str, Any]) -> None:
    app.count(envelope["payload"]["thing"])


def envelope(position: int, previous: int, thing: str = "", type_: str = "thing_sold") -> dict[str, Any]:
    return {"event_id": str(uuid.uuid4()), "origin": "shop", "type": type_, "position": position,
            "previous": previous, "correlation_id": None, "payload": {"thing": thing or f"t{position}"}}


@pytest.fixture
def app(event_store_env: dict[str, str]) -> Any:
    tallies = Tallies(env={**event_store_env, "GROUP_COMMIT": "false"})
    yield tallies
    tallies.close()


def test_events_are_applied_once_in_order_and_duplicates_are_dropped(app: Tallies) -> None:
    inbox = PolicyInbox(app, policies, fetch=None)
    first = inbox.receive([envelope(1, 0), envelope(3, 1)])
    again = inbox.receive([envelope(1, 0), envelope(3, 1)])
    assert (first.applied, again.applied, again.duplicates) == (2, 0, 2)
    assert app.things() == ["t1", "t3"]
    assert inbox.positions() == {"shop": 3}


def test_an_event_without_a_reaction_moves_the_position_alone(app: Tallies) -> None:
    inbox = PolicyInbox(app, policies, fetch=None)
    inbox.receive([envelope(1, 0, type_="thing_shelved"), envelope(2, 1)])
    assert app.things() == ["t2"]
    assert app.tracked_position("shop") == 2


def test_events_without_a_reaction_are_recorded_once_per_interval_and_when_flushed(app: Tallies) -> None:
    inbox = PolicyInbox(app, policies, fetch=None, skip_record_interval=3600.0)
    inbox.receive([envelope(1, 0, type_="thing_shelved")])  # the first run of skips is recorded at once
    inbox.receive([envelope(2, 1, type_="thing_shelved"), envelope(3, 2, type_="thing_shelved")])
    assert inbox.positions() == {"shop": 3}
    assert app.tracked_position("shop") == 1  # within the interval: not written for every batch
    inbox.flush()
    assert app.tracked_position("shop") == 3


def test_skips_this_process_never_recorded_are_pulled_again_after_a_restart(app: Tallies) -> None:
    feed = [envelope(1, 0, type_="thing_shelved"), envelope(2, 1, type_="thing_shelved"), envelope(3, 2)]
    fetch = lambda origin, after, limit: [e for e in feed if e["position"] > after]  # noqa: E731
    crashed = PolicyInbox(app, policies, fetch=fetch, skip_record_interval=3600.0)
    crashed.receive(feed[:1])
    crashed.receive(feed[1:2])  # skipped in memory only, then the process dies without flushing
    restarted = PolicyInbox(app, policies, fetch=fetch)
    outcome = restarted.receive(feed[2:])
    assert (outcome.applied, outcome.pulled) == (2, 2)
    assert app.things() == ["t3"] and app.tracked_position("shop") == 3


def test_a_replica_that_finds_the_position_moved_by_another_reads_it_instead_of_pulling(
    app: Tallies, event_store_env: dict
) -> None:
    if "POSTGRES_SCHEMA" not in event_store_env:
        pytest.skip("two replicas share one database")
    replica = Tallies(env={**event_store_env, "GROUP_COMMIT": "false"})
    try:
        one, two = PolicyInbox(app, policies, fetch=None), PolicyInbox(replica, policies, fetch=None)
        assert one.receive([envelope(1, 0), envelope(2, 1)]).applied == 2
        assert two.positions() == {"shop": 2}
        assert one.receive([envelope(3, 2)]).applied == 1
        outcome = two.receive([envelope(4, 3)])  # `previous` 3 is ahead of what it read: it reads again
        assert (outcome.applied, outcome.pulled, outcome.deferred) == (1, 0, 0)
        assert app.things() == ["t1", "t2", "t3", "t4"]
    finally:
        replica.close()


def test_a_gap_is_pulled_from_the_origin_feed_first(app: Tallies) -> None:
    feed = [envelope(2, 0), envelope(5, 2), envelope(9, 5)]
    inbox = PolicyInbox(app, policies, fetch=lambda origin, after, limit: [e for e in feed if e["position"] > after])
    outcome = inbox.receive([feed[2]])
    assert (outcome.applied, outcome.pulled) == (3, 3)
    assert app.things() == ["t2", "t5", "t9"]


def test_a_second_replica_reacting_to_the_same_event_changes_nothing(app: Tallies, event_store_env: dict) -> None:
    replica = Tallies(env={**event_store_env, "GROUP_COMMIT": "false"}) if "POSTGRES_SCHEMA" in event_store_env else app
    try:
        one, two = PolicyInbox(app, policies, fetch=None), PolicyInbox(replica, policies, fetch=None)
        one._position("shop")
        two._position("shop")  # both have read position 0, as two replicas racing would
        assert one.receive([envelope(1, 0)]).applied == 1
        assert two._apply(envelope(1, 0)) is False  # its tracking collides: a duplicate, no second count
        assert app.things() == ["t1"]
    finally:
        if replica is not app:
            replica.close()


def test_a_reaction_that_saves_twice_is_refused_and_leaves_nothing_behind(app: Tallies) -> None:
    twice = Policies("tally")

    @twice.reacts_to("shop", "thing_sold")
    def count_twice(app: Tallies, envelope: dict[str, Any]) -> None:
        app.count("a")
        app.count("b")

    outcome = PolicyInbox(app, twice, fetch=None).receive([envelope(1, 0)])
    assert len(outcome.failed) == 1
    assert app.things() == ["a"]  # the first save carried the tracking: the event counts as applied
    assert app.tracked_position("shop") == 1


def test_an_event_no_reaction_can_apply_is_parked_and_the_origin_flows_on(app: Tallies) -> None:
    poisoned = Policies("tally")

    @poisoned.reacts_to("shop", "thing_sold")
    def count_unless_cursed(app: Tallies, envelope: dict[str, Any]) -> None:
        if envelope["payload"]["thing"] == "cursed":
            raise ValueError("a cursed thing cannot be counted")
        app.count(envelope["payload"]["thing"])

    inbox = PolicyInbox(app, poisoned, fetch=None)
    first = inbox.receive([envelope(1, 0), envelope(2, 1, "cursed"), envelope(3, 2)])
    assert first.failed and not any(f.transient for f in first.failed)  # without `park`: left for a retry
    assert app.things() == ["t1"]
    parked = inbox.receive([envelope(2, 1, "cursed"), envelope(3, 2)], park=True)
    assert [e["position"] for e, _ in parked.parked] == [2] and parked.applied == 1
    assert app.things() == ["t1", "t3"] and app.tracked_position("shop") == 3
    assert inbox.receive([envelope(2, 1, "cursed")], park=True).duplicates == 1
    assert inbox.parked_count() == 1
