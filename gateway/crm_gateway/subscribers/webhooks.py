"""Webhooks for systems that cannot run a consumer: subscriptions, signed deliveries, retries, pausing.

A subscription (created with crm:admin) names a URL, the event types it wants (routing-key patterns) and
a secret. One gateway replica (a leader timer) delivers each active subscription's events from the replay
feed, in feed order (each origin's events in position order) and one at a time: a delivery that fails
holds back every event behind it, so no customer's events overtake each other. A failure is retried with
growing back-off (1 s, 2 s, 4 s ... up to WEBHOOK_BACKOFF_MAX); after WEBHOOK_MAX_FAILURES failures in a
row the subscription is paused, and `resume` carries on from the last event delivered. Every attempt is in
the delivery log, which keeps no personal data, so an erasure has nothing to purge there: the event's id,
type, origin and position, the attempt, the status and the gateway's own error text ("answered 422", a
connection error naming the subscriber's URL) — never the body sent nor the receiver's answer (the
receiver's copy of the event is the receiver's to erase on customer_erased). At least once: a receiver
that answered 2xx after a timeout on our side gets the event again, with the same `CRM-Event-Id`.

Signature (as Stripe and GitHub do): `CRM-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret,
"<t>.<body>")>`. A receiver recomputes it over the raw body, compares in constant time, and refuses a
timestamp too old (replays).

No server-side request forgery: a URL whose host is, or resolves to, a loopback, private, link-local,
multicast, reserved or unspecified address is refused, when created and again before every delivery
(DNS may change); redirects are never followed. WEBHOOKS_ALLOW_PRIVATE=true lifts this, for tests only.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

import urllib3
from nameko.extensions import DependencyProvider

from crm_gateway.pooled import PooledStore
from crm_gateway.subscribers.registry import SCHEMA
from crm_runtime import config

SIGNATURE_HEADER = "CRM-Signature"

log = logging.getLogger(__name__)


def create_tables(cur: Any) -> None:
    """Migration (part of crm.migrations:gateway): subscriptions and their delivery log."""
    cur.execute(
        """
        CREATE TABLE IF NOT EXISTS webhooks (
            id              uuid        PRIMARY KEY,
            url             text        NOT NULL,
            types           jsonb       NOT NULL,
            secret          text        NOT NULL,
            status          text        NOT NULL DEFAULT 'active',
            positions       jsonb       NOT NULL DEFAULT '{}',
            failures        integer     NOT NULL DEFAULT 0,
            next_attempt_at timestamptz NOT NULL DEFAULT now(),
            last_error      text,
            created_at      timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    cur.execute(
        """
        CREATE TABLE IF NOT EXISTS webhook_deliveries (
            id         bigserial   PRIMARY KEY,
            webhook_id uuid        NOT NULL REFERENCES webhooks (id) ON DELETE CASCADE,
            event_id   uuid        NOT NULL,
            type       text        NOT NULL,
            origin     text        NOT NULL,
            position   bigint      NOT NULL,
            attempt    integer     NOT NULL,
            status     integer,
            error      text,
            at         timestamptz NOT NULL DEFAULT now()
        )
        """
    )
    cur.execute("CREATE INDEX IF NOT EXISTS webhook_deliveries_by_webhook ON webhook_deliveries (webhook_id, id)")


# --- signing --------------------------------------------------------------------------------------

def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The CRM-Signature header value of `body` sent at `timestamp`."""
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={digest}"


def verify(secret: str, header: str, body: bytes, tolerance: float = 300, now: float | None = None) -> bool:
    """Whether `header` signs `body` with `secret` within `tolerance` seconds (what a receiver does)."""
    try:
        parts = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(parts["t"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, timestamp, body), f"t={timestamp},v1={parts.get('v1', '')}")


# --- no server-side request forgery ---------------------------------------------------------------

class RefusedUrlError(ValueError):
    """A webhook URL the gateway will not call."""


def resolve_host(host: str) -> list[str]:
    """Every address `host` resolves to."""
    return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, None)})


def private_allowed() -> bool:
    return config.setting("WEBHOOKS_ALLOW_PRIVATE", "false").lower() == "true"


#: Host names that never name a public server.
LOCAL_NAMES = ("localhost", ".localhost", ".local", ".internal", ".localdomain", ".home.arpa")


def check_url(url: str, resolve: Callable[[str], list[str]] | None = resolve_host) -> None:
    """Refuse a URL that is not http(s) or whose host is, or resolves to, an address not on the internet.

    With `resolve=None` (when a subscription is created) only what the URL itself says is checked: a name
    that does not resolve yet is no reason to refuse; every delivery resolves it and checks again."""
    parts = urlsplit(url)
    try:
        host, _ = parts.hostname, parts.port  # a port out of range raises here
    except ValueError as exc:
        raise RefusedUrlError(f"is not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not host:
        raise RefusedUrlError("must be an http or https URL with a host")
    if parts.username or parts.password:
        raise RefusedUrlError("must not carry credentials (sign with the secret instead)")
    if private_allowed():
        return
    if host == LOCAL_NAMES[0] or host.endswith(LOCAL_NAMES[1:]):
        raise RefusedUrlError(f"its host {host} is not a public name")
    try:
        host.encode("idna")
    except UnicodeError:
        raise RefusedUrlError("its host is not a valid host name") from None
    try:
        addresses = [str(ipaddress.ip_address(host))]
    except ValueError:
        if resolve is None:
            return
        try:
            addresses = resolve(host)
        except OSError as exc:
            raise RefusedUrlError(f"its host does not resolve: {exc}") from None
    for address in addresses:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        if not ip.is_global or ip.is_multicast:
            raise RefusedUrlError(f"its host is or resolves to {ip}, which is not a public address")




# --- subscriptions --------------------------------------------------------------------------------

@dataclass(frozen=True)
class Webhook:
    """One subscription as the store holds it."""

    id: str
    url: str
    types: list[str]
    secret: str
    status: str
    positions: dict[str, int]
    failures: int
    next_attempt_at: datetime
    last_error: str | None
    created_at: datetime

    def public(self) -> dict[str, Any]:
        """The subscription as the API shows it (never its secret)."""
        return {"id": self.id, "url": self.url, "types": self.types, "status": self.status,
                "failures": self.failures, "next_attempt_at": self.next_attempt_at.isoformat(),
                "last_error": self.last_error, "created_at": self.created_at.isoformat()}


_COLUMNS = "id::text, url, types, secret, status, positions, failures, next_attempt_at, last_error, created_at"


class WebhookNotFoundError(LookupError):
    """No webhook subscription with that id."""


class WebhookStore(PooledStore):
    """Subscriptions and the delivery log (tables `gateway.webhooks`, `gateway.webhook_deliveries`)."""

    def create(self, webhook_id: str, url: str, types: list[str], secret: str) -> Webhook:
        """A new active subscription from the beginning of history; the same id again answers the first."""
        with self._cursor() as cur:
            cur.execute("INSERT INTO webhooks (id, url, types, secret) VALUES (%s, %s, %s, %s)"
                        " ON CONFLICT (id) DO NOTHING", (webhook_id, url, json.dumps(types), secret))
        return self.get(webhook_id)

    def get(self, webhook_id: str) -> Webhook:
        with self._cursor() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM webhooks WHERE id = %s", (webhook_id,))
            row = cur.fetchone()
        if row is None:
            raise WebhookNotFoundError(webhook_id)
        return Webhook(*row)

    def all(self) -> list[Webhook]:
        with self._cursor() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM webhooks ORDER BY created_at, id")
            return [Webhook(*row) for row in cur.fetchall()]

    def due(self) -> list[Webhook]:
        """Active subscriptions whose next attempt has come."""
        with self._cursor() as cur:
            cur.execute(f"SELECT {_COLUMNS} FROM webhooks WHERE status = 'active' AND next_attempt_at <= now()"
                        " ORDER BY next_attempt_at")
            return [Webhook(*row) for row in cur.fetchall()]

    def delete(self, webhook_id: str) -> None:
        with self._cursor() as cur:
            cur.execute("DELETE FROM webhooks WHERE id = %s", (webhook_id,))
            if cur.rowcount == 0:
                raise WebhookNotFoundError(webhook_id)

    def resume(self, webhook_id: str) -> Webhook:
        """Active again, at once, from the last event delivered."""
        with self._cursor() as cur:
            cur.execute("UPDATE webhooks SET status = 'active', failures = 0, next_attempt_at = now()"
                        " WHERE id = %s", (webhook_id,))
            if cur.rowcount == 0:
                raise WebhookNotFoundError(webhook_id)
        return self.get(webhook_id)

    def delivered(self, webhook: Webhook, envelope: dict[str, Any], status: int) -> None:
        """Log a delivery and move the subscription past its event, in one transaction."""
        with self._cursor() as cur:
            self._log(cur, webhook, envelope, status, None)
            cur.execute("UPDATE webhooks SET positions = positions || %s::jsonb, failures = 0, last_error = NULL"
                        " WHERE id = %s", (json.dumps({envelope["origin"]: envelope["position"]}), webhook.id))

    def failed(self, webhook: Webhook, envelope: dict[str, Any], status: int | None, error: str,
               max_failures: int, backoff_max: float) -> None:
        """Log a failed attempt; retry after back-off, or pause after `max_failures` in a row."""
        failures = webhook.failures + 1
        delay = min(2.0 ** (failures - 1), backoff_max)
        with self._cursor() as cur:
            self._log(cur, webhook, envelope, status, error)
            cur.execute("UPDATE webhooks SET failures = %s, last_error = %s,"
                        " next_attempt_at = now() + %s * interval '1 second',"
                        " status = CASE WHEN %s >= %s THEN 'paused' ELSE status END WHERE id = %s",
                        (failures, error[:500], delay, failures, max_failures, webhook.id))

    def moved(self, webhook: Webhook, positions: dict[str, int]) -> None:
        """Move past events that match no type of the subscription (nothing to deliver up to there)."""
        with self._cursor() as cur:
            cur.execute("UPDATE webhooks SET positions = positions || %s::jsonb WHERE id = %s",
                        (json.dumps(positions), webhook.id))

    def deliveries(self, webhook_id: str, limit: int = 100) -> list[dict[str, Any]]:
        """The newest attempts first."""
        self.get(webhook_id)
        with self._cursor() as cur:
            cur.execute("SELECT event_id::text, type, origin, position, attempt, status, error, at"
                        " FROM webhook_deliveries WHERE webhook_id = %s ORDER BY id DESC LIMIT %s", (webhook_id, limit))
            names = ("event_id", "type", "origin", "position", "attempt", "status", "error", "at")
            return [{**dict(zip(names, row, strict=True)), "at": row[7].isoformat()} for row in cur.fetchall()]

    def _log(self, cur: Any, webhook: Webhook, envelope: dict[str, Any], status: int | None, error: str | None
             ) -> None:
        cur.execute("INSERT INTO webhook_deliveries (webhook_id, event_id, type, origin, position, attempt, status,"
                    " error) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    (webhook.id, envelope["event_id"], envelope["type"], envelope["origin"], envelope["position"],
                     webhook.failures + 1, status, error))


def webhook_id_for(command_id: str) -> str:
    """The subscription a creating command makes: its retry makes the same one."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"crm:webhook:{command_id}"))


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(24)


# --- delivering -----------------------------------------------------------------------------------

class Sender:
    """POSTs one signed envelope; answers (status or None, error or None)."""

    def __init__(self, timeout: float | None = None) -> None:
        self.timeout = timeout or float(config.setting("WEBHOOK_TIMEOUT", "5"))
        self._http = urllib3.PoolManager(retries=False, maxsize=4)

    def send(self, webhook: Webhook, envelope: dict[str, Any]) -> tuple[int | None, str | None]:
        try:
            check_url(webhook.url)
        except RefusedUrlError as exc:
            return None, f"refused: {exc}"
        body = json.dumps(envelope, separators=(",", ":"), sort_keys=True, default=str).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "crm-webhooks/1",
                   SIGNATURE_HEADER: signature(webhook.secret, int(time.time()), body),
                   "CRM-Event-Id": str(envelope["event_id"]),
                   "CRM-Event-Type": f"{envelope['origin']}.{envelope['type']}", "CRM-Webhook-Id": webhook.id}
        try:
            response = self._http.request("POST", webhook.url, body=body, headers=headers, redirect=False,
                                          timeout=urllib3.Timeout(connect=self.timeout, read=self.timeout))
        except urllib3.exceptions.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}"
        if 200 <= response.status < 300:
            return response.status, None
        return response.status, f"answered {response.status}"


def deliver_due(store: WebhookStore, sender: Sender, read_page: Callable[[list[str], dict[str, int], int], Any],
                batch: int = 100) -> int:
    """One round: each due subscription's next events, in order, until one fails. Answers how many were
    delivered. `read_page(types, positions, limit)` is the replay feed (crm_gateway.routes.events)."""
    from crm_gateway.routes.events import decode_cursor  # the feed's cursor, not a dependency of the store

    max_failures = int(config.setting("WEBHOOK_MAX_FAILURES", "8"))
    backoff_max = float(config.setting("WEBHOOK_BACKOFF_MAX", "300"))
    delivered = 0
    for webhook in store.due():
        try:
            page = read_page(webhook.types, webhook.positions, batch)
        except Exception as exc:  # noqa: BLE001 - an origin that does not answer delays its subscribers only
            log.warning("webhook %s: its events cannot be read now (%s); tried again at the next round",
                        webhook.id, exc)
            continue
        for envelope in page["events"]:
            status, error = sender.send(webhook, envelope)
            if error is not None:
                store.failed(webhook, envelope, status, error, max_failures, backoff_max)
                break
            store.delivered(webhook, envelope, status or 200)
            webhook = store.get(webhook.id)
            delivered += 1
        else:
            store.moved(webhook, decode_cursor(page["next"]))  # past what matched nothing, too
    return delivered


class Webhooks(DependencyProvider):
    """Injects the webhook store (and the sender the delivery timer uses)."""

    def __init__(self) -> None:
        self.store: WebhookStore | None = None
        self.sender: Sender | None = None

    def setup(self) -> None:
        self.store = WebhookStore(config.postgres_dsn(SCHEMA), int(config.setting("SUBSCRIBERS_POOL_SIZE", "4")))
        self.sender = Sender()

    def stop(self) -> None:
        if self.store is not None:
            self.store.close()

    def get_dependency(self, worker_ctx: Any) -> Webhooks:
        return self
