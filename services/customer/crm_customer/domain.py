"""Customer master data as event-sourced aggregates. Pure: no framework, no driver."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from crm_contracts.errors import ConflictError, InvalidRequestError, NotFoundError
from crm_contracts.vocabulary.customer import CONSENT_CHANNELS, CREDIT_RATINGS, PROFILE_FIELDS, SOURCE_CHANNELS

EMAIL_CLAIM_NAMESPACE = uuid.UUID("0d0c7a57-86a4-4c3e-8f0b-5b8d51e4a1f2")
REGISTRATION_NAMESPACE = uuid.UUID("5b0e8f3c-2a71-4d0c-9c62-7e4f1a9d3b85")


class CustomerNotFoundError(NotFoundError):
    pass


class EmailTakenError(ConflictError):
    """The email already belongs to another customer."""

    def __init__(self, email: str, existing_customer_id: uuid.UUID) -> None:
        super().__init__(
            f"email {email} already belongs to customer {existing_customer_id}",
            existing_customer_id=str(existing_customer_id),
            fields={"email": ["already belongs to another customer"]},
        )


class InvalidCustomerDataError(InvalidRequestError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


def normalise_email(email: str) -> str:
    return email.strip().lower()


@dataclass(frozen=True)
class GradingRule:
    """Turns the three quality axes of DOMAIN.md into a grade. Scores run 1..5 per axis;
    weights and thresholds are configurable, the defaults weigh value most."""

    value_weight: int = 2
    structure_weight: int = 1
    loyalty_weight: int = 1
    key_at: int = 16
    ordinary_at: int = 10

    def grade_for(self, value: int, structure: int, loyalty: int) -> str:
        for axis, score in (("value", value), ("structure", structure), ("loyalty", loyalty)):
            if not 1 <= score <= 5:
                raise InvalidCustomerDataError(axis, "must be a score from 1 to 5")
        total = value * self.value_weight + structure * self.structure_weight + loyalty * self.loyalty_weight
        if total >= self.key_at:
            return "key"
        if total >= self.ordinary_at:
            return "ordinary"
        return "seed"


class Customer(Aggregate):
    """One customer's master record."""

    @event("Registered")
    def __init__(
        self, name: str, email: str, phone: str | None, company: str | None, source_channel: str
    ) -> None:
        self.name = name
        self.email = email
        self.phone = phone
        self.company = company
        self.source_channel = source_channel
        self.consents: dict[str, dict[str, Any]] = {}
        self.credit_rating: str | None = None
        self.credit_limit: Decimal | None = None
        self.grade: str | None = None
        self.grade_scores: dict[str, int] | None = None

    @classmethod
    def register(
        cls,
        name: str,
        email: str,
        phone: str | None,
        company: str | None,
        source_channel: str,
        customer_id: uuid.UUID | None = None,
    ) -> "Customer":
        """A new customer; with `customer_id` (derived from the command), a redelivered command
        collides with its first run in the event store instead of registering twice."""
        check_name(name)
        if source_channel not in SOURCE_CHANNELS:
            raise InvalidCustomerDataError("source_channel", f"must be one of {', '.join(SOURCE_CHANNELS)}")
        fields = {"name": name.strip(), "email": normalise_email(email), "phone": phone, "company": company,
                  "source_channel": source_channel}
        if customer_id is None:
            return cls(**fields)
        return cls._create(cls.Registered, id=customer_id, **fields)  # type: ignore[attr-defined]

    @staticmethod
    def id_for_registration(command_id: str) -> uuid.UUID:
        """The id a customer registered by command `command_id` gets: the same for every delivery."""
        return uuid.uuid5(REGISTRATION_NAMESPACE, command_id)

    def change_profile(self, changes: dict[str, Any]) -> None:
        unknown = set(changes) - set(PROFILE_FIELDS)
        if unknown:
            raise InvalidCustomerDataError(sorted(unknown)[0], "is not a profile field")
        if "name" in changes:
            check_name(changes["name"])
        if "email" in changes:
            changes = {**changes, "email": normalise_email(changes["email"])}
        actual = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if actual:
            self._profile_changed(actual)

    @event("ProfileChanged")
    def _profile_changed(self, changes: dict[str, Any]) -> None:
        for field_name, value in changes.items():
            setattr(self, field_name, value)

    def record_consent(self, channel: str, granted: bool, source: str, at: datetime) -> None:
        if channel not in CONSENT_CHANNELS:
            raise InvalidCustomerDataError("channel", f"must be one of {', '.join(CONSENT_CHANNELS)}")
        self._consent_recorded(channel, granted, source, at)

    @event("ConsentRecorded")
    def _consent_recorded(self, channel: str, granted: bool, source: str, at: datetime) -> None:
        self.consents[channel] = {"granted": granted, "source": source, "at": at}

    def set_credit_rating(self, rating: str, limit: Decimal | None, reason: str | None) -> None:
        if rating not in CREDIT_RATINGS:
            raise InvalidCustomerDataError("rating", f"must be one of {', '.join(CREDIT_RATINGS)}")
        if limit is not None and limit < 0:
            raise InvalidCustomerDataError("limit", "must not be negative")
        self._credit_rating_changed(rating, limit, reason)

    @event("CreditRatingChanged")
    def _credit_rating_changed(self, rating: str, limit: Decimal | None, reason: str | None) -> None:
        self.credit_rating = rating
        self.credit_limit = limit

    def grade_on(self, rule: GradingRule, value: int, structure: int, loyalty: int, reason: str | None) -> None:
        grade = rule.grade_for(value, structure, loyalty)
        self._graded(grade, {"value": value, "structure": structure, "loyalty": loyalty}, reason)

    @event("Graded")
    def _graded(self, grade: str, scores: dict[str, int], reason: str | None) -> None:
        self.grade = grade
        self.grade_scores = scores


class EmailClaim(Aggregate):
    """Which customer holds an email address. Its id is derived from the address, so two
    registrations racing for one email collide on the event store's version check."""

    @staticmethod
    def id_for(email: str) -> uuid.UUID:
        return uuid.uuid5(EMAIL_CLAIM_NAMESPACE, normalise_email(email))

    @classmethod
    def create_id(cls, email: str, holder: uuid.UUID) -> uuid.UUID:
        return cls.id_for(email)

    @event("Claimed")
    def __init__(self, email: str, holder: uuid.UUID) -> None:
        self.email = email
        self.holder: uuid.UUID | None = holder

    def claim(self, holder: uuid.UUID) -> None:
        if self.holder is not None and self.holder != holder:
            raise EmailTakenError(self.email, self.holder)
        if self.holder is None:
            self._reclaimed(holder)

    @event("Reclaimed")
    def _reclaimed(self, holder: uuid.UUID) -> None:
        self.holder = holder

    @event("Released")
    def release(self) -> None:
        self.holder = None


def check_name(name: str) -> None:
    if not name or not name.strip():
        raise InvalidCustomerDataError("name", "must not be blank")
