"""The gateway's own tables (idempotency keys, subscribers, webhooks) over small psycopg2 pools."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from crm_runtime.inbox import connection_usable
from crm_runtime.nameko.dependencies import KeepingPool


class PooledStore:
    """Tables of the gateway's schema over a small psycopg2 pool: opened at first use, its connections
    kept for the next caller (a new PostgreSQL session per call would cost more than the call), one the
    server closed replaced before it is used; callers beyond its size wait for a connection."""

    def __init__(self, dsn: str, max_connections: int = 4) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        self._pool: Any = None
        self._lock = threading.Lock()
        # psycopg2's pool raises when exhausted; callers beyond max_connections wait here instead.
        self._slots = threading.BoundedSemaphore(max_connections)

    def pool_dsn(self) -> str:
        """The DSN the pool's sessions open with (a subclass adds session settings)."""
        return self.dsn

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        """A cursor in a transaction, committed when the block ends without an error."""
        with self._lock:
            if self._pool is None:
                self._pool = KeepingPool(self.max_connections, self.pool_dsn())
        with self._slots:
            conn = self._pool.getconn()
            for _ in range(self.max_connections):  # after a database restart every kept one is dead
                if connection_usable(conn):
                    break
                self._pool.putconn(conn, close=True)
                conn = self._pool.getconn()
            try:
                with conn, conn.cursor() as cur:
                    yield cur
            finally:
                self._pool.putconn(conn, close=bool(conn.closed))

    def close(self) -> None:
        """Close the pool's connections."""
        if self._pool is not None:
            self._pool.closeall()
            self._pool = None
