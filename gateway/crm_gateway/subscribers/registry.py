"""The gateway's registry of subscribers (table `gateway.subscribers`): who exists, what it is bound to,
and the id of its one current API token. A subscriber token is valid only while its id is the current
one: `rotate` replaces the id, `remove` deletes the row, and either revokes the old token at once."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg2
import psycopg2.errors
import psycopg2.pool
from nameko.extensions import DependencyProvider

from crm_gateway import auth
from crm_gateway.pooled import PooledStore
from crm_runtime import config

SCHEMA = "gateway"


def create_tables(cur: Any) -> None:
    """Migration (part of crm.migrations:gateway): the subscribers table, in the cursor's schema."""
    cur.execute(
        """
        CREATE TABLE IF NOT EXISTS subscribers (
            name       text        PRIMARY KEY,
            token_id   text        NOT NULL,
            bindings   jsonb       NOT NULL,
            facts      boolean     NOT NULL DEFAULT false,
            vhost      text        NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            rotated_at timestamptz
        )
        """
    )


class SubscriberExistsError(Exception):
    """A subscriber of that name exists already."""


class SubscriberNotFoundError(Exception):
    """No subscriber of that name."""


@dataclass(frozen=True)
class Subscriber:
    """One subscriber as the registry knows it (never its secrets: those are shown once, then only hashed
    by RabbitMQ, and the token is known by its id alone)."""

    name: str
    token_id: str
    bindings: list[str]
    facts: bool
    vhost: str
    created_at: datetime
    rotated_at: datetime | None


def new_token_id() -> str:
    return uuid.uuid4().hex


class SubscriberStore(PooledStore):
    """The subscribers table."""

    def add(self, name: str, bindings: list[str], facts: bool, vhost: str) -> Subscriber:
        """Register a new subscriber with a fresh token id; SubscriberExistsError if the name is taken."""
        try:
            with self._cursor() as cur:
                cur.execute(
                    "INSERT INTO subscribers (name, token_id, bindings, facts, vhost) VALUES (%s, %s, %s, %s, %s)"
                    " RETURNING name, token_id, bindings, facts, vhost, created_at, rotated_at",
                    (name, new_token_id(), json.dumps(bindings), facts, vhost),
                )
                return Subscriber(*cur.fetchone())
        except psycopg2.errors.UniqueViolation:
            raise SubscriberExistsError(name) from None

    def get(self, name: str) -> Subscriber:
        with self._cursor() as cur:
            cur.execute("SELECT name, token_id, bindings, facts, vhost, created_at, rotated_at FROM subscribers"
                        " WHERE name = %s", (name,))
            row = cur.fetchone()
        if row is None:
            raise SubscriberNotFoundError(name)
        return Subscriber(*row)

    def all(self) -> list[Subscriber]:
        with self._cursor() as cur:
            cur.execute("SELECT name, token_id, bindings, facts, vhost, created_at, rotated_at FROM subscribers"
                        " ORDER BY name")
            return [Subscriber(*row) for row in cur.fetchall()]

    def rotate(self, name: str) -> Subscriber:
        """Give the subscriber a new token id (its old token stops working at once)."""
        with self._cursor() as cur:
            cur.execute("UPDATE subscribers SET token_id = %s, rotated_at = now() WHERE name = %s"
                        " RETURNING name, token_id, bindings, facts, vhost, created_at, rotated_at",
                        (new_token_id(), name))
            row = cur.fetchone()
        if row is None:
            raise SubscriberNotFoundError(name)
        return Subscriber(*row)

    def remove(self, name: str) -> None:
        with self._cursor() as cur:
            cur.execute("DELETE FROM subscribers WHERE name = %s", (name,))

    def token_is_current(self, name: str, token_id: str) -> bool:
        with self._cursor() as cur:
            cur.execute("SELECT 1 FROM subscribers WHERE name = %s AND token_id = %s", (name, token_id))
            return cur.fetchone() is not None


def store_from_environment() -> SubscriberStore:
    """The registry in the gateway's schema of the configured database."""
    return SubscriberStore(config.postgres_dsn(SCHEMA), int(config.setting("SUBSCRIBERS_POOL_SIZE", "4")))


class SubscriberTokens(DependencyProvider):
    """Makes the gateway check every subscriber token's id against the registry (crm_gateway.auth); a
    database that does not answer makes such a request 503, never a pass."""

    def __init__(self) -> None:
        self.store: SubscriberStore | None = None

    def setup(self) -> None:
        self.store = store_from_environment()
        auth.use_token_check(self.store.token_is_current)

    def stop(self) -> None:
        auth.use_token_check(None)
        if self.store is not None:
            self.store.close()

    def get_dependency(self, worker_ctx: Any) -> SubscriberStore | None:
        return self.store
