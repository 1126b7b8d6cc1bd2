"""GroupCommit alone: concurrent saves share commits, and each caller still gets its own outcome."""

from __future__ import annotations

import threading
import time

import pytest

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
