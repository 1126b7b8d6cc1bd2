"""Dead letters: every event the platform moved past without applying it, where it is kept, and what
an operator may do with it.

Three places keep them (each written in the same transaction as the tracking move past the event,
so an event is applied or parked, never neither):

| consumer        | table                                   | retry                                  |
|-----------------|-----------------------------------------|----------------------------------------|
| `<schema>`      | `<schema>.inbox_parked` (read models)   | Inbox.replay_parked: applies it and    |
|                 |                                         | deletes the row in one transaction     |
| `<schema>`      | ParkedReaction in the service's store   | the policy's reaction, run once: its   |
|                 | (policies)                              | save and a settling tracking record    |
|                 |                                         | `parked:<origin>:<position>` commit    |
|                 |                                         | together; that record is accepted once |
| `<origin>.relay`| `<origin>.outbox_parked`                | not needed: a broker-refused event     |
|                 |                                         | stays in the feed (consumers pull it); |
|                 |                                         | an untranslatable one needs a code fix |

Besides the parked copy, the consumer publishes each dead letter to `crm.dead-letter` (queue
`<consumer queue>.dead-letter`, crm_runtime.consumer) for an operator to see beside the log.

**Erased customers** (GDPR Art. 17): a dead letter may quote a person (its payload, and a reason that
echoes bad input), and the queue and the parked rows are copies the crypto-shredding does not reach.
They are purged: `purge_parked` withholds every parked dead letter that names an erased customer (its
envelope's payload emptied, its reason replaced by WITHHELD_REASON; the row stays, so an operator still
sees that an event went unapplied and can discard it), and `purge_queue` drops every message of a
dead-letter queue that names one (the others are put back). "Names" means: the customer's id is written
anywhere in it (the envelope's `customer_id`, an id in its payload, its body or its reason) and the id is
in the erasure ledger. Each service runs both for its own dead letters (crm_runtime.nameko.deadletters,
a leader timer reading the service's `erasure_ledger`); `forget_customers` runs them across the platform
with the operator's rights (e.g. for customers erased before this existed). Idempotent: what was
withheld is not matched again, and a dropped message is gone.

A dead letter is named `ORIGIN:POSITION` within its consumer. `retry` is exactly once: for a read
model the replay and the deletion of the parked row commit together and the row is locked while it
runs; for a policy the reaction's events and the settling tracking record commit together, and the
event store refuses that record a second time. So a second retry (concurrent or later) applies
nothing. `discard` settles a dead letter without applying it: the event stays unapplied, which the
operator decides knowingly.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from importlib.metadata import entry_points
from typing import Any

import psycopg2.errors
from psycopg2 import sql

from crm_runtime import config
from crm_runtime.admin.positions import PARKED_REACTION_TOPIC, SETTLED_PREFIX, Schema, connect, schemas
from crm_runtime.inbox import ApplyBatch, Inbox

log = logging.getLogger(__name__)


class DeadLetterError(Exception):
    """What an operator asked cannot be done (nothing parked there, not retryable); the message says why."""


@dataclass
class DeadLetter:
    """One parked event: where, what, why, since when."""

    consumer: str
    kind: str  # read-model | policy | relay
    origin: str
    position: int
    type: str
    reason: str
    parked_at: datetime | None
    envelope: dict[str, Any] | None = None

    @property
    def name(self) -> str:
        return f"{self.origin}:{self.position}"

    def row(self, with_envelope: bool = False) -> dict[str, Any]:
        found = {
            "consumer": self.consumer,
            "id": self.name,
            "kind": self.kind,
            "origin": self.origin,
            "position": self.position,
            "type": self.type,
            "reason": self.reason,
            "parked_at": self.parked_at.isoformat() if self.parked_at else None,
        }
        if with_envelope:
            found["envelope"] = self.envelope
        return found


def parse_name(name: str) -> tuple[str, int]:
    """`ORIGIN:POSITION` as (origin, position)."""
    origin, _, position = name.rpartition(":")
    if not origin or not position.isdigit():
        raise DeadLetterError(f"name a dead letter as ORIGIN:POSITION (e.g. customer:12), not {name!r}")
    return origin, int(position)


def list_dead_letters(consumer: str | None = None, dsn: str | None = None) -> list[DeadLetter]:
    """Every dead letter of the platform (or of one consumer), oldest first, envelopes included."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            found: list[DeadLetter] = []
            for schema in schemas(cur):
                found.extend(_read(cur, schema, consumer))
            return sorted(found, key=lambda d: (d.parked_at is None, d.parked_at or datetime.min, d.name))
    finally:
        conn.close()


def find(consumer: str, name: str, dsn: str | None = None) -> DeadLetter:
    origin, position = parse_name(name)
    for letter in list_dead_letters(consumer, dsn):
        if (letter.origin, letter.position) == (origin, position):
            return letter
    raise DeadLetterError(f"nothing is parked at {name} for {consumer}")


def retry(consumer: str, name: str) -> dict[str, Any]:
    """Apply a parked event once (after its cause was fixed) and unpark it, atomically."""
    letter = find(consumer, name)
    if letter.kind == "policy":
        settle_policy(letter, react=True)
        return letter.row()
    if letter.kind != "read-model":
        raise DeadLetterError(_NOT_RETRYABLE[letter.kind])
    inbox = Inbox(config.postgres_dsn(consumer), apply_batch_of(consumer), fetch=None)
    try:
        try:
            inbox.replay_parked(letter.origin, letter.position)
        except LookupError as exc:  # retried meanwhile by someone else
            raise DeadLetterError(str(exc)) from None
        except Exception as exc:  # noqa: BLE001 - still failing: nothing applied, it stays parked
            reason = f"{type(exc).__name__}: {exc}"
            raise DeadLetterError(f"{name} still fails to apply (it stays parked): {reason}") from None
    finally:
        inbox.close()
    return letter.row()


def discard(consumer: str, name: str) -> dict[str, Any]:
    """Forget a parked event for good (it stays unapplied)."""
    letter = find(consumer, name)
    if letter.kind == "policy":
        settle_policy(letter, react=False)
        return letter.row()
    conn = connect()
    try:
        with conn, conn.cursor() as cur:
            if letter.kind == "read-model":
                cur.execute(
                    sql.SQL("DELETE FROM {}.inbox_parked WHERE origin = %s AND position = %s").format(
                        sql.Identifier(consumer)
                    ),
                    (letter.origin, letter.position),
                )
            else:
                cur.execute(
                    sql.SQL("DELETE FROM {}.outbox_parked WHERE position = %s").format(sql.Identifier(letter.origin)),
                    (letter.position,),
                )
            if cur.rowcount != 1:
                raise DeadLetterError(f"nothing is parked at {name} for {consumer} any more")
    finally:
        conn.close()
    return letter.row()


_NOT_RETRYABLE = {
    "relay": "a relay's parked event is not retried here: one the broker refused is still in the feed, and "
    "every consumer pulls it by gap repair; one that cannot be translated needs a fix of the "
    "service's publishing.py and a redeploy. `discard` acknowledges it.",
}


def settle_policy(letter: DeadLetter, react: bool) -> None:
    """Retry (`react`) or discard a policy's parked event, with the service's installed policies."""
    policies, app = policy_of(letter.consumer)
    try:
        settle_reaction(app, policies, letter, react)
    finally:
        app.close()


def settle_reaction(app: Any, policies: Any, letter: DeadLetter, react: bool) -> None:
    """Settle a policy's parked event: run its reaction (`react`) or not, and record the tracking
    `parked:<origin>:<position>` in the same transaction as the reaction's save. The event store takes a
    tracking position once, so the reaction happens at most once, and exactly once when a retry succeeds.
    Raises DeadLetterError when it was settled already, or still fails (then nothing was saved)."""
    from eventsourcing.persistence import IntegrityError, Tracking

    from crm_runtime.eventstore import command_metadata, reaction_tracking

    envelope = letter.envelope or {}
    tracking = Tracking(settled_name(letter.origin, letter.position), letter.position)
    reaction = policies.reaction_for(envelope) if react else None
    try:
        with (
            command_metadata(envelope.get("correlation_id"), envelope.get("event_id")),
            reaction_tracking(tracking) as pending,
        ):
            if reaction is not None:
                reaction(app, envelope)
            if not pending.recorded:
                app.record_tracking(tracking)
    except Exception as exc:  # noqa: BLE001 - nothing saved: settled already, or still failing
        if isinstance(exc, IntegrityError) and app.tracked_position(tracking.application_name) >= letter.position:
            raise DeadLetterError(f"{letter.name} of {letter.consumer} was retried or discarded already") from None
        reason = f"{type(exc).__name__}: {exc}"
        raise DeadLetterError(f"{letter.name} still fails to apply (it stays parked): {reason}") from None


def settled_name(origin: str, position: int) -> str:
    """The tracking name that marks a policy's parked event at `position` of `origin` as settled."""
    return f"{SETTLED_PREFIX}{origin}:{position}"


def policy_of(consumer: str) -> tuple[Any, Any]:
    """The Policies and a fresh application of the service `consumer` (from its installed package)."""
    from crm_runtime.nameko.dependencies import EventSourcedApplication, PolicyConsumer

    for entry in entry_points(group="crm.services"):
        if entry.name != consumer:
            continue
        service = entry.load()
        found = {
            type(v): v
            for k in service.__mro__
            for v in vars(k).values()
            if isinstance(v, PolicyConsumer | EventSourcedApplication)
        }
        if PolicyConsumer in found and EventSourcedApplication in found:
            return found[PolicyConsumer].policies, found[EventSourcedApplication].app_class(create_table=False)
    raise DeadLetterError(f"no installed service {consumer!r} with policies")


def apply_batch_of(consumer: str) -> ApplyBatch:
    """The fold of the read model kept in schema `consumer`, from the service that declares it."""
    from crm_runtime.nameko.dependencies import InboxConsumer  # nameko only when a retry needs it

    for entry in entry_points(group="crm.services"):
        service = entry.load()
        for klass in service.__mro__:
            for value in vars(klass).values():
                if isinstance(value, InboxConsumer) and value.schema == consumer and value.apply_batch is not None:
                    return value.apply_batch
    raise DeadLetterError(f"no installed service keeps a read model in schema {consumer!r}")


def _read(cur: Any, schema: Schema, consumer: str | None) -> list[DeadLetter]:
    s = sql.Identifier(schema.name)
    found = []
    if "inbox_parked" in schema.tables and consumer in (None, schema.name):
        cur.execute(
            sql.SQL("SELECT origin, position, type, reason, parked_at, envelope FROM {}.inbox_parked").format(s)
        )
        for origin, position, type_, reason, at, envelope in cur.fetchall():
            envelope = json.loads(envelope) if isinstance(envelope, str) else envelope
            found.append(DeadLetter(schema.name, "read-model", origin, position, type_, reason, at, envelope))
    if schema.is_origin and consumer in (None, f"{schema.name}.relay"):
        cur.execute(sql.SQL("SELECT position, topic, reason, parked_at FROM {}.outbox_parked").format(s))
        for position, topic, reason, at in cur.fetchall():
            found.append(DeadLetter(f"{schema.name}.relay", "relay", schema.name, position, topic, reason, at))
    if schema.policy_tracking and schema.events_table and consumer in (None, schema.name):
        cur.execute(
            sql.SQL("SELECT application_name FROM {}.{} WHERE application_name LIKE %s").format(
                s, sql.Identifier(schema.policy_tracking)
            ),
            (f"{SETTLED_PREFIX}%",),
        )
        settled = {name for (name,) in cur.fetchall()}
        cur.execute(
            sql.SQL("SELECT state FROM {}.{} WHERE topic = %s").format(s, sql.Identifier(schema.events_table)),
            (PARKED_REACTION_TOPIC,),
        )
        for (state,) in cur.fetchall():
            letter = _parked_reaction(schema.name, bytes(state))
            if settled_name(letter.origin, letter.position) not in settled:
                found.append(letter)
    return found


def _parked_reaction(schema: str, state: bytes) -> DeadLetter:
    """A ParkedReaction's created event, decoded from eventsourcing's JSON state."""
    try:
        data = json.loads(state)
    except ValueError:
        return DeadLetter(schema, "policy", "?", 0, "?", "(stored state not readable as JSON)", None)
    stamp = data.get("timestamp")
    at = stamp.get("_data_") if isinstance(stamp, dict) else stamp
    return DeadLetter(
        schema,
        "policy",
        data.get("origin", "?"),
        int(data.get("position", 0)),
        data.get("event_type", ""),
        data.get("reason", ""),
        datetime.fromisoformat(at) if isinstance(at, str) else None,
        data.get("envelope"),
    )


# --- erased customers: their dead letters purged ---------------------------------------------------

#: The reason a withheld dead letter keeps (the original may quote the person).
WITHHELD_REASON = "withheld: it named a customer who was erased (GDPR Art. 17)"
#: A consumer queue's dead-letter queue is named after it with this suffix (crm_runtime.consumer).
DEAD_LETTER_QUEUE_SUFFIX = ".dead-letter"
_UUID = re.compile(rb"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")

#: Given the ids a dead letter names, which of them are erased customers.
ErasedAmong = Callable[[set[str]], set[str]]


def named_ids(data: Any) -> set[str]:
    """Every UUID written in `data` (bytes, text, or a JSON-able value), lower case."""
    if isinstance(data, str):
        raw = data.encode()
    elif isinstance(data, bytes | bytearray | memoryview):
        raw = bytes(data)
    else:
        raw = json.dumps(data, default=str).encode()
    return {match.decode().lower() for match in _UUID.findall(raw)}


#: The erased persons of a service: its erasure ledger (crm_runtime.crypto), as one column of ids.
LEDGER = "SELECT subject_id FROM {schema}.erasure_ledger"


def ledger_lookup(cur: Any, schema: str, erased: str = LEDGER) -> ErasedAmong:
    """Which of some ids are erased persons of `schema`, by `erased` (a query of one uuid column, `{schema}`
    standing for the schema; by default its erasure ledger); none when its tables do not exist."""
    relation = sql.SQL(erased).format(schema=sql.Identifier(schema))
    cur.execute("SAVEPOINT erased_lookup")
    try:
        cur.execute(sql.SQL("SELECT 1 FROM ({}) AS erased LIMIT 0").format(relation))
    except psycopg2.errors.UndefinedTable:
        cur.execute("ROLLBACK TO SAVEPOINT erased_lookup")
        return lambda ids: set()
    query = sql.SQL("SELECT id::text FROM ({}) AS erased (id) WHERE id = ANY(%s::uuid[])").format(relation)

    def erased_among(ids: set[str]) -> set[str]:
        if not ids:
            return set()
        cur.execute(query, (sorted(ids),))
        return {row[0] for row in cur.fetchall()}

    return erased_among


def given_ids(customer_ids: Iterable[str]) -> ErasedAmong:
    """An ErasedAmong for customers named by an operator (their erasure is known elsewhere)."""
    erased = {str(c).lower() for c in customer_ids}
    return lambda ids: ids & erased


def purge_parked(cur: Any, schema: Schema, erased_among: ErasedAmong, reactions: bool = True) -> list[str]:
    """Withhold every dead letter parked in `schema` that names an erased customer: the envelope's
    payload emptied and the reason replaced, in the caller's transaction. Answers the names withheld.
    `reactions`: a policy's parked reactions too (a scan of the event store)."""
    s = sql.Identifier(schema.name)
    withheld: list[str] = []
    if "inbox_parked" in schema.tables:
        cur.execute(sql.SQL("SELECT origin, position, envelope::text, reason FROM {}.inbox_parked "
                            "WHERE reason <> %s FOR UPDATE").format(s), (WITHHELD_REASON,))
        for origin, position, envelope, reason in cur.fetchall():
            if erased_among(named_ids(envelope) | named_ids(reason)):
                cur.execute(sql.SQL("UPDATE {}.inbox_parked SET envelope = jsonb_set(envelope, '{{payload}}', "
                                    "'{{}}'::jsonb), reason = %s WHERE origin = %s AND position = %s").format(s),
                            (WITHHELD_REASON, origin, position))
                withheld.append(f"{origin}:{position}")
    if reactions and schema.policy_tracking and schema.events_table:
        events = sql.Identifier(schema.events_table)
        cur.execute(sql.SQL("SELECT originator_id, originator_version, state FROM {}.{} WHERE topic = %s "
                            "FOR UPDATE").format(s, events), (PARKED_REACTION_TOPIC,))
        for originator_id, version, state in cur.fetchall():
            try:
                data = json.loads(bytes(state))
            except ValueError:
                continue  # not eventsourcing's plain JSON: nothing this can read, nor rewrite
            if data.get("reason") == WITHHELD_REASON or not erased_among(named_ids(bytes(state))):
                continue
            envelope = data.get("envelope") if isinstance(data.get("envelope"), dict) else {}
            data["envelope"], data["reason"] = {**envelope, "payload": {}}, WITHHELD_REASON
            cur.execute(sql.SQL("UPDATE {}.{} SET state = %s WHERE originator_id = %s AND originator_version = %s"
                                ).format(s, events),
                        (json.dumps(data, separators=(",", ":")).encode(), originator_id, version))
            withheld.append(f"{data.get('origin', '?')}:{data.get('position', 0)}")
    if withheld:
        log.info("withheld %d dead letters of %s naming an erased customer", len(withheld), schema.name,
                 extra={"consumer": schema.name, "count": len(withheld)})
    return withheld


def purge_queue(connection: Any, queue: str, erased_among: ErasedAmong) -> tuple[int, int]:
    """Drop every message of the dead-letter queue `queue` that names an erased customer; put the others
    back (published again to `crm.dead-letter` with their routing key and headers, confirmed before the
    original is acked: a crash in between leaves a duplicate, never a loss). Reads as many messages as the
    queue held when it started, so what it puts back is not read again. Answers (dropped, kept)."""
    import kombu

    from crm_contracts.envelope import DEAD_LETTER_EXCHANGE

    channel = connection.channel()
    try:
        _, waiting, _ = channel.queue_declare(queue=queue, passive=True)  # NotFound: no such queue
        if not waiting:
            return 0, 0
        producer = kombu.Producer(channel, exchange=kombu.Exchange(DEAD_LETTER_EXCHANGE, "topic", durable=True))
        dropped = kept = 0
        for _ in range(waiting):
            message = channel.basic_get(queue=queue, no_ack=False)
            if message is None:
                break
            headers = dict(message.properties.get("application_headers") or {})
            if erased_among(named_ids(message.body) | named_ids(str(headers.get("x-reason", "")))):
                dropped += 1
            else:
                routing_key = message.delivery_info.get("routing_key") or queue.removesuffix(DEAD_LETTER_QUEUE_SUFFIX)
                producer.publish(message.body, routing_key=routing_key, headers=headers, delivery_mode=2,
                                 content_type=message.properties.get("content_type", "application/json"),
                                 content_encoding=message.properties.get("content_encoding", "utf-8"))
                kept += 1
            channel.basic_ack(message.delivery_tag)
        if dropped:
            log.info("dropped %d messages of %s naming an erased customer", dropped, queue,
                     extra={"queue": queue, "count": dropped})
        return dropped, kept
    finally:
        if channel.is_open:
            channel.close()


def forget_customers(customer_ids: list[str], dsn: str | None = None, amqp_uri: str | None = None,
                     queues: Iterable[str] | None = None) -> dict[str, Any]:
    """Purge the dead letters naming these (erased) customers across the platform, with the operator's
    rights: every schema's parked dead letters, and the dead-letter queue of every installed consumer
    (or `queues`). Idempotent."""
    import amqp.exceptions
    import kombu

    erased_among = given_ids(customer_ids)
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            withheld = {schema.name: names for schema in schemas(cur)
                        if (names := purge_parked(cur, schema, erased_among))}
    finally:
        conn.close()
    dropped: dict[str, int] = {}
    with kombu.Connection(amqp_uri or config.setting("AMQP_URI", "amqp://guest:guest@localhost:5672//"),
                          transport_options={"confirm_publish": True}) as connection:
        for queue in queues if queues is not None else dead_letter_queues():
            try:
                count, _ = purge_queue(connection, queue, erased_among)
            except amqp.exceptions.NotFound:
                continue  # no such queue (its consumer never started): it keeps nothing
            if count:
                dropped[queue] = count
    return {"withheld": withheld, "dropped": dropped}


def dead_letter_queues() -> list[str]:
    """The dead-letter queue of every consumer of the installed services."""
    from crm_runtime.nameko.dependencies import InboxConsumer

    found: set[str] = set()
    for entry in entry_points(group="crm.services"):
        service = entry.load()
        for klass in service.__mro__:
            found.update(value.queue + DEAD_LETTER_QUEUE_SUFFIX for value in vars(klass).values()
                         if isinstance(value, InboxConsumer))
    return sorted(found)
