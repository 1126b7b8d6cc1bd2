"""Idempotent commands (ARCHITECTURE.md guarantee 7): a replayed `Idempotency-Key` gets the first answer.

A key is kept per caller (the JWT subject) in PostgreSQL, schema `gateway`, with a fingerprint of the
request (method, path, body). While it lives (IDEMPOTENCY_TTL seconds from its first claim) a key
belongs to that caller and that request: the same key with another body is 422. Each claim names

- the command id (a fresh UUID made when the key is first claimed) that the gateway sends to the
  service; the service records it with the command's events and so applies a command once however
  often it arrives (crm_runtime.commands). Ids never come from joining caller and key;
- its owner: the gateway instance running the request (instance id) and a token for this attempt.
  Only the holder of the current token may finish the row, so a slow attempt that was taken over
  cannot overwrite or release the claim of the attempt that replaced it.

The states of a key (row `idempotency_keys`, column `state`; "same request" = same fingerprint):

    state       meaning                            a new request with this key gets
    (no row)    never used, or purged              a claim: `running`, a NEW command id
    running     an owner is running the command    409 in_progress; but a claim (new owner and token,
                                                   SAME command id) when the owner is dead: its
                                                   heartbeat in `gateway_instances` is older than
                                                   IDEMPOTENCY_OWNER_TIMEOUT s or gone (a clean stop
                                                   deletes it), or, last resort whatever the owner,
                                                   the attempt is IDEMPOTENCY_ABANDONED_AFTER s old
    unfinished  the last attempt answered 5xx:      a claim at once: `running`, SAME command id
                it may or may not have taken effect
    done        the first answer (< 500) is stored  its replay
    any         older than IDEMPOTENCY_TTL          a claim: `running`, a NEW command id, its body

    Another request (another body, method or path) with a key that has not expired: 422.
    The owner of a `running` claim finishes it with its token: answer < 500 -> `done`, answer >= 500
    -> `unfinished`. Neither touches the row if the token is no longer ours (taken over meanwhile).

Why a 5xx leaves the key `unfinished` rather than deleting it: a deadline or a lost reply is
ambiguous (the command may still commit), so the key must not be freed for another command; a retry
with the same body re-runs the SAME command id, which the service answers with its current state
if the first attempt did commit. Another body under that key stays 422 until the TTL. A running claim
of a live owner answers 409 `in_progress`.

Every gateway instance heartbeats its row in `gateway_instances` every IDEMPOTENCY_HEARTBEAT seconds
from a thread of its own (not a nameko worker, so a busy gateway never looks dead) and deletes the
row on a clean stop, so a retry after a crash waits seconds, not minutes. Rows written before claims
had owners (no `state`) are taken over after IDEMPOTENCY_ABANDONED_AFTER, with the command id the
gateway of that time used. Requests without a key get a fresh command id each.

No request waits unbounded on another's transaction. A claim's statements run in one short
transaction that holds the key's row lock until it commits; a gateway that dies between them leaves
that transaction open for as long as its connection looks alive to the server (a SIGKILLed process's
connections close at once, but a vanished host's, or one kept open by a proxy, do not). So the
store's sessions set `idle_in_transaction_session_timeout` (the server rolls such an orphaned
transaction back, as eventsourcing's own sessions do for the event store) and `lock_timeout` (a
claim that meets a row lock held longer answers 409 `in_progress` at once, rather than hanging and
holding a pooled connection until the client gives up).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import socket
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.extensions
import psycopg2.extras
import psycopg2.pool
from nameko.extensions import DependencyProvider
from werkzeug.wrappers import Request, Response

from crm_gateway.errors import ApiError, response_for
from crm_gateway.pooled import PooledStore
from crm_gateway.web import principal_of
from crm_runtime import config

log = logging.getLogger(__name__)

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
SCHEMA = "gateway"
_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")
#: Response headers that belong to the answer (replayed); others (correlation id) belong to one request.
_STORED_HEADERS = ("Content-Type", "Location", "ETag")

#: A command callable: given the command id to send to the service, answer the request.
Command = Callable[[str], Response]


def create_tables(cur: Any) -> None:
    """Migration (entry point crm.migrations:gateway): the key and instance tables, in the cursor's schema.

    Upgrades a table from before claims had owners in place: old rows keep working (see the module).
    """
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
    cur.execute(
        """
        ALTER TABLE idempotency_keys
            ADD COLUMN IF NOT EXISTS command_id text,
            ADD COLUMN IF NOT EXISTS state      text,
            ADD COLUMN IF NOT EXISTS owner      text,
            ADD COLUMN IF NOT EXISTS token      text,
            ADD COLUMN IF NOT EXISTS attempt_at timestamptz
        """
    )
    cur.execute("CREATE INDEX IF NOT EXISTS idempotency_keys_claimed_at ON idempotency_keys (claimed_at)")
    cur.execute(
        """
        CREATE TABLE IF NOT EXISTS gateway_instances (
            instance_id text        PRIMARY KEY,
            seen_at     timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def fingerprint(method: str, path: str, payload: Any) -> str:
    """What makes two requests "the same": method, path and the body's JSON (key order and spacing aside)."""
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(f"{method}\n{path}\n{body}".encode()).hexdigest()


def session_dsn(dsn: str, **settings: str) -> str:
    """`dsn` with PostgreSQL session settings added to its `options` (its search_path kept)."""
    params = psycopg2.extensions.parse_dsn(dsn)
    extra = " ".join(f"-c {name}={value}" for name, value in settings.items())
    params["options"] = f"{params.get('options', '')} {extra}".strip()
    return str(psycopg2.extensions.make_dsn(**params))


def new_instance_id() -> str:
    """An id for one gateway process: host and pid for the operator reading the table, plus randomness."""
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


@dataclass(frozen=True)
class StoredResponse:
    """The first answer given under a key."""

    status: int
    headers: dict[str, str]
    body: bytes

    def replay(self) -> Response:
        return Response(self.body, status=self.status, headers={**self.headers, REPLAYED_HEADER: "true"})


@dataclass(frozen=True)
class Claim:
    """A key this request holds: the command id to send, and the token that proves the row is still ours."""

    principal: str
    key: str
    command_id: str
    token: str


class IdempotencyStore(PooledStore):
    """Claims keys, stores first answers and replays them; psycopg2 on its own small pool (lazily opened)."""

    def __init__(
        self,
        dsn: str,
        max_connections: int = 10,
        ttl_seconds: float = 24 * 3600,
        abandoned_after_seconds: float = 120,
        owner_timeout_seconds: float = 10,
        instance_id: str | None = None,
        lock_timeout_seconds: float = 2,
        idle_in_transaction_timeout_seconds: float = 5,
    ) -> None:
        super().__init__(dsn, max_connections)
        self.ttl_seconds = ttl_seconds
        self.abandoned_after_seconds = abandoned_after_seconds
        self.owner_timeout_seconds = owner_timeout_seconds
        self.instance_id = instance_id or new_instance_id()
        self.lock_timeout_seconds = lock_timeout_seconds
        self.idle_in_transaction_timeout_seconds = idle_in_transaction_timeout_seconds
        self._alive_lock = threading.Lock()
        self._alive = False  # our heartbeat row exists: our claims are not taken for a dead owner's
        self._retired = False

    def pool_dsn(self) -> str:
        """Sessions that never wait long on a claim's row lock, and end a transaction left open by a
        gateway that died (see the module docstring)."""
        return session_dsn(
            self.dsn,
            lock_timeout=f"{int(self.lock_timeout_seconds * 1000)}ms",
            idle_in_transaction_session_timeout=f"{int(self.idle_in_transaction_timeout_seconds * 1000)}ms",
        )

    # --- liveness -------------------------------------------------------------------------------

    def heartbeat(self) -> None:
        """Say this instance is alive (its running claims are not to be taken over)."""
        with self._alive_lock:
            if self._retired:
                return
            with self._cursor() as cur:
                cur.execute(
                    "INSERT INTO gateway_instances (instance_id, seen_at) VALUES (%s, now()) "
                    "ON CONFLICT (instance_id) DO UPDATE SET seen_at = now()",
                    (self.instance_id,),
                )
            self._alive = True

    def retire(self) -> None:
        """Say this instance has stopped: whatever it still claimed is taken over at once."""
        with self._alive_lock:
            self._retired = True
            with self._cursor() as cur:
                cur.execute("DELETE FROM gateway_instances WHERE instance_id = %s", (self.instance_id,))

    def _ensure_alive(self) -> None:
        # Before our first claim: a claim whose owner has no heartbeat row is a dead owner's.
        if not self._alive:
            self.heartbeat()

    # --- claims ---------------------------------------------------------------------------------

    def run(self, request: Request, payload: Any, command: Command) -> Response:
        """Answer `request` with `command(command_id)`, once per Idempotency-Key (when it has one)."""
        key = request.headers.get(HEADER)
        if key is None:
            return command(str(uuid.uuid4()))
        if not _KEY.match(key):
            raise ApiError(400, "bad_request", f"{HEADER} must be 1 to 255 visible ASCII characters",
                           {HEADER: ["must be 1 to 255 visible ASCII characters"]})
        outcome = self.claim(principal_of(request).subject, key, fingerprint(request.method, request.path, payload))
        if isinstance(outcome, StoredResponse):
            return outcome.replay()
        try:
            response = command(outcome.command_id)
        except Exception as exc:  # noqa: BLE001 - an error answer is an answer too, stored like any other
            response = response_for(exc, request)
        try:
            if response.status_code >= 500:
                # Unknown whether the command took effect: keep its id for a retry (see the module).
                self.leave(outcome)
            else:
                self.complete(outcome, response)
        except psycopg2.Error:
            # The answer stands; a retry finds the claim running and, once it is taken over, re-runs
            # the same command id, which the service answers with its current state.
            log.exception("could not record the outcome under %s %r", HEADER, key)
        return response

    def claim(self, principal: str, key: str, print_: str) -> Claim | StoredResponse:
        """Claim `key` (a Claim: run the command under its id) or return its stored first answer.

        422 when the key is in use for a different request, 409 while its running owner is alive.
        """
        self._ensure_alive()
        token = str(uuid.uuid4())
        params = {
            "p": principal, "k": key, "f": print_, "command": str(uuid.uuid4()), "owner": self.instance_id,
            "token": token, "ttl": self.ttl_seconds, "abandoned": self.abandoned_after_seconds,
            "owner_timeout": self.owner_timeout_seconds,
        }
        for _ in range(3):  # a purge can delete the row between our two statements
            try:
                with self._cursor() as cur:
                    cur.execute(_CLAIM, params)
                    claimed = cur.fetchone()
                    if claimed is not None:
                        return Claim(principal, key, claimed[0], token)
                    cur.execute(
                        "SELECT fingerprint, status, headers, body FROM idempotency_keys "
                        "WHERE principal = %s AND key = %s",
                        (principal, key),
                    )
                    row = cur.fetchone()
            except psycopg2.errors.LockNotAvailable:
                # Another transaction has held this key's row past our lock timeout: a claim racing
                # ours, or the open transaction of a gateway that died mid-claim (the server rolls it
                # back once it has idled idle_in_transaction_timeout_seconds). The key is in progress.
                log.warning("%s %r: its row is locked by another transaction; answering 409 in_progress",
                            HEADER, key)
                raise ApiError(409, "in_progress", f"the first request with {HEADER} {key!r} is still running; "
                               "retry shortly to get its answer", headers={"Retry-After": "1"}) from None
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
        raise ApiError(409, "in_progress", f"{HEADER} {key!r} is being claimed concurrently; retry shortly",
                       headers={"Retry-After": "1"})

    def complete(self, claim: Claim, response: Response) -> bool:
        """Store the first answer, if the claim is still ours (False: it was taken over meanwhile)."""
        headers = {name: response.headers[name] for name in _STORED_HEADERS if name in response.headers}
        with self._cursor() as cur:
            cur.execute(
                "UPDATE idempotency_keys SET state = 'done', status = %s, headers = %s, body = %s, "
                "completed_at = now(), owner = NULL, token = NULL "
                "WHERE principal = %s AND key = %s AND token = %s AND state = 'running'",
                (response.status_code, psycopg2.extras.Json(headers), response.get_data(),
                 claim.principal, claim.key, claim.token),
            )
            stored: bool = cur.rowcount == 1
        if not stored:
            log.warning("%s %r was taken over while its request ran; its answer is not stored", HEADER, claim.key)
        return stored

    def leave(self, claim: Claim) -> bool:
        """Leave our claim unfinished (its outcome unknown) for a retry of the same request, if still ours."""
        with self._cursor() as cur:
            cur.execute(
                "UPDATE idempotency_keys SET state = 'unfinished', owner = NULL, token = NULL "
                "WHERE principal = %s AND key = %s AND token = %s AND state = 'running'",
                (claim.principal, claim.key, claim.token),
            )
            left: bool = cur.rowcount == 1
        return left

    def purge(self) -> int:
        """Delete keys older than the TTL, and instances long dead; return how many keys."""
        with self._cursor() as cur:
            cur.execute("DELETE FROM idempotency_keys WHERE claimed_at < now() - %s * interval '1 second'",
                        (self.ttl_seconds,))
            purged: int = cur.rowcount
            cur.execute("DELETE FROM gateway_instances WHERE seen_at < now() - %s * interval '1 second'",
                        (max(self.abandoned_after_seconds, self.owner_timeout_seconds) * 10,))
        return purged

    def forget(self, customer_id: str, claimed_since: Any = None) -> int:
        """An erased customer (GDPR Art. 17): every stored answer that names them is replaced by a 410
        that holds no personal data. The key keeps its claim and command id, so a replay still never runs
        the command again. `claimed_since` limits the scan to keys claimed from then (the claimed_at
        index): a whole-table scan once at the erasure, then only what commands in flight stored after
        it. Returns how many answers were replaced."""
        gone = json.dumps({"error": {"code": "erased", "message": f"customer {customer_id} was erased",
                                     "fields": {}}}).encode()
        with self._cursor() as cur:
            cur.execute("UPDATE idempotency_keys SET status = 410, body = %s, "
                        "headers = '{\"Content-Type\": \"application/json\"}'::jsonb "
                        "WHERE (%s::timestamptz IS NULL OR claimed_at >= %s::timestamptz) "
                        "AND body IS NOT NULL AND position(%s::bytea in body) > 0 AND body <> %s",
                        (gone, claimed_since, claimed_since, customer_id.encode(), gone))
            forgotten: int = cur.rowcount
        return forgotten

    def health_check(self) -> dict[str, Any]:
        """Whether the key table answers."""
        try:
            with self._cursor() as cur:
                cur.execute("SELECT 1 FROM idempotency_keys LIMIT 1")
            return {"ok": True, "idempotency_store": "ok"}
        except psycopg2.Error as exc:
            return {"ok": False, "idempotency_store": f"error: {exc}".strip()}


#: One statement claims a key: a first use inserts; an expired key becomes a new command (new id);
#: an unfinished claim, or a running one whose owner is dead or whose attempt is too old, is taken
#: over with the same fingerprint and the SAME command id. RETURNING answers only when we claimed.
_CLAIM = """
INSERT INTO idempotency_keys AS k
       (principal, key, fingerprint, command_id, state, owner, token, claimed_at, attempt_at)
VALUES (%(p)s, %(k)s, %(f)s, %(command)s, 'running', %(owner)s, %(token)s, now(), now())
ON CONFLICT (principal, key) DO UPDATE
   SET command_id = CASE WHEN k.claimed_at < now() - %(ttl)s * interval '1 second'
                         THEN EXCLUDED.command_id
                         -- a row from before claims had ids: the id its gateway sent
                         ELSE coalesce(k.command_id, k.principal || ':' || k.key) END,
       claimed_at = CASE WHEN k.claimed_at < now() - %(ttl)s * interval '1 second'
                         THEN now() ELSE k.claimed_at END,
       fingerprint = EXCLUDED.fingerprint, state = 'running', owner = EXCLUDED.owner,
       token = EXCLUDED.token, attempt_at = now(),
       status = NULL, headers = NULL, body = NULL, completed_at = NULL
 WHERE k.claimed_at < now() - %(ttl)s * interval '1 second'
    OR (k.status IS NULL AND k.fingerprint = EXCLUDED.fingerprint
        AND (k.state = 'unfinished'
             OR coalesce(k.attempt_at, k.claimed_at) < now() - %(abandoned)s * interval '1 second'
             OR (k.state = 'running'
                 AND NOT EXISTS (SELECT 1 FROM gateway_instances g
                                  WHERE g.instance_id = k.owner
                                    AND g.seen_at >= now() - %(owner_timeout)s * interval '1 second'))))
RETURNING k.command_id
"""


class Idempotency(DependencyProvider):
    """Injects the IdempotencyStore on schema `gateway`, configured from the environment, and keeps
    this instance's heartbeat (a managed thread: it beats even while every worker is busy)."""

    def __init__(self) -> None:
        self.store: IdempotencyStore | None = None
        self._stopping = threading.Event()
        self.interval = 2.0

    def setup(self) -> None:
        self.store = IdempotencyStore(
            config.postgres_dsn(SCHEMA),
            max_connections=int(config.setting("IDEMPOTENCY_POOL_SIZE", "10")),
            ttl_seconds=float(config.setting("IDEMPOTENCY_TTL", str(24 * 3600))),
            abandoned_after_seconds=float(config.setting("IDEMPOTENCY_ABANDONED_AFTER", "120")),
            owner_timeout_seconds=float(config.setting("IDEMPOTENCY_OWNER_TIMEOUT", "10")),
        )
        self.interval = float(config.setting("IDEMPOTENCY_HEARTBEAT", "2"))

    def start(self) -> None:
        self._stopping.clear()
        self.container.spawn_managed_thread(self._beat, identifier="idempotency-heartbeat")

    def _beat(self) -> None:
        store = self.store
        assert store is not None  # built in setup()
        while not self._stopping.is_set():
            try:
                store.heartbeat()
            except psycopg2.Error as exc:
                # The database is away: nobody can claim keys either. Keep beating; never die of it.
                log.warning("idempotency heartbeat failed: %s", exc)
            self._stopping.wait(self.interval)

    def stop(self) -> None:
        # nameko stops dependencies after its workers finished: none of our claims is running now.
        self._stopping.set()
        if self.store is not None:
            try:
                self.store.retire()
            except psycopg2.Error as exc:
                log.warning("could not retire gateway instance %s: %s", self.store.instance_id, exc)
            self.store.close()

    def kill(self) -> None:
        # Killed (not stopped): our heartbeat goes stale within IDEMPOTENCY_OWNER_TIMEOUT seconds.
        self._stopping.set()
        if self.store is not None:
            self.store.close()

    def get_dependency(self, worker_ctx: Any) -> IdempotencyStore:
        return self.store  # type: ignore[return-value]

    def health_check(self) -> dict[str, Any]:
        return self.store.health_check()  # type: ignore[union-attr]
