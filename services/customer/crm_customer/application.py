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
    ConvertedLead,
    Customer,
    CustomerNotFoundError,
    EmailClaim,
    EmailTakenError,
    GradingRule,
    LeadLink,
    PhoneClaim,
    PhoneTakenError,
)
from crm_runtime.commands import IdempotentApplication

#: What says which customer holds a contact: an email or a phone claim.
Claim = EmailClaim | PhoneClaim


class Customers(IdempotentApplication):
    """Customer master data. Every command takes the id of the call that carries it (`command_id`):
    a command delivered or retried twice takes effect once and answers the customer as it is now."""

    service = "customer"
    grading_rule = GradingRule()

    def register(
        self,
        name: str,
        email: str | None,
        phone: str | None = None,
        company: str | None = None,
        source_channel: str = "web",
        command_id: str | None = None,
    ) -> Customer:
        """Register a new customer, known by an email, a phone or both; neither may belong to another customer.

        With `command_id`, the customer's id is derived from it, so a command delivered twice answers
        the customer its first delivery registered.
        """
        if command_id is None:
            return self._register(name, email, phone, company, source_channel, None)
        customer_id = Customer.id_for_registration(command_id)
        return self.once(
            command_id,
            lambda: self._register(name, email, phone, company, source_channel, customer_id),
            lambda: self.customer(customer_id),
        )

    def _register(
        self, name: str, email: str | None, phone: str | None, company: str | None, source_channel: str,
        customer_id: UUID | None,
    ) -> Customer:
        customer = Customer.register(name, email, phone, company, source_channel, customer_id)
        try:
            # Most contacts are new: claim optimistically, with no read first.
            self.save(customer, *self._fresh_claims(customer))
            return customer
        except IntegrityError:
            pass  # a contact has a claim already (held, or released), or this command ran before markers
        if customer_id is not None:
            try:
                return self.customer(customer_id)
            except CustomerNotFoundError:
                pass
        # The failed save took the first attempt's events: register afresh against the existing claims.
        customer = Customer.register(name, email, phone, company, source_channel, customer_id)
        self._save(customer, *self._claims_for(customer))
        return customer

    def link_lead(self, lead: ConvertedLead) -> Customer:
        """The customer a converted lead becomes (marketing.lead_converted), in ONE save: the customer
        (registered, or an existing one), its claims when new, the LeadLinked event and the lead's link.

        Which customer: the one the lead names (`customer_id`) when it exists; else the holder of the
        lead's email; else the holder of its phone; else a new customer registered from the lead (its id
        derived from the lead id, with the lead's email and phone claimed). An existing customer's
        profile is left as it is. A lead links once: a second conversion of the same lead answers the
        customer of the first and records nothing new (so nothing is published again).
        """
        link = self._existing_link(lead.lead_id)
        if link is not None:
            return self.customer(link.customer_id)
        customer, matched_by = self._match(lead)
        claims: list[Claim] = []
        if customer is None:
            customer = Customer.register(
                lead.name, lead.email, lead.phone, lead.company, lead.source_channel, Customer.id_for_lead(lead.lead_id)
            )
            claims = self._claims_for(customer)
        customer.link_lead(lead, matched_by)
        try:
            self._save(customer, *claims, LeadLink(lead_id=lead.lead_id, customer_id=customer.id))
        except (EmailTakenError, PhoneTakenError) as exc:
            # Another customer took the lead's email or phone meanwhile: matching again now finds it.
            raise StaleVersionError(f"lead {lead.lead_id}: {exc}; match it again") from exc
        return customer

    def _match(self, lead: ConvertedLead) -> tuple[Customer | None, str]:
        """The existing customer a lead is, and how it was found; (None, "registered") for a new one."""
        if lead.customer_id is not None:
            try:
                return self.customer(lead.customer_id), "customer_id"
            except CustomerNotFoundError:
                pass  # a customer the lead names but this service does not know: match it like any lead
        for cls, contact, matched_by in ((EmailClaim, lead.email, "email"), (PhoneClaim, lead.phone, "phone")):
            holder = self._holder(cls, contact) if contact else None
            if holder is not None:
                return self.customer(holder), matched_by
        return None, "registered"

    def customer_of_lead(self, lead_id: UUID) -> Customer | None:
        """The customer a converted lead became, if it was linked yet."""
        link = self._existing_link(lead_id)
        return self.customer(link.customer_id) if link is not None else None

    def _existing_link(self, lead_id: UUID) -> LeadLink | None:
        try:
            return self.repository.get(LeadLink.id_for(lead_id))
        except AggregateNotFoundError:
            return None

    def change_profile(
        self, customer_id: UUID, expected_version: int | None, changes: dict[str, Any], command_id: str | None = None
    ) -> Customer:
        return self.once(
            command_id, lambda: self._change_profile(customer_id, expected_version, changes),
            lambda: self.customer(customer_id),
        )

    def _change_profile(self, customer_id: UUID, expected_version: int | None, changes: dict[str, Any]) -> Customer:
        customer = self.customer(customer_id, expected_version)
        old_email, old_phone = customer.email, customer.phone
        customer.change_profile(changes)
        claims = [
            *self._claims_changed(EmailClaim, old_email, customer.email, customer.id),
            *self._claims_changed(PhoneClaim, old_phone, customer.phone, customer.id),
        ]
        self._save(customer, *claims)
        return customer

    def _claims_changed(self, cls: type[Claim], old: str | None, new: str | None, holder: UUID) -> list[Claim]:
        """The claims a contact's change touches: the new contact claimed, the old one released."""
        if old == new:
            return []
        claimed = self._claim(cls, new, holder) if new else None
        released = self._existing_claim(cls, old) if old else None
        if released is None or released.holder != holder or (claimed is not None and claimed.id == released.id):
            return [claimed] if claimed is not None else []  # the same number written differently stays claimed
        released.release()
        return [released] if claimed is None else [claimed, released]

    def record_consent(
        self,
        customer_id: UUID,
        channel: str,
        granted: bool,
        source: str,
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Customer:
        def record() -> Customer:
            customer = self.customer(customer_id, expected_version)
            customer.record_consent(channel, granted, source, at or datetime.now(UTC))
            self._save(customer)
            return customer

        return self.once(command_id, record, lambda: self.customer(customer_id))

    def set_credit_rating(
        self,
        customer_id: UUID,
        rating: str,
        limit: Decimal | None = None,
        reason: str | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Customer:
        def rate() -> Customer:
            customer = self.customer(customer_id, expected_version)
            customer.set_credit_rating(rating, limit, reason)
            self._save(customer)
            return customer

        return self.once(command_id, rate, lambda: self.customer(customer_id))

    def set_address(
        self,
        customer_id: UUID,
        kind: str,
        address: dict[str, Any],
        default: bool = True,
        at: datetime | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Customer:
        """Record the customer's billing or shipping address (order ships to the default shipping one)."""

        def set_address() -> Customer:
            customer = self.customer(customer_id, expected_version)
            customer.set_address(kind, address, default, at or datetime.now(UTC))
            self._save(customer)
            return customer

        return self.once(command_id, set_address, lambda: self.customer(customer_id))

    def grade(
        self,
        customer_id: UUID,
        value: int,
        structure: int,
        loyalty: int,
        reason: str | None = None,
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> Customer:
        def grade() -> Customer:
            customer = self.customer(customer_id, expected_version)
            customer.grade_on(self.grading_rule, value, structure, loyalty, reason)
            self._save(customer)
            return customer

        return self.once(command_id, grade, lambda: self.customer(customer_id))

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
        return self._holder(EmailClaim, email)

    def holder_of_phone(self, phone: str) -> UUID | None:
        """The customer holding the phone number `phone` (however it is written), if any."""
        return self._holder(PhoneClaim, phone)

    def _holder(self, cls: type[Claim], contact: str) -> UUID | None:
        claim = self._existing_claim(cls, contact)
        return claim.holder if claim else None

    def _existing_claim(self, cls: type[Claim], contact: str) -> Claim | None:
        try:
            claim: Claim = self.repository.get(cls.id_for(contact))
        except AggregateNotFoundError:
            return None
        return claim

    def _claim(self, cls: type[Claim], contact: str, holder: UUID) -> Claim:
        """The claim of `contact` for `holder`: new, or the existing one taken over (if it is free)."""
        claim = self._existing_claim(cls, contact)
        if claim is None:
            return cls(contact, holder)
        claim.claim(holder)
        return claim

    @staticmethod
    def _fresh_claims(customer: Customer) -> list[Claim]:
        """New claims of a new customer's email and phone (they collide if either is claimed already)."""
        claims: list[Claim] = []
        if customer.email:
            claims.append(EmailClaim(email=customer.email, holder=customer.id))
        if customer.phone:
            claims.append(PhoneClaim(phone=customer.phone, holder=customer.id))
        return claims

    def _claims_for(self, customer: Customer) -> list[Claim]:
        """A new customer's claims against the stored ones: EmailTakenError or PhoneTakenError if held."""
        claims: list[Claim] = []
        if customer.email:
            claims.append(self._claim(EmailClaim, customer.email, customer.id))
        if customer.phone:
            claims.append(self._claim(PhoneClaim, customer.phone, customer.id))
        return claims

    def _save(self, customer: Customer, *others: Claim | LeadLink) -> None:
        """Save a customer with the claims (and lead link) it changed, in one transaction.

        Losing a race turns into the domain's answer: the email or phone went to another customer
        (EmailTakenError, PhoneTakenError), or the customer itself was changed concurrently
        (StaleVersionError, which a policy's inbox retries on fresh state).
        """
        try:
            self.save(customer, *others)
        except IntegrityError:
            email_holder = self.holder_of(customer.email) if customer.email else None
            if email_holder is not None and email_holder != customer.id:
                raise EmailTakenError(customer.email or "", email_holder) from None
            phone_holder = self.holder_of_phone(customer.phone) if customer.phone else None
            if phone_holder is not None and phone_holder != customer.id:
                raise PhoneTakenError(customer.phone or "", phone_holder) from None
            raise StaleVersionError(
                f"customer {customer.id} was changed concurrently; reload it and retry"
            ) from None
