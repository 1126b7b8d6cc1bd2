"""The customer360 nameko service: consumes every origin's events into the 360° view and answers
queries on it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from typing import Any

from nameko.dependency_providers import Config
from nameko.standalone.rpc import ClusterRpcProxy

from crm_contracts.analytics import MAX_ANALYTICS_PAGE_SIZE
from crm_contracts.customer360 import MAX_PAGE_SIZE
from crm_contracts.errors import InvalidRequestError, MovedError, NotFoundError
from crm_customer360 import analytics_store, duplicates, readmodel, reports, segments
from crm_customer360.rebuild import rebuild, rebuild_report
from crm_customer360.view_as_of import customer_360_as_of
from crm_runtime import config as settings
from crm_runtime.inbox import Fetch
from crm_runtime.nameko.client import HttpTransport, service_urls
from crm_runtime.nameko.dependencies import InboxConsumer, PostgresCursor
from crm_runtime.nameko.leader import leader_timer
from crm_runtime.nameko.rpc import RawJson, rpc
from crm_runtime.nameko.service import ServiceWithHealth

#: Every service whose events feed the view (ARCHITECTURE.md: "every event with a customer").
ORIGINS = ["customer", "marketing", "sales", "order", "service", "loyalty"]
#: How often the view's clock moves to now, re-deriving time-based stages (at risk, churned), seconds.
STAGE_REFRESH_INTERVAL = float(settings.setting("STAGE_REFRESH_INTERVAL", "3600"))
#: How often the analytics' model of the base is re-estimated as of now, every customer's figures with it.
ANALYTICS_REFRESH_INTERVAL = float(settings.setting("ANALYTICS_REFRESH_INTERVAL", "3600"))


class Customer360NotFoundError(NotFoundError):
    pass


class SegmentNotFoundError(NotFoundError):
    pass


class Customer360Service(ServiceWithHealth):
    """The unified customer view: one record per customer across all six services."""

    name = "customer360"
    inbox = InboxConsumer(
        queue="customer360.events",
        bindings=[f"{origin}.#" for origin in ORIGINS],
        origins=ORIGINS,
        schema=readmodel.SCHEMA,
        apply_batch=readmodel.apply_batch,
    )
    db = PostgresCursor(readmodel.SCHEMA)
    # The 360 view and search: one statement each, so no transaction around them (one round trip).
    reads = PostgresCursor(readmodel.SCHEMA, autocommit=True)
    config = Config()

    @rpc
    def view(self, customer_id: str, as_of: str | None = None) -> dict[str, Any] | RawJson:
        """The 360 view now, with its analytics (JSON text, as PostgreSQL built it); or as it stood at `as_of`
        (ISO 8601 with an offset, not ahead). A customer merged into another is MovedError (the gateway's
        308 to the survivor); as of an instant before its merge, it is shown as it stood then."""
        # Now: one statement, autocommit. As of an instant: several reads, in one transaction.
        cursor = self.reads if as_of is None else self.db
        now = readmodel.customer_360_json(cursor, customer_id)  # an unknown customer is 404 whatever the instant
        found: dict[str, Any] | RawJson | None = None if now is None else RawJson(now)
        survivor = readmodel.survivor_of(cursor, customer_id) if now is None else None
        if survivor is not None and as_of is None:
            raise MovedError(customer_id, survivor)
        if (found is not None or survivor is not None) and as_of is not None:
            found = customer_360_as_of(self.db, customer_id, _past(as_of))
        if found is None:
            raise Customer360NotFoundError(f"no 360 view of customer {customer_id} (yet)", customer_id=customer_id)
        return found

    @rpc
    def customer_analytics(self, filters: dict[str, Any], page: int = 1, page_size: int = 20) -> dict[str, Any]:
        """Customers by their analytics (rfm_segment, loyalty_type, churn_risk, clv_min, clv_max)."""
        size = max(1, min(MAX_ANALYTICS_PAGE_SIZE, int(page_size)))
        return analytics_store.query(self.db, filters, max(1, int(page)), size)

    @rpc
    def refresh_analytics(self, as_of: str | None = None) -> dict[str, Any]:
        """Move the view's clock and the analytics' model to `as_of` (default now): stages and figures as of it."""
        instant = _aware(as_of) if as_of else datetime.now(UTC)
        readmodel.advance_clock(self.db, instant)
        return analytics_store.refresh(self.db, instant)

    @rpc
    def report(self, name: str) -> dict[str, Any]:
        """A report over every view (crm_customer360.reports: funnel, satisfaction, sla, reps, cohorts)."""
        if name == "analytics":
            model = analytics_store.newest_model(self.db)
            return reports.analytics_summary(analytics_store.all_figures(self.db), model["as_of"] if model else None)
        if name not in reports.BUILDERS:
            raise InvalidRequestError(f"no report {name!r}", fields={"report": [f"one of {sorted(reports.BUILDERS)}"]})
        return reports.BUILDERS[name](analytics_store.all_views(self.db), readmodel.view_clock(self.db))

    @rpc
    def save_segment(self, payload: dict[str, Any], command_id: str) -> dict[str, Any]:
        return segments.save(self.db, command_id, payload["name"], payload["criteria"], datetime.now(UTC))

    @rpc
    def get_segment(self, segment_id: str) -> dict[str, Any]:
        return _found_segment(segments.get(self.db, segment_id), segment_id)

    @rpc
    def list_segments(self) -> dict[str, Any]:
        return segments.list_segments(self.db)

    @rpc
    def delete_segment(self, segment_id: str) -> None:
        _found_segment(segments.delete(self.db, segment_id) or None, segment_id)

    @rpc
    def segment_members(self, segment_id: str, page: int = 1, page_size: int = 20) -> dict[str, Any]:
        size = max(1, min(MAX_ANALYTICS_PAGE_SIZE, int(page_size)))
        return _found_segment(segments.members(self.db, segment_id, max(1, int(page)), size), segment_id)

    @leader_timer(interval=ANALYTICS_REFRESH_INTERVAL)
    def refresh_analytics_periodically(self) -> None:
        self.refresh_analytics()

    @rpc
    def search(self, q: str = "", page: int = 1, page_size: int = 20) -> RawJson:
        """Customers whose name, a word of it, or email starts with `q` (readmodel.search_json)."""
        size = max(1, min(MAX_PAGE_SIZE, int(page_size)))
        return RawJson(readmodel.search_json(self.reads, q, max(1, int(page)), size))

    @rpc
    def duplicates_of(self, customer_id: str, threshold: float | None = None, limit: int = 20) -> dict[str, Any]:
        """The customer's candidate duplicates with reasons and scores (crm_customer360.duplicates)."""
        found = duplicates.candidates_of(self.db, customer_id, _threshold(threshold), max(1, min(100, int(limit))))
        if found is None and (survivor := readmodel.survivor_of(self.db, customer_id)) is not None:
            raise MovedError(customer_id, survivor)
        if found is None:
            raise Customer360NotFoundError(f"no 360 view of customer {customer_id} (yet)", customer_id=customer_id)
        return {"customer_id": customer_id, "candidates": found}

    @rpc
    def find_duplicates(
        self, fields: dict[str, Any], exclude: str | None = None, limit: int = 5
    ) -> list[dict[str, Any]]:
        """Customers a registration's fields (name, email, phone, company) may duplicate."""
        probe = duplicates.Probe(fields.get("name"), fields.get("email"), fields.get("phone"), fields.get("company"))
        # Indexed lookups only: this runs on every registration (phones are scanned on demand).
        return duplicates.candidates(self.db, probe, exclude=exclude, limit=max(1, min(100, int(limit))),
                                     scan_phones=False)

    @rpc
    def duplicate_pairs(self, threshold: float | None = None, page: int = 1, page_size: int = 20) -> dict[str, Any]:
        """Every candidate pair of the view (the batch check), best first, a page at a time."""
        size = max(1, min(MAX_PAGE_SIZE, int(page_size)))
        return duplicates.duplicate_pairs(self.db, _threshold(threshold), max(1, int(page)), size)

    @rpc
    def rebuild(self) -> dict[str, Any]:
        with _feeds(self.config) as fetch:
            report = rebuild(fetch, ORIGINS)
        return rebuild_report(report)

    @rpc
    def refresh_stages(self, as_of: str | None = None) -> dict[str, Any]:
        """Move the view's clock to `as_of` (ISO 8601; default now) and re-derive time-based stages."""
        instant = _aware(as_of) if as_of else datetime.now(UTC)
        changed = readmodel.advance_clock(self.db, instant)
        return {"as_of": readmodel.view_clock(self.db), "changed": changed}

    @leader_timer(interval=STAGE_REFRESH_INTERVAL)
    def refresh_stages_periodically(self) -> None:
        # The wall clock is read here, at the edge, never inside the fold (rebuilds stay equal).
        self.refresh_stages()


def _found_segment(found: Any, segment_id: str) -> Any:
    if found is None:
        raise SegmentNotFoundError(f"no segment {segment_id}", segment_id=segment_id)
    return found


def _past(text: str) -> datetime:
    """An aware instant not ahead of now (the view as of the future is not known)."""
    instant = _aware(text)
    if instant > datetime.now(UTC):
        raise InvalidRequestError("as_of must not be in the future", fields={"as_of": ["in the future"]})
    return instant


def _threshold(value: float | None) -> float:
    """A similarity threshold from a caller: 0..1, the configured one when none."""
    if value is None:
        return duplicates.NAME_THRESHOLD
    if not 0 < float(value) <= 1:
        raise InvalidRequestError("threshold must be above 0 and at most 1", fields={"threshold": ["not in (0, 1]"]})
    return float(value)


@contextmanager
def _feeds(config: dict[str, Any]) -> Iterator[Fetch]:
    """Every origin's feed for a rebuild: over HTTP where CRM_<ORIGIN>_URLS names the origin (no broker,
    no reply queue: pages of thousands of events), else over RPC with a client of its own (the inbox's
    belongs to the consumer's green thread)."""
    http = {origin: HttpTransport(origin, urls) for origin in ORIGINS if (urls := service_urls(origin))}
    with ExitStack() as clients:
        rpc: Any = None

        def fetch(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
            nonlocal rpc
            if origin in http:
                return http[origin].call("events_since", (after, limit), {}, {}, timeout=120.0)  # type: ignore[no-any-return]
            if rpc is None:
                rpc = clients.enter_context(ClusterRpcProxy(config, timeout=120))
            return getattr(rpc, origin).events_since(after, limit)  # type: ignore[no-any-return]

        try:
            yield fetch
        finally:
            for transport in http.values():
                transport.close()


def _aware(text: str) -> datetime:
    instant: datetime | None
    try:
        instant = datetime.fromisoformat(text)
    except ValueError:
        instant = None
    if instant is None or instant.tzinfo is None:
        raise InvalidRequestError("as_of must be an ISO 8601 instant with a time zone",
                                  fields={"as_of": ["not an instant with a time zone"]})
    return instant
