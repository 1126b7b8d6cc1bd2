"""LoyaltyAccounts: the loyalty service's commands (load, call, save) and queries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import StaleVersionError
from crm_loyalty.domain import (
    Account,
    AccountNotFoundError,
    AlreadyEnrolledError,
    Programme,
    ProgrammeConfigurationError,
)
from crm_runtime.commands import IdempotentApplication


def _now() -> datetime:
    return datetime.now(UTC)


def exchange_rates_from(setting: str) -> dict[str, Decimal]:
    """Exchange rates from a setting like "USD=7.10, EUR=7.70" (units of the programme currency per unit)."""
    rates: dict[str, Decimal] = {}
    for item in filter(None, (part.strip() for part in setting.split(","))):
        currency, _, rate = item.partition("=")
        try:
            rates[currency.strip().upper()] = Decimal(rate.strip())
        except InvalidOperation:
            raise ProgrammeConfigurationError(f"LOYALTY_EXCHANGE_RATES: {item!r} is not CURRENCY=RATE") from None
    return rates


def check_version(account: Account, expected_version: int | None) -> None:
    """With `expected_version` (the version the caller saw), insist it is the account's current one.

    Commands that add an entry with its own id (an order's points, a redemption, a benefit) check it
    only when the entry is new: a resent command then answers like its first run, not as stale.
    """
    if expected_version is not None and account.version != expected_version:
        raise StaleVersionError(
            f"loyalty account of customer {account.customer_id} is at version {account.version}, "
            f"not {expected_version}",
            current_version=account.version,
        )


class LoyaltyAccounts(IdempotentApplication):
    """Loyalty accounts: enrolment, points, tiers and retention benefits.

    Every command takes the id of the call that carries it (`command_id`): a command delivered or
    retried twice takes effect once and answers the account as it is now (crm_runtime.commands).
    """

    service = "loyalty"
    programme = Programme()

    def __init__(self, env: dict[str, str] | None = None, *, create_table: bool | None = None) -> None:
        super().__init__(env, create_table=create_table)
        # LOYALTY_EXCHANGE_RATES adds to (or overrides) the programme's exchange table.
        setting = self.env.get("LOYALTY_EXCHANGE_RATES")
        if setting:
            rates = {**self.programme.exchange_rates, **exchange_rates_from(setting)}
            self.programme = dataclasses.replace(self.programme, exchange_rates=rates)

    def enrol(self, customer_id: UUID, at: datetime | None = None, command_id: str | None = None) -> Account:
        """Open a customer's account; a customer enrols once (the account id is derived from the customer)."""

        def enrol() -> Account:
            if self._existing(customer_id) is not None:
                raise AlreadyEnrolledError(customer_id)
            return self._save(Account.enrol(customer_id, self.programme, at or _now()))

        return self._once(customer_id, command_id, enrol)

    def earn(
        self,
        customer_id: UUID,
        order_id: UUID,
        amount: Decimal,
        currency: str,
        paid_at: datetime,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Account:
        """Earn points on a paid order; the same order again changes nothing."""

        def earn() -> Account:
            account = self.account(customer_id)
            if order_id not in account.earned_orders:
                check_version(account, expected_version)
            if account.earn(self.programme, order_id, amount, currency, paid_at, now or _now()):
                self._save(account)
            return account

        return self._once(customer_id, command_id, earn)

    def earn_on_paid_order(
        self, customer_id: UUID, order_id: UUID, amount: Decimal, currency: str, paid_at: datetime
    ) -> Account:
        """The order_paid policy's command: enrol the customer if needed and earn the order's points,
        in one save (a policy's reaction is one transaction with its tracking). Dated by the payment,
        so a reaction applied late or replayed gives the same account."""
        account = self._existing(customer_id) or Account.enrol(customer_id, self.programme, paid_at)
        account.earn(self.programme, order_id, amount, currency, paid_at, paid_at)
        if account.pending_events:
            self._save(account)
        return account

    def take_back_points(
        self, customer_id: UUID, order_id: UUID, reversal_id: str, refund: Decimal, currency: str, at: datetime
    ) -> Account | None:
        """The refund and return policies' command: take back the points the refund cancels, once per
        refund, in one save. Dated by the refund, so a reaction applied late or replayed takes the same
        points. None when the customer has no account (nothing was ever earned to take back)."""
        account = self._existing(customer_id)
        if account is None:
            return None
        if account.take_back(self.programme, order_id, reversal_id, refund, currency, at):
            self._save(account)
        return account

    def redeem(
        self,
        customer_id: UUID,
        reward_code: str,
        points: int,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> tuple[Account, UUID]:
        """Redeem points for a reward; returns the account and the redemption's id.

        With a `command_id`, the redemption's id is derived from it, so a command delivered twice
        answers the redemption its first delivery made and spends the points once.
        """
        redemption_id = Account.id_for_redemption(command_id) if command_id is not None else None

        def redeem() -> tuple[Account, UUID]:
            account = self.account(customer_id)
            if account.redemption(redemption_id) is None:
                check_version(account, expected_version)
            made = account.redeem(self.programme, reward_code, points, now or _now(), redemption_id)
            return self._save(account), made

        if redemption_id is None:
            return redeem()
        return self.once(command_id, redeem, lambda: (self.account(customer_id), redemption_id))

    def expire(
        self,
        customer_id: UUID,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Account:
        """Expire the points due at `now` and re-evaluate the tier."""

        def expire() -> Account:
            account = self.account(customer_id, expected_version)
            account.expire(self.programme, now or _now())
            return self._save(account)

        return self._once(customer_id, command_id, expire)

    def review_tier(
        self,
        customer_id: UUID,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Account:
        """Re-evaluate the tier from the rolling spend at `now`."""

        def review() -> Account:
            account = self.account(customer_id, expected_version)
            account.review_tier(self.programme, now or _now())
            return self._save(account)

        return self._once(customer_id, command_id, review)

    def grant_benefit(
        self,
        customer_id: UUID,
        level: str,
        kind: str,
        description: str,
        reason: str | None = None,
        now: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> tuple[Account, UUID]:
        """Record a retention benefit granted to the customer; returns the account and the benefit's id.

        With a `command_id`, the benefit's id is derived from it, so a command delivered twice
        answers the benefit its first delivery granted and grants it once.
        """
        benefit_id = Account.id_for_benefit(command_id) if command_id is not None else None

        def grant() -> tuple[Account, UUID]:
            account = self.account(customer_id)
            if account.benefit(benefit_id) is None:
                check_version(account, expected_version)
            granted = account.grant_benefit(level, kind, description, now or _now(), reason, benefit_id)
            return self._save(account), granted

        if benefit_id is None:
            return grant()
        return self.once(command_id, grant, lambda: (self.account(customer_id), benefit_id))

    def account(self, customer_id: UUID, expected_version: int | None = None) -> Account:
        """Load a customer's account; with `expected_version`, insist it is the current version."""
        account = self._existing(customer_id)
        if account is None:
            raise AccountNotFoundError(
                f"customer {customer_id} has no loyalty account", customer_id=str(customer_id)
            )
        check_version(account, expected_version)
        return account

    def _existing(self, customer_id: UUID) -> Account | None:
        try:
            return self.repository.get(Account.id_for(customer_id))
        except AggregateNotFoundError:
            return None

    def _once(self, customer_id: UUID, command_id: str | None, command: Callable[[], Account]) -> Account:
        """Run a command once per `command_id`; a repeat answers the account as it is now."""
        return self.once(command_id, command, lambda: self.account(customer_id))

    def _save(self, account: Account) -> Account:
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
        return account
