"""`ForgetsDeadLetters`: a service purges its own dead letters of the customers it has erased.

Every service that mixes in crm_runtime.nameko.rights.CustomerRightsService has it; another service that
keeps an erasure ledger (crm_runtime.crypto) mixes it in itself, and a read model without a ledger names
its erased customers with its own query:

    class CustomerService(ForgetsDeadLetters, EventSourcedService): ...

    class Customer360Service(ForgetsDeadLetters, ServiceWithHealth):
        dead_letter_purge = DeadLetterPurge("SELECT customer_id FROM {schema}.customer_view "
                                            "WHERE doc->>'erased_at' IS NOT NULL")

A leader timer (DEAD_LETTER_PURGE_INTERVAL seconds, default 10; at start too) withholds the dead letters
parked in the service's schema that name a customer of its `erasure_ledger`, and drops such messages
from the dead-letter queues of its consumers (crm_runtime.admin.deadletters explains what is kept and
what not). Each service does it for its own: its role may read only its own schema and its
broker user only its own queues. Reliable without being told: a timer after each erasure, and again for
a dead letter parked later (another origin's event about the customer failing after the erasure);
idempotent, so a takeover by another replica or a repeated run changes nothing. The service's
`erasure_status` (crm_runtime.nameko.rights) purges once more before it answers "done", so an erasure
the gateway reports complete has no dead letter left that names the customer.

A run costs little when nothing changed: a count of the ledger, the parked rows of the read models (a
small table), one passive declare per dead-letter queue. A dead-letter queue is read again only when it
holds messages and either more persons were erased or the queue changed since this process last read
it; a policy's parked reactions (found by a scan of the service's event store, which has no index by
topic) are scanned when more persons were erased, and otherwise once every DEAD_LETTER_RESCAN_INTERVAL.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import kombu
import psycopg2
import psycopg2.errors
from nameko.extensions import DependencyProvider
from psycopg2 import sql

from crm_runtime import config
from crm_runtime.admin import deadletters
from crm_runtime.admin.positions import schemas
from crm_runtime.nameko.dependencies import InboxConsumer
from crm_runtime.nameko.leader import leader_timer

log = logging.getLogger(__name__)

#: Seconds between two purges of the dead letters of erased customers.
DEAD_LETTER_PURGE_INTERVAL = float(config.setting("DEAD_LETTER_PURGE_INTERVAL", "10"))
#: Seconds between two scans of the parked reactions when nobody was erased meanwhile (for a reaction
#: parked after the erasure of the customer it names).
DEAD_LETTER_RESCAN_INTERVAL = float(config.setting("DEAD_LETTER_RESCAN_INTERVAL", "3600"))
#: Seconds the purge waits for any one answer of the broker (a read, a write, a publisher confirm)
#: before it gives up this run: a broker that stops answering must not hold the leader timer, or an
#: `erasure_status` RPC worker, for ever.
DEAD_LETTER_BROKER_TIMEOUT = float(config.setting("DEAD_LETTER_BROKER_TIMEOUT", "10"))


@dataclass
class PurgeOutcome:
    """What one run did: parked dead letters withheld, queue messages dropped (by queue)."""

    withheld: list[str] = field(default_factory=list)
    dropped: dict[str, int] = field(default_factory=dict)


class DeadLetterPurge(DependencyProvider):
    """The purge of this service's dead letters: its schema (the service's name) and its consumers'
    dead-letter queues, found among the service's dependencies. `erased`: the query of the erased ids
    (crm_runtime.admin.deadletters.ledger_lookup), by default the service's erasure ledger; a read model
    without a ledger names its own (e.g. "SELECT customer_id FROM {schema}.customer_view WHERE ...")."""

    def __init__(self, erased: str = deadletters.LEDGER) -> None:
        self.erased = erased
        self.schema = ""
        self.queues: list[str] = []
        self.amqp_uri = ""
        self.dsn = ""
        #: Per queue: (erased persons, messages left) after this process last read it.
        self._seen: dict[str, tuple[int, int]] = {}
        #: Erased persons when this process last scanned the parked reactions, and when to scan again anyway.
        self._erased_scanned = -1
        self._rescan_at = 0.0

    def setup(self) -> None:
        self.schema = self.container.service_name
        self.amqp_uri = self.container.config["AMQP_URI"]
        self.dsn = config.postgres_dsn()
        self.queues = sorted({d.queue + deadletters.DEAD_LETTER_QUEUE_SUFFIX for d in self.container.dependencies
                              if isinstance(d, InboxConsumer)})

    def get_dependency(self, worker_ctx: Any) -> DeadLetterPurge:
        return self

    def run(self) -> PurgeOutcome:
        outcome = PurgeOutcome()
        conn = psycopg2.connect(self.dsn, connect_timeout=5)
        try:
            with conn, conn.cursor() as cur:
                erased_count = self._erased_count(cur)
                if not erased_count:
                    return outcome  # nobody erased here: nothing can name one
                # Parked reactions are found by a scan of the event store: only when someone was erased
                # since this process last looked, or once every DEAD_LETTER_RESCAN_INTERVAL.
                rescan = erased_count != self._erased_scanned or time.monotonic() >= self._rescan_at
                erased_among = deadletters.ledger_lookup(cur, self.schema, self.erased)
                for schema in schemas(cur):
                    if schema.name == self.schema:
                        outcome.withheld = deadletters.purge_parked(cur, schema, erased_among, reactions=rescan)
                self._purge_queues(erased_among, erased_count, outcome)
            if rescan:
                self._erased_scanned, self._rescan_at = erased_count, time.monotonic() + DEAD_LETTER_RESCAN_INTERVAL
        finally:
            conn.close()
        return outcome

    def purge_now(self) -> bool:
        """Purge at once (an erasure's status asks before it says "done"); False when it could not."""
        try:
            self.run()
        except Exception as exc:  # noqa: BLE001 - database or broker away: not purged yet, ask again
            log.warning("dead letters of erased customers not purged now: %s: %s", type(exc).__name__, exc)
            return False
        return True

    def _erased_count(self, cur: Any) -> int:
        """How many persons are erased (0 when the service keeps no record of any)."""
        relation = sql.SQL(self.erased).format(schema=sql.Identifier(self.schema))
        cur.execute("SAVEPOINT erased_count")
        try:
            cur.execute(sql.SQL("SELECT count(*) FROM ({}) AS erased").format(relation))
        except psycopg2.errors.UndefinedTable:
            cur.execute("ROLLBACK TO SAVEPOINT erased_count")
            return 0
        return int(cur.fetchone()[0])

    def _purge_queues(self, erased_among: deadletters.ErasedAmong, erased_count: int, outcome: PurgeOutcome) -> None:
        import amqp.exceptions

        with kombu.Connection(self.amqp_uri, transport_options={"confirm_publish": True}, connect_timeout=5) as broker:
            # py-amqp leaves its socket blocking once connected (and retries a read that SO_RCVTIMEO
            # interrupts): a timeout on the socket itself bounds every wait, green or not.
            broker.connection.transport.sock.settimeout(DEAD_LETTER_BROKER_TIMEOUT)
            for queue in self.queues:
                channel = broker.channel()
                try:
                    _, waiting, _ = channel.queue_declare(queue=queue, passive=True)
                except amqp.exceptions.NotFound:
                    continue  # not declared yet: it holds nothing
                finally:
                    if channel.is_open:
                        channel.close()
                if not waiting or self._seen.get(queue) == (erased_count, waiting):
                    continue  # empty, or nothing new since this process last read it
                dropped, kept = deadletters.purge_queue(broker, queue, erased_among)
                self._seen[queue] = (erased_count, kept)
                if dropped:
                    outcome.dropped[queue] = dropped


class ForgetsDeadLetters:
    """Purges, in one replica, the dead letters that name a customer this service erased."""

    dead_letter_purge = DeadLetterPurge()

    @leader_timer(interval=DEAD_LETTER_PURGE_INTERVAL, eager=True)
    def purge_erased_dead_letters(self) -> None:
        self.dead_letter_purge.purge_now()  # what fails is done by the next run
