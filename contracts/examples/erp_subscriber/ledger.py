"""The ERP's side of "exactly once": a local SQLite database in which applying an event and recording its
origin's position happen in one transaction, so a crash neither loses nor repeats an effect.

Copy this shape: keep, per origin, the last position applied *in the same transaction as the effect*.
An event at or below it is a duplicate (drop it); an event whose `previous` is above it means events are
missing in between (fetch them from the replay feed first). Positions of different origins are unrelated.
"""

from __future__ import annotations

import json
import sqlite3
from typing import Any


class Ledger:
    """Applied events (here: simply stored) and, per origin, the last position applied."""

    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path)
        with self.db:
            self.db.execute("CREATE TABLE IF NOT EXISTS positions (origin TEXT PRIMARY KEY, position INTEGER)")
            self.db.execute("CREATE TABLE IF NOT EXISTS events (origin TEXT, position INTEGER, type TEXT, body TEXT,"
                            " PRIMARY KEY (origin, position))")
            self.db.execute("CREATE TABLE IF NOT EXISTS cursor (id INTEGER PRIMARY KEY CHECK (id = 1), value TEXT)")

    def position(self, origin: str) -> int:
        row = self.db.execute("SELECT position FROM positions WHERE origin = ?", (origin,)).fetchone()
        return int(row[0]) if row else 0

    def apply(self, envelope: dict[str, Any]) -> bool:
        """Apply one event unless it was applied before; answer whether it was applied now."""
        origin, position = envelope["origin"], int(envelope["position"])
        with self.db:  # one transaction: the effect and the position, or neither
            if position <= self.position(origin):
                return False
            self.db.execute("INSERT INTO events VALUES (?, ?, ?, ?)",
                            (origin, position, envelope["type"], json.dumps(envelope)))
            self.db.execute("INSERT INTO positions VALUES (?, ?) ON CONFLICT (origin) DO UPDATE SET position = ?",
                            (origin, position, position))
        return True

    def is_gap(self, envelope: dict[str, Any]) -> bool:
        """Whether events of this origin are missing before `envelope`."""
        return int(envelope["previous"]) > self.position(envelope["origin"])

    def cursor(self) -> str | None:
        row = self.db.execute("SELECT value FROM cursor WHERE id = 1").fetchone()
        return row[0] if row else None

    def save_cursor(self, cursor: str) -> None:
        with self.db:
            self.db.execute("INSERT INTO cursor VALUES (1, ?) ON CONFLICT (id) DO UPDATE SET value = ?",
                            (cursor, cursor))

    def events(self) -> list[tuple[str, int, str]]:
        """(origin, position, type) of every event applied, in the order of each origin's positions."""
        return [(o, int(p), t) for o, p, t in self.db.execute(
            "SELECT origin, position, type FROM events ORDER BY origin, position")]

    def close(self) -> None:
        self.db.close()
