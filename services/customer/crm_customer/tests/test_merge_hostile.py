"""Merge, unmerge and erasure under hostile input and failure: a customer named twice for an unmerge, an
erasure of a survivor cut short between the survivor and the customers merged into it, and the export of a
survivor (it holds the records of the customers merged into it)."""

from __future__ import annotations

import json
import uuid

import pytest
from nameko.testing.services import worker_factory

from crm_customer.application import Customers
from crm_customer.domain import InvalidCustomerDataError
from crm_customer.service import CustomerService


@pytest.fixture
def customers(event_store_env):
    app = Customers(env=event_store_env)
    yield app
    app.close()


def registered(customers: Customers, n: int) -> list:
    return [customers.register(f"Customer {i}", f"h{i}-{uuid.uuid4().hex[:6]}@example.com") for i in range(n)]


def test_an_unmerge_naming_a_customer_twice_is_invalid_naming_customer_ids_and_changes_nothing(customers):
    survivor, absorbed = registered(customers, 2)
    customers.merge(survivor.id, [absorbed.id], "m-twice")
    before = customers.recorder.max_notification_id()
    with pytest.raises(InvalidCustomerDataError) as raised:
        customers.unmerge("m-twice", [absorbed.id, absorbed.id])
    assert "customer_ids" in raised.value.details["fields"]
    assert customers.recorder.max_notification_id() == before
    assert customers._load(absorbed.id).merged


def test_an_erasure_of_a_survivor_cut_short_before_its_absorbed_customers_is_finished_by_reconcile(
        customers, monkeypatch):
    survivor, absorbed, deeper = registered(customers, 3)
    customers.merge(absorbed.id, [deeper.id], "m-deep")
    customers.merge(survivor.id, [absorbed.id], "m-top")
    erase_one = Customers._erase

    def dies_after_the_survivor(self, customer, request_id):
        if customer.id != survivor.id:
            raise RuntimeError("the process died")
        return erase_one(self, customer, request_id)

    monkeypatch.setattr(Customers, "_erase", dies_after_the_survivor)
    with pytest.raises(RuntimeError):
        customers.erase(survivor.id, "DSR-merged")
    monkeypatch.setattr(Customers, "_erase", erase_one)
    assert customers._load(survivor.id).erased and not customers._load(absorbed.id).erased

    customers.reconcile_erasures()
    for customer in (absorbed, deeper):
        assert customers._load(customer.id).erased
        assert not customers.data_keys.has_key(customer.id)
        assert customers.data_keys.erasure(customer.id).request_id == "DSR-merged"


def test_the_export_of_a_survivor_holds_the_records_and_events_of_the_customers_merged_into_it(customers):
    survivor, absorbed, deeper, stranger = registered(customers, 4)
    customers.record_consent(deeper.id, "sms", False, "phone call")
    customers.merge(absorbed.id, [deeper.id], "m-deep")
    customers.merge(survivor.id, [absorbed.id], "m-top")
    service = worker_factory(CustomerService, application=customers)

    archive = service.export(str(survivor.id))
    assert archive["record"]["id"] == str(survivor.id)
    merged = {entry["customer_id"]: entry for entry in archive["merged"]}
    assert set(merged) == {str(absorbed.id), str(deeper.id)}
    assert (merged[str(absorbed.id)]["merge_id"], merged[str(absorbed.id)]["merged_into"]) == (
        "m-top", str(survivor.id))
    assert (merged[str(deeper.id)]["merge_id"], merged[str(deeper.id)]["merged_into"]) == ("m-deep", str(absorbed.id))
    deeper_record = merged[str(deeper.id)]
    assert deeper_record["record"]["email"] == deeper.email  # decrypted, as the survivor's own
    assert [e["type"] for e in deeper_record["events"]][:1] == ["Registered"]
    assert "ConsentRecorded" in [e["type"] for e in deeper_record["events"]]
    assert str(stranger.id) not in repr(archive)
    json.dumps(archive)  # JSON as it is

    customers.unmerge("m-top")
    assert service.export(str(survivor.id))["merged"] == []  # given back: its own export again
    assert [e["customer_id"] for e in service.export(str(absorbed.id))["merged"]] == [str(deeper.id)]


def test_a_into_b_while_b_into_a_never_makes_a_cycle(customers):
    from concurrent.futures import ThreadPoolExecutor

    from crm_contracts.errors import CrmError

    for round_ in range(5):
        a, b = registered(customers, 2)

        def merge(pair: tuple, tag: str = f"r{round_}") -> str:
            survivor, absorbed = pair
            try:
                customers.merge(survivor.id, [absorbed.id], f"{tag}-{survivor.id}")
                return "won"
            except CrmError as refused:  # 422 into itself (the other won first), or 409 merged already
                return refused.code

        with ThreadPoolExecutor(2) as pool:
            outcomes = list(pool.map(merge, [(a, b), (b, a)]))
        assert outcomes.count("won") == 1, outcomes
        roots = {customers.answering(a.id).id, customers.answering(b.id).id}
        assert len(roots) == 1
        root = customers._load(roots.pop())
        assert not root.merged and len(root.absorbed) == 1
