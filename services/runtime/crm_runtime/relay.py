"""The outbox relay: publishes a service's notification log to RabbitMQ, at least once.

One relay per service is active at a time: it holds a PostgreSQL advisory lock; replicas wait for it.
It reads the log after its stored cursor, translates each event through the service's publishing.py
(via EventFeed), publishes a batch to the topic exchange `crm.events` as persistent, `mandatory`
messages with publisher confirms, and moves the cursor only once every message of the batch is
confirmed. A crash between publish and cursor update re-publishes the same envelopes (same event ids):
consumers drop them as duplicates. It wakes on the event store's NOTIFY after each commit and polls
as a backstop.
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
import zlib
from dataclasses import dataclass
from typing import Any

import amqp
import kombu
import psycopg2
from psycopg2 import sql

from crm_contracts.envelope import EXCHANGE, routing_key
from crm_runtime.feed import EventFeed

log = logging.getLogger(__name__)

CURSOR_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.outbox_cursor (
    origin text PRIMARY KEY,
    scanned_to bigint NOT NULL DEFAULT 0,
    last_published bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""


class PublishError(Exception):
    """The broker did not confirm a batch: nothing moves, the batch is published again."""


@dataclass
class RelayStats:
    """What the relay has done since it started (exposed by health and metrics)."""

    is_leader: bool = False
    published: int = 0
    batches: int = 0
    unroutable: int = 0
    last_error: str | None = None
    position: int = 0


class ConfirmingPublisher:
    """Publishes batches of envelopes and waits until the broker confirms all of them."""

    def __init__(self, amqp_uri: str, confirm_timeout: float = 30.0) -> None:
        self.amqp_uri = amqp_uri
        self.confirm_timeout = confirm_timeout
        self.connection: kombu.Connection | None = None
        self.channel: Any = None
        self._next_tag = 0
        self._confirmed = 0
        self._nacked = False
        self.returned: list[str] = []

    def _connect(self) -> None:
        self.connection = kombu.Connection(self.amqp_uri, heartbeat=0)
        self.connection.connect()
        self.channel = self.connection.channel()
        self.channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.channel.events["basic_return"].add(self._on_return)
        self._next_tag = self._confirmed = 0

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._confirmed = max(self._confirmed, delivery_tag)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked = True

    def _on_return(self, exc: Any, exchange: str, key: str, message: Any) -> None:
        # No queue is bound for this key: nobody subscribes yet. The event stays in the feed, where a
        # consumer that appears later pulls it (gap repair), so this is counted, not retried.
        self.returned.append(key)

    def publish(self, envelopes: list[dict[str, Any]]) -> None:
        """Publish every envelope, then wait until the broker has confirmed them all."""
        try:
            if self.connection is None:
                self._connect()
            self._nacked = False
            for envelope in envelopes:
                self.channel.basic_publish(
                    self._message(envelope),
                    exchange=EXCHANGE,
                    routing_key=routing_key(envelope["origin"], envelope["type"]),
                    mandatory=True,
                )
                self._next_tag += 1
            deadline = time.monotonic() + self.confirm_timeout
            while self._confirmed < self._next_tag and not self._nacked:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise PublishError(f"the broker confirmed nothing within {self.confirm_timeout}s")
                try:
                    self.connection.drain_events(timeout=min(remaining, 1.0))  # type: ignore[union-attr]
                except TimeoutError:
                    continue
        except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as exc:
            self.close()
            raise PublishError(f"publishing to {EXCHANGE} failed: {exc}") from exc
        except PublishError:
            self.close()
            raise
        if self._nacked:
            self.close()
            raise PublishError("the broker refused (nacked) a message of the batch")

    @staticmethod
    def _message(envelope: dict[str, Any]) -> amqp.Message:
        return amqp.Message(
            json.dumps(envelope, separators=(",", ":")),
            content_type="application/json",
            delivery_mode=2,
            message_id=envelope["event_id"],
            correlation_id=envelope["correlation_id"] or "",
            type=envelope["type"],
            application_headers={"origin": envelope["origin"], "position": envelope["position"]},
        )

    def close(self) -> None:
        if self.connection is not None:
            try:
                self.connection.close()
            except (OSError, amqp.exceptions.AMQPError):
                pass
        self.connection = None
        self.channel = None


class OutboxRelay:
    """Moves one service's events from its notification log to the broker."""

    def __init__(
        self,
        feed: EventFeed,
        dsn: str,
        schema: str,
        amqp_uri: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
    ) -> None:
        self.feed = feed
        self.dsn = dsn
        self.schema = schema
        self.origin = feed.origin
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.publisher = ConfirmingPublisher(amqp_uri)
        self.stats = RelayStats()
        self.lock_key = zlib.crc32(f"crm.outbox.{self.origin}".encode())
        self.channel_name = feed.app.recorder.channel_name if hasattr(feed.app.recorder, "channel_name") else None

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stopping: threading.Event) -> None:
        """Publish until `stopping` is set; survive database and broker outages by retrying."""
        while not stopping.is_set():
            conn = None
            try:
                conn = psycopg2.connect(self.dsn)
                conn.autocommit = True
                if not self._acquire_leadership(conn):
                    conn.close()
                    stopping.wait(self.poll_interval)
                    continue
                self.stats.is_leader = True
                log.info("outbox relay for %s is the leader", self.origin)
                self._listen(conn)
                while not stopping.is_set():
                    moved = self.publish_pending(conn)
                    if not moved:
                        self._wait_for_commit(conn, self.poll_interval)
            except (psycopg2.Error, PublishError, OSError) as exc:
                self.stats.last_error = str(exc)
                log.warning("outbox relay for %s failed, retrying: %s", self.origin, exc)
                stopping.wait(self.poll_interval)
            finally:
                self.stats.is_leader = False
                if conn is not None and not conn.closed:
                    conn.close()
        self.publisher.close()

    def publish_pending(self, conn: Any) -> int:
        """Publish one batch after the cursor; return how many log entries it moved past."""
        scanned_to, last_published = self._cursor(conn)
        page = self.feed.read(scanned_to, self.batch_size, previous=last_published)
        if page.scanned_to == scanned_to:
            return 0
        if page.envelopes:
            self.publisher.returned.clear()
            self.publisher.publish(page.envelopes)
            self.stats.unroutable += len(self.publisher.returned)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {}.outbox_cursor SET scanned_to = %s, last_published = %s, updated_at = now() "
                    "WHERE origin = %s"
                ).format(sql.Identifier(self.schema)),
                (page.scanned_to, page.last_published, self.origin),
            )
        self.stats.published += len(page.envelopes)
        self.stats.batches += 1
        self.stats.position = page.scanned_to
        return page.scanned_to - scanned_to

    # -- helpers ---------------------------------------------------------------------------------

    def _acquire_leadership(self, conn: Any) -> bool:
        with conn.cursor() as cur:
            cur.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,))
            return bool(cur.fetchone()[0])

    def _listen(self, conn: Any) -> None:
        if self.channel_name:
            with conn.cursor() as cur:
                cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel_name)))

    def _wait_for_commit(self, conn: Any, timeout: float) -> None:
        """Sleep until the event store NOTIFYs a commit, or `timeout` passes."""
        if select.select([conn], [], [], timeout)[0]:
            conn.poll()
            conn.notifies.clear()

    def _cursor(self, conn: Any) -> tuple[int, int]:
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "INSERT INTO {}.outbox_cursor (origin) VALUES (%s) ON CONFLICT (origin) DO NOTHING"
                ).format(sql.Identifier(self.schema)),
                (self.origin,),
            )
            cur.execute(
                sql.SQL("SELECT scanned_to, last_published FROM {}.outbox_cursor WHERE origin = %s").format(
                    sql.Identifier(self.schema)
                ),
                (self.origin,),
            )
            row = cur.fetchone()
            return int(row[0]), int(row[1])


def create_cursor_table(conn: Any, schema: str) -> None:
    """Migration: the relay's cursor table in the service's schema."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL(CURSOR_TABLE_DDL).format(schema=sql.Identifier(schema)))
