"""The cost of crypto-shredding on registration (issue 11): Customers.register on PostgreSQL with the
personal fields sealed under a per-customer data key (as the service runs) and with encryption turned off
(the same application, no personal fields declared), one client and 8 concurrent clients; and the
latency of one erasure. `erasure_baselines(settings)` is a phase of `make bench` (its costs part,
bench.run.run_costs); `python -m bench.erasure` runs it alone and prints JSON."""

from __future__ import annotations

import itertools
import json
import statistics
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any, ClassVar

import psycopg2
from psycopg2 import sql

from bench.common import Settings, drop_schema, ensure_database, median_rate

SCHEMAS = {"sealed": "bench_erasure_sealed", "plain": "bench_erasure_plain"}
CLIENTS = 8
_numbers = itertools.count(int(time.time()) % 10**7 * 10)


def _app(settings: Settings, schema: str, sealed: bool) -> Any:
    from crm_customer.application import Customers

    class PlainCustomers(Customers):
        """The customer application with no personal fields declared: events stored as they are."""

        personal_data: ClassVar[dict[type, Any]] = {}

    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(schema)))
    finally:
        conn.close()
    cls = Customers if sealed else PlainCustomers
    return cls(env={
        "PERSISTENCE_MODULE": "eventsourcing.postgres", "POSTGRES_HOST": settings.pg_host,
        "POSTGRES_PORT": settings.pg_port, "POSTGRES_DBNAME": settings.dbname, "POSTGRES_USER": settings.pg_user,
        "POSTGRES_PASSWORD": settings.pg_password, "POSTGRES_SCHEMA": schema, "CREATE_TABLE": "true",
        "POSTGRES_POOL_SIZE": "4", "POSTGRES_MAX_OVERFLOW": "8",
    })


def _register(app: Any) -> int:
    tag = uuid.uuid4().hex
    app.register(f"Bench {tag[:8]}", f"{tag}@bench.example", f"+86 10 {next(_numbers):09d}",
                 company="Bench Co", command_id=tag)
    return 1


def erasure_baselines(settings: Settings) -> dict[str, Any]:
    """Registrations/s sealed vs plain (1 and CLIENTS clients), and erasure latency (ms)."""
    ensure_database(settings)
    results: dict[str, Any] = {}
    pool = ThreadPoolExecutor(CLIENTS)
    try:
        for mode, schema in SCHEMAS.items():
            app = _app(settings, schema, sealed=mode == "sealed")
            try:
                results[f"register_{mode}_1"] = {
                    **median_rate(settings, lambda app=app: _register(app)), "unit": "registrations/s",
                    "what": f"Customers.register, one client ({mode}: "
                            f"{'personal fields sealed per customer' if mode == 'sealed' else 'no encryption'})"}

                def burst(app: Any = app) -> int:
                    return sum(pool.map(lambda _: _register(app), range(CLIENTS * 4)))

                results[f"register_{mode}_{CLIENTS}"] = {
                    **median_rate(settings, burst), "unit": "registrations/s",
                    "what": f"Customers.register, {CLIENTS} concurrent clients ({mode})"}
                if mode == "sealed":
                    latencies = []
                    for _ in range(20):
                        customer = app.register("Erase Me", f"{uuid.uuid4().hex}@bench.example")
                        started = time.perf_counter()
                        app.erase(customer.id)
                        latencies.append((time.perf_counter() - started) * 1000)
                    results["erase_latency"] = {"p50_ms": round(statistics.median(latencies), 2),
                                                "max_ms": round(max(latencies), 2), "unit": "ms",
                                                "what": "Customers.erase: ledger, Erased event, key shredded"}
            finally:
                app.close()
                drop_schema(settings, schema)
    finally:
        pool.shutdown()
    for clients in (1, CLIENTS):
        sealed, plain = results[f"register_sealed_{clients}"]["rate"], results[f"register_plain_{clients}"]["rate"]
        results[f"register_sealed_{clients}"]["ratio_to_plain"] = round(sealed / plain, 3) if plain else None
    return results


def main() -> None:
    print(json.dumps(erasure_baselines(Settings(dbname="crm_bench_erasure")), indent=2))


if __name__ == "__main__":
    main()
