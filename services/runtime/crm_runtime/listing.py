"""Lists with filters and paging over a service's own aggregates: a listing projection.

An event-sourced service can load an aggregate by id, not answer "the open cases of this customer".
A `Listing` keeps one row per listed aggregate in the table `<schema>.listing`, in the service's own
schema: the aggregate's kind, id, the three columns most lists filter on (customer_id, status,
owner), when it last changed, its version, and `doc`: the same dict the service's RPC answers for
that aggregate (its contract schema's dump), so a list item looks like the item one GETs.

The service declares which aggregate classes are listed and how each becomes a row:

    Listing("order", {Order: ListingKind("orders", view=order_view, columns=order_columns,
                                         filters=("status", "customer_id", "payment_status"))})

`ListingProjector` fills the table. It reads the service's notification log after its tracked
position (`<schema>.listing_tracking`), takes the ids of the listed aggregates that changed, loads
each from the application's repository (its current state: several events of one aggregate make one
row), turns it into a row and upserts the rows together with the new position in one psycopg2
transaction: a crash repeats a page, never loses one, and a repeated page writes the same rows. The
event store commits notification ids in order (its insert locks the table, crm_runtime.eventstore),
so reading after the tracked position never skips an event. Aggregates of unlisted classes (command
markers, claims, parked reactions) are moved past without being loaded.

A row function that raises is a bug about one aggregate, not a reason to stop every list: the
aggregate is parked in `<schema>.listing_parked` (kind, id, position, reason), logged as an error,
and the projector moves on; its row stays as it was until the aggregate's next change projects
cleanly (which removes the parked entry). Anything else (the database, loading an aggregate) fails
the whole page, which is retried after a back-off: nothing is moved past.

Lists are eventually consistent: a change appears once the projector has read it, normally a few
milliseconds after its commit (it wakes on the event store's NOTIFY and polls as a backstop), longer
while the projecting replica is down or catching up. Reads by id (the RPC `get_*` methods) are
always current.

`Listing.query` answers one page: equality filters on the indexed columns and on top-level keys of
`doc` (only those the kind whitelists; another field is an InvalidRequestError naming it), newest
change first (`updated_at DESC, id`). Counting a big match costs as much as reading it, so `total`
counts at most MAX_TOTAL rows: beyond that `total` is MAX_TOTAL and `total_exact` is false; pages
are served only within the first MAX_TOTAL rows (deeper offsets are slow: narrow the filters).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import select
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import psycopg2
import psycopg2.extensions
from eventsourcing.application import AggregateNotFoundError
from eventsourcing.utils import resolve_topic
from psycopg2 import sql
from psycopg2.extras import Json, execute_values

from crm_contracts.errors import InvalidRequestError

log = logging.getLogger(__name__)

#: Columns a filter may name besides whitelisted doc keys; each indexed together with the kind.
COLUMNS = ("customer_id", "status", "owner")

#: `total` counts this many matching rows at most; pages reach no deeper than this.
MAX_TOTAL = 10_000
#: The largest page one query answers.
MAX_PAGE_SIZE = 100

LISTING_DDL = """
CREATE TABLE IF NOT EXISTS {schema}.listing (
    kind text NOT NULL,
    id uuid NOT NULL,
    customer_id uuid NULL,
    status text NULL,
    owner text NULL,
    updated_at timestamptz NOT NULL,
    version int NOT NULL,
    doc jsonb NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE INDEX IF NOT EXISTS listing_recent ON {schema}.listing (kind, updated_at DESC, id);
CREATE INDEX IF NOT EXISTS listing_status ON {schema}.listing (kind, status, updated_at DESC, id);
CREATE INDEX IF NOT EXISTS listing_customer ON {schema}.listing (kind, customer_id, updated_at DESC, id);
CREATE INDEX IF NOT EXISTS listing_owner ON {schema}.listing (kind, owner, updated_at DESC, id);
CREATE INDEX IF NOT EXISTS listing_doc ON {schema}.listing USING gin (doc jsonb_path_ops);
CREATE TABLE IF NOT EXISTS {schema}.listing_tracking (
    name text PRIMARY KEY,
    position bigint NOT NULL DEFAULT 0,
    updated_at timestamptz NOT NULL DEFAULT now()
);
INSERT INTO {schema}.listing_tracking (name) VALUES ('listing') ON CONFLICT (name) DO NOTHING;
CREATE TABLE IF NOT EXISTS {schema}.listing_parked (
    kind text NOT NULL,
    id uuid NOT NULL,
    position bigint NOT NULL,
    reason text NOT NULL,
    parked_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, id)
);
"""


def create_listing_tables(conn: Any, schema: str) -> None:
    """Migration: the listing table, its indexes, its tracking row and its parked list in `schema`."""
    with conn.cursor() as cur:
        cur.execute(sql.SQL(LISTING_DDL).format(schema=sql.Identifier(schema)))


@dataclass(frozen=True)
class ListingKind:
    """How one aggregate class is listed.

    `view` makes the doc (the RPC answer for the aggregate); `columns` its indexed columns (any of
    COLUMNS); `filters` the fields a query may filter on: a column, a top-level doc key, or a name
    in `aliases` standing for a column (a case's "agent" is its `owner` column). A filter whose name
    ends in `_id` takes a UUID, compared in its canonical form.
    """

    name: str
    view: Callable[[Any], dict[str, Any]]
    columns: Callable[[Any], Mapping[str, Any]] = lambda aggregate: {}
    filters: tuple[str, ...] = ()
    aliases: Mapping[str, str] = field(default_factory=dict)

    def row(self, aggregate: Any) -> dict[str, Any]:
        """The listing row of `aggregate` (raises whatever the service's functions raise)."""
        columns = dict(self.columns(aggregate))
        unknown = set(columns) - set(COLUMNS)
        if unknown:
            raise ValueError(f"listing kind {self.name}: unknown columns {sorted(unknown)}")
        customer_id = columns.get("customer_id")
        return {
            "kind": self.name,
            "id": str(aggregate.id),
            "customer_id": str(customer_id) if customer_id is not None else None,
            "status": columns.get("status"),
            "owner": columns.get("owner"),
            "updated_at": aggregate.modified_on,
            "version": aggregate.version,
            # Round-trip through JSON now, so a doc that cannot be stored fails here, for this one aggregate.
            "doc": json.loads(json.dumps(self.view(aggregate), default=str)),
        }


@dataclass(frozen=True)
class Listing:
    """A service's lists: which aggregate classes are listed (and how), in which schema."""

    schema: str
    kinds: Mapping[type, ListingKind]
    #: Internal: kind name -> ListingKind.
    by_name: dict[str, ListingKind] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "by_name", {kind.name: kind for kind in self.kinds.values()})

    def in_schema(self, schema: str) -> Listing:
        """The same lists in another schema (a test's own)."""
        return dataclasses.replace(self, schema=schema)

    def kind_of(self, event_class: type) -> tuple[type, ListingKind] | None:
        """The listed aggregate class (and its kind) an event class belongs to, or None."""
        for aggregate_class, kind in self.kinds.items():
            if issubclass(event_class, aggregate_class.Event):  # type: ignore[attr-defined]
                return aggregate_class, kind
        return None

    # -- reading ---------------------------------------------------------------------------------

    def query(
        self,
        cur_or_conn: Any,
        kind: str,
        filters: Mapping[str, Any] | None = None,
        page: int = 1,
        page_size: int = 20,
    ) -> dict[str, Any]:
        """One page of `kind`, newest change first: {"items", "page", "page_size", "total", "total_exact"}.

        `filters` maps a whitelisted field to the value it must equal. Eventually consistent (see
        the module docstring). Bad paging or an unknown filter is an InvalidRequestError naming it.
        """
        spec = self.by_name[kind]
        page, page_size = _paging(page, page_size)
        where, params = self._where(spec, filters or {})
        table = sql.Identifier(self.schema, "listing")
        owned = isinstance(cur_or_conn, psycopg2.extensions.connection)
        cur = cur_or_conn.cursor() if owned else cur_or_conn
        try:
            cur.execute(
                sql.SQL("SELECT doc FROM {} WHERE {} ORDER BY updated_at DESC, id LIMIT %s OFFSET %s").format(
                    table, where
                ),
                [*params, page_size, (page - 1) * page_size],
            )
            items = [row[0] for row in cur.fetchall()]
            cur.execute(
                sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} WHERE {} LIMIT %s) AS matching").format(table, where),
                [*params, MAX_TOTAL + 1],
            )
            counted = int(cur.fetchone()[0])
        finally:
            if owned:
                cur.close()
        return {"items": items, "page": page, "page_size": page_size, "total": min(counted, MAX_TOTAL),
                "total_exact": counted <= MAX_TOTAL}

    def rows(self, cur: Any, kind: str, filters: Mapping[str, Any] | None = None) -> list[tuple[UUID, UUID | None]]:
        """(id, customer_id) of every row of `kind` matching `filters`, by id: what a periodic sweep walks
        (a stable order, unlike pages by last change, which move while the sweep changes them)."""
        where, params = self._where(self.by_name[kind], filters or {})
        cur.execute(
            sql.SQL("SELECT id, customer_id FROM {} WHERE {} ORDER BY id").format(
                sql.Identifier(self.schema, "listing"), where
            ),
            params,
        )
        return [(UUID(str(row_id)), UUID(str(customer)) if customer else None) for row_id, customer in cur.fetchall()]

    def _where(self, spec: ListingKind, filters: Mapping[str, Any]) -> tuple[sql.Composable, list[Any]]:
        if not isinstance(filters, Mapping):
            raise InvalidRequestError("filters: must be an object", fields={"filters": ["must be an object"]})
        clauses: list[sql.Composable] = [sql.SQL("kind = %s")]
        params: list[Any] = [spec.name]
        for name in sorted(filters):
            value = filters[name]
            if name not in spec.filters:
                allowed = ", ".join(spec.filters) or "none"
                raise InvalidRequestError(
                    f"{name}: {spec.name} cannot be filtered by {name!r} (filters: {allowed})",
                    fields={name: [f"unknown filter; {spec.name} filters on: {allowed}"]},
                )
            if isinstance(value, UUID):
                value = str(value)
            if not isinstance(value, str):
                raise InvalidRequestError(f"{name}: a filter value is a string", fields={name: ["must be a string"]})
            if name.endswith("_id"):
                try:
                    value = str(UUID(value))
                except ValueError:
                    reason = "must be a UUID"
                    raise InvalidRequestError(f"{name}: {value!r} is not a UUID", fields={name: [reason]}) from None
            column = spec.aliases.get(name, name)
            if column in COLUMNS:
                clauses.append(sql.SQL("{} = %s").format(sql.Identifier(column)))
                params.append(value)
            else:
                clauses.append(sql.SQL("doc @> %s"))  # served by the GIN index on doc
                params.append(Json({name: value}))
        return sql.SQL(" AND ").join(clauses), params


def _paging(page: Any, page_size: Any) -> tuple[int, int]:
    """Checked page and page size: whole numbers in range (a page beyond MAX_TOTAL matches is refused)."""
    checked = {}
    for name, value, high in (("page", page, None), ("page_size", page_size, MAX_PAGE_SIZE)):
        if isinstance(value, bool) or not isinstance(value, int | str):
            number = None
        else:
            try:
                number = int(value)
            except ValueError:
                number = None
        bound = f"a whole number from 1 to {high}" if high else "a whole number from 1"
        if number is None or number < 1 or (high is not None and number > high):
            raise InvalidRequestError(f"{name}: {value!r} is not {bound}", fields={name: [f"must be {bound}"]})
        checked[name] = number
    if (checked["page"] - 1) * checked["page_size"] >= MAX_TOTAL:
        reason = f"pages reach the first {MAX_TOTAL} matches only: narrow the filters"
        raise InvalidRequestError(f"page: {reason}", fields={"page": [reason]})
    return checked["page"], checked["page_size"]


@dataclass
class ListingStats:
    """What the projector has done since it started (reported by health)."""

    is_leader: bool = False
    position: int = 0
    projected: int = 0
    parked: int = 0
    errors: int = 0
    last_error: str | None = None


class ListingProjector:
    """Keeps a service's `listing` table up to date from its own notification log.

    `project_pending()` catches up synchronously (tests, tools); `run(stopping)` is the loop a service
    process runs: one replica at a time (a PostgreSQL advisory lock elects it), woken by the event
    store's NOTIFY after each commit, polling as a backstop, and outliving any error (logged, backed
    off from, retried). Each page is also serialised on the tracking row, so even two projectors
    running at once (a takeover) write every row once per page, in order.
    """

    def __init__(
        self,
        app: Any,
        listing: Listing,
        dsn: str,
        page_size: int = 500,
        poll_interval: float = 1.0,
        max_backoff: float = 5.0,
    ) -> None:
        self.app = app
        self.listing = listing
        self.dsn = dsn
        self.page_size = page_size
        self.poll_interval = poll_interval
        self.max_backoff = max_backoff
        self.stats = ListingStats()
        self.lock_key = zlib.crc32(f"crm.listing.{listing.schema}".encode())
        self.channel_name: str | None = getattr(app.recorder, "channel_name", None)
        self._kinds: dict[str, tuple[type, ListingKind] | None] = {}

    # -- one page at a time ---------------------------------------------------------------------

    def project_pending(self, conn: Any = None) -> int:
        """Project every notification after the tracked position; return how many were moved past."""
        own = conn is None
        conn = conn or psycopg2.connect(self.dsn)
        try:
            moved = 0
            while True:
                step = self.project_page(conn)
                moved += step
                if step < self.page_size:
                    return moved
        finally:
            if own:
                conn.close()

    def project_page(self, conn: Any) -> int:
        """Project one page of notifications in one transaction; return how many were moved past."""
        schema = sql.Identifier(self.listing.schema)
        with conn, conn.cursor() as cur:
            # The row lock orders this page after any other projector's page in flight.
            cur.execute(
                sql.SQL("SELECT position FROM {}.listing_tracking WHERE name = 'listing' FOR UPDATE").format(schema)
            )
            found = cur.fetchone()
            if found is None:
                raise RuntimeError(f"{self.listing.schema}.listing_tracking has no row: run crm-migrate")
            position = int(found[0])
            notifications = self.app.recorder.select_notifications(
                start=position, limit=self.page_size, inclusive_of_start=False
            )
            if not notifications:
                self.stats.position = position
                return 0
            changed: dict[UUID, tuple[ListingKind, int]] = {}
            for notification in notifications:
                listed = self._kind_of_topic(notification.topic)
                if listed is not None:
                    changed[notification.originator_id] = (listed[1], notification.id)
            rows, parked = self._rows(changed)
            if rows:
                execute_values(
                    cur,
                    sql.SQL(
                        "INSERT INTO {}.listing (kind, id, customer_id, status, owner, updated_at, version, doc) "
                        "VALUES %s ON CONFLICT (kind, id) DO UPDATE SET customer_id = EXCLUDED.customer_id, "
                        "status = EXCLUDED.status, owner = EXCLUDED.owner, updated_at = EXCLUDED.updated_at, "
                        "version = EXCLUDED.version, doc = EXCLUDED.doc WHERE listing.version <= EXCLUDED.version"
                    ).format(schema).as_string(cur),
                    [(r["kind"], r["id"], r["customer_id"], r["status"], r["owner"], r["updated_at"], r["version"],
                      Json(r["doc"])) for r in rows],
                )
                execute_values(
                    cur,
                    sql.SQL("DELETE FROM {}.listing_parked AS p USING (VALUES %s) AS v (kind, id) "
                            "WHERE p.kind = v.kind AND p.id = v.id::uuid").format(schema).as_string(cur),
                    [(r["kind"], r["id"]) for r in rows],
                )
            if parked:
                execute_values(
                    cur,
                    sql.SQL(
                        "INSERT INTO {}.listing_parked (kind, id, position, reason) VALUES %s "
                        "ON CONFLICT (kind, id) DO UPDATE SET position = EXCLUDED.position, "
                        "reason = EXCLUDED.reason, parked_at = now()"
                    ).format(schema).as_string(cur),
                    parked,
                )
            last = notifications[-1].id
            cur.execute(
                sql.SQL("UPDATE {}.listing_tracking SET position = %s, updated_at = now() WHERE name = 'listing'")
                .format(schema),
                (last,),
            )
        self.stats.position = last
        self.stats.projected += len(rows)
        self.stats.parked += len(parked)
        return len(notifications)

    def _rows(self, changed: dict[UUID, tuple[ListingKind, int]]) -> tuple[list[dict[str, Any]], list[tuple]]:
        """The rows of the changed aggregates, and those parked because their row function raised."""
        rows, parked = [], []
        for aggregate_id, (kind, position) in changed.items():
            try:
                aggregate = self.app.repository.get(aggregate_id)
            except AggregateNotFoundError:
                continue  # nothing to list (a listed class never saved past its creation)
            try:
                rows.append(kind.row(aggregate))
            except Exception as exc:  # noqa: BLE001 - a bug about one aggregate: parked, the lists go on
                reason = f"{type(exc).__name__}: {exc}"
                log.error("listing %s parks %s %s (position %s): %s", self.listing.schema, kind.name, aggregate_id,
                          position, reason, exc_info=True)
                parked.append((kind.name, str(aggregate_id), position, reason))
        return rows, parked

    def _kind_of_topic(self, topic: str) -> tuple[type, ListingKind] | None:
        if topic not in self._kinds:
            try:
                event_class = resolve_topic(topic)
            except Exception as exc:  # noqa: BLE001 - an unknown topic belongs to no listed class
                log.warning("listing %s cannot resolve topic %s (%s); not listed", self.listing.schema, topic, exc)
                self._kinds[topic] = None
            else:
                self._kinds[topic] = self.listing.kind_of(event_class) if isinstance(event_class, type) else None
        return self._kinds[topic]

    # -- the loop --------------------------------------------------------------------------------

    def run(self, stopping: threading.Event) -> None:
        """Project until `stopping` is set, while this replica holds the leadership; never raises."""
        failures = 0
        while not stopping.is_set():
            leader = work = None
            try:
                leader = psycopg2.connect(self.dsn, connect_timeout=5)
                leader.autocommit = True
                with leader.cursor() as cur:
                    cur.execute("SELECT pg_try_advisory_lock(%s)", (self.lock_key,))
                    if not cur.fetchone()[0]:
                        _close(leader)
                        stopping.wait(self.poll_interval)
                        continue
                    if self.channel_name:
                        cur.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self.channel_name)))
                self.stats.is_leader = True
                log.info("the listing projector of %s is the leader", self.listing.schema)
                work = psycopg2.connect(self.dsn, connect_timeout=5)
                while not stopping.is_set():
                    moved = self.project_pending(work)
                    failures = 0
                    if not moved:
                        self._wait_for_commit(leader, self.poll_interval)
            except Exception as exc:  # noqa: BLE001 - the projector must outlive any fault; logged, retried
                failures += 1
                delay = float(min(self.max_backoff, 0.2 * 2 ** min(failures - 1, 10)))
                self.stats.errors += 1
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("the listing projector of %s failed (%d in a row), retrying in %.1fs", self.listing.schema,
                            failures, delay, exc_info=not isinstance(exc, psycopg2.OperationalError))
                self.stats.is_leader = False
                _close(work)
                _close(leader)  # gives up the leadership while backing off
                stopping.wait(delay)
            finally:
                self.stats.is_leader = False
                _close(work)
                _close(leader)

    @staticmethod
    def _wait_for_commit(conn: Any, timeout: float) -> None:
        """Sleep until the event store NOTIFYs a commit, or `timeout` passes."""
        if select.select([conn], [], [], timeout)[0]:
            conn.poll()
            conn.notifies.clear()


def _close(conn: Any) -> None:
    if conn is not None and not conn.closed:
        try:
            conn.close()
        except psycopg2.Error:
            pass

