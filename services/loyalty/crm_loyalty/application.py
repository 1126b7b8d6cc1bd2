"""LoyaltyAccounts: the loyalty service's commands (load, call, save) and queries."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import MovedError, StaleVersionError
from crm_loyalty.domain import (
    Account,
    AccountNotFoundError,
    AlreadyEnrolledError,
    Programme,
    ProgrammeConfigurationError,
)
from crm_runtime.commands import IdempotentApplication
from crm_runtime.crypto import DataKeys, data_keys_for
from crm_runtime.rights import erasure_state_of, forget_subjects, record_merge, record_unmerge, survivor_path


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
    data_keys: DataKeys

    def __init__(self, env: dict[str, str] | None = None, *, create_table: bool | None = None) -> None:
        super().__init__(env, create_table=create_table)
        # LOYALTY_EXCHANGE_RATES adds to (or overrides) the programme's exchange table.
        setting = self.env.get("LOYALTY_EXCHANGE_RATES")
        if setting:
            rates = {**self.programme.exchange_rates, **exchange_rates_from(setting)}
            self.programme = dataclasses.replace(self.programme, exchange_rates=rates)

    def enrol(self, customer_id: UUID, at: datetime | None = None, command_id: str | None = None) -> Account:
        """Open a customer's account; a customer enrols once (the account id is derived from the customer).
        A customer merged into another is `moved` (MovedError, naming the survivor)."""

        def enrol() -> Account:
            if (holder := self._holder(customer_id)) != customer_id:
                raise MovedError(customer_id, holder)  # a merged customer's points are its survivor's
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
        so a reaction applied late or replayed gives the same account. A payment naming a customer
        merged since earns on the survivor's account."""
        holder = self._holder(customer_id)
        account = self._existing(holder) or Account.enrol(holder, self.programme, paid_at)
        account.earn(self.programme, order_id, amount, currency, paid_at, paid_at)
        if account.pending_events:
            self._save(account)
        return account

    def take_back_points(
        self, customer_id: UUID, order_id: UUID, reversal_id: str, refund: Decimal, currency: str, at: datetime
    ) -> Account | None:
        """The refund and return policies' command: take back the points the refund cancels, once per
        refund, in one save. Dated by the refund, so a reaction applied late or replayed takes the same
        points. None when the customer has no account (nothing was ever earned to take back). A refund
        naming a customer merged since takes back from the survivor's account (the order's earning
        moved there)."""
        account = self._existing(self._holder(customer_id))
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
        """Load a customer's account; with `expected_version`, insist it is the current version. A
        merged customer's account is closed: MovedError, naming the final survivor."""
        account = self._existing(customer_id)
        if account is None or account.merged_into is not None:
            holder = self._holder(customer_id)
            if holder != customer_id:
                raise MovedError(customer_id, holder)
        if account is None:
            raise AccountNotFoundError(
                f"customer {customer_id} has no loyalty account", customer_id=str(customer_id)
            )
        check_version(account, expected_version)
        return account

    def expire_due(self, customer_id: UUID) -> Account | None:
        """The periodic sweep's command: expire what is due now and review the tier; a merged account
        (its points moved to the survivor's) is left alone."""
        account = self._existing(customer_id)
        if account is None or account.merged_into is not None:
            return None
        return self.expire(customer_id)

    # --- a customer's rights (crm_runtime.rights) ---------------------------------------------------

    def construct_mapper(self) -> Any:
        """eventsourcing's mapper, as is (nothing is sealed here, see `forget_customer`), and the data
        keys beside it for their erasure ledger: the dead-letter purge (crm_runtime.nameko.deadletters)
        drops the dead letters that name a customer of the ledger."""
        mapper = super().construct_mapper()
        self.data_keys = data_keys_for(self.factory)
        return mapper

    def forget_customer(self, customer_id: UUID, request_id: str) -> None:
        """Enter the customer in the erasure ledger; there is nothing to shred: the loyalty service holds
        no personal data. An account holds ids, amounts, dates, points, tiers, reward codes (programme
        vocabulary) and benefits (the programme's texts, or an operator's note, kept as the customer
        service keeps its operators' notes), which stay as anonymous facts. Idempotent."""
        forget_subjects(self.data_keys, [customer_id], request_id)

    def erasure_state(self, customer_id: UUID) -> str:
        """"done" for a customer never erased here (nothing personal is held) and, for one erased, once
        `CRM_DATA_KEY_TTL` has passed since (as every service reports it)."""
        return erasure_state_of(self.data_keys, [customer_id])

    def absorb_customer(
        self, customer_id: UUID, survivor_id: UUID, merge_id: str, now: datetime | None = None
    ) -> None:
        """The customer was merged into `survivor_id`: its account's points lots, spends, earnings and
        debt move to the survivor's account (opened now if it has none) and its own account is closed
        as merged (Account.merge_into); the survivor's tier is reviewed. The merge is noted
        (crm_runtime.rights.CustomerMerge) even for a customer without an account, so a payment or a
        refund naming it that arrives later goes to the survivor. One save, dated `now` (the time of
        the call by default); a redelivered merge changes nothing."""
        now = now or _now()
        changed: list[Any] = record_merge(self.repository, customer_id, survivor_id, merge_id)
        absorbed = self._existing(customer_id)
        if absorbed is not None and absorbed.merged_into is None:
            survivor = self._existing(survivor_id) or Account.enrol(survivor_id, self.programme, now)
            absorbed.merge_into(survivor, merge_id, self.programme, now)
            changed += [absorbed, survivor]  # published in this order: what leaves an account, then what arrives
        if changed:
            self.save(*changed)

    def restore_customer(
        self, customer_id: UUID, survivor_id: UUID, merge_id: str, now: datetime | None = None
    ) -> None:
        """Undo merge `merge_id`: what it moved goes back to the customer's account, as it is now (the
        module docstring of crm_loyalty.domain says exactly what); both tiers are reviewed. One save,
        dated `now` (the time of the call by default); idempotent."""
        changed: list[Any] = record_unmerge(self.repository, customer_id, survivor_id, merge_id)
        absorbed, survivor = self._existing(customer_id), self._existing(survivor_id)
        if (absorbed is not None and survivor is not None
                and absorbed.restore_from(survivor, merge_id, self.programme, now or _now())):
            changed += [survivor, absorbed]  # published in this order: what leaves an account, then what arrives
        if changed:
            self.save(*changed)

    def _existing(self, customer_id: UUID) -> Account | None:
        try:
            return self.repository.get(Account.id_for(customer_id))
        except AggregateNotFoundError:
            return None

    def _holder(self, customer_id: UUID) -> UUID:
        """Whose account holds the customer's points now: its own, or its final survivor's."""
        path = survivor_path(self.repository, customer_id)
        return path[-1][1] if path else customer_id

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
