"""A customer's rights in every service that holds data about them: erasure, merge and unmerge.

The customer service decides (it publishes customer_erased, customer_merged, customer_unmerged); each
other service applies the decision to what it holds, through its policies (exactly once, in the
customer service's order: crm_runtime.policy). This module is the part they share.

API (what a service imports):

- `CustomerRights`: the protocol a service's application implements:
  `forget_customer(customer_id, request_id)`, `erasure_state(customer_id) -> "done" | "pending"`,
  `absorb_customer(customer_id, survivor_id, merge_id)`, `restore_customer(customer_id, survivor_id,
  merge_id)`; each idempotent (a redelivered event changes nothing).
- `react_to_customer_rights(policies)`: registers the three reactions on the service's `Policies`
  (customer_erased -> forget_customer, customer_merged -> absorb_customer, customer_unmerged ->
  restore_customer), payloads loaded with the crm_contracts.customer schemas. Call it once in the
  service's policies.py, after `policies = Policies("<service>")`.
- `forget_subjects(data_keys, subjects, request_id)`: the erasure itself, the same in every service:
  each subject entered in the service's erasure ledger, then its data key shredded (crm_runtime.crypto).
  A service's `forget_customer` calls it with WHICH subjects are the customer's (the customer id; the
  customers absorbed into it whose records still hold data sealed under their own key; marketing's
  leads linked to it), then refreshes WHICH listing rows show them (typically: one event on each of
  the customer's records, saved after the shredding, so the listing projection rewrites their rows
  from state that now reads redacted).
- `erasure_state_of(data_keys, subjects)`: "done" when every subject is shredded and `CRM_DATA_KEY_TTL`
  (`data_keys.ttl`) has passed since (another replica may hold an unwrapped key that long), or when the
  service never held a key of the subject; "pending" otherwise. A service's `erasure_state` calls it
  with the same subjects its `forget_customer` shreds.
- crm_runtime.nameko.rights.CustomerRightsService: the `erasure_status(customer_id)` RPC every service
  exposes (answers `{"state": "done" | "pending"}`, calling the application's `erasure_state`; its
  dead letters naming the customer purged first); mix it into the nameko service class.

Helpers a service may use (sales and order do):

- `KeptPerCustomer`: the mixin of an aggregate kept once per customer, its id derived from the
  customer's (`CustomerMerge` here; marketing's CustomerAttribution).
- `CustomerMerge`: an aggregate per customer (its id derived from the customer's) in the service's own
  store, saying which survivor the customer was absorbed into (under which merge) and which customers
  were absorbed into it. `record_merge` / `record_unmerge` give the aggregates to save with the
  records' re-pointing events (one save: a reaction is one transaction); `survivor_path` answers
  where a record placed for an absorbed customer belongs now (a command racing a merge);
  `save_changed(app, aggregates)` saves those that changed in one save; `subjects_of` the customer
  and every customer absorbed into it, transitively: whose data keys
  `forget_customer` shreds (their records were re-pointed to the customer, but what they recorded
  before was sealed under their own keys); `holders_of` who holds records with their data now.
- `record_owners(app, event_classes)` / `records_of(app, customer_ids, event_classes)`: the current
  customer of each record / the records of these customers, folded from the events of `event_classes`
  (each carries the record's `customer_id` after it) WITHOUT decrypting anything, from the event store
  itself, so nothing committed before the fold is missed (the listing lags behind). A record committed
  while the fold runs is caught by the next command on it (re-pointed along `survivor_path` in that
  command's save).
- `CustomerOwnedRecord`: the base of an aggregate that belongs to one customer (an order, an
  opportunity): `repoint` (a merge: `CustomerRepointed`, remembering `merged_from` and `merge_id`),
  `restore` (an unmerge: `CustomerRestored`), `forget_customer` (an erasure: `CustomerForgotten`), each
  idempotent, and `follow_merges(survivor_path(...))` for a record made or changed for an absorbed
  customer; the events are defined again on each subclass, so their topics name it. With it,
  `repoint_records` / `restore_records` are a service's `absorb_customer` / `restore_customer`, and
  `forget_records` marks forgotten what its `forget_customer` saves after the shredding.
- `customer_changed(schema, record_key, event, changed_at)`: a re-pointing event (a merge's or an
  unmerge's) as the record's published `<record>_customer_changed` event (order, sales, and the
  service context's cases and surveys).
- `CustomerErasedError` (a conflict, 409) and `refusing_erased_customers()`: a command that would
  store new personal data of an erased customer is refused, saying why, instead of failing on the
  data key that no longer exists (crm_runtime.crypto.SubjectErasedError).
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Protocol
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from eventsourcing.domain import Aggregate, event
from eventsourcing.utils import get_topic
from marshmallow import Schema

from crm_contracts import customer as customer_contracts
from crm_contracts.errors import ConflictError
from crm_contracts.fields import schema_of
from crm_contracts.integration import IntegrationEvent, integration_event
from crm_runtime.crypto import DataKeys, SubjectErasedError
from crm_runtime.policy import Policies

#: Where a customer's erasure stands in one service.
ErasureState = Literal["done", "pending"]
DONE: ErasureState = "done"
PENDING: ErasureState = "pending"


class CustomerRights(Protocol):
    """What a service's application does when the customer service erases, merges or unmerges a customer."""

    def forget_customer(self, customer_id: UUID, request_id: str) -> None:
        """Erase what this service holds about the customer (crypto-shredding); idempotent."""

    def erasure_state(self, customer_id: UUID) -> str:
        """"done" | "pending" ("done" if this service never held data about the customer)."""

    def absorb_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """Re-point every record of `customer_id` to `survivor_id`, each by an event remembering
        `customer_id` and `merge_id`; idempotent."""

    def restore_customer(self, customer_id: UUID, survivor_id: UUID, merge_id: str) -> None:
        """Give back to `customer_id` every record re-pointed to `survivor_id` under `merge_id` (what
        was recorded on the survivor after the merge stays with it); idempotent."""


def react_to_customer_rights(policies: Policies) -> None:
    """Register the reactions to customer_erased, customer_merged and customer_unmerged on `policies`."""

    @policies.reacts_to(customer_contracts.ORIGIN, "customer_erased")
    def handle_customer_customer_erased(app: CustomerRights, envelope: dict[str, Any]) -> None:
        """An erased customer is forgotten here too (GDPR Art. 17, 19): their data keys are shredded."""
        erased = schema_of(customer_contracts.CustomerErasedV1).load(envelope["payload"])
        app.forget_customer(erased["customer_id"], erased["request_id"])

    @policies.reacts_to(customer_contracts.ORIGIN, "customer_merged")
    def handle_customer_customer_merged(app: CustomerRights, envelope: dict[str, Any]) -> None:
        """What an absorbed customer had here now belongs to the survivor (re-pointed by events)."""
        merged = schema_of(customer_contracts.CustomerMergedV1).load(envelope["payload"])
        app.absorb_customer(merged["customer_id"], merged["survivor_id"], merged["merge_id"])

    @policies.reacts_to(customer_contracts.ORIGIN, "customer_unmerged")
    def handle_customer_customer_unmerged(app: CustomerRights, envelope: dict[str, Any]) -> None:
        """An undone merge gives the customer back what the merge re-pointed to the survivor."""
        unmerged = schema_of(customer_contracts.CustomerUnmergedV1).load(envelope["payload"])
        app.restore_customer(unmerged["customer_id"], unmerged["survivor_id"], unmerged["merge_id"])


def forget_subjects(data_keys: DataKeys, subjects: Iterable[UUID], request_id: str) -> None:
    """Enter every subject in the erasure ledger, then shred its data key. Idempotent: the ledger keeps
    the first request, and shredding a shredded key changes nothing; a crash half way is finished by
    the redelivered event."""
    for subject in dict.fromkeys(subjects):
        data_keys.record_erasure(subject, request_id)
        data_keys.shred(subject)


def erasure_state_of(data_keys: DataKeys | None, subjects: Iterable[UUID], now: datetime | None = None) -> ErasureState:
    """"done" when no key of `subjects` is stored and every one in the ledger was shredded at least
    `data_keys.ttl` seconds ago (a key cached by another replica has expired); "pending" otherwise (a
    key still stored: not forgotten yet, or brought back by a restore; or shredded too recently)."""
    if data_keys is None:
        return DONE  # this service seals nothing: it holds no personal data
    now = now or datetime.now(UTC)
    for subject in dict.fromkeys(subjects):
        if data_keys.has_key(subject):
            return PENDING
        record = data_keys.erasure(subject)
        if record is None:
            continue  # never held a key of this subject
        if record.shredded_at is None or record.shredded_at + timedelta(seconds=data_keys.ttl) > now:
            return PENDING
    return DONE


class CustomerErasedError(ConflictError):
    """The command would record new personal data of a customer who was erased."""

    def __init__(self, customer_id: UUID) -> None:
        super().__init__(f"customer {customer_id} was erased: nothing new is recorded about them",
                         customer_id=str(customer_id))


@contextlib.contextmanager
def refusing_erased_customers() -> Iterator[None]:
    """Turn a save that needed an erased customer's data key into a CustomerErasedError (409)."""
    try:
        yield
    except SubjectErasedError as exc:
        raise CustomerErasedError(exc.subject) from None


# --- merges ------------------------------------------------------------------------------------------

_MERGE_NAMESPACE = uuid.UUID("0b6f3c2e-8d41-4a7e-9c15-3e2d7f6a1b90")


class KeptPerCustomer:
    """Mixin of an aggregate kept once per customer: its id derives from the customer's (in the class's
    `id_namespace`), so it is found without a lookup, and a second one collides in the event store."""

    id_namespace: ClassVar[UUID]

    @classmethod
    def id_for(cls, customer_id: UUID) -> UUID:
        return uuid.uuid5(cls.id_namespace, str(customer_id))

    @classmethod
    def create_id(cls, customer_id: UUID) -> UUID:
        """eventsourcing's hook for a new aggregate's id: the one derived from the customer's."""
        return cls.id_for(customer_id)


class CustomerMerge(KeptPerCustomer, Aggregate):
    """What one service knows of one customer's merges (its id derives from the customer's).

    `absorbed_into`: {"survivor_id", "merge_id"} while the customer is merged into another, else None;
    `absorbed`: merge id -> the customers absorbed into this one by that merge (and not given back).
    """

    id_namespace = _MERGE_NAMESPACE

    @event("Started")
    def __init__(self, customer_id: UUID) -> None:
        self.customer_id = customer_id
        self.absorbed_into: dict[str, Any] | None = None
        self.absorbed: dict[str, list[UUID]] = {}

    def absorb_into(self, survivor_id: UUID, merge_id: str) -> None:
        """This customer was merged into `survivor_id`; the same merge again changes nothing."""
        if self.absorbed_into != {"survivor_id": survivor_id, "merge_id": merge_id}:
            self._absorbed_into(survivor_id=survivor_id, merge_id=merge_id)

    @event("AbsorbedInto")
    def _absorbed_into(self, survivor_id: UUID, merge_id: str) -> None:
        self.absorbed_into = {"survivor_id": survivor_id, "merge_id": merge_id}

    def take_in(self, customer_id: UUID, merge_id: str) -> None:
        """`customer_id` was merged into this customer; the same merge again changes nothing."""
        if customer_id not in self.absorbed.get(merge_id, []):
            self._took_in(customer_id=customer_id, merge_id=merge_id)

    @event("TookIn")
    def _took_in(self, customer_id: UUID, merge_id: str) -> None:
        self.absorbed.setdefault(merge_id, []).append(customer_id)

    def restore(self, merge_id: str) -> None:
        """The merge `merge_id` of this customer was undone; another merge id changes nothing."""
        if self.absorbed_into is not None and self.absorbed_into["merge_id"] == merge_id:
            self._restored(merge_id=merge_id)

    @event("Restored")
    def _restored(self, merge_id: str) -> None:
        self.absorbed_into = None

    def give_back(self, customer_id: UUID, merge_id: str) -> None:
        """`customer_id`, absorbed by `merge_id`, is its own customer again."""
        if customer_id in self.absorbed.get(merge_id, []):
            self._gave_back(customer_id=customer_id, merge_id=merge_id)

    @event("GaveBack")
    def _gave_back(self, customer_id: UUID, merge_id: str) -> None:
        left = [absorbed for absorbed in self.absorbed[merge_id] if absorbed != customer_id]
        if left:
            self.absorbed[merge_id] = left
        else:
            del self.absorbed[merge_id]


def merge_of(repository: Any, customer_id: UUID) -> CustomerMerge:
    """The customer's merge record in `repository`, or a new one (saved only if it changes)."""
    try:
        merge: CustomerMerge = repository.get(CustomerMerge.id_for(customer_id))
    except AggregateNotFoundError:
        return CustomerMerge(customer_id)
    return merge


def record_merge(repository: Any, customer_id: UUID, survivor_id: UUID, merge_id: str) -> list[CustomerMerge]:
    """The merge records of both customers with the merge noted: save them with the re-pointing."""
    absorbed, survivor = merge_of(repository, customer_id), merge_of(repository, survivor_id)
    absorbed.absorb_into(survivor_id, merge_id)
    survivor.take_in(customer_id, merge_id)
    return [record for record in (absorbed, survivor) if record.pending_events]


def record_unmerge(repository: Any, customer_id: UUID, survivor_id: UUID, merge_id: str) -> list[CustomerMerge]:
    """The merge records of both customers with the merge undone: save them with the restoring."""
    absorbed, survivor = merge_of(repository, customer_id), merge_of(repository, survivor_id)
    absorbed.restore(merge_id)
    survivor.give_back(customer_id, merge_id)
    return [record for record in (absorbed, survivor) if record.pending_events]


def survivor_path(repository: Any, customer_id: UUID) -> list[tuple[UUID, UUID, str]]:
    """(absorbed, survivor, merge id) for each merge from `customer_id` to its final survivor; empty when
    it is not merged. A record made for an absorbed customer is re-pointed along it (each step undoable)."""
    path: list[tuple[UUID, UUID, str]] = []
    current, seen = customer_id, {customer_id}
    while (absorbed_into := merge_of(repository, current).absorbed_into) is not None:
        survivor = absorbed_into["survivor_id"]
        path.append((current, survivor, absorbed_into["merge_id"]))
        if survivor in seen:  # never made by the customer service; stops a corrupted record looping
            break
        seen.add(survivor)
        current = survivor
    return path


def subjects_of(repository: Any, customer_id: UUID) -> list[UUID]:
    """The customer and every customer absorbed into it, transitively (each one's data keys hold part of
    what this service records about the merged person)."""
    subjects, pending = [customer_id], [customer_id]
    while pending:
        for absorbed in merge_of(repository, pending.pop()).absorbed.values():
            for subject in absorbed:
                if subject not in subjects:
                    subjects.append(subject)
                    pending.append(subject)
    return subjects


def holders_of(repository: Any, subjects: Iterable[UUID]) -> list[UUID]:
    """Who may hold records with data of `subjects` now: each subject, and the final survivor of each
    one merged into another (an absorbed customer erased on its own: its records are the survivor's)."""
    holders: list[UUID] = []
    for subject in subjects:
        path = survivor_path(repository, subject)
        for holder in (subject, path[-1][1]) if path else (subject,):
            if holder not in holders:
                holders.append(holder)
    return holders


def save_changed(app: Any, aggregates: Iterable[Any]) -> None:
    """Save, in one transaction, those of `aggregates` that changed (a reaction saves once, or never)."""
    changed = [aggregate for aggregate in aggregates if aggregate.pending_events]
    if changed:
        app.save(*changed)


class CustomerOwnedRecord(Aggregate):
    """An aggregate that belongs to one customer (`customer_id`) and follows their merges and erasure.

    A subclass's created event sets `customer_id`, `merges = []` (the merges that re-pointed the
    record, oldest first, each {"merge_id", "merged_from"}) and `customer_forgotten = False`. The
    events below are defined again on each subclass by eventsourcing (`Order.CustomerRepointed`...),
    so they are stored and published under the subclass's topics.
    """

    if TYPE_CHECKING:  # set by the subclass's created event (no annotation here: it would be an init field)
        customer_id: UUID
        merges: list[dict[str, Any]]
        customer_forgotten: bool

    class CustomerRepointed(Aggregate.Event):
        """A merge made the record the survivor's (`customer_id`); it came from `merged_from`."""

        customer_id: UUID
        merged_from: UUID
        merge_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.customer_id = self.customer_id
            aggregate.merges.append({"merge_id": self.merge_id, "merged_from": self.merged_from})

    class CustomerRestored(Aggregate.Event):
        """An unmerge gave the record back to `customer_id` from `survivor_id`."""

        customer_id: UUID
        survivor_id: UUID
        merge_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.customer_id = self.customer_id
            aggregate.merges = [m for m in aggregate.merges if m["merge_id"] != self.merge_id]

    class CustomerForgotten(Aggregate.Event):
        """The customer was erased: the record reads redacted from now on."""

        customer_id: UUID
        request_id: str

        def apply(self, aggregate: Any) -> None:
            aggregate.customer_forgotten = True

    def repoint(self, merged_from: UUID, survivor_id: UUID, merge_id: str) -> None:
        """The record's customer `merged_from` was merged into `survivor_id`: the record is the survivor's
        from now on. Idempotent: a record already re-pointed by this merge, or of another customer, is
        left as it is."""
        if self.customer_id != merged_from or any(m["merge_id"] == merge_id for m in self.merges):
            return
        self.trigger_event(self.CustomerRepointed, customer_id=survivor_id, merged_from=merged_from,
                           merge_id=merge_id)

    def follow_merges(self, path: Iterable[tuple[UUID, UUID, str]]) -> None:
        """Re-point the record along `path` (`survivor_path` of its customer), each step undoable."""
        for merged_from, survivor_id, merge_id in path:
            self.repoint(merged_from, survivor_id, merge_id)

    def restore(self, customer_id: UUID, merge_id: str) -> None:
        """The merge `merge_id` of `customer_id` was undone: a record it re-pointed is `customer_id`'s
        again. Idempotent: any other record is left as it is."""
        if not any(m["merge_id"] == merge_id and m["merged_from"] == customer_id for m in self.merges):
            return
        self.trigger_event(self.CustomerRestored, customer_id=customer_id, survivor_id=self.customer_id,
                           merge_id=merge_id)

    def forget_customer(self, request_id: str) -> None:
        """The customer was erased (their key shredded): mark it, so the record is listed again as it now
        reads (redacted) and records nothing personal any more. Idempotent."""
        if not self.customer_forgotten:
            self.trigger_event(self.CustomerForgotten, customer_id=self.customer_id, request_id=request_id)

    def _personal(self, value: Any, redacted: Any) -> Any:
        """`value`, or what it reads as once shredded when the customer was erased."""
        return redacted if self.customer_forgotten else value


def repoint_records(app: Any, customer_id: UUID, survivor_id: UUID, merge_id: str, owner_events: Iterable[type],
                    load: Callable[[UUID], CustomerOwnedRecord]) -> None:
    """A service's `absorb_customer` for its `CustomerOwnedRecord`s: every record of `customer_id`
    (found by `records_of` its `owner_events`, loaded by `load`) is re-pointed to the survivor, with the
    merge noted, in one save."""
    changed: list[Any] = record_merge(app.repository, customer_id, survivor_id, merge_id)
    for record_id in records_of(app, [customer_id], owner_events):
        record = load(record_id)
        record.repoint(customer_id, survivor_id, merge_id)
        changed.append(record)
    save_changed(app, changed)


def restore_records(app: Any, customer_id: UUID, survivor_id: UUID, merge_id: str, owner_events: Iterable[type],
                    load: Callable[[UUID], CustomerOwnedRecord]) -> None:
    """A service's `restore_customer` for its `CustomerOwnedRecord`s: every record the merge re-pointed
    goes back to `customer_id` (those recorded on the survivor since stay its), with the merge's undoing
    noted, in one save."""
    changed: list[Any] = record_unmerge(app.repository, customer_id, survivor_id, merge_id)
    for record_id in records_of(app, [survivor_id], owner_events):
        record = load(record_id)
        record.restore(customer_id, merge_id)
        changed.append(record)
    save_changed(app, changed)


def customer_changed(schema: type[Schema], record_key: str, event: Any, changed_at: datetime) -> IntegrationEvent:
    """A record's re-pointing event as its `<record>_customer_changed` integration event (`schema`): the
    record (`record_key`: the event's originator) is `customer_id`'s now. A merge's event names where
    the record came from (`merged_from`: change "merged"); an unmerge's names the survivor it leaves
    (`survivor_id`: change "unmerged"). Either is `previous_customer_id`."""
    merged = hasattr(event, "merged_from")
    return integration_event(
        schema,
        {
            record_key: event.originator_id,
            "customer_id": event.customer_id,
            "previous_customer_id": event.merged_from if merged else event.survivor_id,
            "change": "merged" if merged else "unmerged",
            "merge_id": event.merge_id,
            "changed_at": changed_at,
        },
        customer_id=event.customer_id,
    )


def forget_records(app: Any, subjects: list[UUID], request_id: str, owner_events: Iterable[type],
                   load: Callable[[UUID], CustomerOwnedRecord]) -> list[CustomerOwnedRecord]:
    """Mark forgotten (`CustomerOwnedRecord.forget_customer`) every record holding data sealed under the
    keys of `subjects` (`subjects_of` an erased customer, their keys shredded): those of one of them,
    and those re-pointed from one of them to a survivor (an absorbed customer erased on its own). The
    records, for the caller to save (with whatever else it marks) after the shredding."""
    holding = []
    for record_id in records_of(app, holders_of(app.repository, subjects), owner_events):
        record = load(record_id)
        if record.customer_id in subjects or any(m["merged_from"] in subjects for m in record.merges):
            record.forget_customer(request_id)
            holding.append(record)
    return holding


# --- whose records --------------------------------------------------------------------------------------

#: Notifications read per query while folding the log for the owners of records.
OWNERS_PAGE = 1000


def record_owners(app: Any, event_classes: Iterable[type]) -> dict[UUID, UUID]:
    """The current customer of every record, from its events of `event_classes` (each carries, as
    `customer_id`, the record's customer from then on), in log order. Reads the event store (never a
    lagging listing) and decrypts nothing: `customer_id` is never sealed. O(those events ever stored)."""
    topics = [get_topic(cls) for cls in event_classes]
    mapper = app.mapper
    owners: dict[UUID, UUID] = {}
    position = 0
    while True:
        notifications = app.recorder.select_notifications(
            start=position, limit=OWNERS_PAGE, topics=topics, inclusive_of_start=False)
        for notification in notifications:
            position = notification.id
            state = notification.state
            if mapper.cipher:
                state = mapper.cipher.decrypt(state)
            if mapper.compressor:
                state = mapper.compressor.decompress(state)
            owners[UUID(str(notification.originator_id))] = mapper.transcoder.decode(state)["customer_id"]
        if len(notifications) < OWNERS_PAGE:
            return owners


def records_of(app: Any, customer_ids: Iterable[UUID], event_classes: Iterable[type]) -> list[UUID]:
    """The ids of the records whose current customer is one of `customer_ids`, oldest first."""
    wanted = set(customer_ids)
    return [record for record, owner in record_owners(app, event_classes).items() if owner in wanted]
