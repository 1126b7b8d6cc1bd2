"""Customers: the customer service's commands (load, call, save) and queries."""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, ClassVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.persistence import IntegrityError

from crm_contracts.errors import ConflictError, MovedError, StaleVersionError
from crm_customer.domain import (
    EMAIL_CLAIM_NAMESPACE,
    PHONE_CLAIM_NAMESPACE,
    ContactIds,
    ConvertedLead,
    Customer,
    CustomerNotFoundError,
    EmailClaim,
    EmailTakenError,
    GradingRule,
    LeadLink,
    Merge,
    MergeNotFoundError,
    PhoneClaim,
    PhoneTakenError,
    merge_customers,
    normalise_email,
    normalise_phone,
    unmerge_customers,
)
from crm_runtime import config
from crm_runtime.commands import IdempotentApplication
from crm_runtime.crypto import DataKeys, ErasureRecord, PersonalFields, contact_hash_key

log = logging.getLogger(__name__)

#: What says which customer holds a contact: an email or a phone claim.
Claim = EmailClaim | PhoneClaim

#: The personal fields of the customer's events, sealed under the customer's data key
#: (crm_runtime.crypto), with what each reads as once the customer is erased and the key shredded.
#: Consent sources, credit and grading reasons are operators' notes, not the person's data.
PERSONAL_DATA: dict[type, PersonalFields] = {
    Customer.Registered: PersonalFields({"name": "", "email": None, "phone": None, "company": None}),
    Customer.ProfileChanged: PersonalFields({"changes": {}}),
    Customer.AddressChanged: PersonalFields(
        {"address": {"recipient": "", "line1": "", "line2": None, "city": "", "region": None, "postal_code": None,
                     "country": "", "phone": None}}
    ),
    Customer.LeadLinked: PersonalFields({"name": "", "company": None}),
}


@dataclass(frozen=True)
class Erasure:
    """Where a customer's erasure stands in this service: asked, recorded as an event, key shredded."""

    customer_id: UUID
    request_id: str
    requested_at: datetime
    erased_at: datetime | None
    shredded_at: datetime | None


class Customers(IdempotentApplication):
    """Customer master data. Every command takes the id of the call that carries it (`command_id`):
    a command delivered or retried twice takes effect once and answers the customer as it is now."""

    service = "customer"
    grading_rule = GradingRule()
    personal_data: ClassVar[dict[type, PersonalFields]] = PERSONAL_DATA
    data_keys: DataKeys

    def __init__(self, env: dict[str, str] | None = None, *, create_table: bool | None = None) -> None:
        super().__init__(env, create_table=create_table)
        self.contact_ids = ContactIds(contact_hash_key())

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
            return self.answering(link.customer_id)
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
                named = self.answering(lead.customer_id)  # one merged since: its survivor
            except CustomerNotFoundError:
                named = None  # a customer the lead names but this service does not know: match it like any lead
            if named is not None and not named.erased:  # an erased customer is nobody: a new one is registered
                return named, "customer_id"
        for cls, contact, matched_by in ((EmailClaim, lead.email, "email"), (PhoneClaim, lead.phone, "phone")):
            holder = self._holder(cls, contact) if contact else None
            if holder is not None:
                return self.customer(holder), matched_by
        return None, "registered"

    def customer_of_lead(self, lead_id: UUID) -> Customer | None:
        """The customer a converted lead became (its survivor, if merged since), if it was linked yet."""
        link = self._existing_link(lead_id)
        return self.answering(link.customer_id) if link is not None else None

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

    # --- merge and unmerge ------------------------------------------------------------------------

    def merge(
        self, survivor_id: UUID, absorb: list[UUID], merge_id: str | None = None, command_id: str | None = None
    ) -> Merge:
        """Merge the customers `absorb` into `survivor_id` (into its final survivor, if it was merged itself),
        in one save: `Merged` on each absorbed customer (published as customer_merged), what the survivor
        took in (and the consents that withdraws), and the merge's own record (`merge_of`).

        `merge_id` names the merge (default: derived from `command_id`, else new). Asking again under the
        same merge id for the same customers answers the merge as it is; for others it is a conflict.
        Losing a race to a concurrent writer of any of them loads afresh and decides again (so a customer
        merged meanwhile elsewhere is AlreadyMergedError, never absorbed twice)."""
        merge_id = merge_id or Merge.merge_id_for(command_id or str(uuid.uuid4()))

        def merge() -> Merge:
            for _attempt in range(3):
                existing = self._existing_merge(merge_id)
                if existing is not None:
                    return self._same_merge(existing, survivor_id, absorb)
                survivor = self.answering(survivor_id)
                absorbed = [self._load(customer_id) for customer_id in absorb]
                record = merge_customers(merge_id, survivor, absorbed, datetime.now(UTC))
                try:
                    self.save(record, survivor, *absorbed)
                    return record
                except IntegrityError:
                    continue  # a customer changed, or the same merge id was used, concurrently: look again
            raise StaleVersionError(f"the customers of merge {merge_id} kept changing; merge them again")

        return self.once(command_id, merge, lambda: self.merge_of(merge_id))

    def _same_merge(self, existing: Merge, survivor_id: UUID, absorb: list[UUID]) -> Merge:
        """The merge recorded under a merge id asked for again: itself when asked for the same customers."""
        if set(absorb) == set(existing.absorbed) and (
                survivor_id == existing.survivor_id
                or self.answering(survivor_id).id == self.answering(existing.survivor_id).id):
            return existing
        raise ConflictError(
            f"merge id {existing.merge_id} names another merge (of {len(existing.absorbed)} customers into "
            f"customer {existing.survivor_id}): choose another merge id",
            merge_id=existing.merge_id, fields={"merge_id": ["is the id of another merge"]},
        )

    def unmerge(self, merge_id: str, customer_ids: list[UUID] | None = None, command_id: str | None = None) -> Merge:
        """Undo merge `merge_id` for `customer_ids` (default: every customer it absorbed), in one save:
        `Unmerged` on each (published as customer_unmerged), the survivor lets them go, the merge records
        it. Those given back already are left alone (asking twice changes nothing). Refused while the
        survivor is merged into another (LaterMergeFirstError) or when either side was erased."""

        def unmerge() -> Merge:
            for _attempt in range(3):
                record = self.merge_of(merge_id)
                pending = record.still_merged(customer_ids)
                if not pending:
                    return record
                survivor = self._load(record.survivor_id)
                customers = [self._load(customer_id) for customer_id in pending]
                unmerge_customers(record, survivor, customers, datetime.now(UTC))
                try:
                    self.save(record, survivor, *customers)
                    return record
                except IntegrityError:
                    continue  # changed concurrently: look again
            raise StaleVersionError(f"the customers of merge {merge_id} kept changing; unmerge them again")

        return self.once(command_id, unmerge, lambda: self.merge_of(merge_id))

    def merge_of(self, merge_id: str) -> Merge:
        """The merge recorded under `merge_id` (MergeNotFoundError if none)."""
        record = self._existing_merge(merge_id)
        if record is None:
            raise MergeNotFoundError(merge_id)
        return record

    def _existing_merge(self, merge_id: str) -> Merge | None:
        try:
            record: Merge = self.repository.get(Merge.id_for(merge_id))
        except AggregateNotFoundError:
            return None
        return record

    def customer(self, customer_id: UUID, expected_version: int | None = None) -> Customer:
        """Load a customer; with `expected_version`, insist it is the current version. One merged into
        another answers MovedError naming its final survivor (reads and commands go there instead)."""
        customer = self._load(customer_id)
        if customer.merged:
            raise MovedError(customer_id, self.answering(customer_id).id)
        if expected_version is not None and customer.version != expected_version:
            raise StaleVersionError(
                f"customer {customer_id} is at version {customer.version}, not {expected_version}",
                current_version=customer.version,
            )
        return customer

    def _load(self, customer_id: UUID) -> Customer:
        """A customer as stored, merged or not."""
        try:
            customer: Customer = self.repository.get(customer_id)
        except AggregateNotFoundError:
            raise CustomerNotFoundError(f"customer {customer_id} not found", customer_id=str(customer_id)) from None
        return customer

    def answering(self, customer_id: UUID) -> Customer:
        """The customer that answers for `customer_id`: itself, or the final survivor of the merges it went
        through (a merge never absorbs into an absorbed customer, so the chain ends)."""
        customer = self._load(customer_id)
        while customer.merged_into is not None:
            customer = self._load(customer.merged_into)
        return customer

    def merged_into_it(self, customer_id: UUID) -> list[Customer]:
        """Every customer merged into `customer_id` and not given back, directly or through merges of merges
        (each one's `merged_into` and `merge_id` say where and by which merge), each once."""
        found: list[Customer] = []
        pending = [customer_id]
        while pending:
            survivor = self._load(pending.pop(0))
            absorbed = [self._load(UUID(absorbed_id)) for absorbed_id in survivor.absorbed]
            found += absorbed
            pending = [c.id for c in absorbed] + pending
        return found

    def holder_of(self, email: str) -> UUID | None:
        """The customer holding `email`, if any."""
        return self._holder(EmailClaim, email)

    def holder_of_phone(self, phone: str) -> UUID | None:
        """The customer holding the phone number `phone` (however it is written), if any."""
        return self._holder(PhoneClaim, phone)

    def _holder(self, cls: type[Claim], contact: str) -> UUID | None:
        """Who holds `contact`: the customer whose claim it is or, once that one is merged, its final
        survivor. An absorbed customer keeps its claims (unmerging gives them back as they were), so its
        email or phone registered again is a conflict naming the survivor, never a silent duplicate."""
        claim = self._existing_claim(cls, contact)
        if claim is None or claim.holder is None:
            return None
        try:
            return self.answering(claim.holder).id
        except CustomerNotFoundError:
            return claim.holder

    def claim_id(self, cls: type[Claim], contact: str) -> UUID:
        """The id of the claim of `contact`: its keyed hash (ContactIds)."""
        return self.contact_ids.email(contact) if cls is EmailClaim else self.contact_ids.phone(contact)

    def _existing_claim(self, cls: type[Claim], contact: str) -> Claim | None:
        try:
            claim: Claim = self.repository.get(self.claim_id(cls, contact))
        except AggregateNotFoundError:
            return None
        return claim

    def _claim(self, cls: type[Claim], contact: str, holder: UUID) -> Claim:
        """The claim of `contact` for `holder`: new, or the existing one taken over (if it is free)."""
        claim = self._existing_claim(cls, contact)
        if claim is None:
            return cls.create(self.claim_id(cls, contact), holder)  # type: ignore[no-any-return]
        current = self._holder(cls, contact)
        if current is not None and claim.holder != holder:
            raise cls.taken(contact, current)  # named by who answers for it (the survivor of a merged holder)
        claim.claim(holder, contact)
        return claim

    def _fresh_claims(self, customer: Customer) -> list[Claim]:
        """New claims of a new customer's email and phone (they collide if either is claimed already)."""
        claims: list[Claim] = []
        if customer.email:
            claims.append(EmailClaim.create(self.claim_id(EmailClaim, customer.email), customer.id))
        if customer.phone:
            claims.append(PhoneClaim.create(self.claim_id(PhoneClaim, customer.phone), customer.id))
        return claims

    def _claims_for(self, customer: Customer) -> list[Claim]:
        """A new customer's claims against the stored ones: EmailTakenError or PhoneTakenError if held."""
        claims: list[Claim] = []
        if customer.email:
            claims.append(self._claim(EmailClaim, customer.email, customer.id))
        if customer.phone:
            claims.append(self._claim(PhoneClaim, customer.phone, customer.id))
        return claims

    def history(self, customer_id: UUID) -> list[dict[str, Any]]:
        """Every event of the customer as this service stores it, decrypted (an export, GDPR Art. 15/20):
        what it was told and when, oldest first; for an erased customer, the personal fields redacted. A
        customer merged into another has its own history too (the survivor's export holds it: `merged_into_it`)."""
        self._load(customer_id)  # CustomerNotFoundError for an unknown one
        history = []
        for stored in self.recorder.select_events(customer_id):
            event = self.mapper.to_domain_event(stored)
            data = {k: v for k, v in vars(event).items()
                    if not k.startswith("_") and k not in ("originator_id", "originator_version", "originator_topic",
                                                           "timestamp")}
            history.append({"type": type(event).__qualname__.split(".")[-1], "version": stored.originator_version,
                            "occurred_at": event.timestamp, "data": data})  # type: ignore[attr-defined]
        return history

    # --- erasure (GDPR Art. 17) by crypto-shredding ------------------------------------------------

    def erase(self, customer_id: UUID, request_id: str | None = None) -> Erasure:
        """Erase a customer: ledger first, then the Erased event (published as customer_erased, with
        the customer's claims released in the same save, so the email and phone are free for a new
        customer), then the data key shredded. Each step is idempotent, so a retry, a concurrent
        erasure or `reconcile_erasures` after a crash finishes what was started.

        A customer merged into another is the survivor's person now: erasing it is MovedError (erase the
        survivor). Erasing a survivor erases every customer absorbed into it too (the same person's
        duplicates, whose events are sealed under their own keys), each as its own customer_erased."""
        customer = self._load(customer_id)
        if customer.merged and not customer.erased:
            raise MovedError(customer_id, self.answering(customer_id).id)
        return self._erase(customer, request_id)

    def _erase(self, customer: Customer, request_id: str | None) -> Erasure:
        customer_id = customer.id
        self.data_keys.record_erasure(customer_id, request_id or f"erasure:{customer_id}")
        self._ledger_file_append(customer_id)
        for _attempt in range(3):
            if customer.erased:
                break
            released = [claim for cls, contact in ((EmailClaim, customer.email), (PhoneClaim, customer.phone))
                        if contact and (claim := self._existing_claim(cls, contact)) is not None
                        and claim.holder == customer.id]
            for claim in released:
                claim.release()
            customer.erase(request_id or f"erasure:{customer_id}", datetime.now(UTC))
            try:
                self.save(customer, *released)
            except IntegrityError:  # changed or erased concurrently: look again
                customer = self._load(customer_id)
        if not customer.erased:
            raise StaleVersionError(f"customer {customer_id} kept changing; erase it again")
        # Who was merged into it is fixed now (an erased customer takes part in no merge): each enters the
        # ledger before this key is shredded, so an erasure cut short after it is finished by
        # `reconcile_erasures` (which goes by the ledger's unfinished lines) for them too.
        absorbed = [UUID(absorbed_id) for absorbed_id in customer.absorbed]
        for absorbed_id in absorbed:
            self.data_keys.record_erasure(absorbed_id, request_id or f"erasure:{customer_id}")
        self.data_keys.shred(customer_id)
        for absorbed_id in absorbed:
            self._erase(self._load(absorbed_id), request_id or f"erasure:{customer_id}")
        return self.erasure(customer_id)

    def erasure(self, customer_id: UUID) -> Erasure:
        """Where the erasure of `customer_id` stands here (CustomerNotFoundError if never asked)."""
        record = self.data_keys.erasure(customer_id)
        if record is None:
            raise CustomerNotFoundError(f"no erasure of customer {customer_id} was asked for",
                                        customer_id=str(customer_id))
        try:
            erased_at = self._load(customer_id).erased_at
        except CustomerNotFoundError:
            erased_at = None
        return Erasure(customer_id, record.request_id, record.requested_at, erased_at, record.shredded_at)

    def reconcile_erasures(self, extra: list[ErasureRecord] | None = None) -> list[UUID]:
        """Finish every erasure in the ledger (and in `extra`, the ledger kept outside the database, read
        after a restore from backup): each customer erased and its key shredded. Returns who was acted on."""
        acted = []
        requests = {r.subject: r.request_id for r in extra or []}
        for subject in self.data_keys.unfinished(list(requests)):
            record = self.data_keys.erasure(subject)
            request_id = record.request_id if record is not None else requests[subject]
            try:
                self._erase(self._load(subject), request_id)
            except CustomerNotFoundError:
                self.data_keys.record_erasure(subject, request_id)
                self.data_keys.shred(subject)
            acted.append(subject)
            log.info("erasure of customer %s re-applied from the ledger", subject)
        return acted

    def _ledger_file_append(self, customer_id: UUID) -> None:
        """Append the erasure to the ledger kept outside the database (CRM_ERASURE_LEDGER_FILE), which a
        restore from a backup taken before the erasure re-applies (`reconcile_erasures`)."""
        path = config.setting("CRM_ERASURE_LEDGER_FILE", "")
        if not path:
            return
        record = self.data_keys.erasure(customer_id)
        if record is None:
            return
        with open(path, "a", encoding="utf-8") as ledger:
            ledger.write(json.dumps({"customer_id": str(customer_id), "request_id": record.request_id,
                                     "requested_at": record.requested_at.isoformat()}) + "\n")

    @staticmethod
    def read_ledger_file(path: str) -> list[ErasureRecord]:
        """The erasures in a ledger file (one JSON object a line), for `reconcile_erasures`."""
        records = []
        with open(path, encoding="utf-8") as ledger:
            for line in ledger:
                if line.strip():
                    item = json.loads(line)
                    records.append(ErasureRecord(UUID(item["customer_id"]), item["request_id"],
                                                 datetime.fromisoformat(item["requested_at"])))
        return records

    def rekey_claims(self, customer_ids: list[UUID]) -> int:
        """Migration from the first version's claims (ids: uuid5 of the contact, which anyone can
        recompute): each customer's email and phone claimed under its keyed id, the old claim released.
        Idempotent; returns how many claims were moved. Run once per customer after upgrading."""
        moved = 0
        for customer_id in customer_ids:
            customer = self._load(customer_id)  # an absorbed customer keeps its claims: they move too
            if customer.erased:
                continue
            changed: list[Claim] = []
            for cls, contact, legacy in (
                (EmailClaim, customer.email, lambda c: uuid.uuid5(EMAIL_CLAIM_NAMESPACE, normalise_email(c))),
                (PhoneClaim, customer.phone, lambda c: uuid.uuid5(PHONE_CLAIM_NAMESPACE, normalise_phone(c))),
            ):
                if not contact:
                    continue
                try:
                    old: Claim | None = self.repository.get(legacy(contact))
                except AggregateNotFoundError:
                    old = None
                if old is None or old.holder != customer.id:
                    continue
                changed.append(self._claim(cls, contact, customer.id))
                old.release()
                changed.append(old)
                moved += 1
            if changed:
                self.save(*changed)
        return moved

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
