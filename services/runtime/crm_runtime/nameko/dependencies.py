"""nameko DependencyProviders: the event-sourced application with its outbox relay, the inbox consumer
of a read model, and the policy consumer of a service's reactions. Each reports its health to the
Health provider."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import eventlet
import psycopg2
import psycopg2.pool
from nameko.exceptions import RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.standalone.rpc import ClusterRpcProxy

from crm_contracts.integration import Translator
from crm_runtime import config
from crm_runtime.consumer import EnvelopeConsumer
from crm_runtime.eventstore import CommandMetadata, ServiceApplication, use_metadata
from crm_runtime.feed import EventFeed
from crm_runtime.inbox import ApplyBatch, FeedUnavailableError, Inbox, Outcome, connection_usable
from crm_runtime.nameko.client import HttpTransport, service_urls
from crm_runtime.policy import Policies, PolicyInbox
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
                      "unroutable": stats.unroutable, "parked": stats.parked, "errors": stats.errors,
                      "last_error": stats.last_error},
        }


class InboxConsumer(DependencyProvider):
    """Consumes the service's queue into a read model through an Inbox (exactly-once, in order).

    Gaps are pulled from the origins' `events_since` (over HTTP where CRM_<ORIGIN>_URLS names the
    origin's addresses, else over RPC); every origin is also caught up at start and every
    CATCH_UP_INTERVAL seconds, so an event published before this queue existed is not lost.
    """

    def __init__(
        self, queue: str, bindings: list[str], origins: list[str], schema: str, apply_batch: ApplyBatch | None
    ) -> None:
        self.queue = queue
        self.bindings = bindings
        self.origins = origins
        self.schema = schema
        self.apply_batch = apply_batch
        self._stopping = threading.Event()
        self.consumer: EnvelopeConsumer | None = None
        self._proxy: Any = None
        self._feeds: dict[str, HttpTransport] = {}

    def make_inbox(self) -> Any:
        """The inbox this consumer applies envelopes through (built at start, once every provider is set up)."""
        assert self.apply_batch is not None
        return Inbox(config.postgres_dsn(self.schema), self.apply_batch, fetch=self.fetch)

    def start(self) -> None:
        self.consumer = EnvelopeConsumer(
            self.make_inbox(),
            self.container.config["AMQP_URI"],
            self.queue,
            self.bindings,
            queue_type=config.setting("QUEUE_TYPE", "classic"),
            batch_size=int(config.setting("INBOX_BATCH_SIZE", "500")),
            catch_up=self._catch_up,
            catch_up_interval=float(config.setting("CATCH_UP_INTERVAL", "30")),
            heartbeat=self.container.config.get("HEARTBEAT"),  # nameko's own (AMQP_HEARTBEAT), else that
        )
        self.container.spawn_managed_thread(self._consume, identifier="inbox")

    def _consume(self) -> None:
        # nameko kills the whole container when a managed thread raises: nothing may escape here.
        consumer = self.consumer
        assert consumer is not None  # built in setup()
        while not self._stopping.is_set():
            try:
                consumer.run(self._stopping)
            except Exception:  # noqa: BLE001 - run() should not raise; if it does, consume again
                log.exception("the inbox consumer of %s stopped unexpectedly; restarting it", self.queue)
                self._stopping.wait(5.0)
        # The RPC client belongs to this green thread: closed here, never from stop(), which
        # runs in another green thread and could interrupt a pull in flight.
        self._close_proxy()

    def stop(self) -> None:
        self._stopping.set()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> EnvelopeConsumer:
        return self.consumer  # type: ignore[return-value]

    def fetch(self, origin: str, position: int, limit: int) -> list[dict[str, Any]]:
        urls = service_urls(origin)
        if urls:
            feed = self._feeds.get(origin) or self._feeds.setdefault(origin, HttpTransport(origin, urls))
            return feed.call("events_since", (position, limit), {}, {}, timeout=30.0)  # type: ignore[no-any-return]
        if any(service_urls(other) for other in self.origins):
            # Services are addressed over HTTP here, and this one has no address: it is not deployed.
            raise FeedUnavailableError(f"{origin} has no address (CRM_{origin.upper()}_URLS): not deployed here")
        if self._proxy is None:
            self._proxy_runner = ClusterRpcProxy(self.container.config, timeout=30)
            self._proxy = self._proxy_runner.start()
        try:
            return getattr(self._proxy, origin).events_since(position, limit)  # type: ignore[no-any-return]
        except (RemoteError, UnknownService):
            raise  # the origin answered (or is not running): the client itself is fine
        except Exception:
            # After a broker outage the client's reply queue is gone for good: start a new one next time.
            self._close_proxy()
            raise

    def _close_proxy(self) -> None:
        if self._proxy is None:
            return
        self._proxy = None
        try:
            # A polite close on a dead connection can wait forever: give it a few seconds, then drop it.
            with eventlet.Timeout(5):
                self._proxy_runner.stop()
        except (Exception, eventlet.Timeout) as exc:  # noqa: BLE001 - a client on a dead connection may not close
            log.warning("closing the inbox's RPC client failed (dropped): %r", exc)

    def _catch_up(self, inbox: Inbox) -> list[Outcome]:
        outcomes = []
        for origin in self.origins:
            try:
                outcome = inbox.catch_up(origin)
            except FeedUnavailableError as exc:
                log.debug("catch-up of %s skipped: %s", origin, exc, extra={"origin": origin})
                continue
            except Exception as exc:  # noqa: BLE001 - a database fault or a bug only delays this origin
                log.warning("catch-up of %s failed: %s", origin, exc, extra={"origin": origin})
                continue
            outcomes.append(outcome)
            if outcome.applied:
                log.info("caught up %d events from %s", outcome.applied, origin, extra={"origin": origin})
        return outcomes

    def health_check(self) -> dict[str, Any]:
        if self.consumer is None:
            return {"ok": False, "inbox": {"connected": False, "started": False}}
        stats = self.consumer.stats
        # Parked events do not make the process unready (it is working, the rest flows on); they are
        # reported here, in the dead-letter queue and in the log for an operator.
        return {
            "ok": stats.connected,
            "inbox": {"connected": stats.connected, "received": stats.received, "applied": stats.applied,
                      "duplicates": stats.duplicates, "pulled": stats.pulled,
                      "dead_lettered": stats.dead_lettered, "parked": stats.parked,
                      "last_error": stats.last_error},
        }


class PolicyConsumer(InboxConsumer):
    """Consumes the service's queue (`<service>.events`) into its own commands through its policies.

    Each reaction's save carries the tracked position of the event it reacts to, in one transaction
    (crm_runtime.policy), in the event store of the service's EventSourcedApplication.
    """

    def __init__(self, policies: Policies) -> None:
        super().__init__(policies.queue, policies.bindings, policies.origins, schema="", apply_batch=None)
        self.policies = policies

    def make_inbox(self) -> PolicyInbox:
        found = [d for d in self.container.dependencies if isinstance(d, EventSourcedApplication)]
        if len(found) != 1 or found[0].app is None:
            raise RuntimeError(f"{self.container.service_name}: a PolicyConsumer needs one EventSourcedApplication")
        return PolicyInbox(found[0].app, self.policies, fetch=self.fetch)


class LazyCursor:
    """A worker's cursor that takes its connection from the pool on first use (see PostgresCursor)."""

    def __init__(self, checkout: Callable[[], Any]) -> None:
        self._checkout = checkout
        self.conn: Any = None
        self._cursor: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._cursor is None:
            self.conn = self._checkout()
            self._cursor = self.conn.cursor()
        return getattr(self._cursor, name)


class KeepingPool(psycopg2.pool.ThreadedConnectionPool):
    """psycopg2's thread-safe pool, keeping every connection it opened for the next caller.

    psycopg2 closes a returned connection when `minconn` are already idle, so a pool of (1, n) opens
    and closes a connection for almost every concurrent call (a new PostgreSQL backend each time: most
    of a read's cost). This one opens one at start, more only as concurrency asks, and keeps them.
    """

    def __init__(self, size: int, dsn: str) -> None:
        super().__init__(1, size, dsn)
        self.minconn = size  # read by psycopg2's putconn only: keep up to `size` idle connections


class PostgresCursor(DependencyProvider):
    """A psycopg2 cursor per worker on `schema`, from a pool, for reads; committed when the worker succeeds.

    nameko kills the whole container (RPC included) when get_dependency or worker_result raises, so
    neither does: the connection is taken when the worker first uses the cursor (a database that is
    down fails that call, not the process); a connection the server closed (a restart) is discarded
    instead of handed out; a connection whose commit or rollback fails is discarded; and the worker's
    slot is always given back.

    With `autocommit`, each statement is its own transaction: for workers that only read (one round trip
    per query instead of BEGIN, query, COMMIT); never for a worker that writes.
    """

    def __init__(self, schema: str, autocommit: bool = False) -> None:
        self.schema = schema
        self.autocommit = autocommit
        self.pool: Any = None
        self.size = 0
        self._held: dict[Any, LazyCursor] = {}

    def setup(self) -> None:
        self.size = int(config.setting("READ_POOL_SIZE", "10"))
        self.pool = KeepingPool(self.size, config.postgres_dsn(self.schema))
        # psycopg2's pool raises when empty; workers (up to MAX_WORKERS) wait for a connection instead.
        self._available = threading.BoundedSemaphore(self.size)

    def stop(self) -> None:
        if self.pool is not None:
            self.pool.closeall()

    def get_dependency(self, worker_ctx: Any) -> LazyCursor:
        cursor = LazyCursor(self._checkout)
        self._held[worker_ctx] = cursor
        return cursor

    def worker_result(self, worker_ctx: Any, result: Any = None, exc_info: Any = None) -> None:
        cursor = self._held.pop(worker_ctx, None)
        if cursor is None or cursor.conn is None:
            return  # the worker never used the database
        conn, healthy = cursor.conn, False
        try:
            if exc_info is None:
                conn.commit()
            else:
                conn.rollback()
            healthy = True
        except Exception as exc:  # noqa: BLE001 - a dead connection is discarded, never raised into nameko
            log.warning("discarding a database connection of %s: %s", self.schema, exc)
        finally:
            self._checkin(conn, healthy)

    def _checkout(self) -> Any:
        """A usable pooled connection, holding one slot; the slot is given back if none can be had."""
        self._available.acquire()
        try:
            return self._usable_connection()
        except BaseException:
            self._available.release()
            raise

    def _usable_connection(self) -> Any:
        # After a restart every idle connection in the pool is dead: drop them until a live or new one.
        for _ in range(self.size + 1):
            conn = self.pool.getconn()
            if connection_usable(conn):
                if self.autocommit and not conn.autocommit:  # each provider has its own pool: set once
                    conn.autocommit = True
                return conn
            self.pool.putconn(conn, close=True)
        raise psycopg2.OperationalError(f"no usable connection to {self.schema}")

    def _checkin(self, conn: Any, healthy: bool) -> None:
        try:
            self.pool.putconn(conn, close=not healthy or conn.closed != 0)
        except Exception as exc:  # noqa: BLE001 - e.g. the pool closed at shutdown; the slot still goes back
            log.warning("returning a database connection of %s failed: %s", self.schema, exc)
        finally:
            self._available.release()

    def health_check(self) -> dict[str, Any]:
        try:
            conn = self._checkout()
        except Exception as exc:  # noqa: BLE001 - reported as not ready
            return {"ok": False, "database": f"error: {exc}"}
        healthy = False
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1")
            conn.rollback()
            healthy = True
            return {"ok": True, "database": "ok"}
        except Exception as exc:  # noqa: BLE001 - reported as not ready
            return {"ok": False, "database": f"error: {exc}"}
        finally:
            self._checkin(conn, healthy)


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
