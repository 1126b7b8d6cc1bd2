"""LoyaltyAccounts: the loyalty service's commands (load, call, save) and queries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import StaleVersionError
from crm_loyalty.domain import Account, AccountNotFoundError, AlreadyEnrolledError, Programme
from crm_runtime.eventstore import ServiceApplication


def _now() -> datetime:
    return datetime.now(UTC)


class LoyaltyAccounts(ServiceApplication):
    """Loyalty accounts: enrolment, points, tiers and retention benefits."""

    service = "loyalty"
    programme = Programme()

    def enrol(self, customer_id: UUID, at: datetime | None = None) -> Account:
        """Open a customer's account; a customer enrols once."""
        if self._existing(customer_id) is not None:
            raise AlreadyEnrolledError(customer_id)
        account = Account.enrol(customer_id, self.programme, at or _now())
        self._save(account)
        return account

    def earn(
        self,
        customer_id: UUID,
        order_id: UUID,
        amount: Decimal,
        currency: str,
        paid_at: datetime,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> Account:
        """Earn points on a paid order; the same order again changes nothing."""
        account = self.account(customer_id, expected_version)
        if account.earn(self.programme, order_id, amount, currency, paid_at, now or _now()):
            self._save(account)
        return account

    def redeem(
        self,
        customer_id: UUID,
        reward_code: str,
        points: int,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> tuple[Account, UUID]:
        """Redeem points for a reward; returns the account and the redemption's id."""
        account = self.account(customer_id, expected_version)
        redemption_id = account.redeem(self.programme, reward_code, points, now or _now())
        self._save(account)
        return account, redemption_id

    def expire(self, customer_id: UUID, now: datetime | None = None, expected_version: int | None = None) -> Account:
        """Expire the points due at `now` and re-evaluate the tier."""
        account = self.account(customer_id, expected_version)
        account.expire(self.programme, now or _now())
        self._save(account)
        return account

    def review_tier(
        self, customer_id: UUID, now: datetime | None = None, expected_version: int | None = None
    ) -> Account:
        """Re-evaluate the tier from the rolling spend at `now`."""
        account = self.account(customer_id, expected_version)
        account.review_tier(self.programme, now or _now())
        self._save(account)
        return account

    def grant_benefit(
        self,
        customer_id: UUID,
        level: str,
        kind: str,
        description: str,
        reason: str | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
    ) -> tuple[Account, UUID]:
        """Record a retention benefit granted to the customer; returns the account and the benefit's id."""
        account = self.account(customer_id, expected_version)
        benefit_id = account.grant_benefit(level, kind, description, now or _now(), reason)
        self._save(account)
        return account, benefit_id

    def account(self, customer_id: UUID, expected_version: int | None = None) -> Account:
        """Load a customer's account; with `expected_version`, insist it is the current version."""
        account = self._existing(customer_id)
        if account is None:
            raise AccountNotFoundError(
                f"customer {customer_id} has no loyalty account", customer_id=str(customer_id)
            )
        if expected_version is not None and account.version != expected_version:
            raise StaleVersionError(
                f"loyalty account of customer {customer_id} is at version {account.version}, not {expected_version}",
                current_version=account.version,
            )
        return account

    def _existing(self, customer_id: UUID) -> Account | None:
        try:
            return self.repository.get(Account.id_for(customer_id))
        except AggregateNotFoundError:
            return None

    def _save(self, account: Account) -> None:
        """Save an account; losing a race becomes the domain's answer.

        A new account colliding means the customer enrolled meanwhile (its id is derived from the
        customer's); an existing one colliding was changed concurrently.
        """
        new = account.version == len(account.pending_events)
        try:
            self.save(account)
        except IntegrityError:
            if new:
                raise AlreadyEnrolledError(account.customer_id) from None
            raise StaleVersionError(
                f"loyalty account of customer {account.customer_id} was changed concurrently; reload it and retry"
            ) from None
