"""Customer master data as event-sourced aggregates. Pure: no framework, no driver."""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from crm_contracts.errors import ConflictError, InvalidRequestError, NotFoundError
from crm_contracts.vocabulary.customer import (
    ADDRESS_KINDS,
    CONSENT_CHANNELS,
    CREDIT_RATINGS,
    PROFILE_FIELDS,
    SOURCE_CHANNELS,
)

#: Claim ids of the first version (uuid5 of the contact): only `Customers.rekey_claims` still derives them.
EMAIL_CLAIM_NAMESPACE = uuid.UUID("0d0c7a57-86a4-4c3e-8f0b-5b8d51e4a1f2")
REGISTRATION_NAMESPACE = uuid.UUID("5b0e8f3c-2a71-4d0c-9c62-7e4f1a9d3b85")
PHONE_CLAIM_NAMESPACE = uuid.UUID("c3a1e7d2-48f6-4b0a-9e5d-71b2f0c8a934")
#: A customer registered from a lead gets an id derived from the lead: one lead, one customer.
LEAD_REGISTRATION_NAMESPACE = uuid.UUID("2d9f6b13-7c84-4e1a-b05f-e6a3c9d1f472")
LEAD_LINK_NAMESPACE = uuid.UUID("8e47a0c5-d1b9-4f32-a6e8-0c5b2d7f9a16")
#: A merge's record is keyed by its merge id; a merge id not given by the client is derived from the command.
MERGE_NAMESPACE = uuid.UUID("4a7c2e91-b35d-4f08-8e6a-d19c0b2f5e37")
MERGE_COMMAND_NAMESPACE = uuid.UUID("b81f3d6a-29c4-4e75-a0d8-6c5e1f2a9b43")
#: A lead's capture channel -> the source channel of the customer registered from it.
LEAD_SOURCE_CHANNELS = {"web_form": "web", "email": "email", "phone": "phone", "event": "event",
                        "referral": "referral"}


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


class PhoneTakenError(ConflictError):
    """The phone number already belongs to another customer."""

    def __init__(self, phone: str, existing_customer_id: uuid.UUID) -> None:
        super().__init__(
            f"phone {phone} already belongs to customer {existing_customer_id}",
            existing_customer_id=str(existing_customer_id),
            fields={"phone": ["already belongs to another customer"]},
        )


class CustomerErasedError(ConflictError):
    """The customer was erased (GDPR Art. 17): nothing more is recorded about them."""

    def __init__(self, customer_id: uuid.UUID) -> None:
        super().__init__(
            f"customer {customer_id} was erased: nothing more can be recorded about them",
            customer_id=str(customer_id), erased=True,
        )


class MergeOfErasedError(ConflictError):
    """An erased customer takes part in no merge or unmerge: nothing more is recorded about them."""

    def __init__(self, customer_id: uuid.UUID, action: str) -> None:
        super().__init__(
            f"customer {customer_id} was erased: it cannot be {action} (nothing more is recorded about an erased "
            "customer)",
            customer_id=str(customer_id), erased=True,
        )


class AlreadyMergedError(ConflictError):
    """The customer to absorb was merged into another already (by another merge)."""

    def __init__(self, customer_id: uuid.UUID, survivor_id: uuid.UUID, merge_id: str) -> None:
        super().__init__(
            f"customer {customer_id} was merged into customer {survivor_id} already (merge {merge_id}): undo that "
            "merge first to merge it elsewhere",
            customer_id=str(customer_id), survivor_id=str(survivor_id), merge_id=merge_id,
            fields={"absorb": [f"customer {customer_id} is merged into another already"]},
        )


class LaterMergeFirstError(ConflictError):
    """A merge whose survivor was merged into another since cannot be undone before that later merge."""

    def __init__(self, merge_id: str, survivor_id: uuid.UUID, later_merge_id: str | None,
                 later_survivor_id: uuid.UUID) -> None:
        super().__init__(
            f"the survivor {survivor_id} of merge {merge_id} was merged into customer {later_survivor_id} since "
            f"(merge {later_merge_id}): unmerge the later merge first",
            merge_id=merge_id, survivor_id=str(survivor_id), later_merge_id=later_merge_id,
        )


class MergeNotFoundError(NotFoundError):
    def __init__(self, merge_id: str) -> None:
        super().__init__(f"merge {merge_id} not found", merge_id=merge_id)


class InvalidCustomerDataError(InvalidRequestError):
    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}", fields={field: [reason]})


def normalise_email(email: str) -> str:
    return email.strip().lower()


def normalise_phone(phone: str) -> str:
    """The number a phone claim is keyed by: its digits, with the leading + if any
    ("+86 10 5555-0101" and "+86 (10) 55550101" are one number)."""
    stripped = phone.strip()
    return ("+" if stripped.startswith("+") else "") + re.sub(r"[^0-9]", "", stripped)


@dataclass(frozen=True)
class ConvertedLead:
    """What the customer service needs of a converted lead (marketing.lead_converted)."""

    lead_id: uuid.UUID
    customer_id: uuid.UUID | None
    campaign_id: uuid.UUID | None
    name: str
    email: str | None
    phone: str | None
    company: str | None
    channel: str
    estimated_amount: Decimal
    currency: str
    expected_close_date: date | None
    sales_owner: str | None

    @property
    def source_channel(self) -> str:
        """The source channel of a customer registered from this lead."""
        return LEAD_SOURCE_CHANNELS.get(self.channel, "campaign")


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
        self, name: str, email: str | None, phone: str | None, company: str | None, source_channel: str
    ) -> None:
        self.name: str | None = name  # None once erased
        self.email = email
        self.phone = phone
        self.company = company
        self.source_channel = source_channel
        self.consents: dict[str, dict[str, Any]] = {}
        self.credit_rating: str | None = None
        self.credit_limit: Decimal | None = None
        self.grade: str | None = None
        self.grade_scores: dict[str, int] | None = None
        self.lead_ids: list[uuid.UUID] = []
        self.addresses: dict[str, dict[str, Any]] = {}
        self.erased_at: datetime | None = None
        # Merges (see `merge_customers`): on an absorbed customer, where it went and by which merge.
        self.merged_into: uuid.UUID | None = None
        self.merge_id: str | None = None
        # On a survivor: each customer absorbed into it (by str id) -> its merge id and consents as merged;
        # and each consent channel a merge withdrew -> that merge and the survivor's own consent before it.
        self.absorbed: dict[str, dict[str, Any]] = {}
        self.withdrawn_by_merge: dict[str, dict[str, Any]] = {}

    @property
    def erased(self) -> bool:
        return self.erased_at is not None

    def check_not_erased(self) -> None:
        if self.erased:
            raise CustomerErasedError(self.id)

    def erase(self, request_id: str, at: datetime) -> None:
        """Forget the customer (GDPR Art. 17): their personal fields are cleared here, and the service
        shreds the key that sealed them in every stored event. Erasing twice changes nothing."""
        if not self.erased:
            self._erased(request_id, at)

    @event("Erased")
    def _erased(self, request_id: str, at: datetime) -> None:
        # Anonymous facts stay (source channel, consents, credit, grade); whatever names a person goes.
        self.name = None
        self.email = None
        self.phone = None
        self.company = None
        self.addresses = {}
        self.erased_at = at

    @classmethod
    def register(
        cls,
        name: str,
        email: str | None,
        phone: str | None,
        company: str | None,
        source_channel: str,
        customer_id: uuid.UUID | None = None,
    ) -> "Customer":
        """A new customer, known by an email, a phone, or both; with `customer_id` (derived from the
        command or the lead), a redelivered command collides with its first run instead of registering twice."""
        check_name(name)
        if source_channel not in SOURCE_CHANNELS:
            raise InvalidCustomerDataError("source_channel", f"must be one of {', '.join(SOURCE_CHANNELS)}")
        email = normalise_email(email) if email and email.strip() else None
        phone = phone.strip() if phone and phone.strip() else None
        check_reachable(email, phone)
        fields: dict[str, Any] = {"name": name.strip(), "email": email, "phone": phone, "company": company,
                  "source_channel": source_channel}
        if customer_id is None:
            return cls(**fields)
        return cls._create(cls.Registered, id=customer_id, **fields)  # type: ignore[attr-defined]

    @staticmethod
    def id_for_registration(command_id: str) -> uuid.UUID:
        """The id a customer registered by command `command_id` gets: the same for every delivery."""
        return uuid.uuid5(REGISTRATION_NAMESPACE, command_id)

    @staticmethod
    def id_for_lead(lead_id: uuid.UUID) -> uuid.UUID:
        """The id of the customer registered from lead `lead_id`: one lead, one customer, however often
        its conversion is delivered."""
        return uuid.uuid5(LEAD_REGISTRATION_NAMESPACE, str(lead_id))

    def link_lead(self, lead: ConvertedLead, matched_by: str) -> None:
        """Record that `lead` became this customer (`matched_by`: "registered" when it was registered
        from the lead, else how it was found). A lead links once; linking it again changes nothing."""
        if lead.lead_id in self.lead_ids:
            return
        self.check_not_erased()
        self._lead_linked(
            lead.lead_id, lead.campaign_id, matched_by == "registered", matched_by, lead.name, lead.company,
            lead.estimated_amount, lead.currency, lead.expected_close_date, lead.sales_owner,
        )

    @event("LeadLinked")
    def _lead_linked(
        self,
        lead_id: uuid.UUID,
        campaign_id: uuid.UUID | None,
        new_customer: bool,
        matched_by: str,
        name: str,
        company: str | None,
        estimated_amount: Decimal,
        currency: str,
        expected_close_date: date | None,
        sales_owner: str | None,
    ) -> None:
        # The lead's opportunity facts travel in the event for lead_linked; the customer keeps the link.
        self.lead_ids.append(lead_id)

    def change_profile(self, changes: dict[str, Any]) -> None:
        self.check_not_erased()
        unknown = set(changes) - set(PROFILE_FIELDS)
        if unknown:
            raise InvalidCustomerDataError(sorted(unknown)[0], "is not a profile field")
        if "name" in changes:
            check_name(changes["name"])
        if "email" in changes:
            changes = {**changes, "email": normalise_email(changes["email"]) if changes["email"] else None}
        if "phone" in changes:
            changes = {**changes, "phone": (changes["phone"].strip() or None) if changes["phone"] else None}
        check_reachable(changes.get("email", self.email), changes.get("phone", self.phone))
        actual = {k: v for k, v in changes.items() if getattr(self, k) != v}
        if actual:
            self._profile_changed(actual)

    @event("ProfileChanged")
    def _profile_changed(self, changes: dict[str, Any]) -> None:
        for field_name, value in changes.items():
            setattr(self, field_name, value)

    def record_consent(self, channel: str, granted: bool, source: str, at: datetime) -> None:
        self.check_not_erased()
        if channel not in CONSENT_CHANNELS:
            raise InvalidCustomerDataError("channel", f"must be one of {', '.join(CONSENT_CHANNELS)}")
        self._consent_recorded(channel, granted, source, at)

    @event("ConsentRecorded")
    def _consent_recorded(self, channel: str, granted: bool, source: str, at: datetime) -> None:
        self.consents[channel] = {"granted": granted, "source": source, "at": at}

    def set_credit_rating(self, rating: str, limit: Decimal | None, reason: str | None) -> None:
        self.check_not_erased()
        if rating not in CREDIT_RATINGS:
            raise InvalidCustomerDataError("rating", f"must be one of {', '.join(CREDIT_RATINGS)}")
        if limit is not None and limit < 0:
            raise InvalidCustomerDataError("limit", "must not be negative")
        self._credit_rating_changed(rating, limit, reason)

    @event("CreditRatingChanged")
    def _credit_rating_changed(self, rating: str, limit: Decimal | None, reason: str | None) -> None:
        self.credit_rating = rating
        self.credit_limit = limit

    def set_address(self, kind: str, address: dict[str, Any], default: bool, at: datetime) -> None:
        """Record the customer's billing or shipping address (one per kind: the newest replaces the last)."""
        self.check_not_erased()
        if kind not in ADDRESS_KINDS:
            raise InvalidCustomerDataError("kind", f"must be one of {', '.join(ADDRESS_KINDS)}")
        self._address_changed(kind, dict(address), default, at)

    @event("AddressChanged")
    def _address_changed(self, kind: str, address: dict[str, Any], default: bool, at: datetime) -> None:
        self.addresses[kind] = {"address": address, "default": default, "changed_at": at}

    def grade_on(self, rule: GradingRule, value: int, structure: int, loyalty: int, reason: str | None) -> None:
        self.check_not_erased()
        grade = rule.grade_for(value, structure, loyalty)
        self._graded(grade, {"value": value, "structure": structure, "loyalty": loyalty}, reason)

    @event("Graded")
    def _graded(self, grade: str, scores: dict[str, int], reason: str | None) -> None:
        self.grade = grade
        self.grade_scores = scores

    # --- merge and unmerge (driven by `merge_customers` / `unmerge_customers`) --------------------

    @property
    def merged(self) -> bool:
        """Absorbed into another customer: reads and commands go to the survivor instead."""
        return self.merged_into is not None

    @event("Merged")
    def merge_into(self, survivor_id: uuid.UUID, merge_id: str, at: datetime) -> None:
        self.merged_into = survivor_id
        self.merge_id = merge_id

    @event("Unmerged")
    def unmerge_from(self, survivor_id: uuid.UUID, merge_id: str, at: datetime) -> None:
        self.merged_into = None
        self.merge_id = None

    def absorb(self, merge_id: str, absorbed: list["Customer"], at: datetime) -> None:
        """Take in `absorbed`: remember each one's consents as merged, and withdraw each channel this
        customer consents to that any of them does not (the most restrictive consent wins)."""
        consents = {str(c.id): {channel: bool(entry.get("granted")) for channel, entry in c.consents.items()}
                    for c in absorbed}
        withdrawn = {
            channel: dict(entry) for channel, entry in self.consents.items()
            # A granted entry is the survivor's own (a merge's is a withdrawal), whatever an earlier merge did.
            if entry.get("granted") and not all(given.get(channel) for given in consents.values())
        }
        self._absorbed(merge_id, consents, withdrawn, at)
        for channel in withdrawn:
            self._consent_recorded(channel, False, merge_source(merge_id), at)

    @event("Absorbed")
    def _absorbed(self, merge_id: str, consents: dict[str, dict[str, bool]], withdrawn: dict[str, dict[str, Any]],
                  at: datetime) -> None:
        for customer_id, given in consents.items():
            self.absorbed[customer_id] = {"merge_id": merge_id, "consents": given}
        for channel, before in withdrawn.items():
            self.withdrawn_by_merge[channel] = {"merge_id": merge_id, "before": before}

    def give_back(self, merge_id: str, customer_ids: list[uuid.UUID], at: datetime) -> None:
        """Let `customer_ids` go again, and give back each consent a merge withdrew that nothing restricts
        any more: the consent the survivor had before, unless it was recorded anew since the merge (then
        the newer one stands)."""
        leaving = {str(c) for c in customer_ids}
        staying = [given["consents"] for customer_id, given in self.absorbed.items() if customer_id not in leaving]
        restored, settled = [], []
        for channel, withdrawal in self.withdrawn_by_merge.items():
            current = self.consents.get(channel) or {}
            if current.get("source") != merge_source(withdrawal["merge_id"]):
                settled.append(channel)  # recorded anew after the merge: that decision stands
            elif all(given.get(channel) for given in staying):
                restored.append(channel)
        before = {channel: self.withdrawn_by_merge[channel]["before"] for channel in restored}
        self._gave_back(merge_id, sorted(leaving), restored, settled, at)
        for channel in restored:
            self._consent_recorded(channel, before[channel]["granted"], before[channel]["source"],
                                   before[channel]["at"])

    @event("GaveBack")
    def _gave_back(self, merge_id: str, customer_ids: list[str], restored: list[str], settled: list[str],
                   at: datetime) -> None:
        for customer_id in customer_ids:
            self.absorbed.pop(customer_id, None)
        for channel in (*restored, *settled):
            self.withdrawn_by_merge.pop(channel, None)


def merge_source(merge_id: str) -> str:
    """The source of a consent a merge withdrew (how an unmerge knows it was not recorded anew since)."""
    return f"merge {merge_id}"


class Merge(Aggregate):
    """One merge: which customers were absorbed into which survivor, when, and which were given back.
    Its id derives from the merge id, so one merge id names one merge (a second merge under it collides)."""

    @staticmethod
    def id_for(merge_id: str) -> uuid.UUID:
        return uuid.uuid5(MERGE_NAMESPACE, merge_id)

    @staticmethod
    def merge_id_for(command_id: str) -> str:
        """The merge id of a merge whose client gave none: derived from its command, the same for every delivery."""
        return f"merge-{uuid.uuid5(MERGE_COMMAND_NAMESPACE, command_id)}"

    @classmethod
    def create_id(cls, merge_id: str, survivor_id: uuid.UUID, absorbed: list[uuid.UUID], at: datetime) -> uuid.UUID:
        return cls.id_for(merge_id)

    @event("Started")
    def __init__(self, merge_id: str, survivor_id: uuid.UUID, absorbed: list[uuid.UUID], at: datetime) -> None:
        self.merge_id = merge_id
        self.survivor_id = survivor_id
        self.absorbed = list(absorbed)
        self.merged_at = at
        self.unmerged: dict[str, datetime] = {}

    def still_merged(self, customer_ids: list[uuid.UUID] | None = None) -> list[uuid.UUID]:
        """Of `customer_ids` (default: all it absorbed), those not given back yet; InvalidCustomerDataError
        naming `customer_ids` for one this merge did not absorb, or for one named twice."""
        chosen = self.absorbed if customer_ids is None else customer_ids
        if len(set(chosen)) != len(chosen):
            raise InvalidCustomerDataError("customer_ids", "names a customer twice")
        strangers = [str(c) for c in chosen if c not in self.absorbed]
        if strangers:
            raise InvalidCustomerDataError(
                "customer_ids", f"merge {self.merge_id} did not absorb {', '.join(strangers)}")
        return [c for c in chosen if str(c) not in self.unmerged]

    @property
    def undone(self) -> bool:
        return all(str(c) in self.unmerged for c in self.absorbed)

    @event("Undone")
    def undo(self, customer_ids: list[uuid.UUID], at: datetime) -> None:
        for customer_id in customer_ids:
            self.unmerged[str(customer_id)] = at


def merge_customers(merge_id: str, survivor: Customer, absorbed: list[Customer], at: datetime) -> Merge:
    """Merge `absorbed` into `survivor` (the final survivor: one not absorbed itself): each absorbed customer
    records `Merged`, the survivor records what it took in (and the consents that withdraws), and the merge
    is recorded for `unmerge_customers`. Save all of them together.

    Refused: the survivor among the absorbed (InvalidCustomerDataError naming `absorb`), an erased customer
    on either side (MergeOfErasedError), a customer merged into another already (AlreadyMergedError)."""
    if survivor.merged_into is not None:
        raise ValueError(f"customer {survivor.id} is absorbed: merge into its final survivor")
    if not absorbed:
        raise InvalidCustomerDataError("absorb", "name at least one customer to merge")
    if len({c.id for c in absorbed}) != len(absorbed):
        raise InvalidCustomerDataError("absorb", "names a customer twice")
    for customer in absorbed:
        if customer.id == survivor.id:
            raise InvalidCustomerDataError(
                "absorb", f"customer {survivor.id} is the survivor (or the one it was merged into): a customer "
                          "cannot be merged into itself")
    for customer in (survivor, *absorbed):
        if customer.erased:
            raise MergeOfErasedError(customer.id, "merged")
    for customer in absorbed:
        if customer.merged_into is not None:
            raise AlreadyMergedError(customer.id, customer.merged_into, customer.merge_id or "")
    survivor.absorb(merge_id, absorbed, at)
    for customer in absorbed:
        customer.merge_into(survivor.id, merge_id, at)
    return Merge(merge_id=merge_id, survivor_id=survivor.id, absorbed=[c.id for c in absorbed], at=at)


def unmerge_customers(merge: Merge, survivor: Customer, customers: list[Customer], at: datetime) -> None:
    """Undo `merge` for `customers` (absorbed by it, not given back yet): each records `Unmerged`, the
    survivor lets them go (restoring the consents only they withdrew), the merge records it. Save all.

    Refused: an erased customer on either side (MergeOfErasedError); a survivor merged into another since
    (LaterMergeFirstError: that later merge is undone first, so no service ever untangles a chain)."""
    for customer in (survivor, *customers):
        if customer.erased:
            raise MergeOfErasedError(customer.id, "unmerged")
    if survivor.merged_into is not None:
        raise LaterMergeFirstError(merge.merge_id, survivor.id, survivor.merge_id, survivor.merged_into)
    for customer in customers:
        if customer.merged_into != survivor.id or customer.merge_id != merge.merge_id:
            raise ConflictError(f"customer {customer.id} is not merged by merge {merge.merge_id}",
                                customer_id=str(customer.id), merge_id=merge.merge_id)
    survivor.give_back(merge.merge_id, [c.id for c in customers], at)
    for customer in customers:
        customer.unmerge_from(survivor.id, merge.merge_id, at)
    merge.undo([c.id for c in customers], at)


class ContactIds:
    """The ids of contact claims: a keyed hash (HMAC-SHA256) of the normalised email or phone.

    A claim's id must be derivable from the contact (two registrations of one email collide on it), but
    must not give the contact back: a uuid5 of the address (the first version) anyone can recompute
    from a guessed address. The key comes from the configuration (CRM_CONTACT_HASH_KEY); changing it
    changes every claim id (see the README: claims are re-derived by `Customers.rekey_claims`).
    """

    def __init__(self, key: bytes) -> None:
        self._key = key

    def email(self, email: str) -> uuid.UUID:
        return self._hashed("email", normalise_email(email))

    def phone(self, phone: str) -> uuid.UUID:
        return self._hashed("phone", normalise_phone(phone))

    def _hashed(self, kind: str, value: str) -> uuid.UUID:
        digest = hmac.new(self._key, f"{kind}\x00{value}".encode(), hashlib.sha256).digest()
        return uuid.UUID(bytes=digest[:16], version=4)


class _ContactClaim(Aggregate):
    """Which customer holds a contact (an email or a phone); each subclass declares its own events, so
    their topics stay those of the first version. Its id is the contact's keyed hash
    (ContactIds), so two registrations racing for one contact collide on the event store's version
    check. The claim stores no contact: only the holder (claims of the first version held the address
    too; those events still load, the address is ignored)."""

    holder: uuid.UUID | None

    @classmethod
    def create(cls, claim_id: uuid.UUID, holder: uuid.UUID) -> Any:
        return cls._create(cls.Claimed, id=claim_id, holder=holder)  # type: ignore[attr-defined]

    @staticmethod
    def taken(contact: str, holder: uuid.UUID) -> ConflictError:
        raise NotImplementedError

    def claim(self, holder: uuid.UUID, contact: str) -> None:
        """Take the claim for `holder`; `contact` (what the caller asked for) names it in the error."""
        if self.holder is not None and self.holder != holder:
            raise self.taken(contact, self.holder)
        if self.holder is None:
            self._reclaimed(holder)

    def _reclaimed(self, holder: uuid.UUID) -> None:
        raise NotImplementedError

    def release(self) -> None:
        raise NotImplementedError


class EmailClaim(_ContactClaim):
    """Which customer holds an email address (see _ContactClaim)."""

    @event("Claimed")
    def __init__(self, holder: uuid.UUID) -> None:
        self.holder = holder

    @staticmethod
    def taken(contact: str, holder: uuid.UUID) -> ConflictError:
        return EmailTakenError(contact, holder)

    @event("Reclaimed")
    def _reclaimed(self, holder: uuid.UUID) -> None:
        self.holder = holder

    @event("Released")
    def release(self) -> None:
        self.holder = None


class PhoneClaim(_ContactClaim):
    """Which customer holds a phone number (see _ContactClaim): two customers never hold one phone
    (and a phone-only lead finds its customer)."""

    @event("Claimed")
    def __init__(self, holder: uuid.UUID) -> None:
        self.holder = holder

    @staticmethod
    def taken(contact: str, holder: uuid.UUID) -> ConflictError:
        return PhoneTakenError(contact, holder)

    @event("Reclaimed")
    def _reclaimed(self, holder: uuid.UUID) -> None:
        self.holder = holder

    @event("Released")
    def release(self) -> None:
        self.holder = None


class LeadLink(Aggregate):
    """Which customer a converted lead became. Its id is derived from the lead, so a lead links once:
    a second conversion (or a racing replica) finds or collides with the first link."""

    @staticmethod
    def id_for(lead_id: uuid.UUID) -> uuid.UUID:
        return uuid.uuid5(LEAD_LINK_NAMESPACE, str(lead_id))

    @classmethod
    def create_id(cls, lead_id: uuid.UUID, customer_id: uuid.UUID) -> uuid.UUID:
        return cls.id_for(lead_id)

    @event("Linked")
    def __init__(self, lead_id: uuid.UUID, customer_id: uuid.UUID) -> None:
        self.lead_id = lead_id
        self.customer_id = customer_id


def check_reachable(email: str | None, phone: str | None) -> None:
    """A customer is known by an email or a phone (or both): without either, nobody could find it."""
    if not email and not phone:
        raise InvalidCustomerDataError("email", "give an email or a phone number")


def check_name(name: str) -> None:
    if not name or not name.strip():
        raise InvalidCustomerDataError("name", "must not be blank")
