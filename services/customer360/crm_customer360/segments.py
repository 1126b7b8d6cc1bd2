"""Saved segments: named criteria over the 360 view's fields (crm_contracts.analytics.SegmentCriteria),
whose members are the customers matching them now (analytics_store.query).

A segment is a saved query of the read side, not a fact of the business: it is kept in the read model's
schema (`saved_segment`) and a rebuild copies it from the live view (`take_live_segments`, beside the
clock and the analytics' models) instead of folding it from events. Its id derives from the command id
that created it, so a retried creation is the same segment.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from crm_customer360 import analytics_store

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS saved_segment (
    segment_id uuid PRIMARY KEY,
    name text NOT NULL,
    criteria jsonb NOT NULL,
    created_at timestamptz NOT NULL
);
"""
#: Ids of segments derive from the creating command's id in this namespace.
SEGMENT_NAMESPACE = uuid.UUID("0b3f6c52-91d4-4e1a-8a7e-5d2c9e4f7a10")


def create_tables(cur: Any) -> None:
    cur.execute(TABLES_DDL)


def segment_id_of(command_id: str) -> str:
    return str(uuid.uuid5(SEGMENT_NAMESPACE, command_id))


def save(cur: Any, command_id: str, name: str, criteria: Mapping[str, Any], at: datetime) -> dict[str, Any]:
    """Save a segment (once per command id) and answer it with its members counted."""
    segment_id = segment_id_of(command_id)
    kept = {key: value for key, value in criteria.items() if value is not None}
    cur.execute("INSERT INTO saved_segment (segment_id, name, criteria, created_at) VALUES (%s, %s, %s, %s) "
                "ON CONFLICT (segment_id) DO NOTHING", (segment_id, name, Json(kept), at))
    found = get(cur, segment_id)
    assert found is not None  # just saved, in this transaction
    return found


def get(cur: Any, segment_id: str) -> dict[str, Any] | None:
    """A segment with its members counted now, or None."""
    cur.execute("SELECT segment_id::text, name, criteria, created_at FROM saved_segment WHERE segment_id = %s",
                (segment_id,))
    row = cur.fetchone()
    return _answer(cur, row) if row else None


def list_segments(cur: Any) -> dict[str, Any]:
    """Every saved segment, newest first, each with its members counted."""
    cur.execute("SELECT segment_id::text, name, criteria, created_at FROM saved_segment "
                "ORDER BY created_at DESC, segment_id")
    return {"items": [_answer(cur, row) for row in cur.fetchall()]}


def delete(cur: Any, segment_id: str) -> bool:
    cur.execute("DELETE FROM saved_segment WHERE segment_id = %s", (segment_id,))
    return bool(cur.rowcount)


def members(cur: Any, segment_id: str, page: int, page_size: int) -> dict[str, Any] | None:
    """One page of the customers matching a segment now (analytics_store.query), or None for no such segment."""
    cur.execute("SELECT criteria FROM saved_segment WHERE segment_id = %s", (segment_id,))
    row = cur.fetchone()
    return analytics_store.query(cur, row[0], page, page_size) if row else None


def take_live_segments(cur: Any, live_schema: str) -> None:
    """In a rebuilt view (search_path), hold exactly the live view's segments."""
    cur.execute(sql.SQL("SELECT segment_id, name, criteria, created_at FROM {}.saved_segment").format(
        sql.Identifier(live_schema)))
    live = cur.fetchall()
    cur.execute("DELETE FROM saved_segment")
    if live:
        execute_values(cur, "INSERT INTO saved_segment (segment_id, name, criteria, created_at) VALUES %s",
                       [(sid, name, Json(criteria), at) for sid, name, criteria, at in live])


def _answer(cur: Any, row: tuple[Any, ...]) -> dict[str, Any]:
    segment_id, name, criteria, created_at = row
    counted = analytics_store.query(cur, criteria, 1, 1)
    return {"id": segment_id, "name": name, "criteria": criteria, "created_at": created_at.isoformat(),
            "members": counted["total"], "model_as_of": counted["model_as_of"]}
