"""What every part of the harness shares: settings, rate measurement, percentiles, the bench's own
database and RabbitMQ vhost."""

from __future__ import annotations

import base64
import json
import os
import statistics
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql


@dataclass(frozen=True)
class Settings:
    """Where the bench runs and how long each measurement lasts."""

    quick: bool = False
    dbname: str = "crm_bench"
    vhost: str = "crm_bench"
    pg_host: str = field(default_factory=lambda: os.environ.get("POSTGRES_HOST") or "127.0.0.1")
    pg_port: str = field(default_factory=lambda: os.environ.get("POSTGRES_PORT") or "5432")
    pg_user: str = field(default_factory=lambda: os.environ.get("POSTGRES_USER") or "postgres")
    pg_password: str = field(default_factory=lambda: os.environ.get("POSTGRES_PASSWORD") or "")
    amqp_host: str = field(default_factory=lambda: os.environ.get("BENCH_AMQP_HOST") or "127.0.0.1:5672")
    amqp_user: str = "guest"
    amqp_password: str = "guest"
    management_url: str = field(
        default_factory=lambda: os.environ.get("RABBITMQ_MANAGEMENT_URL") or "http://127.0.0.1:15672/api"
    )
    #: Baselines: runs per figure (the median is reported), seconds and operations per run.
    runs: int = 3
    seconds: float = 3.0
    max_ops: int = 1_000_000

    @classmethod
    def make(cls, quick: bool, dbname: str, vhost: str) -> Settings:
        """Settings for a full run, or a quick one (a few hundred operations per baseline)."""
        if quick:
            return cls(quick=True, dbname=dbname, vhost=vhost, seconds=1.0, max_ops=200)
        return cls(dbname=dbname, vhost=vhost)

    @property
    def amqp_uri(self) -> str:
        vhost = urllib.parse.quote(self.vhost, safe="")
        return f"amqp://{self.amqp_user}:{self.amqp_password}@{self.amqp_host}/{vhost}"

    def dsn(self, dbname: str | None = None, schema: str | None = None) -> str:
        """A libpq DSN for the bench database (or `dbname`), optionally with a search_path."""
        params = {"host": self.pg_host, "port": self.pg_port, "dbname": dbname or self.dbname,
                  "user": self.pg_user, "password": self.pg_password}
        dsn = " ".join(f"{k}={v}" for k, v in params.items() if v)
        if schema:
            dsn += f" options='-c search_path={schema}'"
        return dsn

    def platform_env(self) -> dict[str, str]:
        """The environment the platform's processes (and crm_runtime in this process) read."""
        return {"POSTGRES_HOST": self.pg_host, "POSTGRES_PORT": self.pg_port, "POSTGRES_DBNAME": self.dbname,
                "POSTGRES_USER": self.pg_user, "POSTGRES_PASSWORD": self.pg_password, "AMQP_URI": self.amqp_uri}


def log(message: str) -> None:
    """Progress on stderr, so stdout keeps only the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- timing


def run_rate(step: Callable[[], int], seconds: float, max_ops: int) -> float:
    """Call `step` (which returns how many operations it did) until `seconds` or `max_ops`; ops/s."""
    done = 0
    started = time.perf_counter()
    deadline = started + seconds
    while done < max_ops and time.perf_counter() < deadline:
        done += step()
    elapsed = time.perf_counter() - started
    return done / elapsed if elapsed > 0 else 0.0


def median_rate(
    settings: Settings, step: Callable[[], int], between: Callable[[], None] | None = None
) -> dict[str, Any]:
    """The median of `settings.runs` short runs of `step`, with the individual rates."""
    rates = []
    for _ in range(settings.runs):
        rates.append(run_rate(step, settings.seconds, settings.max_ops))
        if between is not None:
            between()
    return {"rate": round(statistics.median(rates), 1), "runs": [round(r, 1) for r in rates]}


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0..100) by nearest rank, or None when there are no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, int(round(q / 100 * len(ordered) + 0.5)) - 1))
    return ordered[rank]


# --------------------------------------------------------------------------------------- PostgreSQL


def ensure_database(settings: Settings) -> None:
    """Create the bench database if it is missing."""
    conn = psycopg2.connect(settings.dsn("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (settings.dbname,))
            if cur.fetchone() is None:
                cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.dbname)))
    finally:
        conn.close()


def recreate_database(settings: Settings) -> None:
    """Drop the bench database (closing its sessions: only the bench uses it) and create it empty."""
    if not settings.dbname.startswith("crm_bench"):
        raise SystemExit(f"refusing to drop {settings.dbname!r}: the bench only drops databases named crm_bench*")
    conn = psycopg2.connect(settings.dsn("postgres"))
    conn.autocommit = True
    try:
        with conn.cursor() as cur:
            cur.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
                (settings.dbname,),
            )
            cur.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(settings.dbname)))
            cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(settings.dbname)))
    finally:
        conn.close()


def drop_schema(settings: Settings, schema: str) -> None:
    """Drop one throwaway schema of the bench database."""
    conn = psycopg2.connect(settings.dsn())
    try:
        with conn, conn.cursor() as cur:
            cur.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
    finally:
        conn.close()


# ----------------------------------------------------------------------------------------- RabbitMQ


def _management(settings: Settings, method: str, path: str, body: Any = None) -> int:
    """One call to the RabbitMQ management API (loopback); returns the HTTP status."""
    url = settings.management_url.rstrip("/") + path
    data = None if body is None else json.dumps(body).encode()
    headers = {"content-type": "application/json", "authorization": _basic_auth(settings)}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        if exc.code == 404 and method == "DELETE":
            return 404
        raise


def _basic_auth(settings: Settings) -> str:
    """The management API's basic-auth header value."""
    token = base64.b64encode(f"{settings.amqp_user}:{settings.amqp_password}".encode()).decode()
    return f"Basic {token}"


def ensure_vhost(settings: Settings, fresh: bool = False) -> None:
    """Create the bench vhost (first deleting it when `fresh`) and grant guest everything on it."""
    vhost = urllib.parse.quote(settings.vhost, safe="")
    if fresh:
        delete_vhost(settings)
    _management(settings, "PUT", f"/vhosts/{vhost}", {"description": "crm benchmark (python -m bench)"})
    _management(settings, "PUT", f"/permissions/{vhost}/{urllib.parse.quote(settings.amqp_user)}",
                {"configure": ".*", "write": ".*", "read": ".*"})


def delete_vhost(settings: Settings) -> None:
    """Delete the bench vhost with its queues (never any other vhost)."""
    if not settings.vhost.startswith("crm_bench"):
        raise SystemExit(f"refusing to delete vhost {settings.vhost!r}: the bench only deletes crm_bench*")
    _management(settings, "DELETE", f"/vhosts/{urllib.parse.quote(settings.vhost, safe='')}")
