"""The raw baselines of STACK.md, measured again in the same run as the platform.

Each is a median of short runs (Settings.runs x Settings.seconds) against the bench's own database
(throwaway schemas, dropped afterwards) and RabbitMQ vhost (a throwaway exchange and queue).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import psycopg2
import psycopg2.extras
from psycopg2 import sql

from bench.common import Settings, drop_schema, ensure_database, ensure_vhost, log, median_rate

#: Throwaway schemas of the bench database, dropped after the baselines.
SQL_SCHEMA = "bench_baseline_sql"
ES_SCHEMA = "bench_baseline_es"
ES_FUNCTION_SCHEMA = "bench_baseline_es_fn"
#: Throwaway exchange and queue of the bench vhost.
EXCHANGE = "bench.baseline"
QUEUE = "bench.baseline"
#: A message about the size of a published envelope.
BODY = json.dumps({"event_id": "0" * 36, "type": "customer_registered", "version": 1, "origin": "customer",
                   "payload": {"name": "Bench Customer", "email": "bench@example.com", "source_channel": "web"},
                   "padding": "x" * 300})
ROW_PAYLOAD = "x" * 100
#: Confirms are collected per batch of this many messages (as the outbox relay does).
CONFIRM_BATCH = 500


def psycopg2_baselines(settings: Settings) -> dict[str, Any]:
    """Single-row INSERT + COMMIT, and 100 rows per transaction via execute_values."""
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(
                sql.Identifier(SQL_SCHEMA)))
            cur.execute(sql.SQL("CREATE TABLE {}.rows (id bigserial PRIMARY KEY, payload text NOT NULL)").format(
                sql.Identifier(SQL_SCHEMA)))
        insert = sql.SQL("INSERT INTO {}.rows (payload) VALUES (%s)").format(sql.Identifier(SQL_SCHEMA)).as_string(conn)
        insert_many = sql.SQL("INSERT INTO {}.rows (payload) VALUES %s").format(
            sql.Identifier(SQL_SCHEMA)).as_string(conn)
        cur = conn.cursor()

        def single() -> int:
            cur.execute(insert, (ROW_PAYLOAD,))
            conn.commit()
            return 1

        rows = [(ROW_PAYLOAD,)] * 100

        def hundred() -> int:
            psycopg2.extras.execute_values(cur, insert_many, rows, page_size=100)
            conn.commit()
            return 100

        return {
            "psycopg2_insert_commit": {**median_rate(settings, single), "unit": "rows/s",
                                       "what": "psycopg2 single-row INSERT + COMMIT"},
            "psycopg2_execute_values_100": {**median_rate(settings, hundred), "unit": "rows/s",
                                            "what": "psycopg2 100 rows per transaction via execute_values"},
        }
    finally:
        conn.close()
        drop_schema(settings, SQL_SCHEMA)


def kombu_baselines(settings: Settings) -> dict[str, Any]:
    """Persistent publishes: a synchronous confirm per message, and confirms collected per batch."""
    import amqp
    import kombu

    ensure_vhost(settings)
    exchange = kombu.Exchange(EXCHANGE, "direct", durable=True)
    queue = kombu.Queue(QUEUE, exchange, routing_key=QUEUE, durable=True)
    results: dict[str, Any] = {}
    with kombu.Connection(settings.amqp_uri, transport_options={"confirm_publish": True}) as conn:
        bound = queue(conn.default_channel)
        bound.declare()

        def purge() -> None:
            bound.purge()

        producer = conn.Producer(exchange=exchange, routing_key=QUEUE, serializer=None)

        def sync_confirm() -> int:
            producer.publish(BODY, content_type="application/json", content_encoding="utf-8", delivery_mode=2,
                             retry=False)
            return 1

        purge()
        results["kombu_publish_confirm_each"] = {
            **median_rate(settings, sync_confirm, purge), "unit": "msg/s",
            "what": "kombu publish, persistent, synchronous confirm per message"}

    with kombu.Connection(settings.amqp_uri, heartbeat=0) as conn:
        conn.connect()
        channel = conn.channel()
        channel.confirm_select()
        state = {"sent": 0, "confirmed": 0}

        def on_ack(delivery_tag: int, multiple: bool) -> None:
            state["confirmed"] = max(state["confirmed"], delivery_tag)

        channel.events["basic_ack"].add(on_ack)
        batch = min(CONFIRM_BATCH, settings.max_ops)

        def batch_confirm() -> int:
            for _ in range(batch):
                channel.basic_publish(amqp.Message(BODY, content_type="application/json", delivery_mode=2),
                                      exchange=EXCHANGE, routing_key=QUEUE, mandatory=True)
            state["sent"] += batch
            deadline = time.monotonic() + 30
            while state["confirmed"] < state["sent"]:
                if time.monotonic() > deadline:
                    raise RuntimeError("the broker confirmed nothing within 30 s")
                try:
                    conn.drain_events(timeout=1.0)
                except TimeoutError:
                    continue
            return batch

        def purge_queue() -> None:
            channel.queue_purge(QUEUE)

        results["kombu_publish_confirm_batch"] = {
            **median_rate(settings, batch_confirm, purge_queue), "unit": "msg/s",
            "what": f"py-amqp publish, persistent, mandatory, confirms collected per batch of {batch}"}
        channel.queue_delete(QUEUE)
        channel.exchange_delete(EXCHANGE)
    return results


def nameko_rpc_baseline(settings: Settings) -> dict[str, Any]:
    """Sequential nameko RPC round trips to an echo service (in a child process, under eventlet)."""
    ensure_vhost(settings)
    command = [sys.executable, "-m", "bench.rpc_echo", settings.amqp_uri, str(settings.seconds),
               str(settings.max_ops), str(settings.runs)]
    timeout = 60 + settings.runs * settings.seconds * 2
    done = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    if done.returncode != 0:
        raise RuntimeError(f"the RPC echo baseline failed: {done.stderr.strip()[-2000:]}")
    rates = json.loads(done.stdout.strip().splitlines()[-1])["rates"]
    ordered = sorted(rates)
    median = ordered[len(ordered) // 2]
    return {"nameko_rpc_roundtrip": {"rate": round(median, 1), "runs": [round(r, 1) for r in rates],
                                     "unit": "calls/s", "round_trip_ms": round(1000 / median, 2) if median else None,
                                     "what": "nameko RPC, sequential round trips (echo service)"}}


def _bench_app(settings: Settings, schema: str, db_functions: bool) -> Any:
    """A BenchApp on a fresh schema, inserting through the locking path or the insert function."""
    from bench.esmodel import BenchApp

    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(schema)))
    finally:
        conn.close()
    return BenchApp(env={
        "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_HOST": settings.pg_host,
        "POSTGRES_PORT": settings.pg_port, "POSTGRES_DBNAME": settings.dbname, "POSTGRES_USER": settings.pg_user,
        "POSTGRES_PASSWORD": settings.pg_password, "POSTGRES_SCHEMA": schema, "CREATE_TABLE": "true",
        "POSTGRES_ENABLE_DB_FUNCTIONS": "true" if db_functions else "false", "POSTGRES_POOL_SIZE": "2",
    })


def eventsourcing_baselines(settings: Settings) -> dict[str, Any]:
    """eventsourcing save of one new aggregate per save (through the locking insert crm_runtime uses,
    and, for its cost, through the unlocked insert function), 50 per save, and select_notifications."""
    from bench.esmodel import BenchThing

    counter = iter(range(10**9))

    def save_one_with(app: Any) -> Callable[[], int]:
        def save_one() -> int:
            app.save(BenchThing(next(counter)))
            return 1

        return save_one

    results: dict[str, Any] = {}
    unlocked = _bench_app(settings, ES_FUNCTION_SCHEMA, db_functions=True)
    try:
        results["eventsourcing_save_1_db_functions"] = {
            **median_rate(_short(settings), save_one_with(unlocked)), "unit": "saves/s",
            "what": "eventsourcing save, 1 aggregate per save (insert function, no lock: not used)"}
    finally:
        unlocked.close()
        drop_schema(settings, ES_FUNCTION_SCHEMA)
    app = _bench_app(settings, ES_SCHEMA, db_functions=False)
    try:
        results["eventsourcing_save_1"] = {
            **median_rate(settings, save_one_with(app)), "unit": "saves/s",
            "what": "eventsourcing save, 1 aggregate per save (locking insert, as crm_runtime)"}

        def save_fifty() -> int:
            app.save(*(BenchThing(next(counter)) for _ in range(50)))
            return 50

        results["eventsourcing_save_50"] = {
            **median_rate(settings, save_fifty), "unit": "aggregates/s",
            "what": "eventsourcing save of 50 new aggregates in one save(*aggregates)"}
        head = app.recorder.max_notification_id() or 0
        position = [0]

        def read_page() -> int:
            notifications = app.recorder.select_notifications(start=position[0], limit=1000, inclusive_of_start=False)
            position[0] = notifications[-1].id if notifications and notifications[-1].id < head else 0
            return len(notifications)

        results["eventsourcing_select_notifications"] = {
            **median_rate(_reads(settings), read_page), "unit": "events/s", "log_size": head,
            "what": "eventsourcing select_notifications, pages of 1,000 (raw, not mapped to domain events)"}
        return results
    finally:
        app.close()
        drop_schema(settings, ES_SCHEMA)


def _short(settings: Settings) -> Settings:
    """Runs of at most one second: the insert-path comparison adds a few seconds, not a phase."""
    from dataclasses import replace

    return replace(settings, seconds=min(settings.seconds, 1.0))


def _reads(settings: Settings) -> Settings:
    """Reads are cheap: let a quick run read a few pages rather than a handful of rows."""
    from dataclasses import replace

    return replace(settings, max_ops=max(settings.max_ops, 5000)) if settings.quick else settings


BASELINES: list[tuple[str, Callable[[Settings], dict[str, Any]]]] = [
    ("psycopg2", psycopg2_baselines),
    ("kombu", kombu_baselines),
    ("nameko RPC", nameko_rpc_baseline),
    ("eventsourcing", eventsourcing_baselines),
]


def run_baselines(settings: Settings) -> dict[str, Any]:
    """Every baseline; one that fails is reported with its error instead of a rate."""
    ensure_database(settings)
    results: dict[str, Any] = {}
    for label, measure in BASELINES:
        log(f"baseline: {label}")
        try:
            results.update(measure(settings))
        except Exception as exc:  # noqa: BLE001 - one broken baseline must not hide the others
            log(f"baseline {label} failed: {exc}")
            results[f"{label}_error"] = {"error": f"{type(exc).__name__}: {exc}"}
    return results
