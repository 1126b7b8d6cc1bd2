"""The customer360 nameko service: consumes every origin's events into the 360° view and answers
queries on it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from nameko.dependency_providers import Config
from nameko.standalone.rpc import ClusterRpcProxy

from crm_contracts.customer360 import MAX_PAGE_SIZE
from crm_contracts.errors import InvalidRequestError, NotFoundError
from crm_customer360 import readmodel
from crm_customer360.rebuild import rebuild, rebuild_report
from crm_runtime import config as settings
from crm_runtime.nameko.dependencies import InboxConsumer, PostgresCursor
from crm_runtime.nameko.leader import leader_timer
from crm_runtime.nameko.rpc import rpc
from crm_runtime.nameko.service import ServiceWithHealth

#: Every service whose events feed the view (ARCHITECTURE.md: "every event with a customer").
ORIGINS = ["customer", "marketing", "sales", "order", "service", "loyalty"]
#: How often the view's clock moves to now, re-deriving time-based stages (at risk, churned), seconds.
STAGE_REFRESH_INTERVAL = float(settings.setting("STAGE_REFRESH_INTERVAL", "3600"))


class Customer360NotFoundError(NotFoundError):
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
    config = Config()

    @rpc
    def view(self, customer_id: str) -> dict[str, Any]:
        found = readmodel.customer_360(self.db, customer_id)
        if found is None:
            raise Customer360NotFoundError(f"no 360 view of customer {customer_id} (yet)", customer_id=customer_id)
        return found

    @rpc
    def search(self, q: str = "", page: int = 1, page_size: int = 20) -> dict[str, Any]:
        return readmodel.search(self.db, q, max(1, int(page)), max(1, min(MAX_PAGE_SIZE, int(page_size))))

    @rpc
    def rebuild(self) -> dict[str, Any]:
        # Its own RPC client: the inbox's belongs to the consumer's green thread.
        with ClusterRpcProxy(self.config, timeout=120) as feeds:
            report = rebuild(lambda origin, after, limit: getattr(feeds, origin).events_since(after, limit), ORIGINS)
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
