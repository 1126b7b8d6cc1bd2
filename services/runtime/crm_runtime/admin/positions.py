"""Where every relay and consumer of the platform stands, read from PostgreSQL by what its tables are.

An operator's view across schemas, so it needs a role that may read every schema's position tables
(locally the superuser; on Kubernetes the `crm-ops` role of deploy/README.md). It discovers, per
schema: an origin (an `outbox_cursor` table beside an eventsourcing `*_events` table), a read-model
consumer (`inbox_tracking`, parked events in `inbox_parked`), a policy consumer (eventsourcing's
`*_tracking` table; parked reactions are ParkedReaction aggregates in its event store) and the relay's
parked events (`outbox_parked`). Nothing here is configured by hand, so a new service shows up alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import psycopg2
from psycopg2 import sql

from crm_runtime import config
from crm_runtime.metrics import Lag

#: Tables that are not a policy's tracking though their names end like one.
NOT_POLICY_TRACKING = {"inbox_tracking", "listing_tracking"}
#: The topic of a policy's parked reaction (crm_runtime.policy.ParkedReaction), created once per event.
PARKED_REACTION_TOPIC = "crm_runtime.policy:ParkedReaction.Created"
#: A policy's tracking names starting with this settle a parked reaction (crm_runtime.admin.deadletters).
SETTLED_PREFIX = "parked:"


@dataclass
class Schema:
    """What one schema holds, by its tables."""

    name: str
    tables: set[str] = field(default_factory=set)

    @property
    def events_table(self) -> str | None:
        found = sorted(t for t in self.tables if t.endswith("_events"))
        return found[0] if found else None

    @property
    def is_origin(self) -> bool:
        return "outbox_cursor" in self.tables and self.events_table is not None

    @property
    def policy_tracking(self) -> str | None:
        found = sorted(t for t in self.tables if t.endswith("_tracking") and t not in NOT_POLICY_TRACKING)
        return found[0] if found else None


def connect(dsn: str | None = None) -> Any:
    """A connection to the platform's database with the operator's rights (POSTGRES_* settings)."""
    return psycopg2.connect(dsn or config.postgres_dsn(), connect_timeout=5)


def schemas(cur: Any) -> list[Schema]:
    """Every schema of the platform with its tables (rebuilds' scratch schemas left out)."""
    cur.execute(
        "SELECT table_schema, table_name FROM information_schema.tables WHERE table_type = 'BASE TABLE' "
        "AND table_schema NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
    )
    found: dict[str, Schema] = {}
    for schema, table in cur.fetchall():
        if schema.endswith(("_next", "_old")):
            continue
        found.setdefault(schema, Schema(schema)).tables.add(table)
    return list(found.values())


def read_lag(dsn: str | None = None) -> Lag:
    """Every origin's head and relay cursor, every consumer's tracked positions, and what is parked."""
    conn = connect(dsn)
    try:
        with conn, conn.cursor() as cur:
            lag = Lag()
            for schema in schemas(cur):
                _read_schema(cur, schema, lag)
            return lag
    finally:
        conn.close()


def _read_schema(cur: Any, schema: Schema, lag: Lag) -> None:
    s = sql.Identifier(schema.name)
    if schema.is_origin:
        events = sql.Identifier(schema.events_table)  # type: ignore[arg-type]
        cur.execute(sql.SQL("SELECT coalesce(max(notification_id), 0) FROM {}.{}").format(s, events))
        head = int(cur.fetchone()[0])
        cur.execute(sql.SQL("SELECT scanned_to, last_published FROM {}.outbox_cursor").format(s))
        row = cur.fetchone() or (0, 0)
        lag.origins[schema.name] = (head, int(row[0]), int(row[1]))
        cur.execute(sql.SQL("SELECT count(*) FROM {}.outbox_parked").format(s))
        lag.parked[f"{schema.name}.relay"] = int(cur.fetchone()[0])
    if "inbox_tracking" in schema.tables:
        cur.execute(sql.SQL("SELECT origin, position FROM {}.inbox_tracking").format(s))
        lag.consumers[schema.name] = {origin: int(position) for origin, position in cur.fetchall()}
        cur.execute(sql.SQL("SELECT count(*) FROM {}.inbox_parked").format(s))
        lag.parked[schema.name] = int(cur.fetchone()[0])
    tracking = schema.policy_tracking
    if tracking is not None:
        cur.execute(sql.SQL("SELECT application_name, notification_id FROM {}.{}").format(s, sql.Identifier(tracking)))
        rows = cur.fetchall()
        lag.consumers[schema.name] = {o: int(p or 0) for o, p in rows if not o.startswith(SETTLED_PREFIX)}
        if schema.events_table is not None:
            cur.execute(
                sql.SQL("SELECT count(*) FROM {}.{} WHERE topic = %s").format(s, sql.Identifier(schema.events_table)),
                (PARKED_REACTION_TOPIC,),
            )
            settled = sum(1 for o, _ in rows if o.startswith(SETTLED_PREFIX))
            lag.parked[schema.name] = int(cur.fetchone()[0]) - settled
