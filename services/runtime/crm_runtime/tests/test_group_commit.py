"""GroupCommit alone: concurrent saves share commits, and each caller still gets its own outcome."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from eventsourcing.domain import Aggregate

from crm_runtime.eventstore import GroupCommit


class SlowStore:
    """Stands in for the event store: one commit at a time, each taking a few milliseconds."""

    def __init__(self, reject=()):
        self.commits: list[tuple[str, ...]] = []
        self.reject = set(reject)
        self.lock = threading.Lock()

    def save(self, *objs):
        with self.lock:
            time.sleep(0.005)
            if self.reject & set(objs):
                raise ValueError(f"conflict on {sorted(self.reject & set(objs))}")
            self.commits.append(objs)
            return len(objs)


def save_concurrently(group, names):
    outcomes = {}

    def run(name):
        try:
            group.save(name)
            outcomes[name] = "saved"
        except ValueError:
            outcomes[name] = "rejected"

    threads = [threading.Thread(target=run, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    return outcomes


def test_concurrent_saves_share_commits_and_all_succeed():
    store = SlowStore()
    names = [f"agg{i}" for i in range(60)]
    outcomes = save_concurrently(GroupCommit(store.save), names)
    assert outcomes == {n: "saved" for n in names}
    assert sorted(obj for commit in store.commits for obj in commit) == sorted(names)
    assert len(store.commits) < len(names)


def test_a_failing_save_fails_alone_and_the_rest_of_its_batch_commits():
    store = SlowStore(reject={"agg7"})
    names = [f"agg{i}" for i in range(30)]
    outcomes = save_concurrently(GroupCommit(store.save), names)
    assert outcomes.pop("agg7") == "rejected"
    assert set(outcomes.values()) == {"saved"}
    assert "agg7" not in {obj for commit in store.commits for obj in commit}


def test_a_lone_save_raises_its_own_error():
    with pytest.raises(ValueError):
        GroupCommit(SlowStore(reject={"x"}).save).save("x")


# -- a caller killed while it waits in the queue ----------------------------------------------------


class Killed(BaseException):
    """Stands in for eventlet's GreenletExit: what a killed green thread raises where it waits."""


class DoomedWake(threading.Event):
    """The wake-up of a caller that is killed while queued: before (or right as) it is handed the lead."""

    def __init__(self, kill: threading.Event, after_wake: bool) -> None:
        super().__init__()
        self.kill = kill
        self.after_wake = after_wake

    def wait(self, timeout=None):
        if self.after_wake:
            super().wait()  # handed the lead (or finished) ...
        else:
            self.kill.wait()  # ... or still queued when the kill arrives
        raise Killed()


class GatedStore(SlowStore):
    """A store whose first commit waits for `release`: callers pile up in the queue meanwhile."""

    def __init__(self):
        super().__init__()
        self.release = threading.Event()

    def save(self, *objs):
        if not self.commits:
            assert self.release.wait(10)
        return super().save(*objs)


def queued(group, count):
    return lambda: len(group._queue) >= count


def wait_for(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


@pytest.mark.parametrize("handed_the_lead", [False, True], ids=["killed-while-queued", "killed-when-handed-lead"])
def test_a_caller_killed_while_queued_does_not_leave_later_saves_hanging(monkeypatch, handed_the_lead):
    from crm_runtime import eventstore

    kill = threading.Event()
    real_pending = eventstore._PendingSave

    def pending_save(objs, kwargs):
        pending = real_pending(objs, kwargs)
        if objs == ("victim",):
            pending.wake = DoomedWake(kill, after_wake=handed_the_lead)
        return pending

    monkeypatch.setattr(eventstore, "_PendingSave", pending_save)
    store = GatedStore()
    group = GroupCommit(store.save)
    outcomes = {}

    def run(name):
        try:
            group.save(name)
            outcomes[name] = "saved"
        except Killed:
            outcomes[name] = "killed"

    threads = [threading.Thread(target=run, args=(name,), daemon=True) for name in ("leader", "victim", "later")]
    threads[0].start()
    wait_for(lambda: group._committing and not group._queue)  # the leader is inside its commit
    threads[1].start()
    wait_for(queued(group, 1))
    if not handed_the_lead:
        kill.set()
        threads[1].join(5)
    threads[2].start()
    wait_for(queued(group, 2 if handed_the_lead else 1))
    store.release.set()
    for thread in threads:
        thread.join(5)
    assert outcomes.get("later") == "saved"
    assert outcomes["victim"] == "killed" and outcomes["leader"] == "saved"
    assert "victim" not in {obj for commit in store.commits for obj in commit}
    assert group.save("afterwards") == 1  # the group is not stuck either


# -- an ambiguous commit: the connection dropped after COMMIT reached the server ----------------------


class AmbiguousStore:
    """Stores aggregates in memory; `ambiguous` makes the next commit of several events store them, then
    fail as a dropped connection would (the caller cannot tell whether COMMIT went through)."""

    def __init__(self, app):
        from eventsourcing.persistence import OperationalError

        self.app = app
        self.ambiguous = 0
        self.operational_error = OperationalError
        original = app.recorder.insert_events

        def insert_events(stored_events, **kwargs):
            result = original(stored_events, **kwargs)
            if self.ambiguous and len(stored_events) > 1:
                self.ambiguous -= 1
                raise self.operational_error("server closed the connection unexpectedly")
            return result

        app.recorder.insert_events = insert_events


@pytest.fixture
def things(monkeypatch):
    """A ServiceApplication on the in-memory store, with a GroupCommit wired as on PostgreSQL."""
    from eventsourcing.application import Application

    from crm_runtime.eventstore import ServiceApplication

    monkeypatch.setenv("CRM_EVENT_STORE", "memory")

    class Things(ServiceApplication):
        service = "things"

    app = Things()
    store = AmbiguousStore(app)
    group = GroupCommit(lambda *objs, **kw: Application.save(app, *objs, **kw), already_stored=app.already_stored)
    yield app, store, group
    app.close()


class Thing(Aggregate):
    """An aggregate whose id a test may choose (to stage a real conflict)."""

    def __init__(self, number: int, thing_id: uuid.UUID | None = None) -> None:
        self.number = number

    @staticmethod
    def create_id(number: int, thing_id: uuid.UUID | None = None) -> uuid.UUID:
        return thing_id or uuid.uuid4()


def new_thing(number, thing_id=None):
    return Thing(number, thing_id)


def test_a_lone_save_whose_commit_went_through_is_reported_saved(things):
    from eventsourcing.persistence import IntegrityError

    app, store, group = things
    original = store.app.recorder.insert_events

    def commit_then_retry(stored_events, **kwargs):  # COMMIT reached the server; the library retried
        original(stored_events, **kwargs)
        return original(stored_events, **kwargs)

    app.recorder.insert_events = commit_then_retry
    thing = new_thing(1)
    group.save(thing)  # not IntegrityError: this save's own events are what the retry found
    assert app.repository.get(thing.id).number == 1

    app.recorder.insert_events = original
    rival = new_thing(2, thing.id)  # a real conflict: another save holds that id and version
    with pytest.raises(IntegrityError):
        group.save(rival)


def test_a_shared_commit_that_went_through_reports_every_save_saved(things):
    app, store, group = things
    gate = threading.Event()
    first = new_thing(0)
    results = {}

    def save(name, thing):
        try:
            group.save(thing)
            results[name] = "saved"
        except Exception as exc:  # noqa: BLE001 - recorded for the assertion
            results[name] = type(exc).__name__

    original_save = group._save

    def gated_save(*objs, **kwargs):
        if first in objs:
            assert gate.wait(10)
        return original_save(*objs, **kwargs)

    group._save = gated_save
    leader = threading.Thread(target=save, args=("first", first))
    leader.start()
    wait_for(lambda: group._committing and not group._queue)
    batch = {f"t{i}": new_thing(i) for i in range(1, 4)}
    threads = [threading.Thread(target=save, args=item) for item in batch.items()]
    for thread in threads:
        thread.start()
    wait_for(queued(group, 3))
    store.ambiguous = 1  # the shared commit of t1..t3 stores them, then its connection drops
    gate.set()
    for thread in [leader, *threads]:
        thread.join(10)
    assert results == {"first": "saved", "t1": "saved", "t2": "saved", "t3": "saved"}
    assert [app.repository.get(t.id).number for t in batch.values()] == [1, 2, 3]
