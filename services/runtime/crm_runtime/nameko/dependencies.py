"""nameko DependencyProviders: the event-sourced application with its outbox relay, and the inbox
consumer of a read model. Each reports its health to the Health provider."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.pool
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy

from crm_contracts.integration import Translator
from crm_runtime import config
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.eventstore import CommandMetadata, ServiceApplication, use_metadata
from crm_runtime.feed import EventFeed
from crm_runtime.inbox import ApplyBatch, Inbox
from crm_runtime.relay import OutboxRelay

log = logging.getLogger(__name__)


def metadata_of(worker_ctx: Any) -> CommandMetadata:
    """The correlation id that came with the call (from the gateway) and what caused this command."""
    data = worker_ctx.data
    return CommandMetadata(
        correlation_id=data.get("correlation_id") or worker_ctx.call_id,
        causation_id=data.get("causation_id") or worker_ctx.call_id,
    )


class EventSourcedApplication(DependencyProvider):
    """Injects the service's eventsourcing application; runs its outbox relay beside it.

    The worker gets the application itself; `feed` serves `events_since` from the same translation
    the relay publishes with.
    """

    def __init__(self, app_class: type[ServiceApplication], translator: Translator) -> None:
        self.app_class = app_class
        self.translator = translator
        self.app: ServiceApplication | None = None
        self.feed: EventFeed | None = None
        self.relay: OutboxRelay | None = None
        self._stopping = threading.Event()

    def setup(self) -> None:
        self.app = self.app_class(create_table=False)
        self.feed = EventFeed(self.app, self.translator)
        self.relay = OutboxRelay(
            self.feed,
            dsn=config.postgres_dsn(),
            schema=self.app_class.service,
            amqp_uri=self.container.config["AMQP_URI"],
            batch_size=int(config.setting("RELAY_BATCH_SIZE", "500")),
            poll_interval=float(config.setting("RELAY_POLL_INTERVAL", "1.0")),
        )

    def start(self) -> None:
        if config.setting("RELAY_ENABLED", "true") == "true":
            relay = self.relay
            assert relay is not None  # built in setup()
            self.container.spawn_managed_thread(lambda: relay.run(self._stopping), identifier="outbox-relay")

    def stop(self) -> None:
        self._stopping.set()
        if self.app is not None:
            self.app.close()

    def kill(self) -> None:
        self.stop()

    def worker_setup(self, worker_ctx: Any) -> None:
        # Each worker runs in its own green thread with its own contextvars: the ids set here are
        # stamped on the events it saves and written in its log lines.
        use_metadata(metadata_of(worker_ctx))

    def get_dependency(self, worker_ctx: Any) -> ServiceApplication:
        return self.app  # type: ignore[return-value]

    def health_check(self) -> dict[str, Any]:
        try:
            head = self.feed.head()  # type: ignore[union-attr]
            database = "ok"
        except Exception as exc:  # noqa: BLE001 - reported as not ready
            head, database = None, f"error: {exc}"
        stats = self.relay.stats  # type: ignore[union-attr]
        return {
            "ok": database == "ok",
            "event_store": database,
            "log_head": head,
            "relay": {"leader": stats.is_leader, "published": stats.published, "position": stats.position,
                      "unroutable": stats.unroutable, "last_error": stats.last_error},
        }


class InboxConsumer(DependencyProvider):
    """Consumes the service's queue into a read model through an Inbox (exactly-once, in order).

    Gaps are pulled from the origins' `events_since` over RPC; every origin is also caught up at start
    and every CATCH_UP_INTERVAL seconds, so an event published before this queue existed is not lost.
    """

    def __init__(
        self, queue: str, bindings: list[str], origins: list[str], schema: str, apply_batch: ApplyBatch
    ) -> None:
        self.queue = queue
        self.bindings = bindings
        self.origins = origins
        self.schema = schema
        self.apply_batch = apply_batch
        self._stopping = threading.Event()
        self.consumer: EnvelopeConsumer | None = None
        self._proxy: Any = None

    def setup(self) -> None:
        inbox = Inbox(config.postgres_dsn(self.schema), self.apply_batch, fetch=self.fetch)
        self.consumer = EnvelopeConsumer(
            inbox,
            self.container.config["AMQP_URI"],
            self.queue,
            self.bindings,
            queue_type=config.setting("QUEUE_TYPE", "classic"),
            batch_size=int(config.setting("INBOX_BATCH_SIZE", "500")),
            catch_up=self._catch_up,
            catch_up_interval=float(config.setting("CATCH_UP_INTERVAL", "30")),
        )

    def start(self) -> None:
        self.container.spawn_managed_thread(self._consume, identifier="inbox")

    def _consume(self) -> None:
        try:
            self.consumer.run(self._stopping)  # type: ignore[union-attr]
        finally:
            # The RPC client belongs to this green thread: closed here, never from stop(), which
            # runs in another green thread and could interrupt a pull in flight.
            if self._proxy is not None:
                self._proxy = None
                self._proxy_runner.stop()

    def stop(self) -> None:
        self._stopping.set()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> EnvelopeConsumer:
        return self.consumer  # type: ignore[return-value]

    def fetch(self, origin: str, position: int, limit: int) -> list[dict[str, Any]]:
        if self._proxy is None:
            self._proxy_runner = ClusterRpcProxy(self.container.config, timeout=30)
            self._proxy = self._proxy_runner.start()
        return getattr(self._proxy, origin).events_since(position, limit)  # type: ignore[no-any-return]

    def _catch_up(self, inbox: Inbox) -> None:
        for origin in self.origins:
            try:
                outcome = inbox.catch_up(origin)
            except Exception as exc:  # noqa: BLE001 - an origin that is down only delays its events
                log.debug("catch-up of %s skipped: %s", origin, exc, extra={"origin": origin})
                continue
            if outcome.applied:
                log.info("caught up %d events from %s", outcome.applied, origin, extra={"origin": origin})

    def health_check(self) -> dict[str, Any]:
        stats = self.consumer.stats  # type: ignore[union-attr]
        return {
            "ok": stats.connected,
            "inbox": {"connected": stats.connected, "received": stats.received, "applied": stats.applied,
                      "duplicates": stats.duplicates, "pulled": stats.pulled,
                      "dead_lettered": stats.dead_lettered, "last_error": stats.last_error},
        }


class PostgresCursor(DependencyProvider):
    """A psycopg2 cursor per worker on `schema`, from a pool; committed when the worker succeeds."""

    def __init__(self, schema: str) -> None:
        self.schema = schema
        self.pool: Any = None
        self._held: dict[Any, Any] = {}

    def setup(self) -> None:
        size = int(config.setting("READ_POOL_SIZE", "10"))
        self.pool = psycopg2.pool.ThreadedConnectionPool(1, size, config.postgres_dsn(self.schema))
        # psycopg2's pool raises when empty; workers (up to MAX_WORKERS) wait for a connection instead.
        self._available = threading.BoundedSemaphore(size)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.closeall()

    def get_dependency(self, worker_ctx: Any) -> Any:
        self._available.acquire()
        conn = self.pool.getconn()
        self._held[worker_ctx] = conn
        return conn.cursor()

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        conn = self._held.pop(worker_ctx, None)
        if conn is None:
            return
        try:
            if exc_info is None:
                conn.commit()
            else:
                conn.rollback()
        finally:
            self.pool.putconn(conn, close=conn.closed != 0)
            self._available.release()

    def health_check(self) -> dict[str, Any]:
        try:
            with self._available:
                conn = self.pool.getconn()
                try:
                    with conn.cursor() as cur:
                        cur.execute("SELECT 1")
                    conn.rollback()
                finally:
                    self.pool.putconn(conn, close=conn.closed != 0)
            return {"ok": True, "database": "ok"}
        except psycopg2.Error as exc:
            return {"ok": False, "database": f"error: {exc}"}


class Health(DependencyProvider):
    """Collects `health_check()` from every other provider of the service."""

    def get_dependency(self, worker_ctx: Any) -> Callable[[], dict[str, Any]]:
        return self.report

    def report(self) -> dict[str, Any]:
        checks = {}
        for extension in self.container.dependencies:
            check = getattr(extension, "health_check", None)
            if check is not None and extension is not self:
                checks[extension.attr_name] = check()
        return {"service": self.container.service_name, "ready": all(c["ok"] for c in checks.values()),
                "checks": checks}
