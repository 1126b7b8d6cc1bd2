"""The 360° read model in PostgreSQL: tables, the batch upsert the inbox calls, and queries.

Every statement uses unqualified table names: the connection's search_path chooses the schema, so
the live view (schema `customer360`) and a rebuild (schema `customer360_next`) share this code.
"""

from __future__ import annotations

import json
import re
import weakref
from copy import deepcopy
from datetime import UTC, datetime
from typing import Any

import orjson
from psycopg2.extras import Json, execute_values

from crm_contracts.customer360 import SEARCH_TOTAL_CAP
from crm_customer360 import analytics_store, duplicates, segments
from crm_customer360 import view as views
from crm_runtime.inbox import create_tracking_table

SCHEMA = "customer360"

TABLES_DDL = """
CREATE TABLE IF NOT EXISTS customer_view (
    customer_id uuid PRIMARY KEY,
    name text,
    email text,
    lifecycle_stage text,
    last_activity_at timestamptz,
    doc jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS lead_view (
    lead_id uuid PRIMARY KEY,
    customer_id uuid,
    doc jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS timeline (
    origin text NOT NULL,
    position bigint NOT NULL,
    customer_id uuid,
    lead_id uuid,
    event_id uuid NOT NULL,
    type text NOT NULL,
    occurred_at timestamptz NOT NULL,
    summary text NOT NULL,
    payload jsonb NOT NULL,
    PRIMARY KEY (origin, position)
);
-- Views migrated from the first version: a lead event's row has no customer until its lead is linked.
ALTER TABLE timeline ADD COLUMN IF NOT EXISTS lead_id uuid;
ALTER TABLE timeline ALTER COLUMN customer_id DROP NOT NULL;
CREATE TABLE IF NOT EXISTS view_clock (
    one boolean PRIMARY KEY DEFAULT true CHECK (one),
    as_of timestamptz
);
INSERT INTO view_clock (one, as_of) VALUES (true, NULL) ON CONFLICT (one) DO NOTHING;
-- Merged customers (view.py's docstring): each customer's own view (part) while it is in a merge, the
-- merges' links, and the customer each record (order, opportunity, case, survey, loyalty account) belongs to.
CREATE TABLE IF NOT EXISTS customer_part (
    customer_id uuid PRIMARY KEY,
    doc jsonb NOT NULL
);
CREATE TABLE IF NOT EXISTS customer_merge (
    merge_id text NOT NULL,
    customer_id uuid NOT NULL,
    survivor_id uuid NOT NULL,
    merged_at timestamptz NOT NULL,
    unmerged_at timestamptz,
    PRIMARY KEY (merge_id, customer_id)
);
CREATE INDEX IF NOT EXISTS customer_merge_absorbed ON customer_merge (customer_id) WHERE unmerged_at IS NULL;
CREATE INDEX IF NOT EXISTS customer_merge_survivor ON customer_merge (survivor_id) WHERE unmerged_at IS NULL;
CREATE TABLE IF NOT EXISTS record_owner (
    origin text NOT NULL,
    record_id text NOT NULL,
    customer_id uuid NOT NULL,
    PRIMARY KEY (origin, record_id)
);
CREATE TABLE IF NOT EXISTS customer_search (
    term text COLLATE "C" NOT NULL,
    sort_name text COLLATE "C",
    customer_id uuid NOT NULL
);
"""
#: Search: what a query matches is the start of one of a customer's *search terms*, each a row of
#: `customer_search` (the whole name, each of its first SEARCH_WORDS words, the email; lower case), so a
#: query is one range scan of a btree in the order the answer shows (matched term, name, id) that stops
#: after the page instead of reading every match. apply_batch keeps the terms of the customers whose name
#: or email it changes, in the same transaction.
SEARCH_WORDS = 6
TERMS_PER_CUSTOMER = SEARCH_WORDS + 2
# `total` counts matching customers exactly up to SEARCH_TOTAL_CAP (the contract's); past it the answer
# says that many and `total_capped: true` (counting every match of a short prefix costs more than the page).
_WORD_BREAK = re.compile(r"\W+")

#: Search and timeline indexes. A rebuild creates them after its bulk load: filling indexes row by row
#: costs more than building them once.
INDEXES_DDL = """
DROP INDEX IF EXISTS customer_view_name_trgm;
DROP INDEX IF EXISTS customer_view_email_trgm;
CREATE INDEX IF NOT EXISTS customer_view_name ON customer_view (name, customer_id);
CREATE INDEX IF NOT EXISTS timeline_customer ON timeline (customer_id, occurred_at DESC);
CREATE INDEX IF NOT EXISTS timeline_lead ON timeline (lead_id) WHERE lead_id IS NOT NULL;
CREATE INDEX IF NOT EXISTS customer_search_order ON customer_search (term, sort_name, customer_id);
"""

TIMELINE_PAGE = 50


def create_tables(cur: Any, with_indexes: bool = True) -> None:
    """Migration (`crm-migrate customer360`): the read model and its inbox tracking."""
    cur.execute(TABLES_DDL)
    analytics_store.create_tables(cur)
    segments.create_tables(cur)
    duplicates.create_extension(cur)
    if with_indexes:
        create_indexes(cur)
    create_tracking_table(cur)
    _fill_record_owners(cur)


def _fill_record_owners(cur: Any) -> None:
    """A view folded before records had owners (view.assign_owners): each record's owner is the customer of
    its first timeline row (no merge existed then, so the customer its first event carried). Runs once, in
    the migration, while writers of the timeline wait."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM record_owner) OR NOT EXISTS (SELECT 1 FROM timeline)")
    if cur.fetchone()[0]:
        return
    cur.execute("LOCK TABLE timeline IN SHARE MODE")
    record = "CASE origin {} END".format(" ".join(
        "WHEN '{}' THEN CASE {} END".format(origin, " ".join(
            f"WHEN coalesce(payload ->> '{field}', '') <> '' THEN '{field}:' || (payload ->> '{field}')"
            for field in fields))
        for origin, fields in views.RECORD_FIELDS.items()))
    cur.execute(
        "INSERT INTO record_owner (origin, record_id, customer_id) "
        "SELECT DISTINCT ON (origin, record_id) origin, record_id, customer_id FROM "
        f"(SELECT origin, position, customer_id, {record} AS record_id FROM timeline "
        " WHERE customer_id IS NOT NULL AND lead_id IS NULL) AS rows "
        "WHERE record_id IS NOT NULL ORDER BY origin, record_id, position ON CONFLICT DO NOTHING")


def create_indexes(cur: Any) -> None:
    """The indexes (and, for a view folded before search terms existed, its terms)."""
    _fill_search_terms(cur)
    cur.execute(INDEXES_DDL)
    duplicates.create_indexes(cur)


def search_terms(name: str | None, email: str | None) -> set[str]:
    """A customer's search terms: the whole name, each of its first SEARCH_WORDS words, the email (lower case)."""
    terms = set()
    if name:
        lowered = name.lower()
        terms.add(lowered)
        terms.update([word for word in _WORD_BREAK.split(lowered) if word][:SEARCH_WORDS])
    if email:
        terms.add(email.lower())
    terms.discard("")
    return terms


def _search_rows(customer_id: str, name: str | None, email: str | None) -> list[tuple[str, str | None, str]]:
    sort_name = name.lower() if name else None
    return [(term, sort_name, customer_id) for term in sorted(search_terms(name, email))]


def _named(doc: dict[str, Any]) -> tuple[str | None, str | None]:
    """What a customer is found by: (name, email) of a view document."""
    profile = doc.get("profile") or {}
    return profile.get("name"), profile.get("email")


def _update_search_terms(cur: Any, before: dict[str, tuple[str | None, str | None]],
                         after: dict[str, tuple[str | None, str | None]]) -> None:
    """Replace the terms of the customers whose name or email changed (`before` and `after` by id)."""
    changed = sorted(cid for cid, named in after.items() if before.get(cid, (None, None)) != named)
    gone = [row for cid in changed for row in _search_rows(cid, *before.get(cid, (None, None)))]
    new = [row for cid in changed for row in _search_rows(cid, *after[cid])]
    if gone:
        execute_values(cur, "DELETE FROM customer_search AS s USING (VALUES %s) AS g (term, sort_name, customer_id) "
                            "WHERE s.term = g.term AND s.customer_id = g.customer_id::uuid", gone, page_size=1000)
    if new:
        execute_values(cur, "INSERT INTO customer_search (term, sort_name, customer_id) VALUES %s", new,
                       page_size=1000)


def _fill_search_terms(cur: Any, page: int = 5000) -> None:
    """Derive every customer's search terms when the view has customers and no terms (a view folded by a
    version without search terms; a migration runs it once), while writers of the view wait."""
    cur.execute("SELECT EXISTS (SELECT 1 FROM customer_search) OR NOT EXISTS "
                "(SELECT 1 FROM customer_view WHERE name IS NOT NULL OR email IS NOT NULL)")
    if cur.fetchone()[0]:
        return
    cur.execute("LOCK TABLE customer_view IN SHARE MODE")
    after = None
    while True:
        cur.execute("SELECT customer_id::text, name, email FROM customer_view WHERE %(after)s::uuid IS NULL "
                    "OR customer_id > %(after)s::uuid ORDER BY customer_id LIMIT %(page)s",
                    {"after": after, "page": page})
        found = cur.fetchall()
        if not found:
            return
        _update_search_terms(cur, {}, {cid: (name, email) for cid, name, email in found})
        after = found[-1][0]


def apply_batch(cur: Any, envelopes: list[dict[str, Any]]) -> None:
    """Fold a batch of envelopes into the views, the leads and the timeline, in one round trip per table.

    Safe with any number of replicas: each row is locked before it is read, even one seen for the
    first time. Rows that do not exist yet are first inserted as empty placeholders (ON CONFLICT DO
    NOTHING); a second writer of the same new row then waits on the first one's insert until it
    commits, and folds on top of its row instead of folding from an empty one and overwriting it (a
    lost update, for good since tracking has moved).

    No deadlock: every transaction takes its origin's tracking row first (the inbox), then the view
    clock (shared), then its leads' rows in lead id order, then its customers' rows in customer id
    order, both when inserting placeholders and when locking with FOR UPDATE (ORDER BY: PostgreSQL
    locks rows in the sorted order). The customers a lead links to are known once its row is locked,
    before any customer row is taken. Were a deadlock reported anyway, it is a transient error: the
    inbox rolls the origin back and retries it.

    Lead events (no customer id) are folded into `lead_view`; once customer.lead_linked says which
    customer a lead became, in either order of arrival, the lead is shown in that customer's view and
    its timeline rows get the customer id (view.py's docstring tells the whole rule).

    Merged customers (view.py's docstring): an event is folded into its owner's part; the row locked
    and written is the `customer_view` row of the customer that shows that part (its final survivor,
    or itself), so every writer of a merged customer's parts holds its survivor's row. A customer alone
    is its own part (its `customer_view` row, no `customer_part` row); a customer in a merge keeps its
    part in `customer_part` and only the survivor has a `customer_view` row, the combined one. A batch
    with a merge or an unmerge takes the view clock exclusively (merges are rare), so links never
    change under another batch.
    """
    lead_ids = sorted({lead_id for e in envelopes if (lead_id := views.lead_id_of(e)) is not None})
    direct = [e for e in envelopes if e.get("customer_id") and not (e["type"] in views.LEAD_EVENTS
                                                                     and views.lead_id_of(e))]
    if not lead_ids and not direct:
        return  # nothing about a customer or a lead: campaigns, FAQ articles, types unknown here
    merges = [e for e in direct if e["type"] in views.MERGE_EVENTS]
    clock = _clock(cur, lock="FOR UPDATE" if merges else "FOR SHARE")
    leads = {lead_id: {**views.empty_lead(lead_id), **doc}
             for lead_id, doc in _lock(cur, "lead_view", "lead_id", lead_ids)}
    linked_before = {lead_id: lead["customer_id"] for lead_id, lead in leads.items()}
    owners = _record_owners(cur, direct)
    new_owners = views.assign_owners(owners, direct)
    linking = {views.key(e["payload"][field]) for e in merges for field in ("customer_id", "survivor_id")}
    own_ids = sorted({owner for e in direct if (owner := views.owner_of(e, owners))}
                     | {c for c in linked_before.values() if c} | linking)
    roots_before = _roots(cur, own_ids)
    for merge in merges:
        _record_merge(cur, merge)
    roots_after = _roots(cur, own_ids) if merges else roots_before
    groups = _members(cur, sorted(set(roots_after.values())))
    gone = sorted(set(roots_before.values()) - set(groups))  # shown before, merged into another now
    # A row folded by an older version lacks newer fields: they start empty (a rebuild fills them).
    shown_before = dict(_lock(cur, "customer_view", "customer_id", sorted(set(groups) | set(gone))))
    named_before = {cid: _named(doc) for cid, doc in shown_before.items()}
    parts = _parts(cur, sorted({m for members in groups.values() for m in members}), shown_before)
    changed = views.fold_batch(parts, leads, envelopes, owners) | linking
    written = {root: members for root, members in groups.items() if changed.intersection(members)}
    shown = {root: views.show(root, {m: parts[m] for m in members}, clock) for root, members in written.items()}
    if shown:
        _json_rows(
            cur,
            "INSERT INTO customer_view (customer_id, name, email, lifecycle_stage, last_activity_at, doc) "
            "SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r (customer_id uuid, name text, email text, "
            "lifecycle_stage text, last_activity_at timestamptz, doc jsonb) "
            "ON CONFLICT (customer_id) DO UPDATE SET name = EXCLUDED.name, email = EXCLUDED.email, "
            "lifecycle_stage = EXCLUDED.lifecycle_stage, last_activity_at = EXCLUDED.last_activity_at, "
            "doc = EXCLUDED.doc",
            [_customer_record(cid, shown[cid]) for cid in sorted(shown)],
        )
        _store_parts(cur, written, parts)
        # Their analytics, against the newest model, in the same transaction (analytics_store).
        analytics_store.apply(cur, shown)
    if gone:
        cur.execute("DELETE FROM customer_view WHERE customer_id = ANY(%s::uuid[])", (gone,))
        cur.execute("DELETE FROM customer_analytics WHERE customer_id = ANY(%s::uuid[])", (gone,))
    _update_search_terms(cur, named_before, {**{cid: _named(doc) for cid, doc in shown.items()},
                                             **{cid: (None, None) for cid in gone}})
    if new_owners:
        execute_values(cur, "INSERT INTO record_owner (origin, record_id, customer_id) VALUES %s "
                            "ON CONFLICT (origin, record_id) DO NOTHING",
                       [(origin, record, cid) for (origin, record), cid in sorted(new_owners.items())], page_size=1000)
    if leads:
        execute_values(
            cur,
            "INSERT INTO lead_view (lead_id, customer_id, doc) VALUES %s "
            "ON CONFLICT (lead_id) DO UPDATE SET customer_id = EXCLUDED.customer_id, doc = EXCLUDED.doc",
            [(lead_id, lead["customer_id"], _json(lead)) for lead_id, lead in sorted(leads.items())],
            page_size=1000,
        )
    rows = []
    for e in envelopes:
        lead_id = views.lead_id_of(e) if e["type"] in views.LEAD_EVENTS else None
        # Each row says whose it is: the part it was folded into (shown under that customer's survivor).
        customer_id = leads[lead_id]["customer_id"] if lead_id else views.owner_of(e, owners)
        if lead_id or customer_id:
            rows.append({"origin": e["origin"], "position": e["position"], "customer_id": customer_id,
                         "lead_id": lead_id, "event_id": e["event_id"], "type": e["type"], "occurred_at":
                         e["occurred_at"], "summary": views.timeline_summary(e), "payload": e["payload"]})
    _json_rows(
        cur,
        "INSERT INTO timeline (origin, position, customer_id, lead_id, event_id, type, occurred_at, summary, payload) "
        "SELECT * FROM jsonb_to_recordset(%s::jsonb) AS r (origin text, position bigint, customer_id uuid, "
        "lead_id uuid, event_id uuid, type text, occurred_at timestamptz, summary text, payload jsonb) "
        "ON CONFLICT (origin, position) DO NOTHING",
        rows,
    )
    # The lead's events that came before its link reach the customer's timeline now.
    newly_linked = [(lead["customer_id"], lead_id) for lead_id, lead in sorted(leads.items())
                    if lead["customer_id"] and not linked_before[lead_id]]
    if newly_linked:
        execute_values(
            cur,
            "UPDATE timeline SET customer_id = link.customer_id::uuid FROM (VALUES %s) AS link (customer_id, lead_id) "
            "WHERE timeline.lead_id = link.lead_id::uuid AND timeline.customer_id IS NULL",
            newly_linked,
        )
    erased = sorted(cid for members in written.values() for cid in members if parts[cid].get("erased_at"))
    if erased:
        forget_erased(cur, erased)


def _record_owners(cur: Any, envelopes: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    """The stored owners of the records these envelopes are about (view.assign_owners adds the new ones).
    Only the records' own origin writes them, one batch at a time (the inbox), so no lock is needed."""
    records = sorted({(e["origin"], record) for e in envelopes if (record := views.record_of(e)) is not None})
    if not records:
        return {}
    cur.execute("SELECT o.origin, o.record_id, o.customer_id::text FROM record_owner AS o "
                "JOIN unnest(%s::text[], %s::text[]) AS r (origin, record_id) USING (origin, record_id)",
                ([origin for origin, _ in records], [record for _, record in records]))
    return {(origin, record): cid for origin, record, cid in cur.fetchall()}


def _record_merge(cur: Any, envelope: dict[str, Any]) -> None:
    """Record a merge's link, or end it (view.apply_merge, in the table)."""
    payload = envelope["payload"]
    absorbed = views.key(payload["customer_id"])
    if envelope["type"] == "customer_merged":
        merged_at = payload.get("merged_at") or envelope["occurred_at"]
        # A later merge of the same customer replaces the link in force (as apply_merge does).
        cur.execute("UPDATE customer_merge SET unmerged_at = %s WHERE customer_id = %s AND unmerged_at IS NULL "
                    "AND merge_id <> %s", (merged_at, absorbed, payload["merge_id"]))
        cur.execute("INSERT INTO customer_merge (merge_id, customer_id, survivor_id, merged_at) "
                    "VALUES (%s, %s, %s, %s) ON CONFLICT (merge_id, customer_id) DO UPDATE SET "
                    "survivor_id = EXCLUDED.survivor_id, merged_at = EXCLUDED.merged_at, unmerged_at = NULL",
                    (payload["merge_id"], absorbed, views.key(payload["survivor_id"]), merged_at))
    else:
        cur.execute("UPDATE customer_merge SET unmerged_at = %s WHERE merge_id = %s AND customer_id = %s "
                    "AND unmerged_at IS NULL",
                    (payload.get("unmerged_at") or envelope["occurred_at"], payload["merge_id"], absorbed))


#: Bound on merges of merges followed (a cycle, which the customer service never makes, stops there).
_MAX_DEPTH = 64


def _roots(cur: Any, customer_ids: list[str]) -> dict[str, str]:
    """The customer that shows each of `customer_ids` (view.root_of, over the merges in force)."""
    if not customer_ids:
        return {}
    cur.execute(
        "WITH RECURSIVE up (start, id, depth) AS ("
        " SELECT id, id, 0 FROM unnest(%s::uuid[]) AS id"
        " UNION ALL SELECT up.start, m.survivor_id, up.depth + 1 FROM up JOIN customer_merge AS m"
        " ON m.customer_id = up.id AND m.unmerged_at IS NULL WHERE up.depth < %s) "
        "SELECT DISTINCT ON (start) start::text, id::text FROM up ORDER BY start, depth DESC, id",
        (customer_ids, _MAX_DEPTH))
    return dict(cur.fetchall())


def _members(cur: Any, roots: list[str]) -> dict[str, list[str]]:
    """Each root with the customers it shows (view.members_of): itself first, then the others in id order."""
    if not roots:
        return {}
    cur.execute(
        "WITH RECURSIVE down (root, id, depth) AS ("
        " SELECT id, id, 0 FROM unnest(%s::uuid[]) AS id"
        " UNION ALL SELECT down.root, m.customer_id, down.depth + 1 FROM down JOIN customer_merge AS m"
        " ON m.survivor_id = down.id AND m.unmerged_at IS NULL WHERE down.depth < %s) "
        "SELECT root::text, id::text FROM down WHERE id <> root ORDER BY root, id",
        (roots, _MAX_DEPTH))
    groups: dict[str, list[str]] = {root: [root] for root in roots}
    for root, member in cur.fetchall():
        if member not in groups[root]:
            groups[root].append(member)
    return groups


def survivor_of(cur: Any, customer_id: str) -> str | None:
    """The final survivor of a customer merged into another (MovedError), or None for one not merged."""
    root = _roots(cur, [views.key(customer_id)]).get(views.key(customer_id))
    return root if root is not None and root != views.key(customer_id) else None


def _parts(cur: Any, customer_ids: list[str], shown: dict[str, dict[str, Any]]) -> dict[str, views.View]:
    """Each customer's own view: its `customer_part` row while in a merge, else its shown row (alone)."""
    cur.execute("SELECT customer_id::text, doc::text FROM customer_part WHERE customer_id = ANY(%s::uuid[])",
                (customer_ids,))
    stored = {cid: orjson.loads(doc) for cid, doc in cur.fetchall()}
    parts = {}
    for cid in customer_ids:
        doc = stored[cid] if cid in stored else shown.get(cid) or {}
        parts[cid] = {**views.empty_view(cid), **{k: v for k, v in doc.items() if k != "merged_from"}}
    return parts


def _store_parts(cur: Any, written: dict[str, list[str]], parts: dict[str, views.View]) -> None:
    """Keep the parts of customers in a merge; a customer alone again has none (its shown row is its part)."""
    kept = [(cid, _json(parts[cid])) for members in written.values() if len(members) > 1 for cid in members]
    alone = [root for root, members in written.items() if len(members) == 1]
    if kept:
        execute_values(cur, "INSERT INTO customer_part (customer_id, doc) VALUES %s "
                            "ON CONFLICT (customer_id) DO UPDATE SET doc = EXCLUDED.doc", sorted(kept), page_size=1000)
    if alone:
        cur.execute("DELETE FROM customer_part WHERE customer_id = ANY(%s::uuid[])", (alone,))


def forget_erased(cur: Any, customer_ids: list[str]) -> None:
    """Erased customers (customer.customer_erased, GDPR Art. 17/19): their timeline rows, their leads and
    any envelope about them parked by this inbox keep no personal data. Runs in the batch's transaction
    each time an erased customer's view is touched, so rows that arrive after the erasure (other origins,
    or a rebuild's order) are forgotten too; the view itself forgets in `views.finish`."""
    cur.execute("SELECT origin, position, type, payload FROM timeline WHERE customer_id = ANY(%s::uuid[]) "
                "ORDER BY origin, position FOR UPDATE", (customer_ids,))
    rows = [(origin, position, views.forgotten_summary(kind, payload), Json(views.forget_payload(payload)))
            for origin, position, kind, payload in cur.fetchall()
            if views.forget_payload(payload) != payload]
    if rows:
        execute_values(
            cur,
            "UPDATE timeline SET summary = f.summary, payload = f.payload::jsonb "
            "FROM (VALUES %s) AS f (origin, position, summary, payload) "
            "WHERE timeline.origin = f.origin AND timeline.position = f.position",
            rows,
        )
    cur.execute("UPDATE lead_view SET doc = doc || '{\"name\": null, \"company\": null}'::jsonb "
                "WHERE customer_id = ANY(%s::uuid[]) AND (doc->>'name' IS NOT NULL OR doc->>'company' IS NOT NULL)",
                (customer_ids,))
    cur.execute("UPDATE inbox_parked SET envelope = jsonb_set(envelope, '{payload}', '{}'::jsonb) "
                "WHERE envelope->>'customer_id' = ANY(%s) AND envelope->'payload' <> '{}'::jsonb",
                (customer_ids,))


def advance_clock(cur: Any, as_of: datetime, page: int = 1000) -> int:
    """Move the view's clock forward to `as_of` (never back) and re-derive every customer's stage as of it.

    Time-based stages (at risk, churned) change with time alone; the fold never reads the wall clock,
    so this periodic refresh is what moves them, and the instant it used is stored with the view (a
    rebuild copies it, so rebuilt rows equal live ones). Locks the clock, then customers in id order,
    as apply_batch does. Returns how many customers changed.
    """
    current = _clock(cur, lock="FOR UPDATE")
    instant = max(filter(None, [_instant(current), as_of]))
    cur.execute("UPDATE view_clock SET as_of = %s", (instant,))
    clock = _clock(cur)
    changed, after = 0, None
    while True:
        cur.execute(
            "SELECT customer_id::text, doc FROM customer_view "
            "WHERE %(after)s::uuid IS NULL OR customer_id > %(after)s::uuid "
            "ORDER BY customer_id LIMIT %(page)s FOR UPDATE",
            {"after": after, "page": page},
        )
        found = cur.fetchall()
        if not found:
            return changed
        updates = []
        for cid, doc in found:
            if not doc:
                continue
            fresh = deepcopy({**views.empty_view(cid), **doc})  # nested values too: `doc` is the "before"
            views.finish(fresh, clock)
            if fresh != doc:
                updates.append(_customer_row(cid, fresh))
        if updates:
            execute_values(
                cur,
                "UPDATE customer_view SET lifecycle_stage = u.stage, doc = u.doc::jsonb "
                "FROM (VALUES %s) AS u (customer_id, name, email, stage, last_activity_at, doc) "
                "WHERE customer_view.customer_id = u.customer_id::uuid",
                updates,
            )
        changed += len(updates)
        after = found[-1][0]


def view_clock(cur: Any) -> str | None:
    """The instant the view's time-based stages were last refreshed as of (ISO 8601, UTC), or None."""
    return _clock(cur)


def _clock(cur: Any, lock: str = "") -> str | None:
    cur.execute(f"SELECT as_of FROM view_clock {lock}")
    row = cur.fetchone()
    return row[0].astimezone(UTC).isoformat() if row and row[0] else None


def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _json_rows(cur: Any, statement: str, rows: list[dict[str, Any]]) -> None:
    """Run `statement`, which reads its rows from one jsonb parameter (jsonb_to_recordset), with `rows`:
    PostgreSQL decodes them in one go, where execute_values formatted each row in Python (a fifth of a
    batch's time)."""
    if rows:
        cur.execute(statement, (_orjson_text(rows),))


def _json(value: Any) -> Json:
    """A document for a jsonb column, encoded by orjson (the json module took a tenth of a batch's time)."""
    return Json(value, dumps=_orjson_text)


def _orjson_text(value: Any) -> str:
    return orjson.dumps(value).decode()


def _lock(cur: Any, table: str, key: str, ids: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """Lock the rows `ids` of `table` (placeholders for new ones, then FOR UPDATE), in id order."""
    if not ids:
        return []
    cur.execute(
        f"INSERT INTO {table} ({key}, doc) SELECT id, '{{}}'::jsonb FROM unnest(%s::uuid[]) AS id "
        f"ORDER BY id ON CONFLICT ({key}) DO NOTHING",
        (ids,),
    )
    cur.execute(f"SELECT {key}::text, doc::text FROM {table} WHERE {key} = ANY(%s::uuid[]) ORDER BY {key} FOR UPDATE",
                (ids,))
    # Fresh objects, ours to fold into; a placeholder ({}) is a row seen for the first time.
    return [(row_id, orjson.loads(doc)) for row_id, doc in cur.fetchall()]


def _customer_record(cid: str, doc: dict[str, Any]) -> dict[str, Any]:
    """A customer_view row as _json_rows takes it."""
    return {"customer_id": cid, "name": doc["profile"].get("name"), "email": doc["profile"].get("email"),
            "lifecycle_stage": doc["lifecycle_stage"], "last_activity_at": doc["last_activity_at"], "doc": doc}


def _customer_row(cid: str, doc: dict[str, Any]) -> tuple[Any, ...]:
    return (cid, doc["profile"].get("name"), doc["profile"].get("email"), doc["lifecycle_stage"],
            doc["last_activity_at"], _json(doc))


#: Reads prepared on each connection the first time it runs them (their planning cost less than the
#: query); a connection the pool discards takes its statements with it.
_prepared: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def _run_prepared(cur: Any, name: str, types: str, statement: str, args: tuple[Any, ...]) -> None:
    """Execute `statement` (parameters $1, $2, ... of `types`) as the connection's prepared statement `name`.

    PostgreSQL re-plans a prepared statement by itself when a table it reads changes (a rebuild's swap
    replaces the schema), resolving names through the same search_path.
    """
    conn = cur.connection
    ready = _prepared.get(conn)
    if ready is None:
        ready = _prepared[conn] = set()
    if name not in ready:
        cur.execute(f"PREPARE {name} ({types}) AS {statement}")  # not undone by a rollback: kept for good
        ready.add(name)
    cur.execute(f"EXECUTE {name} ({', '.join(['%s'] * len(args))})", args)


#: One customer's 360 answer, built by PostgreSQL as JSON text in one statement: the view's document,
#: its newest timeline entries (with those of the customers merged into it: each entry names the customer
#: it is about), its event count and its analytics (null before the first refresh).
TIMELINE_ENTRY_SQL = """jsonb_build_object('origin', t.origin, 'position', t.position, 'event_id', t.event_id,
    'type', t.type, 'occurred_at', t.occurred_at, 'summary', t.summary, 'customer_id', t.customer_id)"""
TIMELINE_ORDER_SQL = "occurred_at DESC, origin, position DESC"
CUSTOMER_360_SQL = f"""
SELECT (v.doc || jsonb_build_object(
    'timeline', coalesce((
        SELECT jsonb_agg({TIMELINE_ENTRY_SQL} ORDER BY t.occurred_at DESC, t.origin, t.position DESC)
        FROM (SELECT * FROM (
            (SELECT origin, position, event_id, type, occurred_at, summary, customer_id FROM timeline
             WHERE customer_id = v.customer_id ORDER BY {TIMELINE_ORDER_SQL} LIMIT $2)
            UNION ALL
            (SELECT origin, position, event_id, type, occurred_at, summary, customer_id FROM timeline
             WHERE customer_id = ANY(ARRAY(SELECT jsonb_array_elements_text(v.doc -> 'merged_from')::uuid))
             ORDER BY {TIMELINE_ORDER_SQL} LIMIT $2)) AS shown
            ORDER BY {TIMELINE_ORDER_SQL} LIMIT $2) AS t), '[]'::jsonb),
    'timeline_total', (SELECT coalesce(sum(n::bigint), 0) FROM jsonb_each_text(v.doc -> 'events') AS e (origin, n)),
    'analytics', a.doc))::text
FROM customer_view AS v LEFT JOIN customer_analytics AS a ON a.customer_id = v.customer_id
WHERE v.customer_id = $1
"""


def customer_360_json(cur: Any, customer_id: str) -> str | None:
    """One customer's 360° record (with the newest timeline entries and analytics) as JSON text, or None."""
    _run_prepared(cur, "customer_360", "uuid, int", CUSTOMER_360_SQL, (customer_id, TIMELINE_PAGE))
    row = cur.fetchone()
    return row[0] if row else None


def customer_360(cur: Any, customer_id: str) -> dict[str, Any] | None:
    """One customer's 360° record, decoded (see customer_360_json), or None."""
    text = customer_360_json(cur, customer_id)
    return None if text is None else json.loads(text)  # type: ignore[no-any-return]


#: The items of a search page (CTE `page`: customer_id, rank), as a JSON array in rank order.
_SEARCH_ITEMS = """
coalesce((SELECT json_agg(json_build_object(
    'customer_id', v.customer_id, 'name', v.name, 'email', v.email, 'lifecycle_stage', v.lifecycle_stage,
    'last_activity_at', v.last_activity_at) ORDER BY p.rank)
    FROM page AS p JOIN customer_view AS v ON v.customer_id = p.customer_id), '[]')
"""
#: A page of customers with a search term starting with $1 (lower case), in the order of the first term
#: each matched (then name, id): the first $2 matching terms in index order (an index-only range scan;
#: no term holds U+10FFFF, the upper bound), each customer ranked at its first. Also says whether those
#: terms decided the page and the total (see search_json). $3 offset, $4 page size, $5 page, $6 the cap
#: of the total, $7 the customers needed to decide.
SEARCH_SQL = f"""
WITH firsts AS (
    SELECT customer_id, min(rank) AS rank, count(*) AS terms FROM (
        SELECT customer_id, row_number() OVER (ORDER BY term, sort_name, customer_id) AS rank
        FROM customer_search WHERE term >= $1 AND term < $1 || chr(1114111)
        ORDER BY term, sort_name, customer_id LIMIT $2) AS scan
    GROUP BY customer_id
), page AS (
    SELECT customer_id, rank FROM firsts ORDER BY rank OFFSET $3 LIMIT $4
), counted AS (
    SELECT count(*) AS customers, coalesce(sum(terms), 0) AS scanned FROM firsts
)
SELECT json_build_object('items', {_SEARCH_ITEMS}, 'page', $5, 'page_size', $4,
                         'total', least(c.customers, $6), 'total_capped', c.customers > $6)::text,
       c.scanned < $2 OR c.customers >= $7
FROM counted AS c
"""
#: Every customer (an empty query), by name; $1 offset, $2 page size, $3 page, $4 the cap of the total.
LIST_SQL = f"""
WITH page AS (
    SELECT customer_id, row_number() OVER (ORDER BY name, customer_id) AS rank
    FROM (SELECT customer_id, name FROM customer_view ORDER BY name, customer_id OFFSET $1 LIMIT $2) AS listed
), counted AS (
    SELECT count(*) AS customers FROM (SELECT 1 FROM customer_view LIMIT $4 + 1) AS counted_rows
)
SELECT json_build_object('items', {_SEARCH_ITEMS}, 'page', $3, 'page_size', $2,
                         'total', least(c.customers, $4), 'total_capped', c.customers > $4)::text
FROM counted AS c
"""


def search_json(cur: Any, query: str, page: int, page_size: int) -> str:
    """Customers whose name, a word of their name, or email starts with `query` (case-insensitive), a page
    at a time, as JSON text (crm_contracts.customer360.SearchPageSchema). An empty query lists everyone.

    `total` is exact up to SEARCH_TOTAL_CAP customers; past it, it is the cap and `total_capped` is true.
    A customer has at most TERMS_PER_CUSTOMER terms, so the first (offset + page) x TERMS_PER_CUSTOMER
    matching terms always hold the page; most queries need far fewer (a customer rarely matches twice),
    so a small window is tried first and the safe one only when the small one could not decide.
    """
    query = query.strip().lower()  # as search_terms lowers the terms
    offset = (page - 1) * page_size
    if not query:
        _run_prepared(cur, "customer_list", "int, int, int, int", LIST_SQL, (offset, page_size, page, SEARCH_TOTAL_CAP))
        return cur.fetchone()[0]  # type: ignore[no-any-return]
    needed = max(offset + page_size, SEARCH_TOTAL_CAP + 1)
    for window in (2 * needed, TERMS_PER_CUSTOMER * needed):
        _run_prepared(cur, "customer_search", "text, int, int, int, int, int, int", SEARCH_SQL,
                      (query, window, offset, page_size, page, SEARCH_TOTAL_CAP, needed))
        text, decided = cur.fetchone()
        if decided:
            break
    return text  # type: ignore[no-any-return]


def search(cur: Any, query: str, page: int, page_size: int) -> dict[str, Any]:
    """A search page, decoded (see search_json)."""
    return json.loads(search_json(cur, query, page, page_size))  # type: ignore[no-any-return]


def all_rows(cur: Any) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every read-model table, in a stable order (to compare a rebuild with the live view)."""
    tables = {}
    for table, order in (("customer_view", "customer_id"), ("lead_view", "lead_id"), ("timeline", "origin, position"),
                         ("view_clock", "one"), ("customer_search", "term, customer_id"), ("analytics_model", "as_of"),
                         ("customer_analytics", "customer_id"), ("saved_segment", "segment_id"),
                         ("customer_part", "customer_id"), ("customer_merge", "merge_id, customer_id"),
                         ("record_owner", "origin, record_id")):
        cur.execute(f"SELECT * FROM {table} ORDER BY {order}")
        tables[table] = cur.fetchall()
    return tables
