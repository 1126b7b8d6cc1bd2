"""Commands that take effect once (crm_runtime.commands), on the in-memory store and on PostgreSQL
(with group commit, as services run). The application is a tiny counter: every effect shows in its count."""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event
from eventsourcing.persistence import IntegrityError

from crm_contracts.integration import Translator
from crm_runtime.commands import IdempotentApplication, ProcessedCommand, derived_id
from crm_runtime.feed import EventFeed

NAMESPACE = uuid.UUID("11111111-2222-3333-4444-555555555555")


class Counter(Aggregate):
    @event("Created")
    def __init__(self) -> None:
        self.count = 0

    @event("Incremented")
    def increment(self) -> None:
        self.count += 1


class Counters(IdempotentApplication):
    service = "counters"

    def create(self) -> uuid.UUID:
        counter = Counter()
        self.save(counter)
        return counter.id

    def increment(self, counter_id: uuid.UUID, command_id: str | None, before_save: Any = None) -> int:
        def run() -> int:
            counter: Counter = self.repository.get(counter_id)
            counter.increment()
            if before_save is not None:
                before_save()
            self.save(counter)
            return counter.count

        return self.once(command_id, run, lambda: self.count(counter_id))

    def count(self, counter_id: uuid.UUID) -> int:
        counter: Counter = self.repository.get(counter_id)
        return counter.count


@pytest.fixture
def counters(event_store_env):
    app = Counters(env=event_store_env)
    yield app
    app.close()


def test_a_command_applied_twice_takes_effect_once_and_answers_the_current_state(counters):
    counter = counters.create()
    assert counters.increment(counter, "command-1") == 1
    counters.increment(counter, "command-2")
    assert counters.increment(counter, "command-1") == 2  # not run again: the count as it is now
    assert counters.count(counter) == 2 and counters.processed("command-1")


def test_without_a_command_id_a_command_runs_every_time(counters):
    counter = counters.create()
    counters.increment(counter, None)
    counters.increment(counter, None)
    assert counters.count(counter) == 2


def test_a_command_that_failed_recorded_nothing_so_its_retry_runs(counters):
    counter = counters.create()

    def fail() -> None:
        raise RuntimeError("crashed before saving")

    with pytest.raises(RuntimeError):
        counters.increment(counter, "command-1", before_save=fail)
    assert not counters.processed("command-1")
    assert counters.increment(counter, "command-1") == 1


def test_the_marker_commits_with_the_effects_or_not_at_all(counters):
    counter = counters.create()
    # Another command changes the counter after this one loaded it: this one's save conflicts.
    with pytest.raises(IntegrityError):
        counters.increment(counter, "loser", before_save=lambda: counters.increment(counter, "winner"))
    assert not counters.processed("loser") and counters.processed("winner")
    assert counters.count(counter) == 1


def test_a_delivery_that_loses_the_race_to_its_twin_answers_the_current_state(counters):
    counter = counters.create()
    # The twin (the same command, delivered again) commits while this delivery is running.
    answer = counters.increment(counter, "command-1", before_save=lambda: counters.increment(counter, "command-1"))
    assert answer == 1 and counters.count(counter) == 1


def test_concurrent_deliveries_of_many_commands_each_take_effect_once(counters):
    ids = [counters.create() for _ in range(5)]
    deliveries = [(counter, f"command-{n}") for n, counter in enumerate(ids)] * 3

    with ThreadPoolExecutor(len(deliveries)) as pool:
        answers = list(pool.map(lambda d: counters.increment(*d), deliveries))
    assert answers == [1] * len(deliveries)
    assert [counters.count(counter) for counter in ids] == [1] * 5


def test_markers_are_never_published(counters):
    counter = counters.create()
    counters.increment(counter, "command-1")
    translator = Translator(origin="counters")
    assert EventFeed(counters, translator).events_since(0, 100) == []
    notifications = counters.notification_log.select(start=1, limit=10)
    assert any(n.originator_id == ProcessedCommand.id_for("command-1") for n in notifications)


def test_derived_ids_are_deterministic_and_unambiguous():
    assert derived_id(NAMESPACE, "a:b", "c") != derived_id(NAMESPACE, "a", "b:c")
    assert derived_id(NAMESPACE, "a", "b") != derived_id(NAMESPACE, '["a","b"]')
    assert derived_id(NAMESPACE, 1) != derived_id(NAMESPACE, "1")
    assert derived_id(NAMESPACE, "x", 2) == derived_id(NAMESPACE, "x", 2)
    assert ProcessedCommand.id_for("a") != ProcessedCommand.id_for("b")
