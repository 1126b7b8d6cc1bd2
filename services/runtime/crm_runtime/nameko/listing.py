"""`ListingProjection`: a service's lists (crm_runtime.listing), kept by a thread of its own process.

Declared beside the service's EventSourcedApplication and a PostgresCursor:

    db = PostgresCursor("order")
    listing = ListingProjection(order_listing(order_view))

    @rpc
    def list_orders(self, filters=None, page=1, page_size=20):
        return self.listing.query(self.db, "orders", filters, page, page_size)

The worker gets the Listing (its `query`); the projector runs as a nameko managed thread in every
replica, and projects only in the one holding the advisory lock. LISTING_ENABLED=false turns the
thread off (reads still work); LISTING_PAGE_SIZE and LISTING_POLL_INTERVAL tune it.
"""

from __future__ import annotations

import threading
from typing import Any

from nameko.extensions import DependencyProvider

from crm_runtime import config
from crm_runtime.listing import Listing, ListingProjector
from crm_runtime.nameko.dependencies import EventSourcedApplication


class ListingProjection(DependencyProvider):
    """Injects the service's Listing; runs its projector (leader-elected) in a managed thread."""

    def __init__(self, listing: Listing) -> None:
        self.listing = listing
        self.projector: ListingProjector | None = None
        self._stopping = threading.Event()

    def start(self) -> None:
        # Every provider's setup() has run by now, so the application exists.
        found = [d for d in self.container.dependencies if isinstance(d, EventSourcedApplication)]
        if len(found) != 1 or found[0].app is None:
            raise RuntimeError(f"{self.container.service_name}: a ListingProjection needs one EventSourcedApplication")
        self.projector = ListingProjector(
            found[0].app,
            self.listing,
            dsn=config.postgres_dsn(),
            page_size=int(config.setting("LISTING_PAGE_SIZE", "500")),
            poll_interval=float(config.setting("LISTING_POLL_INTERVAL", "1.0")),
        )
        if config.setting("LISTING_ENABLED", "true") == "true":
            projector = self.projector
            # run() never raises: nameko would kill the container if a managed thread did.
            self.container.spawn_managed_thread(lambda: projector.run(self._stopping), identifier="listing")

    def stop(self) -> None:
        self._stopping.set()

    def kill(self) -> None:
        self.stop()

    def get_dependency(self, worker_ctx: Any) -> Listing:
        return self.listing

    def health_check(self) -> dict[str, Any]:
        # Lists lagging behind do not make the process unready: reads by id and commands still work.
        if self.projector is None:
            return {"ok": True, "listing": {"started": False}}
        stats = self.projector.stats
        return {"ok": True, "listing": {"leader": stats.is_leader, "position": stats.position,
                                        "projected": stats.projected, "parked": stats.parked,
                                        "errors": stats.errors, "last_error": stats.last_error}}
