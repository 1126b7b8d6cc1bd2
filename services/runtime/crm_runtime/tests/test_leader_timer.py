"""`@leader_timer`: of several replicas, one runs the periodic job; another takes over when it stops.

Real: nameko containers and PostgreSQL advisory locks in this session's test database. No broker:
the stand-in service has only the timer."""

from __future__ import annotations

import time

import pytest
from nameko.containers import ServiceContainer

from crm_runtime.nameko.leader import leader_timer

ticks: list[str] = []


class Sweeper:
    name = "sweeper"

    @leader_timer(interval=0.05, eager=True)
    def sweep(self) -> None:
        ticks.append(self.replica)  # type: ignore[attr-defined]


def replica(name: str) -> ServiceContainer:
    service = type(f"Sweeper_{name}", (Sweeper,), {"replica": name})
    container = ServiceContainer(service, {"AMQP_URI": "memory://"})
    container.start()
    return container


@pytest.mark.integration
def test_one_replica_runs_the_job_and_another_takes_over_when_it_stops(test_database, monkeypatch) -> None:
    for key, value in test_database.items():
        monkeypatch.setenv(key, value)
    ticks.clear()
    first, second = replica("a"), replica("b")
    try:
        time.sleep(0.6)
        assert len(set(ticks)) == 1, ticks  # one replica ran every tick
        leader = ticks[0]
        (first if leader == "a" else second).stop()
        ticks.clear()
        time.sleep(0.6)
        assert ticks and set(ticks) == {"b" if leader == "a" else "a"}
    finally:
        for container in (first, second):
            container.stop()
