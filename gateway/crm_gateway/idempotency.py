"""Idempotent commands (ARCHITECTURE.md guarantee 7): a replayed `Idempotency-Key` gets the first answer.

Keys are kept per caller (the JWT subject) in PostgreSQL, schema `gateway`, with a fingerprint of the
request (method, path, body). The key is claimed with one INSERT ... ON CONFLICT, committed before the
service is called, so of two concurrent first uses exactly one runs the command; the other is told
409 "in progress". The answer is stored when the command finishes; 5xx answers release the claim so
the client may retry. A claim left by a crashed gateway is taken over after IDEMPOTENCY_ABANDONED_AFTER
seconds, and keys are forgotten after IDEMPOTENCY_TTL seconds.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.extras
import psycopg2.pool
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Request, Response

from crm_gateway.errors import ApiError, response_for
from crm_gateway.web import principal_of
from crm_runtime import config

HEADER = "Idempotency-Key"


def command_id(request: Request) -> str:
    """The id a creating command carries to its service: the same for every replay of one
    Idempotency-Key by one caller, else unique to this request. Either way, a command the broker
    delivers twice (a service killed mid-call) takes effect once."""
    key = request.headers.get(HEADER)
    if key:
        return f"{principal_of(request).subject}:{key}"
    return str(uuid.uuid4())
REPLAYED_HEADER = "Idempotent-Replayed"
SCHEMA = "gateway"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: Response headers that belong to the answer (replayed); others (correlation id) belong to one request.
_STORED_HEADERS = ("Content-Type", "Location", "ETag")


def create_tables(cur: Any) -> None:
    """Migration (entry point crm.migrations:gateway): the idempotency key table, in the cursor's schema."""
    cur.execute(
        """
        CREATE TABLE IF NOT EXISTS idempotency_keys (
            principal    text        NOT NULL,
            key          text        NOT NULL,
            fingerprint  text        NOT NULL,
            claimed_at   timestamptz NOT NULL DEFAULT now(),
            status       smallint,
            headers      jsonb,
            body         bytea,
            completed_at timestamptz,
            PRIMARY KEY (principal, key)
        )
        """
    )
    cur.execute("CREATE INDEX IF NOT EXISTS idempotency_keys_claimed_at ON idempotency_keys (claimed_at)")


def fingerprint(method: str, path: str, payload: Any) -> str:
    """What makes two requests "the same": method, path and the body's JSON (key order and spacing aside)."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method}\n{path}\n{body}".encode()).hexdigest()


@dataclass(frozen=True)
class StoredResponse:
    """The first answer given under a key."""

    status: int
    headers: dict[str, str]
    body: bytes

    def replay(self) -> Response:
        return Response(self.body, status=self.status, headers={**self.headers, REPLAYED_HEADER: "true"})


class IdempotencyStore:
    """Claims keys, stores first answers and replays them; psycopg2 on its own small pool (lazily opened)."""

    def __init__(
        self,
        dsn: str,
        max_connections: int = 10,
        ttl_seconds: float = 24 * 3600,
        abandoned_after_seconds: float = 120,
    ) -> None:
        self.dsn = dsn
        self.max_connections = max_connections
        self.ttl_seconds = ttl_seconds
        self.abandoned_after_seconds = abandoned_after_seconds
        self._pool: Any = None
        self._lock = threading.Lock()
        # psycopg2's pool raises when exhausted; callers beyond max_connections wait here instead.
        self._slots = threading.BoundedSemaphore(max_connections)

    @contextmanager
    def _cursor(self) -> Iterator[Any]:
        with self._lock:
            if self._pool is None:
                self._pool = psycopg2.pool.ThreadedConnectionPool(0, self.max_connections, self.dsn)
        with self._slots:
            conn = self._pool.getconn()
            try:
                with conn, conn.cursor() as cur:
                    yield cur
            finally:
                self._pool.putconn(conn)

    def close(self) -> None:
        """Close the pool's connections."""
        if self._pool is not None:
            self._pool.closeall()
            self._pool = None

    def run(self, request: Request, payload: Any, command: Callable[[], Response]) -> Response:
        """Answer `request` with `command()`, once per Idempotency-Key (when the request has one)."""
        key = request.headers.get(HEADER)
        if key is None:
            return command()
        if not _KEY.match(key):
            raise ApiError(400, "bad_request", f"{HEADER} must be 1 to 255 visible ASCII characters",
                           {HEADER: ["must be 1 to 255 visible ASCII characters"]})
        principal = principal_of(request).subject
        stored = self.claim(principal, key, fingerprint(request.method, request.path, payload))
        if stored is not None:
            return stored.replay()
        try:
            response = command()
        except Exception as exc:  # noqa: BLE001 - an error answer is an answer too, stored like any other
            response = response_for(exc)
        if response.status_code >= 500:
            # Nothing known to have happened (the service was down or failed): let the client retry.
            self.release(principal, key)
        else:
            self.complete(principal, key, response)
        return response

    def claim(self, principal: str, key: str, print_: str) -> StoredResponse | None:
        """Claim `key` (None: it is ours, run the command) or return its stored first answer.

        422 when the key was used for a different request, 409 while its first use is still running.
        """
        for _ in range(3):  # a concurrent release can delete the row between our two statements
            with self._cursor() as cur:
                cur.execute(
                    """
                    INSERT INTO idempotency_keys AS k (principal, key, fingerprint) VALUES (%(p)s, %(k)s, %(f)s)
                    ON CONFLICT (principal, key) DO UPDATE
                       SET fingerprint = EXCLUDED.fingerprint, claimed_at = now(), status = NULL, headers = NULL,
                           body = NULL, completed_at = NULL
                     WHERE k.claimed_at < now() - %(ttl)s * interval '1 second'
                        OR (k.status IS NULL AND k.fingerprint = EXCLUDED.fingerprint
                            AND k.claimed_at < now() - %(abandoned)s * interval '1 second')
                    RETURNING 1
                    """,
                    {"p": principal, "k": key, "f": print_, "ttl": self.ttl_seconds,
                     "abandoned": self.abandoned_after_seconds},
                )
                if cur.fetchone() is not None:
                    return None
                cur.execute(
                    "SELECT fingerprint, status, headers, body FROM idempotency_keys WHERE principal = %s AND key = %s",
                    (principal, key),
                )
                row = cur.fetchone()
            if row is None:
                continue
            stored_print, status, headers, body = row
            if stored_print != print_:
                raise ApiError(422, "idempotency_key_reused",
                               f"{HEADER} {key!r} was already used for a different request",
                               {HEADER: ["was already used with a different method, path or body"]})
            if status is None:
                raise ApiError(409, "in_progress", f"the first request with {HEADER} {key!r} is still running; "
                               "retry shortly to get its answer", headers={"Retry-After": "1"})
            return StoredResponse(status, dict(headers or {}), bytes(body))
        raise ApiError(409, "in_progress", f"{HEADER} {key!r} is being claimed concurrently; retry shortly")

    def complete(self, principal: str, key: str, response: Response) -> None:
        """Store the first answer under the claimed key."""
        headers = {name: response.headers[name] for name in _STORED_HEADERS if name in response.headers}
        with self._cursor() as cur:
            cur.execute(
                "UPDATE idempotency_keys SET status = %s, headers = %s, body = %s, completed_at = now() "
                "WHERE principal = %s AND key = %s",
                (response.status_code, psycopg2.extras.Json(headers), response.get_data(), principal, key),
            )

    def release(self, principal: str, key: str) -> None:
        """Forget an unfinished claim."""
        with self._cursor() as cur:
            cur.execute(
                "DELETE FROM idempotency_keys WHERE principal = %s AND key = %s AND status IS NULL", (principal, key)
            )

    def purge(self) -> int:
        """Delete keys older than the TTL; return how many."""
        with self._cursor() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE claimed_at < now() - %s * interval '1 second'",
                        (self.ttl_seconds,))
            return cur.rowcount  # type: ignore[no-any-return]

    def health_check(self) -> dict[str, Any]:
        """Whether the key table answers."""
        try:
            with self._cursor() as cur:
                cur.execute("SELECT 1 FROM idempotency_keys LIMIT 1")
            return {"ok": True, "idempotency_store": "ok"}
        except psycopg2.Error as exc:
            return {"ok": False, "idempotency_store": f"error: {exc}".strip()}


class Idempotency(DependencyProvider):
    """Injects the IdempotencyStore on schema `gateway`, configured from the environment."""

    def __init__(self) -> None:
        self.store: IdempotencyStore | None = None

    def setup(self) -> None:
        self.store = IdempotencyStore(
            config.postgres_dsn(SCHEMA),
            max_connections=int(config.setting("IDEMPOTENCY_POOL_SIZE", "10")),
            ttl_seconds=float(config.setting("IDEMPOTENCY_TTL", str(24 * 3600))),
            abandoned_after_seconds=float(config.setting("IDEMPOTENCY_ABANDONED_AFTER", "120")),
        )

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> IdempotencyStore:
        return self.store  # type: ignore[return-value]

    def health_check(self) -> dict[str, Any]:
        return self.store.health_check()  # type: ignore[union-attr]
