"""The customer nameko service: RPC commands and queries, thin adapters over Customers."""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Any
from uuid import UUID

from crm_contracts import customer as contracts
from crm_contracts.fields import schema_of
from crm_customer.application import Customers
from crm_customer.domain import Customer, Merge
from crm_customer.policies import policies
from crm_customer.publishing import translator
from crm_runtime import config
from crm_runtime.nameko.deadletters import ForgetsDeadLetters
from crm_runtime.nameko.dependencies import EventSourcedApplication, PolicyConsumer
from crm_runtime.nameko.leader import leader_timer
from crm_runtime.nameko.rpc import aggregate_id, rpc
from crm_runtime.nameko.service import EventSourcedService

_customer = contracts.CustomerSchema()
_erasure = contracts.ErasureSchema()
_merge = contracts.MergeSchema()
#: How often the erasure ledger is re-applied (and at start): finishes an erasure a crash cut short,
#: and after a restore from backup re-erases whoever the ledger file names (CRM_ERASURE_LEDGER_FILE).
ERASURE_RECONCILE_INTERVAL = float(config.setting("ERASURE_RECONCILE_INTERVAL", "300"))


def customer_key(customer_id: str) -> UUID:
    """The customer id argument of a call, checked (a non-UUID is `invalid`, not a crash)."""
    return aggregate_id(customer_id, "customer_id")


def customer_view(customer: Customer) -> dict[str, Any]:
    """A customer as the RPC answer: the contract's CustomerSchema, JSON-ready."""
    return _customer.dump(
        {
            "id": customer.id,
            "version": customer.version,
            "name": customer.name,
            "email": customer.email,
            "phone": customer.phone,
            "company": customer.company,
            "source_channel": customer.source_channel,
            "consents": customer.consents,
            "credit_rating": customer.credit_rating,
            "credit_limit": customer.credit_limit,
            "grade": customer.grade,
            "grade_scores": customer.grade_scores,
            "registered_at": customer.created_on,
            "modified_at": customer.modified_on,
            "addresses": customer.addresses,
            "erased": customer.erased,
        }
    )


def merge_view(merge: Merge) -> dict[str, Any]:
    """A merge as the RPC answer: the contract's MergeSchema, JSON-ready."""
    return _merge.dump({
        "merge_id": merge.merge_id,
        "version": merge.version,
        "survivor_id": merge.survivor_id,
        "absorbed": [{"customer_id": c, "unmerged_at": merge.unmerged.get(str(c))} for c in merge.absorbed],
        "merged_at": merge.merged_at,
        "undone": merge.undone,
    })


class CustomerService(ForgetsDeadLetters, EventSourcedService):
    """Customer master data: register, change profile, consent, credit rating, grading; merges and
    erasure (the dead letters that name an erased customer purged: ForgetsDeadLetters)."""

    name = "customer"
    translator = translator
    application: Customers = EventSourcedApplication(Customers, translator)  # type: ignore[assignment]
    reactions = PolicyConsumer(policies)

    # Every command takes the caller's `command_id`: a redelivered or retried call takes effect once
    # and answers the customer as it is now (crm_runtime.commands).

    @rpc
    def register(self, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Register; a `command_id` makes a redelivered or retried call answer the first registration."""
        fields = schema_of(contracts.RegisterCustomerRequest).load(payload)
        return customer_view(self.application.register(**fields, command_id=command_id))

    @rpc
    def get(self, customer_id: str) -> dict[str, Any]:
        return customer_view(self.application.customer(customer_key(customer_id)))

    @rpc
    def change_profile(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None, command_id: str | None = None
    ) -> dict[str, Any]:
        changes = schema_of(contracts.ChangeProfileRequest).load(payload)
        customer = self.application.change_profile(customer_key(customer_id), expected_version, changes, command_id)
        return customer_view(customer)

    @rpc
    def record_consent(
        self,
        customer_id: str,
        channel: str,
        payload: dict[str, Any],
        expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        consent = schema_of(contracts.RecordConsentRequest).load(payload)
        customer = self.application.record_consent(
            customer_key(customer_id), channel, consent["granted"], consent["source"], consent["at"], expected_version,
            command_id,
        )
        return customer_view(customer)

    @rpc
    def set_credit_rating(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        rating = schema_of(contracts.SetCreditRatingRequest).load(payload)
        customer = self.application.set_credit_rating(
            customer_key(customer_id), expected_version=expected_version, command_id=command_id, **rating
        )
        return customer_view(customer)

    @rpc
    def set_address(
        self, customer_id: str, kind: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        fields = schema_of(contracts.SetAddressRequest).load(payload)
        customer = self.application.set_address(
            customer_key(customer_id), kind, expected_version=expected_version, command_id=command_id, **fields
        )
        return customer_view(customer)

    @rpc
    def grade(
        self, customer_id: str, payload: dict[str, Any], expected_version: int | None = None,
        command_id: str | None = None,
    ) -> dict[str, Any]:
        scores = schema_of(contracts.GradeCustomerRequest).load(payload)
        customer = self.application.grade(
            customer_key(customer_id), expected_version=expected_version, command_id=command_id, **scores
        )
        return customer_view(customer)

    @rpc
    def merge(self, survivor_id: str, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Merge the customers the payload names into `survivor_id` (its final survivor, if merged itself)."""
        request = schema_of(contracts.MergeCustomersRequest).load(payload)
        merge = self.application.merge(customer_key(survivor_id), request["absorb"], request["merge_id"], command_id)
        return merge_view(merge)

    @rpc
    def unmerge(self, merge_id: str, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Undo merge `merge_id` for the customers the payload names (default: all it absorbed)."""
        request = schema_of(contracts.UnmergeRequest).load(payload)
        return merge_view(self.application.unmerge(merge_id, request["customer_ids"], command_id))

    @rpc
    def get_merge(self, merge_id: str) -> dict[str, Any]:
        return merge_view(self.application.merge_of(merge_id))

    @rpc
    def erase(self, customer_id: str, payload: dict[str, Any], command_id: str | None = None) -> dict[str, Any]:
        """Erase the customer (crypto-shredding); idempotent: asking again answers where it stands."""
        request = schema_of(contracts.EraseCustomerRequest).load(payload)
        return _erasure.dump(vars(self.application.erase(customer_key(customer_id), request["request_id"])))

    @rpc
    def erasure(self, customer_id: str) -> dict[str, Any]:
        """Where the customer's erasure stands in this service."""
        return _erasure.dump(vars(self.application.erasure(customer_key(customer_id))))

    @leader_timer(interval=ERASURE_RECONCILE_INTERVAL, eager=True)
    def reconcile_erasures(self) -> None:
        """Finish erasures a crash cut short; after a restore, re-apply the ledger kept outside the database."""
        path = config.setting("CRM_ERASURE_LEDGER_FILE", "")
        extra = self.application.read_ledger_file(path) if path and os.path.exists(path) else []
        self.application.reconcile_erasures(extra)

    @rpc
    def export(self, customer_id: str) -> dict[str, Any]:
        """Everything this service holds about the customer (GDPR Art. 15/20): the record and its events, and
        `merged`: the same for each customer merged into it (the same person's duplicates, directly or through
        merges of merges, not given back), with where (`merged_into`) and by which merge. A customer merged
        into another is `moved` (its survivor's export holds it)."""
        key = customer_key(customer_id)
        customer = self.application.customer(key)
        merged = [
            {"customer_id": str(absorbed.id), "merged_into": str(absorbed.merged_into), "merge_id": absorbed.merge_id,
             "record": customer_view(absorbed), "events": jsonable(self.application.history(absorbed.id))}
            for absorbed in self.application.merged_into_it(key)
        ]
        return {"record": customer_view(customer), "events": jsonable(self.application.history(key)),
                "merged": merged}


def jsonable(value: Any) -> Any:
    """Event data as JSON: ids, instants, dates and amounts as text; containers kept."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    return str(value)  # UUID, Decimal
