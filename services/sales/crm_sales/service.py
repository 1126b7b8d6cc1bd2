"""The sales nameko service: RPC commands and queries, thin adapters over Opportunities."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from crm_contracts import sales as contracts
from crm_contracts.fields import schema_of
from crm_runtime.listing import Listing
from crm_runtime.nameko.dependencies import EventSourcedApplication, PolicyConsumer, PostgresCursor
from crm_runtime.nameko.listing import ListingProjection
from crm_runtime.nameko.rights import CustomerRightsService
from crm_runtime.nameko.rpc import aggregate_id, rpc
from crm_runtime.nameko.service import EventSourcedService
from crm_sales.application import Opportunities
from crm_sales.domain import Opportunity
from crm_sales.listing import sales_listing
from crm_sales.policies import policies
from crm_sales.publishing import translator

_opportunity = contracts.OpportunitySchema()
_totals = contracts.PipelineTotalsSchema(many=True)
_win_rate = contracts.WinRateSchema()


def opportunity_key(opportunity_id: str) -> UUID:
    """The opportunity id argument of a call, checked (a non-UUID is `invalid`, not a crash)."""
    return aggregate_id(opportunity_id, "opportunity_id")


def opportunity_view(opportunity: Opportunity) -> dict[str, Any]:
    """An opportunity as the RPC answer: the contract's OpportunitySchema, JSON-ready, quotes included."""
    return _opportunity.dump(opportunity)


class SalesService(CustomerRightsService, EventSourcedService):
    """Opportunities through the pipeline, their quotes, won and lost; pipeline, forecast and win rate;
    where the erasure of a customer stands here (`erasure_status`).

    Every command takes `command_id` (one client shape); it decides the id of what a command creates
    (an opportunity, a quote version), so a redelivery answers its first outcome and creates nothing twice.
    """

    name = "sales"
    translator = translator
    application: Opportunities = EventSourcedApplication(Opportunities, translator)  # type: ignore[assignment]
    reactions = PolicyConsumer(policies)

    # --- opportunities --------------------------------------------------------------------------

    @rpc
    def open_opportunity(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Open; a `command_id` makes a redelivered or retried call answer the first opportunity opened."""
        opening = schema_of(contracts.OpenOpportunityRequest).load(payload)
        opportunity_id = Opportunity.id_for_opening(command_id) if command_id else None
        return opportunity_view(self.application.open(**opening, opportunity_id=opportunity_id))

    @rpc
    def get_opportunity(self, opportunity_id: str) -> dict[str, Any]:
        return opportunity_view(self.application.opportunity(opportunity_key(opportunity_id)))

    @rpc
    def move_stage(
        self, opportunity_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        move = schema_of(contracts.MoveStageRequest).load(payload)
        return opportunity_view(
            self.application.move_to_stage(opportunity_key(opportunity_id), **move, expected_version=expected_version)
        )

    @rpc
    def change_amount(
        self, opportunity_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        change = schema_of(contracts.ChangeAmountRequest).load(payload)
        return opportunity_view(
            self.application.change_amount(opportunity_key(opportunity_id), **change, expected_version=expected_version)
        )

    @rpc
    def change_expected_close_date(
        self, opportunity_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        change = schema_of(contracts.ChangeExpectedCloseDateRequest).load(payload)
        opportunity = self.application.change_expected_close_date(
            opportunity_key(opportunity_id), **change, expected_version=expected_version
        )
        return opportunity_view(opportunity)

    @rpc
    def reassign(
        self, opportunity_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        change = schema_of(contracts.ReassignRequest).load(payload)
        return opportunity_view(
            self.application.reassign(opportunity_key(opportunity_id), **change, expected_version=expected_version)
        )

    # --- quotes ---------------------------------------------------------------------------------

    @rpc
    def send_quote(
        self, opportunity_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Send a quote version (the answer's last quote); a redelivered `command_id` sends none again."""
        quote = schema_of(contracts.SendQuoteRequest).load(payload)
        opportunity = self.application.send_quote(
            opportunity_key(opportunity_id), **quote, expected_version=expected_version, command_id=command_id
        )
        return opportunity_view(opportunity)

    @rpc
    def accept_quote(
        self, opportunity_id: str, quote_id: str, expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        opportunity = self.application.accept_quote(
            opportunity_key(opportunity_id), aggregate_id(quote_id, "quote_id"), expected_version=expected_version
        )
        return opportunity_view(opportunity)

    @rpc
    def reject_quote(
        self, opportunity_id: str, quote_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        rejection = schema_of(contracts.RejectQuoteRequest).load(payload)
        opportunity = self.application.reject_quote(
            opportunity_key(opportunity_id), aggregate_id(quote_id, "quote_id"), **rejection,
            expected_version=expected_version,
        )
        return opportunity_view(opportunity)

    # --- closing --------------------------------------------------------------------------------

    @rpc
    def win(
        self, opportunity_id: str, expected_version: int | None = None, command_id: str | None = None
    ) -> dict[str, Any]:
        opportunity = self.application.win(opportunity_key(opportunity_id), expected_version=expected_version)
        return opportunity_view(opportunity)

    @rpc
    def lose(
        self, opportunity_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        loss = schema_of(contracts.LoseOpportunityRequest).load(payload)
        return opportunity_view(
            self.application.lose(opportunity_key(opportunity_id), **loss, expected_version=expected_version)
        )

    # --- pipeline queries -----------------------------------------------------------------------

    @rpc
    def pipeline(self) -> list[dict[str, Any]]:
        """Open opportunities by stage and currency: `key` is the stage."""
        return _totals.dump(self.application.pipeline())

    @rpc
    def forecast_by_month(self) -> list[dict[str, Any]]:
        """Open opportunities by expected close month and currency: `key` is "YYYY-MM"."""
        return _totals.dump(self.application.forecast_by_month())

    @rpc
    def forecast_by_rep(self) -> list[dict[str, Any]]:
        """Open opportunities by owning rep and currency: `key` is the rep."""
        return _totals.dump(self.application.forecast_by_rep())

    @rpc
    def win_rate(self, owner: str | None = None) -> dict[str, Any]:
        """Closed opportunities won and lost, for everyone or one rep."""
        return _win_rate.dump(self.application.win_rate(owner))


    # --- lists: eventually consistent (milliseconds behind commands), newest change first -------------
    # Filters are equality on the fields named; pages answer {"items", "page", "page_size", "total",
    # "total_exact"} (crm_runtime.listing); an item is what the matching get answers.

    db = PostgresCursor("sales")
    listing: Listing = ListingProjection(sales_listing(opportunity_view))  # type: ignore[assignment]

    @rpc
    def list_opportunities(
        self, filters: dict[str, str] | None = None, page: int = 1, page_size: int = 20
    ) -> dict[str, Any]:
        """Opportunities: one page, filters status (open/won/lost), stage, owner, customer_id, lead_id, currency."""
        return self.listing.query(self.db, "opportunities", filters, page, page_size)
