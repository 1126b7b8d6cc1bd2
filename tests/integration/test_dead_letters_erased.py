"""Dead letters of an erased customer (GDPR Art. 17): after the purge no byte of the person's name, email or
phone is left in the service's parked dead letters (a policy's ParkedReaction, a read model's
inbox_parked) nor in its dead-letter queue, while another customer's dead letters stay whole and
retryable; a second run changes nothing (crm_runtime.admin.deadletters, crm_runtime.nameko.deadletters).

Real: PostgreSQL (a fresh schema with an event store, an erasure ledger and a read model's inbox tables),
RabbitMQ (the consumer's dead-letter queue, declared and fed as crm_runtime.consumer does). Replaced: the
nameko process around the purge (its DependencyProvider is set up by hand).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import kombu
import psycopg2
import pytest

from crm_contracts.envelope import DEAD_LETTER_EXCHANGE
from crm_runtime.admin import deadletters
from crm_runtime.consumer import declare_queue
from crm_runtime.crypto import PostgresDataKeys
from crm_runtime.eventstore import ServiceApplication
from crm_runtime.inbox import Inbox, create_tracking_table
from crm_runtime.nameko.deadletters import DeadLetterPurge
from crm_runtime.policy import Policies, PolicyInbox
from tests.support.databases import dsn
from tests.support.envelopes import Stream

pytestmark = pytest.mark.integration


def person(marker: str, n: int) -> dict[str, str]:
    return {"customer_id": str(uuid.uuid4()), "name": f"Person{n} {marker}", "email": f"p{n}.{marker}@example.org",
            "phone": f"+86 10 {n}{marker[:3]}-{int(marker[3:8], 16) % 10000:04d}"}


def refuse(*_: Any) -> None:
    raise ValueError("this consumer cannot apply it")


@pytest.fixture
def service_with_dead_letters(test_database: dict[str, str], postgres_schema: str, amqp_vhost: str) -> Any:
    """A service (schema `postgres_schema`) whose policy and read model each parked one event of an erased
    customer and one of another, and whose dead-letter queue holds both; the first is in its ledger."""
    marker = uuid.uuid4().hex[:10]
    erased, other = person(marker, 1), person(marker, 2)
    app = type("Rewards", (ServiceApplication,), {"service": postgres_schema})(
        env={**test_database, "POSTGRES_SCHEMA": postgres_schema}, create_table=True)
    keys = PostgresDataKeys(app.factory.datastore)
    keys.create_tables()
    keys.record_erasure(uuid.UUID(erased["customer_id"]), "DSR-1")

    policies = Policies(postgres_schema)
    policies.reacts_to("customer", "customer_registered")(refuse)
    stream = Stream("customer")
    envelopes = [stream.publish("customer_registered", who) for who in (erased, other)]
    assert len(PolicyInbox(app, policies, fetch=None).receive(envelopes, park=True).parked) == 2

    conn = psycopg2.connect(dsn(test_database))
    with conn, conn.cursor() as cur:
        cur.execute(f"SET LOCAL search_path TO {postgres_schema}")
        create_tracking_table(cur)
    conn.close()
    inbox = Inbox(f"{dsn(test_database)} options='-c search_path={postgres_schema}'", refuse, fetch=None)
    assert len(inbox.receive(envelopes, park=True).parked) == 2
    inbox.close()

    queue = f"{postgres_schema}.events"
    with kombu.Connection(amqp_vhost) as connection:
        channel = connection.channel()
        declare_queue(channel, queue, [], "classic")
        producer = kombu.Producer(channel, exchange=kombu.Exchange(DEAD_LETTER_EXCHANGE, "topic", durable=True))
        for envelope in envelopes:  # as EnvelopeConsumer._dead_letter publishes them
            producer.publish(json.dumps(envelope), routing_key=queue, content_type="application/json", delivery_mode=2,
                             headers={"x-reason": f"parked: ValueError: {envelope['payload']['email']}",
                                      "x-queue": queue})
    yield app, erased, other, queue
    with kombu.Connection(amqp_vhost) as connection:
        connection.channel().queue_delete(queue + deadletters.DEAD_LETTER_QUEUE_SUFFIX)
    app.close()


def dead_letter_queue(amqp_uri: str, queue: str) -> list[tuple[bytes, dict[str, Any]]]:
    """What the queue holds (read, then given back by closing without an ack)."""
    connection = kombu.Connection(amqp_uri)
    channel = connection.channel()
    found = []
    while (message := channel.basic_get(queue + deadletters.DEAD_LETTER_QUEUE_SUFFIX, no_ack=False)) is not None:
        body = message.body.encode() if isinstance(message.body, str) else bytes(message.body)
        found.append((body, dict(message.properties.get("application_headers") or {})))
    connection.close()
    return found


def dump(env: dict[str, str], schema: str) -> bytes:
    """Every row of every table of the schema, as text (what a pg_dump of it would hold; bytea as hex)."""
    conn = psycopg2.connect(dsn(env))
    rows = []
    with conn, conn.cursor() as cur:
        cur.execute("SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (schema,))
        for (table,) in cur.fetchall():
            cur.execute(f'SELECT t::text FROM "{schema}"."{table}" AS t')
            rows += [row[0] for row in cur.fetchall()]
    conn.close()
    return "\n".join(rows).encode()


def found_in(dumped: bytes, who: dict[str, str]) -> list[str]:
    """Which of the person's name, email and phone the dump holds, in clear or as bytea hex."""
    return [k for k in ("name", "email", "phone")
            if who[k].encode() in dumped or who[k].encode().hex().encode() in dumped]


def test_the_dead_letters_of_an_erased_customer_keep_no_byte_of_them_and_the_others_stay_whole(
    service_with_dead_letters: Any, test_database: dict[str, str], postgres_schema: str, amqp_vhost: str
) -> None:
    app, erased, other, queue = service_with_dead_letters
    before = dump(test_database, postgres_schema)
    assert len(found_in(before, erased)) == len(found_in(before, other)) == 3
    assert len(dead_letter_queue(amqp_vhost, queue)) == 2

    purge = DeadLetterPurge()
    purge.schema, purge.queues, purge.amqp_uri, purge.dsn = (
        postgres_schema, [queue + deadletters.DEAD_LETTER_QUEUE_SUFFIX], amqp_vhost, dsn(test_database))
    outcome = purge.run()

    assert sorted(outcome.withheld) == ["customer:1", "customer:1"]  # the policy's and the read model's
    assert outcome.dropped == {queue + deadletters.DEAD_LETTER_QUEUE_SUFFIX: 1}
    after = dump(test_database, postgres_schema)
    assert found_in(after, erased) == [], "the erased customer is still in the schema's dead letters"
    assert len(found_in(after, other)) == 3  # another customer's dead letters stay whole
    kept = dead_letter_queue(amqp_vhost, queue)
    assert [json.loads(body)["customer_id"] for body, _ in kept] == [other["customer_id"]]
    assert kept[0][1]["x-queue"] == queue and other["email"] in kept[0][1]["x-reason"]

    letters = {(d.kind, d.name): d for d in deadletters.list_dead_letters(dsn=dsn(test_database))
               if d.consumer == postgres_schema}
    withheld = {key: d.reason for key, d in letters.items() if key[1] == "customer:1"}
    assert withheld == {("policy", "customer:1"): deadletters.WITHHELD_REASON,
                        ("read-model", "customer:1"): deadletters.WITHHELD_REASON}
    assert letters[("policy", "customer:2")].envelope["payload"]["email"] == other["email"]  # still retryable

    again = purge.run()  # idempotent: nothing more to withhold or drop
    assert again.withheld == [] and again.dropped == {}
    assert dump(test_database, postgres_schema) == after and len(dead_letter_queue(amqp_vhost, queue)) == 1

    # A reaction parked after the erasure (another event naming the person): withheld by the next scan.
    policies = Policies(postgres_schema)
    policies.reacts_to("customer", "customer_registered")(refuse)
    late = Stream("customer", position=2).publish("customer_registered", erased)
    assert len(PolicyInbox(app, policies, fetch=None).receive([late], park=True).parked) == 1
    assert purge.run().withheld == []  # nobody newly erased: the event store is not scanned at every run
    purge._rescan_at = 0.0  # as once DEAD_LETTER_RESCAN_INTERVAL has passed
    assert purge.run().withheld == ["customer:3"]
    assert found_in(dump(test_database, postgres_schema), erased) == []

    # An operator can still settle the withheld one (the event stays unapplied, knowingly).
    deadletters.settle_reaction(app, policies, letters[("policy", "customer:1")], react=False)
    assert ("policy", "customer:1") not in {(d.kind, d.name) for d in deadletters.list_dead_letters(
        dsn=dsn(test_database)) if d.consumer == postgres_schema}


def test_an_operator_purges_the_dead_letters_of_customers_erased_elsewhere(
    service_with_dead_letters: Any, test_database: dict[str, str], postgres_schema: str, amqp_vhost: str
) -> None:
    _, erased, other, queue = service_with_dead_letters
    dead_queue = queue + deadletters.DEAD_LETTER_QUEUE_SUFFIX
    done = deadletters.forget_customers([other["customer_id"]], dsn=dsn(test_database), amqp_uri=amqp_vhost,
                                        queues=[dead_queue, "no-such-consumer.events.dead-letter"])
    assert sorted(done["withheld"][postgres_schema]) == ["customer:2", "customer:2"]
    assert done["dropped"] == {dead_queue: 1}
    after = dump(test_database, postgres_schema)
    assert found_in(after, other) == []
    assert [json.loads(body)["customer_id"] for body, _ in dead_letter_queue(amqp_vhost, queue)] == [
        erased["customer_id"]]
