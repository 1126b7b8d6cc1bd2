"""The outbox relay: publishes a service's notification log to RabbitMQ, at least once.

One relay per service is active at a time: it holds a PostgreSQL advisory lock; replicas wait for it.
It reads the log after its stored cursor, translates each event through the service's publishing.py
(via EventFeed), publishes a batch to the topic exchange `crm.events` as persistent, `mandatory`
messages with publisher confirms, and moves the cursor only once every message of the batch is
confirmed. A crash between publish and cursor update re-publishes the same envelopes (same event ids):
consumers drop them as duplicates. It wakes on the event store's NOTIFY after each commit and polls
as a backstop.

It relies on notification ids committing in order (the event store's locking insert, see
crm_runtime.eventstore): it never waits for a lower id to appear once it has read past it.

Nothing stops it for good. A poison event (one the feed cannot translate) is skipped by the feed and
parked here; a message the broker keeps refusing is parked after retries (see `OutboxRelay`); any
other failure (database, broker, a bug) is logged, backed off from, and retried: the relay thread
never dies while its service runs.
"""

from __future__ import annotations

import json
import logging
import select
import threading
import time
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import amqp
import kombu
import psycopg2
from psycopg2 import sql

from crm_contracts.envelope import EXCHANGE, routing_key
from crm_runtime import config, metrics, tracing
from crm_runtime.feed import EventFeed, Unpublishable

log = logging.getLogger(__name__)

CURSOR_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.outbox_cursor (
    origin text PRIMARY KEY,
    scanned_to bigint NOT NULL DEFAULT 0,
    last_published bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
)
"""

#: Events the relay moved past without publishing them: an operator's list (see OutboxRelay).
PARKED_TABLE_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.outbox_parked (
    position bigint PRIMARY KEY,
    topic text NOT NULL,
    reason text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now()
)
"""

#: A batch the broker refuses this many times in a row is published one message at a time.
MAX_REFUSALS = 3


class PublishError(Exception):
    """The broker did not confirm a batch: nothing moves, the batch is published again.

    `refused` says the broker answered and said no (a nack, a channel or protocol error caused by
    what was sent), rather than the connection failing or going quiet: only a refusal can be the
    fault of one message.
    """

    def __init__(self, message: str, *, refused: bool = False) -> None:
        super().__init__(message)
        self.refused = refused


@dataclass
class RelayStats:
    """What the relay has done since it started (exposed by health and metrics)."""

    is_leader: bool = False
    published: int = 0
    batches: int = 0
    unroutable: int = 0
    #: Events moved past without being published (untranslatable, or refused by the broker).
    parked: int = 0
    #: Failures of the loop (database, broker, bugs), each followed by a back-off and a retry.
    errors: int = 0
    last_error: str | None = None
    position: int = 0


class ConfirmingPublisher:
    """Publishes batches of envelopes and waits until the broker confirms each one of them.

    Confirms are tracked per delivery tag: RabbitMQ may confirm out of order, one ack or nack may
    cover every outstanding tag up to its own (`multiple`), and a nack may arrive after later tags
    were acked. A batch succeeds only when every one of its own tags was acked.
    """

    def __init__(self, amqp_uri: str, confirm_timeout: float = 30.0, heartbeat: float | None = None) -> None:
        self.amqp_uri = amqp_uri
        self.confirm_timeout = confirm_timeout
        #: AMQP heartbeat in seconds, as nameko's own connections use (serve.py): a half-open
        #: connection is noticed instead of waited on forever.
        self.heartbeat = float(config.setting("AMQP_HEARTBEAT", "60")) if heartbeat is None else heartbeat
        self.connection: kombu.Connection | None = None
        self.channel: Any = None
        self._next_tag = 0
        self._outstanding: set[int] = set()
        self._nacked: set[int] = set()
        self.returned: list[str] = []

    def _connect(self) -> None:
        self.connection = kombu.Connection(self.amqp_uri, heartbeat=self.heartbeat)
        self.connection.connect()
        self.channel = self.connection.channel()
        self.channel.exchange_declare(EXCHANGE, "topic", durable=True, auto_delete=False)
        self.channel.confirm_select()
        self.channel.events["basic_ack"].add(self._on_ack)
        self.channel.events["basic_nack"].add(self._on_nack)
        self.channel.events["basic_return"].add(self._on_return)
        log.info("outbox relay connected to the broker")
        self._next_tag = 0
        self._outstanding.clear()
        self._nacked.clear()

    def _settled(self, delivery_tag: int, multiple: bool) -> set[int]:
        """The outstanding tags one confirm settles, taken off the outstanding set."""
        if multiple:
            tags = {tag for tag in self._outstanding if tag <= delivery_tag}
        else:
            tags = {delivery_tag} & self._outstanding
        self._outstanding -= tags
        return tags

    def _on_ack(self, delivery_tag: int, multiple: bool) -> None:
        self._settled(delivery_tag, multiple)

    def _on_nack(self, delivery_tag: int, multiple: bool) -> None:
        self._nacked |= self._settled(delivery_tag, multiple)

    def _on_return(self, exc: Any, exchange: str, key: str, message: Any) -> None:
        # No queue is bound for this key: nobody subscribes yet. The event stays in the feed, where a
        # consumer that appears later pulls it (gap repair), so this is counted, not retried.
        self.returned.append(key)

    def publish(self, envelopes: list[dict[str, Any]]) -> None:
        """Publish every envelope, then wait until the broker has confirmed each of them."""
        keys = [routing_key(envelope["origin"], envelope["type"]) for envelope in envelopes]
        spans = tracing.publish_spans(EXCHANGE, keys, envelopes)  # [] when tracing is off
        try:
            self._publish(envelopes, keys, spans)
        except BaseException as exc:
            for span in spans:
                tracing.end_span(span, exc)
            raise
        for span in spans:
            tracing.end_span(span)

    def _publish(self, envelopes: list[dict[str, Any]], keys: list[str], spans: list[Any]) -> None:
        try:
            if self.connection is None:
                self._connect()
            tags = set()
            for index, envelope in enumerate(envelopes):
                self._next_tag += 1
                tags.add(self._next_tag)
                self._outstanding.add(self._next_tag)
                self.channel.basic_publish(
                    self._message(envelope, tracing.traceparent_of(spans[index]) if spans and spans[index] else None),
                    exchange=EXCHANGE,
                    routing_key=keys[index],
                    mandatory=True,
                )
            started = time.monotonic()
            self._await_confirms(tags)
            metrics.observe_confirm(envelopes[0]["origin"], started)
        except amqp.exceptions.ChannelError as exc:
            self.drop()  # the broker closed the channel over what was sent
            raise PublishError(f"the broker refused a message for {EXCHANGE}: {exc}", refused=True) from exc
        except amqp.exceptions.IrrecoverableConnectionError as exc:
            self.drop()  # a protocol error over what was sent (a frame too large, say)
            raise PublishError(f"the broker refused a message for {EXCHANGE}: {exc}", refused=True) from exc
        except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as exc:
            self.drop()
            raise PublishError(f"publishing to {EXCHANGE} failed: {exc}") from exc
        except PublishError:
            self.drop()  # unconfirmed for too long: the connection may be half-open
            raise
        nacked = tags & self._nacked
        if nacked:
            self._nacked -= nacked
            raise PublishError(f"the broker refused (nacked) {len(nacked)} message(s) of the batch", refused=True)

    def _await_confirms(self, tags: set[int]) -> None:
        """Read from the broker until none of `tags` is outstanding; PublishError after the timeout."""
        deadline = time.monotonic() + self.confirm_timeout
        while tags & self._outstanding:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise PublishError(
                    f"the broker left {len(tags & self._outstanding)} message(s) unconfirmed "
                    f"for {self.confirm_timeout}s"
                )
            try:
                self.connection.drain_events(timeout=min(remaining, 1.0))  # type: ignore[union-attr]
            except TimeoutError:
                continue

    def keep_alive(self) -> None:
        """While idle: read the broker's heartbeats and send ours; drop a connection found dead.

        py-amqp counts a heartbeat as received only when it reads the socket, so an idle publisher
        must read (a zero-timeout drain) as well as call `heartbeat_check`. Called often (at least
        twice per heartbeat interval).
        """
        if self.connection is None:
            return
        try:
            self.connection.heartbeat_check()
            try:
                self.connection.drain_events(timeout=0)
            except TimeoutError:
                pass
        except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError) as exc:
            log.warning("the relay's broker connection is dead (%s); reconnecting on the next publish", exc)
            self.drop()

    @staticmethod
    def _message(envelope: dict[str, Any], traceparent: str | None = None) -> amqp.Message:
        """The message of one envelope. `traceparent`: the publish span's context, a header beside the
        envelope (whose own `traceparent`, stored with the event, stays the command's)."""
        headers: dict[str, Any] = {"origin": envelope["origin"], "position": envelope["position"]}
        if traceparent is not None:
            headers[tracing.TRACEPARENT] = traceparent
        return amqp.Message(
            json.dumps(envelope, separators=(",", ":")),
            content_type="application/json",
            delivery_mode=2,
            message_id=envelope["event_id"],
            correlation_id=envelope["correlation_id"] or "",
            type=envelope["type"],
            application_headers=headers,
        )

    def close(self) -> None:
        """Close the connection politely (the broker answers a close)."""
        if self.connection is not None:
            try:
                self.connection.close()
            except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError):
                pass
        self._forget()

    def drop(self) -> None:
        """Abandon a connection that failed: close its socket without a handshake, which a half-open
        connection would never answer."""
        if self.connection is not None:
            try:
                self.connection.collect()
            except (OSError, amqp.exceptions.AMQPError, kombu.exceptions.KombuError):
                pass
        self._forget()

    def _forget(self) -> None:
        self.connection = None
        self.channel = None
        self._outstanding.clear()
        self._nacked.clear()


class OutboxRelay:
    """Moves one service's events from its notification log to the broker.

    Two kinds of event are moved past without being published, each recorded in
    `<schema>.outbox_parked`, logged as an error and counted in `stats.parked`:

    - untranslatable (the feed cannot decode or translate it): the feed skips it, for the relay and
      for `events_since` alike, so the `previous` chain skips it too and no consumer waits for it;
    - refused by the broker: when a batch is refused MAX_REFUSALS times in a row (a nack, or a
      channel or protocol error), its messages are published one by one and each one still refused
      is parked. That event stays in the feed, so the next published event names it as `previous`:
      a consumer sees the gap and pulls it with `events_since`, so it still arrives exactly once.
      If every message of a larger batch is refused, the fault is the broker's, not a message's:
      nothing is parked and the batch is retried.

    Any other failure is retried with a growing back-off (capped at `max_backoff` seconds); the
    leadership is given up meanwhile, so a healthy replica may take over.
    """

    def __init__(
        self,
        feed: EventFeed,
        dsn: str,
        schema: str,
        amqp_uri: str,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 2.0,
    ) -> None:
        self.feed = feed
        self.dsn = dsn
        self.schema = schema
        self.origin = feed.origin
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.publisher = ConfirmingPublisher(amqp_uri)
        self.stats = RelayStats()
        self.lock_key = zlib.crc32(f"crm.outbox.{self.origin}".encode())
        self.channel_name = feed.app.recorder.channel_name if hasattr(feed.app.recorder, "channel_name") else None
        #: (position the refused batch starts after, refusals in a row)
        self._refusals = (-1, 0)
        #: The cursor as this leader last wrote it (None: read it from the table).
        self._leader_cursor: tuple[int, int] | None = None

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stopping: threading.Event) -> None:
        """Publish until `stopping` is set. Survives any error: logs it, backs off, re-elects, retries."""
        failures = 0
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
                self._leader_cursor = None  # read it afresh: a former leader may have moved it
                log.info("outbox relay for %s is the leader", self.origin)
                self._listen(conn)
                while not stopping.is_set():
                    moved = self.publish_pending(conn)
                    if failures:
                        log.info("outbox relay for %s publishes again after %d failures", self.origin, failures)
                    failures = 0
                    if not moved:
                        self.publisher.keep_alive()
                        self._wait_for_commit(conn, self._idle_wait())
            except Exception as exc:  # noqa: BLE001 - the relay must outlive any fault; logged, retried
                failures += 1
                delay = self._backoff(failures)
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox relay for %s failed (%d in a row), retrying in %.1fs", self.origin, failures,
                            delay, exc_info=not isinstance(exc, (psycopg2.OperationalError, PublishError)))
                self.stats.is_leader = False
                self._close(conn)  # gives up the leadership while backing off
                stopping.wait(delay)
            finally:
                self.stats.is_leader = False
                self._close(conn)
        self.publisher.close()

    def publish_pending(self, conn: Any) -> int:
        """Publish one batch after the cursor; return how many log entries it moved past."""
        scanned_to, last_published = self._leader_cursor or self._cursor(conn)
        page = self.feed.read(scanned_to, self.batch_size, previous=last_published)
        if page.scanned_to == scanned_to:
            return 0
        refused: list[tuple[dict[str, Any], str]] = []
        if page.envelopes:
            self.publisher.returned.clear()
            refused = self._publish(scanned_to, page.envelopes)
            self.stats.unroutable += len(self.publisher.returned)
        parked = [*page.unpublishable, *(Unpublishable(e["position"], e["type"], reason) for e, reason in refused)]
        self._park(conn, parked)
        with conn.cursor() as cur:
            cur.execute(
                sql.SQL(
                    "UPDATE {}.outbox_cursor SET scanned_to = %s, last_published = %s, updated_at = now() "
                    "WHERE origin = %s"
                ).format(sql.Identifier(self.schema)),
                (page.scanned_to, page.last_published, self.origin),
            )
        # Only the leader moves the cursor, and it leads until this session ends: no need to read it again.
        self._leader_cursor = (page.scanned_to, page.last_published)
        self.stats.published += len(page.envelopes) - len(refused)
        self.stats.batches += 1
        self.stats.position = page.scanned_to
        return page.scanned_to - scanned_to

    # -- helpers ---------------------------------------------------------------------------------

    def _publish(self, after: int, envelopes: list[dict[str, Any]]) -> list[tuple[dict[str, Any], str]]:
        """Publish a batch; once it was refused MAX_REFUSALS times, one by one. Returns the refused ones."""
        try:
            self.publisher.publish(envelopes)
            self._refusals = (-1, 0)
            return []
        except PublishError as exc:
            if not exc.refused:
                raise
            count = self._refusals[1] + 1 if self._refusals[0] == after else 1
            self._refusals = (after, count)
            if count < MAX_REFUSALS:
                raise  # run() backs off and publishes the same batch again
        self._refusals = (-1, 0)
        refused = []
        for envelope in envelopes:
            try:
                self.publisher.publish([envelope])
            except PublishError as exc:
                if not exc.refused:
                    raise
                refused.append((envelope, str(exc)))
        if len(envelopes) > 1 and len(refused) == len(envelopes):
            raise PublishError("the broker refuses every message of the batch: retrying, parking none")
        return refused

    def _park(self, conn: Any, parked: Iterable[Unpublishable]) -> None:
        """Record events moved past unpublished, where an operator sees them (idempotent)."""
        with conn.cursor() as cur:
            for item in parked:
                log.error("outbox relay for %s parks event %s (%s): %s", self.origin, item.position, item.topic,
                          item.reason)
                cur.execute(
                    sql.SQL(
                        "INSERT INTO {}.outbox_parked (position, topic, reason) VALUES (%s, %s, %s) "
                        "ON CONFLICT (position) DO NOTHING"
                    ).format(sql.Identifier(self.schema)),
                    (item.position, item.topic, item.reason),
                )
                self.stats.parked += 1

    def _backoff(self, failures: int) -> float:
        """Seconds to wait after `failures` failures in a row: doubling from a fraction of a second."""
        return float(min(self.max_backoff, 0.2 * 2 ** min(failures - 1, 10)))

    def _idle_wait(self) -> float:
        """How long to sleep when idle: the poll interval, short enough to keep AMQP heartbeats going."""
        heartbeat = self.publisher.heartbeat
        return min(self.poll_interval, heartbeat / 4) if heartbeat > 0 else self.poll_interval

    @staticmethod
    def _close(conn: Any) -> None:
        if conn is not None and not conn.closed:
            try:
                conn.close()
            except psycopg2.Error:
                pass

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
    """Migration: the relay's cursor table and its parked-events table in the service's schema."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL(CURSOR_TABLE_DDL).format(schema=sql.Identifier(schema)))
        cur.execute(sql.SQL(PARKED_TABLE_DDL).format(schema=sql.Identifier(schema)))
