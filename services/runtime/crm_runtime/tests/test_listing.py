"""The listing projection: a service's lists with filters and paging, kept from its own notification log.

Real: PostgreSQL (a fresh schema per test) for the event store and the listing. A toy service lists
its tickets and not its notes; the projector is driven with `project_pending()`, or its loop runs in
(green) threads where leadership and survival are the point."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event

from crm_contracts.errors import InvalidRequestError
from crm_runtime import listing as listing_module
from crm_runtime.eventstore import ServiceApplication
from crm_runtime.listing import Listing, ListingKind, ListingProjector
from crm_runtime.tests.listing_support import dsn_of, listing_connection, postgres_env

ACME = uuid.UUID("00000000-0000-0000-0000-00000000ac4e")


class Ticket(Aggregate):
    """A listed aggregate."""

    def __init__(self, title: str, customer_id: uuid.UUID, priority: str = "normal") -> None:
        self.title = title
        self.customer_id = customer_id
        self.priority = priority
        self.status = "open"
        self.owner: str | None = None

    @event("Assigned")
    def assign(self, owner: str) -> None:
        self.owner = owner

    @event("Closed")
    def close(self) -> None:
        self.status = "closed"

    @event("Retitled")
    def retitle(self, title: str) -> None:
        self.title = title


class Note(Aggregate):
    """An internal aggregate: no listing kind, never listed."""

    def __init__(self, text: str) -> None:
        self.text = text


class Desk(ServiceApplication):
    service = "desk"

    def open(self, title: str, customer_id: uuid.UUID = ACME, priority: str = "normal") -> Ticket:
        ticket = Ticket(title, customer_id, priority)
        self.save(ticket)
        return ticket

    def change(self, ticket_id: uuid.UUID, change: Callable[[Ticket], None]) -> Ticket:
        ticket: Ticket = self.repository.get(ticket_id)
        change(ticket)
        self.save(ticket)
        return ticket


def ticket_view(ticket: Ticket) -> dict[str, Any]:
    if ticket.title == "boom":
        raise ValueError("this ticket cannot be shown")
    return {"id": str(ticket.id), "version": ticket.version, "title": ticket.title, "status": ticket.status,
            "priority": ticket.priority, "owner": ticket.owner, "customer_id": str(ticket.customer_id)}


def ticket_columns(ticket: Ticket) -> dict[str, Any]:
    return {"customer_id": ticket.customer_id, "status": ticket.status, "owner": ticket.owner}


def desk_listing(schema: str) -> Listing:
    kind = ListingKind("tickets", ticket_view, ticket_columns, ("status", "customer_id", "owner", "priority"))
    return Listing(schema, {Ticket: kind})


@pytest.fixture
def desk(test_database: dict[str, str], postgres_schema: str) -> Iterator[Desk]:
    app = Desk(env=postgres_env(test_database, postgres_schema))
    yield app
    app.close()


@pytest.fixture
def conn(test_database: dict[str, str], postgres_schema: str) -> Iterator[Any]:
    with listing_connection(test_database, postgres_schema) as connection:
        yield connection


@pytest.fixture
def listing(postgres_schema: str) -> Listing:
    return desk_listing(postgres_schema)


@pytest.fixture
def projector(desk: Desk, listing: Listing, test_database: dict[str, str], conn: Any) -> ListingProjector:
    return ListingProjector(desk, listing, dsn_of(test_database), page_size=3, poll_interval=0.05, max_backoff=0.2)


def titles(page: dict[str, Any]) -> list[str]:
    return [item["title"] for item in page["items"]]


def tracked(conn: Any, schema: str) -> int:
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT position FROM "{schema}".listing_tracking')
        return int(cur.fetchone()[0])


def eventually(check: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "not reached in time"
        time.sleep(0.02)


def test_a_list_shows_each_aggregate_once_as_it_is_now_newest_change_first(desk, projector, listing, conn):
    first = desk.open("printer jammed")
    desk.open("screen flickers")
    desk.change(first.id, lambda t: t.retitle("printer jammed again"))
    desk.save(Note("internal"))
    projector.project_pending()

    page = listing.query(conn, "tickets")
    assert titles(page) == ["printer jammed again", "screen flickers"]
    assert page["items"][0] == ticket_view(desk.repository.get(first.id))  # a list item is the RPC answer
    assert (page["total"], page["total_exact"], page["page"], page["page_size"]) == (2, True, 1, 20)


def test_filters_use_the_columns_and_whitelisted_doc_keys(desk, projector, listing, conn):
    other = uuid.uuid4()
    urgent = desk.open("server down", priority="urgent")
    desk.open("new mouse", customer_id=other)
    closed = desk.open("old question")
    desk.change(urgent.id, lambda t: t.assign("ana"))
    desk.change(closed.id, lambda t: t.close())
    projector.project_pending()

    assert titles(listing.query(conn, "tickets", {"status": "open"})) == ["server down", "new mouse"]
    assert titles(listing.query(conn, "tickets", {"customer_id": str(other).upper()})) == ["new mouse"]
    assert titles(listing.query(conn, "tickets", {"owner": "ana", "priority": "urgent"})) == ["server down"]
    assert listing.query(conn, "tickets", {"priority": "low"})["items"] == []


@pytest.mark.parametrize(
    ("filters", "page", "page_size", "field"),
    [
        ({"title": "x"}, 1, 20, "title"),
        ({"customer_id": "not-a-uuid"}, 1, 20, "customer_id"),
        ({"status": 3}, 1, 20, "status"),
        ({}, 0, 20, "page"),
        ({}, "two", 20, "page"),
        ({}, 1, 0, "page_size"),
        ({}, 1, 101, "page_size"),
        ({}, 101, 100, "page"),
    ],
)
def test_bad_filters_and_paging_are_refused_naming_the_field(listing, conn, filters, page, page_size, field):
    with pytest.raises(InvalidRequestError) as refused:
        listing.query(conn, "tickets", filters, page, page_size)
    assert list(refused.value.details["fields"]) == [field]


def test_pages_split_the_list_and_a_big_total_is_capped(desk, projector, listing, conn, monkeypatch):
    for n in range(5):
        desk.open(f"t{n}")
    projector.project_pending()
    assert titles(listing.query(conn, "tickets", page=2, page_size=2)) == ["t2", "t1"]
    assert titles(listing.query(conn, "tickets", page="3", page_size="2")) == ["t0"]
    monkeypatch.setattr(listing_module, "MAX_TOTAL", 3)
    capped = listing.query(conn, "tickets", page=1, page_size=2)
    assert (capped["total"], capped["total_exact"]) == (3, False)


def test_a_restarted_projector_resumes_after_its_tracked_position(desk, listing, projector, test_database, conn):
    for n in range(4):
        desk.open(f"t{n}")
    desk.save(Note("internal"))  # moved past, never listed
    assert projector.project_pending() == 5
    assert tracked(conn, listing.schema) == desk.recorder.max_notification_id()

    desk.open("after the restart")
    restarted = ListingProjector(desk, listing, dsn_of(test_database))
    assert restarted.project_pending() == 1  # only what came after the tracked position
    assert listing.query(conn, "tickets")["total"] == 5


def test_a_failing_row_function_parks_that_aggregate_and_the_rest_goes_on(desk, listing, projector, conn):
    broken = desk.open("boom")
    desk.open("fine")
    projector.project_pending()
    assert titles(listing.query(conn, "tickets")) == ["fine"]
    assert tracked(conn, listing.schema) == desk.recorder.max_notification_id()
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT kind, id, reason FROM "{listing.schema}".listing_parked')
        assert cur.fetchall() == [("tickets", str(broken.id), "ValueError: this ticket cannot be shown")]

    desk.change(broken.id, lambda t: t.retitle("mended"))  # its next change projects, and unparks it
    projector.project_pending()
    assert titles(listing.query(conn, "tickets")) == ["mended", "fine"]
    with conn, conn.cursor() as cur:
        cur.execute(f'SELECT count(*) FROM "{listing.schema}".listing_parked')
        assert cur.fetchone()[0] == 0


def test_the_loop_projects_new_commits_and_survives_failures(desk, listing, projector, conn, monkeypatch):
    stopping = threading.Event()
    thread = threading.Thread(target=projector.run, args=(stopping,))
    thread.start()
    try:
        desk.open("boom")
        desk.open("first")
        eventually(lambda: titles(listing.query(conn, "tickets")) == ["first"])

        real_get = desk.repository.get
        calls = {"n": 0}

        def flaky_get(*args: Any, **kwargs: Any) -> Any:
            calls["n"] += 1
            if calls["n"] <= 2:
                raise RuntimeError("the event store hiccups")
            return real_get(*args, **kwargs)

        monkeypatch.setattr(desk.repository, "get", flaky_get)
        desk.open("second")
        # A failed page is retried after a back-off, not skipped.
        eventually(lambda: titles(listing.query(conn, "tickets")) == ["second", "first"])
        assert projector.stats.errors == 2 and thread.is_alive()
    finally:
        stopping.set()
        thread.join(10)
    assert not thread.is_alive()


def test_among_replicas_only_the_leader_projects_and_another_takes_over(desk, listing, test_database, conn):
    replicas = [ListingProjector(desk, listing, dsn_of(test_database), poll_interval=0.05) for _ in range(2)]
    stops = [threading.Event(), threading.Event()]
    threads = [threading.Thread(target=r.run, args=(s,)) for r, s in zip(replicas, stops)]
    for thread in threads:
        thread.start()
    try:
        desk.open("one")
        eventually(lambda: listing.query(conn, "tickets")["total"] == 1)
        leaders = [r for r in replicas if r.stats.is_leader]
        assert len(leaders) == 1
        follower = next(r for r in replicas if r is not leaders[0])
        assert follower.stats.projected == 0

        index = replicas.index(leaders[0])
        stops[index].set()
        threads[index].join(10)
        desk.open("two")
        eventually(lambda: listing.query(conn, "tickets")["total"] == 2)
        assert follower.stats.is_leader and follower.stats.projected >= 1
    finally:
        for stop in stops:
            stop.set()
        for thread in threads:
            thread.join(10)


def test_the_nameko_provider_runs_the_projector_in_a_managed_thread_and_injects_the_listing(
    desk, listing, conn, monkeypatch
):
    from crm_runtime.nameko.dependencies import EventSourcedApplication
    from crm_runtime.nameko.listing import ListingProjection

    application = EventSourcedApplication.__new__(EventSourcedApplication)
    application.app = desk
    spawned: list[tuple[str, Callable[[], None]]] = []

    class Container:
        service_name = "desk"
        dependencies = [application]

        def spawn_managed_thread(self, run: Callable[[], None], identifier: str) -> None:
            spawned.append((identifier, run))

    provider = ListingProjection(listing)
    provider.container = Container()  # type: ignore[assignment]
    monkeypatch.setenv("POSTGRES_DBNAME", conn.get_dsn_parameters()["dbname"])
    provider.start()
    assert [name for name, _ in spawned] == ["listing"]
    assert provider.get_dependency(object()) is listing

    thread = threading.Thread(target=spawned[0][1])
    thread.start()
    try:
        desk.open("through the provider")
        eventually(lambda: listing.query(conn, "tickets")["total"] == 1)
        assert provider.health_check()["listing"]["leader"] is True
    finally:
        provider.stop()
        thread.join(10)
    assert not thread.is_alive()
