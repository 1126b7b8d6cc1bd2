"""The smallest eventsourcing model, for the save and read baselines (importable, so topics resolve)."""

from __future__ import annotations

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event


class BenchThing(Aggregate):
    """An aggregate with one field and one creation event."""

    @event("Created")
    def __init__(self, number: int) -> None:
        self.number = number


class BenchApp(Application):
    """An application that only saves BenchThings."""
