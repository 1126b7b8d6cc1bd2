"""The customer360 nameko service: consumes every origin's events into the 360° view and answers
queries on it."""

from __future__ import annotations

from typing import Any

from nameko.dependency_providers import Config
from nameko.standalone.rpc import ClusterRpcProxy

from crm_contracts.customer360 import MAX_PAGE_SIZE
from crm_contracts.errors import NotFoundError
from crm_customer360 import readmodel
from crm_customer360.rebuild import rebuild, rebuild_report
from crm_runtime.nameko.dependencies import InboxConsumer, PostgresCursor
from crm_runtime.nameko.rpc import rpc
from crm_runtime.nameko.service import ServiceWithHealth

#: Every service whose events feed the view (ARCHITECTURE.md: "every event with a customer").
ORIGINS = ["customer", "marketing", "sales", "order", "service", "loyalty"]


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
