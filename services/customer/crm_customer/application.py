"""Customers: the customer service's commands (load, call, save) and queries."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import StaleVersionError
from crm_customer.domain import (
    Customer,
    CustomerNotFoundError,
    EmailClaim,
    EmailTakenError,
    GradingRule,
    normalise_email,
)
from crm_runtime.eventstore import ServiceApplication


class Customers(ServiceApplication):
    """Customer master data."""

    service = "customer"
    grading_rule = GradingRule()

    def register(
        self,
        name: str,
        email: str,
        phone: str | None = None,
        company: str | None = None,
        source_channel: str = "web",
        customer_id: UUID | None = None,
    ) -> Customer:
        """Register a new customer; its email must not belong to another customer.

        With `customer_id` (derived from the command's id), registering is idempotent: a command
        delivered twice answers the customer its first delivery registered.
        """
        customer = Customer.register(name, email, phone, company, source_channel, customer_id)
        try:
            # Most emails are new: claim optimistically, with no read first.
            self.save(customer, EmailClaim(email=customer.email, holder=customer.id))
            return customer
        except IntegrityError:
            pass  # this command ran before, or the email has a claim already (held, or released)
        if customer_id is not None:
            try:
                return self.customer(customer_id)
            except CustomerNotFoundError:
                pass
        # The failed save took the first attempt's events: register afresh against the existing claim.
        customer = Customer.register(name, email, phone, company, source_channel, customer_id)
        claim = self._claim_email(customer.email, customer.id)
        self._save(customer, claim)
        return customer

    def change_profile(self, customer_id: UUID, expected_version: int | None, changes: dict[str, Any]) -> Customer:
        customer = self.customer(customer_id, expected_version)
        old_email = customer.email
        customer.change_profile(changes)
        if customer.email == old_email:
            self._save(customer)
            return customer
        new_claim = self._claim_email(customer.email, customer.id)
        old_claim = self._existing_claim(old_email)
        if old_claim is not None and old_claim.holder == customer.id:
            old_claim.release()
        self._save(customer, new_claim, *([old_claim] if old_claim else []))
        return customer

    def record_consent(
        self,
        customer_id: UUID,
        channel: str,
        granted: bool,
        source: str,
        at: datetime | None = None,
        expected_version: int | None = None,
    ) -> Customer:
        customer = self.customer(customer_id, expected_version)
        customer.record_consent(channel, granted, source, at or datetime.now(UTC))
        self._save(customer)
        return customer

    def set_credit_rating(
        self,
        customer_id: UUID,
        rating: str,
        limit: Decimal | None = None,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Customer:
        customer = self.customer(customer_id, expected_version)
        customer.set_credit_rating(rating, limit, reason)
        self._save(customer)
        return customer

    def grade(
        self,
        customer_id: UUID,
        value: int,
        structure: int,
        loyalty: int,
        reason: str | None = None,
        expected_version: int | None = None,
    ) -> Customer:
        customer = self.customer(customer_id, expected_version)
        customer.grade_on(self.grading_rule, value, structure, loyalty, reason)
        self._save(customer)
        return customer

    def customer(self, customer_id: UUID, expected_version: int | None = None) -> Customer:
        """Load a customer; with `expected_version`, insist it is the current version."""
        try:
            customer: Customer = self.repository.get(customer_id)
        except AggregateNotFoundError:
            raise CustomerNotFoundError(f"customer {customer_id} not found", customer_id=str(customer_id)) from None
        if expected_version is not None and customer.version != expected_version:
            raise StaleVersionError(
                f"customer {customer_id} is at version {customer.version}, not {expected_version}",
                current_version=customer.version,
            )
        return customer

    def holder_of(self, email: str) -> UUID | None:
        """The customer holding `email`, if any."""
        claim = self._existing_claim(email)
        return claim.holder if claim else None

    def _existing_claim(self, email: str) -> EmailClaim | None:
        try:
            return self.repository.get(EmailClaim.id_for(email))
        except AggregateNotFoundError:
            return None

    def _claim_email(self, email: str, holder: UUID) -> EmailClaim:
        claim = self._existing_claim(email)
        if claim is None:
            return EmailClaim(email=normalise_email(email), holder=holder)
        claim.claim(holder)
        return claim

    def _save(self, customer: Customer, *claims: EmailClaim) -> None:
        """Save a customer with the email claims it changed, in one transaction.

        Losing a race turns into the domain's answer: the email went to another customer
        (EmailTakenError), or the customer itself was changed concurrently (StaleVersionError).
        """
        try:
            self.save(customer, *claims)
        except IntegrityError:
            holder = self.holder_of(customer.email)
            if holder is not None and holder != customer.id:
                raise EmailTakenError(customer.email, holder) from None
            raise StaleVersionError(
                f"customer {customer.id} was changed concurrently; reload it and retry"
            ) from None
