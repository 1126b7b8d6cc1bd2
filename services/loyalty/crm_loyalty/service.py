"""The loyalty nameko service: RPC commands and queries, thin adapters over LoyaltyAccounts."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from crm_contracts import loyalty as contracts
from crm_contracts.fields import schema_of
from crm_loyalty.application import LoyaltyAccounts
from crm_loyalty.domain import Account
from crm_loyalty.listing import loyalty_listing
from crm_loyalty.policies import policies
from crm_loyalty.publishing import translator
from crm_runtime import config
from crm_runtime.listing import Listing
from crm_runtime.nameko.dependencies import EventSourcedApplication, PolicyConsumer, PostgresCursor
from crm_runtime.nameko.leader import leader_timer, sweep
from crm_runtime.nameko.listing import ListingProjection
from crm_runtime.nameko.rights import CustomerRightsService
from crm_runtime.nameko.rpc import aggregate_id, rpc
from crm_runtime.nameko.service import EventSourcedService


def customer_key(customer_id: str) -> UUID:
    """The customer id argument of a call (accounts are found by customer), checked."""
    return aggregate_id(customer_id, "customer_id")


def account_fields(account: Account) -> dict[str, Any]:
    """An account as the contract's LoyaltyAccountSchema names its fields."""
    return {
        "id": account.id,
        "version": account.version,
        "customer_id": account.customer_id,
        "tier": account.tier,
        "currency": account.currency,
        "balance": account.balance,
        "points_earned": account.points_earned,
        "points_redeemed": account.points_redeemed,
        "points_expired": account.points_expired,
        "points_taken_back": account.points_taken_back,
        "points_owed": account.points_owed,
        "lots": account.lots,
        "benefits": account.benefits,
        "enrolled_at": account.enrolled_at,
        "modified_at": account.modified_on,
    }


def account_view(account: Account) -> dict[str, Any]:
    """An account as the RPC answer: the contract's LoyaltyAccountSchema, JSON-ready."""
    return schema_of(contracts.LoyaltyAccountSchema).dump(account_fields(account))  # type: ignore[no-any-return]


class LoyaltyService(CustomerRightsService, EventSourcedService):
    """Loyalty accounts: enrol, balance, earn, redeem, expire, tier review, retention benefits.

    Every command takes the caller's `command_id`: a redelivered or retried call takes effect once and
    answers as it is now; a redemption's and a benefit's ids derive from it. Commands on an account
    take the `expected_version` the caller saw.
    """

    name = "loyalty"
    translator = translator
    application: LoyaltyAccounts = EventSourcedApplication(LoyaltyAccounts, translator)  # type: ignore[assignment]
    reactions = PolicyConsumer(policies)

    @rpc
    def enrol(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Enrol a customer (one account per customer: a second enrolment is a conflict)."""
        fields = schema_of(contracts.EnrolRequest).load(payload)
        return account_view(self.application.enrol(**fields, command_id=command_id))

    @rpc
    def get(self, customer_id: str) -> dict[str, Any]:
        """A customer's account: tier, balance, points lots, benefits."""
        return account_view(self.application.account(customer_key(customer_id)))

    @rpc
    def earn(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Earn points on a paid order; the same order again changes nothing."""
        fields = schema_of(contracts.EarnPointsRequest).load(payload)
        account = self.application.earn(customer_key(customer_id), **fields, expected_version=expected_version,
                                         command_id=command_id)
        return account_view(account)

    @rpc
    def redeem(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Redeem points; the redemption's id derives from `command_id` (one redemption per command)."""
        fields = schema_of(contracts.RedeemPointsRequest).load(payload)
        account, redemption_id = self.application.redeem(
            customer_key(customer_id), **fields, expected_version=expected_version, command_id=command_id
        )
        answer = {"redemption": account.redemption(redemption_id), "account": account_fields(account)}
        return schema_of(contracts.RedemptionAnswerSchema).dump(answer)  # type: ignore[no-any-return]

    @rpc
    def expire(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Expire the points due (at `now`, default the time of the call) and review the tier."""
        fields = schema_of(contracts.ExpirePointsRequest).load(payload)
        account = self.application.expire(customer_key(customer_id), **fields, expected_version=expected_version,
                                          command_id=command_id)
        return account_view(account)

    @rpc
    def review_tier(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Re-evaluate the tier from the rolling spend (at `now`, default the time of the call)."""
        fields = schema_of(contracts.ReviewTierRequest).load(payload)
        account = self.application.review_tier(customer_key(customer_id), **fields,
                                               expected_version=expected_version, command_id=command_id)
        return account_view(account)

    @rpc
    def grant_benefit(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        """Grant a retention benefit; its id derives from `command_id` (one benefit per command)."""
        fields = schema_of(contracts.GrantBenefitRequest).load(payload)
        account, benefit_id = self.application.grant_benefit(
            customer_key(customer_id), **fields, expected_version=expected_version, command_id=command_id
        )
        answer = {"benefit": account.benefit(benefit_id), "account": account_fields(account)}
        return schema_of(contracts.BenefitGrantAnswerSchema).dump(answer)  # type: ignore[no-any-return]


    # --- lists: eventually consistent (milliseconds behind commands), newest change first -------------
    # Filters are equality on the fields named; pages answer {"items", "page", "page_size", "total",
    # "total_exact"} (crm_runtime.listing); an item is what the matching get answers.

    db = PostgresCursor("loyalty")
    listing: Listing = ListingProjection(loyalty_listing(account_view))  # type: ignore[assignment]

    @rpc
    def list_accounts(
        self, filters: dict[str, str] | None = None, page: int = 1, page_size: int = 20
    ) -> dict[str, Any]:
        """Loyalty accounts: one page, filters tier, customer_id, currency."""
        return self.listing.query(self.db, "accounts", filters, page, page_size)

    # --- periodic work, in one replica (crm_runtime.nameko.leader) ------------------------------------

    @leader_timer(interval=float(config.setting("POINTS_EXPIRY_INTERVAL", "3600")))
    def expire_points(self) -> None:
        """Expire the points lots that are due and review every tier (spend ages out of the window);
        what expired once is gone, so a second run changes nothing."""
        customers = [customer_id for _, customer_id in self.listing.rows(self.db, "accounts") if customer_id]
        sweep("points expiry", customers, self.application.expire_due)
