"""`@leader_timer(interval)`: periodic work that runs in exactly one replica of a service.

Every replica ticks, but only the one holding the PostgreSQL advisory lock for this job (a session
lock, held for as long as its connection lives) runs it. When that replica dies its connection
closes, the lock is freed, and another replica takes over at its next tick. The jobs themselves are
idempotent (each derives what it creates from the period it covers), so the short overlap a takeover
can bring (a slow tick of the old leader while the new one starts) changes nothing.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable
from typing import Any, TypeVar

import psycopg2
from nameko.timer import Timer

from crm_runtime import config

log = logging.getLogger(__name__)
T = TypeVar("T")


class LeaderTimer(Timer):
    """nameko's Timer, whose tick spawns a worker only in the elected replica."""

    def __init__(self, interval: float, eager: bool = False, **kwargs: Any) -> None:
        super().__init__(interval, eager=eager, **kwargs)
        self._conn: Any = None
        self.is_leader = False

    @property
    def job(self) -> str:
        return f"crm.timer.{self.container.service_name}.{self.method_name}"

    def handle_timer_tick(self) -> None:
        if self._lead():
            super().handle_timer_tick()
        else:
            self.worker_complete.send()  # nothing to wait for: the loop sleeps until the next tick

    def _lead(self) -> bool:
        """Whether this replica leads the job: keep the lock, or try to take it."""
        try:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg2.connect(config.postgres_dsn(), connect_timeout=5)
                self._conn.autocommit = True
                self.is_leader = False
            with self._conn.cursor() as cur:
                if self.is_leader:
                    cur.execute("SELECT 1")  # the lock lives as long as this connection does
                else:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (zlib.crc32(self.job.encode()),))
                    self.is_leader = bool(cur.fetchone()[0])
                    if self.is_leader:
                        log.info("this replica now runs %s", self.job)
            return self.is_leader
        except psycopg2.Error as exc:
            log.warning("cannot tell who runs %s (skipping this tick): %s", self.job, exc)
            self.stop_leading()
            return False

    def stop_leading(self) -> None:
        if self._conn is not None and not self._conn.closed:
            self._conn.close()
        self._conn, self.is_leader = None, False

    def stop(self) -> None:
        super().stop()
        self.stop_leading()

    def kill(self) -> None:
        super().kill()
        self.stop_leading()


leader_timer = LeaderTimer.decorator


def sweep(job: str, items: Iterable[T], action: Callable[[T], Any]) -> int:
    """Apply `action` to each item of a periodic job; one that fails is logged and the rest go on (the
    next run retries it). Returns how many failed."""
    failed = 0
    for item in items:
        try:
            action(item)
        except Exception as exc:  # noqa: BLE001 - one item must not stop the sweep; logged for an operator
            failed += 1
            log.warning("%s: %s failed, retried at the next run: %s: %s", job, item, type(exc).__name__, exc)
    return failed
