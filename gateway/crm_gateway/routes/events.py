"""The replay feed: GET /v1/events, every published event from the beginning of history, without a window.

Built on the feeds the services already serve (`events_since`, the relay's own translation), so an event
read here is byte for byte the event published on `crm.events`. Nothing expires: the feed is the
services' event stores, read from any position.

Order, as documented to subscribers: each origin's events come in their position order (the order that
origin committed them, the order its consumers apply them), each exactly once per position; a page
interleaves origins by `occurred_at` (ties by origin name), which is no causal order across origins.

The cursor (`next`, passed back as `after`) is opaque: inside it is, per origin, the position read up to.
A page with no event keeps the cursor; `wait=<seconds>` long-polls until an event comes or the wait ends.
Scopes: `crm:events` with `events:<pattern>` scopes (a subscriber's bindings) sees only those types;
`crm:admin` sees every event. `types=` narrows further, never wider.
"""

from __future__ import annotations

import base64
import binascii
import heapq
import json
import re
import time
from collections.abc import Callable, Iterable
from typing import Any

import eventlet
from marshmallow import Schema, ValidationError, fields, validate, validates
from werkzeug.wrappers import Request, Response

from crm_contracts.catalog import load_all
from crm_contracts.envelope import EnvelopeSchema, routing_key
from crm_gateway.auth import ADMIN, EVENT_TYPES_PREFIX, EVENTS, Principal
from crm_gateway.errors import ApiError
from crm_gateway.operation import Operation
from crm_gateway.routes.common import Routes
from crm_gateway.web import endpoint, json_response, load_query, principal_of
from crm_runtime import config
from crm_runtime.nameko.web import http

#: Every origin that publishes, from the catalog (the gateway holds a client of each).
ORIGINS: tuple[str, ...] = tuple(sorted({contract.origin for contract in load_all()}))
ROUTING_KEYS: tuple[str, ...] = tuple(sorted({routing_key(c.origin, c.type) for c in load_all()}))

#: An origin's `events_since(position, limit)`.
Fetch = Callable[[int, int], list[dict[str, Any]]]

MAX_LIMIT = 1000
DEFAULT_LIMIT = 100
#: The longest long poll, in seconds (EVENTS_MAX_WAIT): a waiting request holds one gateway worker.
MAX_WAIT = 25
#: Envelopes read per origin per request while looking for matching types: a sparse filter still moves
#: the cursor on, and a request stays bounded.
SCAN_BUDGET = 5000
CURSOR_PREFIX = "c1."
#: One word of a routing key, or a wildcard.
PATTERN = r"^(\*|#|[a-z0-9_]+)(\.(\*|#|[a-z0-9_]+))*$"
_PATTERN = re.compile(PATTERN)


def matches(pattern: str, key: str) -> bool:
    """Whether routing key `key` matches AMQP topic `pattern` (`*` one word, `#` zero or more): the key
    positions each pattern word can reach, one word at a time (linear work, however many `#` it has)."""
    key_words = key.split(".")
    reached = {0}  # how many key words the pattern words so far can have consumed
    for word in pattern.split("."):
        if word == "#":
            reached = set(range(min(reached), len(key_words) + 1)) if reached else set()
        else:
            reached = {i + 1 for i in reached if i < len(key_words) and word in ("*", key_words[i])}
        if not reached:
            return False
    return len(key_words) in reached


def is_pattern(value: str) -> bool:
    """Whether `value` is a topic pattern this API takes (words of a-z, 0-9, _; `*`; `#`)."""
    return bool(_PATTERN.fullmatch(value))


def encode_cursor(positions: dict[str, int]) -> str:
    """The opaque cursor of per-origin positions."""
    raw = json.dumps({origin: positions[origin] for origin in sorted(positions) if positions[origin]},
                     separators=(",", ":")).encode()
    return CURSOR_PREFIX + base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> dict[str, int]:
    """Per-origin positions of a cursor this API gave out; ValueError for anything else."""
    if not cursor.startswith(CURSOR_PREFIX):
        raise ValueError("not a cursor of this API")
    body = cursor[len(CURSOR_PREFIX):]
    try:
        positions = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deep
        raise ValueError("not a cursor of this API") from None
    if not isinstance(positions, dict) or not all(
        origin in ORIGINS and type(position) is int and 0 <= position < 2**63
        for origin, position in positions.items()
    ):
        raise ValueError("not a cursor of this API")
    return {origin: int(position) for origin, position in positions.items()}


class EventsQuery(Schema):
    """The query of GET /v1/events."""

    after = fields.String(load_default=None, validate=validate.Length(min=1, max=4096), metadata={
        "description": "the `next` of the page before (absent: from the beginning of history)"})
    types = fields.String(load_default=None, validate=validate.Length(min=1, max=1000), metadata={
        "description": "comma-separated routing-key patterns, `*` one word, `#` any, e.g. `order.*,customer.#`"})
    limit = fields.Integer(load_default=DEFAULT_LIMIT, validate=validate.Range(min=1, max=MAX_LIMIT))
    wait = fields.Integer(load_default=0, validate=validate.Range(min=0, max=MAX_WAIT), metadata={
        "description": "seconds to wait for an event when there is none yet (long polling)"})

    @validates("after")
    def valid_cursor(self, value: str | None, **_: Any) -> None:
        if value is not None:
            try:
                decode_cursor(value)
            except ValueError as exc:
                raise ValidationError(f"is {exc}: pass back the `next` of a page") from None

    @validates("types")
    def valid_types(self, value: str | None, **_: Any) -> None:
        if value is not None and not all(is_pattern(p) for p in value.split(",")):
            raise ValidationError("must be comma-separated patterns like order.* or customer.customer_registered")


class EventsPage(Schema):
    """A page of the replay feed."""

    events = fields.List(fields.Nested(EnvelopeSchema), required=True)
    next = fields.String(required=True, metadata={"description": "the cursor to pass as `after` next time"})
    has_more = fields.Boolean(required=True, metadata={"description": "more events match already: ask again now"})


def allowed_patterns(principal: Principal) -> list[str]:
    """The event types a token may read: every one for admin, else its `events:<pattern>` scopes."""
    if ADMIN in principal.scopes:
        return ["#"]
    return sorted(s[len(EVENT_TYPES_PREFIX):] for s in principal.scopes
                  if s.startswith(EVENT_TYPES_PREFIX) and is_pattern(s[len(EVENT_TYPES_PREFIX):]))


class Selection:
    """Which events a request reads: those matching one of the token's patterns and one of the asked."""

    def __init__(self, allowed: list[str], asked: list[str] | None) -> None:
        self.allowed = allowed
        self.asked = asked or ["#"]

    def __contains__(self, key: str) -> bool:
        return any(matches(p, key) for p in self.allowed) and any(matches(p, key) for p in self.asked)

    def origins(self) -> list[str]:
        """The origins with at least one known event type selected (the others are not asked at all)."""
        return [origin for origin in ORIGINS if any(key.startswith(origin + ".") and key in self
                                                     for key in ROUTING_KEYS)]


class OriginRead:
    """What one request read of one origin: the envelopes selected, and how far it scanned."""

    def __init__(self, origin: str, after: int) -> None:
        self.origin = origin
        self.after = after
        self.scanned: list[tuple[int, bool]] = []  # (position, selected) of every envelope read
        self.selected: list[dict[str, Any]] = []
        self.exhausted = False  # the origin's head was reached

    def next_position(self, returned: int) -> int:
        """The position to resume after, when the first `returned` selected envelopes were handed out:
        past every envelope read before the first selected one not handed out."""
        position = self.after
        handed = 0
        for scanned, selected in self.scanned:
            if selected:
                if handed == returned:
                    return position
                handed += 1
            position = scanned
        return position


def read_origin(fetch: Fetch, origin: str, after: int, selection: Selection, limit: int) -> OriginRead:
    """Read `origin`'s feed after `after` until `limit` envelopes are selected, its head, or SCAN_BUDGET."""
    read = OriginRead(origin, after)
    position = after
    batch = max(limit, 100)
    while len(read.selected) < limit and len(read.scanned) < SCAN_BUDGET:
        envelopes = fetch(position, batch)
        for envelope in envelopes:
            selected = routing_key(envelope["origin"], envelope["type"]) in selection
            read.scanned.append((envelope["position"], selected))
            if selected:
                read.selected.append(envelope)
            position = envelope["position"]
        if len(envelopes) < batch:
            read.exhausted = True
            break
    return read


def merge(reads: Iterable[OriginRead], limit: int) -> list[dict[str, Any]]:
    """The first `limit` selected envelopes, each origin's in position order, origins interleaved by
    occurred_at then origin name (heapq.merge never reorders the envelopes of one origin)."""
    streams = [[(e["occurred_at"], read.origin, e["position"], e) for e in read.selected] for read in reads]
    return [item[3] for _, item in zip(range(limit), heapq.merge(*streams))]


class EventRoutes(Routes):
    """/v1/events: the replay feed for ERP, SCM and anyone who missed events."""

    @http("GET", "/v1/events")
    @endpoint(EVENTS)
    def events(self, request: Request) -> Response:
        query = load_query(request, EventsQuery)
        allowed = allowed_patterns(principal_of(request))
        if not allowed:
            raise ApiError(403, "forbidden", "the token grants no event types (scopes events:<pattern>)")
        selection = Selection(allowed, query["types"].split(",") if query["types"] else None)
        positions = decode_cursor(query["after"]) if query["after"] else {}
        wait = min(query["wait"], int(config.setting("EVENTS_MAX_WAIT", str(MAX_WAIT))))
        deadline = time.monotonic() + wait
        while True:
            page = self.read_page(selection, positions, query["limit"])
            if page["events"] or time.monotonic() >= deadline:
                return json_response(200, page)
            eventlet.sleep(min(0.5, max(0.0, deadline - time.monotonic())))

    def read_page(self, selection: Selection, positions: dict[str, int], limit: int) -> dict[str, Any]:
        """One page from every selected origin's feed (its client's `events_since`)."""
        return read_page(lambda origin: getattr(self, origin).events_since, selection, positions, limit)


def read_page(feed_of: Callable[[str], Fetch], selection: Selection, positions: dict[str, int], limit: int
              ) -> dict[str, Any]:
    """One page from every selected origin's feed, merged; the cursor past what it hands out (`positions`:
    per origin, the `next` cursor decoded)."""
    reads = [read_origin(feed_of(origin), origin, positions.get(origin, 0), selection, limit)
             for origin in selection.origins()]
    events = merge(reads, limit)
    handed = {read.origin: 0 for read in reads}
    for envelope in events:
        handed[envelope["origin"]] += 1
    after = dict(positions)
    has_more = False
    for read in reads:
        after[read.origin] = read.next_position(handed[read.origin])
        has_more = has_more or handed[read.origin] < len(read.selected) or not read.exhausted
    return {"events": events, "next": encode_cursor(after), "has_more": has_more}


SCHEMAS = {"EventsPage": EventsPage}

OPERATIONS = (
    Operation(
        "get", "/v1/events", "listEvents",
        "Replay published events from any point of history, then tail them: each origin's events in position "
        "order, exactly once per position; pass `next` back as `after`; `wait` long-polls",
        EVENTS, 200, "EventsPage", (401, 403, 422, 503),
        "GET /v1/events?types=order.*,customer.customer_registered&limit=100&wait=20",
        query=EventsQuery, tag="events",
    ),
)
