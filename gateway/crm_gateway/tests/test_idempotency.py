"""Idempotency-Key against real PostgreSQL (guarantee 7): a replay returns the first answer, another body
is 422, concurrent first uses run the command once, and claims have owners.

Each claim carries its own command id and its owner's token: a slow attempt that was taken over can
neither overwrite nor free the claim that replaced it; an ambiguous 503 keeps the key (and its command
id) for a retry of the same request; a key past its TTL is a new command; a dead gateway's claim is
taken over as soon as its heartbeat is stale. Where a test says "the customer service", it is the
real Customers application on the in-memory store behind the gateway's RPC proxy (see
`CustomerOverRpc`), so a retry that ran a command twice would show in the customer's version.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any
from unittest.mock import MagicMock

import eventlet
import psycopg2
import pytest
from nameko.testing.services import worker_factory

from crm_contracts.errors import ServiceError
from crm_customer.application import Customers
from crm_customer.service import CustomerService
from crm_gateway.auth import WRITE, issue_token
from crm_gateway.errors import ApiError, ServiceUnavailableError
from crm_gateway.idempotency import Claim, Idempotency, IdempotencyStore, StoredResponse, create_tables
from crm_gateway.service import GatewayService
from crm_gateway.tests.conftest import CUSTOMER_ID, SECRET, Api, body, customer_answer
from crm_gateway.web import json_response

REGISTRATION = {"name": "Li Na", "email": "li.na@example.com"}
CONSENT = {"granted": True, "source": "web form"}


def register(api, key, payload=REGISTRATION, **headers):
    return api.post("/v1/customers", payload, headers={"Idempotency-Key": key, **headers})


def bearer(subject: str) -> str:
    return "Bearer " + issue_token(subject, [WRITE], secret=SECRET)


def gateway(idempotency: IdempotencyStore, customer: Any, customer360: Any = None) -> Api:
    """One gateway instance (its own idempotency store, so its own instance id) over `customer`."""
    if customer360 is None:  # a registration asks customer360 for possible duplicates: none here
        customer360 = MagicMock(**{"find_duplicates.return_value": []})
    return Api(worker_factory(GatewayService, customer=customer, customer360=customer360,
                              customer360_admin=customer360, idempotency=idempotency))


@pytest.fixture
def second_store(idempotency_store: IdempotencyStore) -> Iterator[IdempotencyStore]:
    """Another gateway instance's store on the same key table."""
    store = IdempotencyStore(idempotency_store.dsn)
    yield store
    store.close()


def sql(store: IdempotencyStore, statement: str, *params: Any) -> Any:
    """Run one statement on the store's database; the rows it returns, if any."""
    with store._cursor() as cur:  # noqa: SLF001 - the test reaches into the table the store keeps
        cur.execute(statement, params)
        return cur.fetchall() if cur.description else None


class CustomerOverRpc:
    """The customer service (its real RPC adapters on an in-memory Customers app) as the gateway's proxy.

    `lose_replies` makes the next calls run to the end and then time out at the gateway, as a reply
    lost after the command committed would: the gateway sees only its deadline.
    """

    def __init__(self) -> None:
        self.app = Customers(env={"PERSISTENCE_MODULE": "eventsourcing.popo"})
        self.worker = worker_factory(CustomerService, application=self.app)
        self.lose_replies = 0

    def __getattr__(self, method: str) -> Any:
        def call(*args: Any, **kwargs: Any) -> Any:
            answer = getattr(self.worker, method)(*args, **kwargs)
            if self.lose_replies:
                self.lose_replies -= 1
                raise ServiceUnavailableError("customer", "no answer within 10 s")
            return answer

        return call


# --- replays and fingerprints ---------------------------------------------------------------------

def test_a_replay_returns_the_first_answer_without_running_the_command_again(idempotent_api, customer):
    first = register(idempotent_api, "key-1")
    customer.register.return_value = customer_answer(version=99)  # what a second run would answer
    replay = register(idempotent_api, "key-1")
    assert customer.register.call_count == 1
    assert (replay.status_code, replay.get_data()) == (first.status_code, first.get_data())
    assert replay.headers["Location"] == first.headers["Location"] and replay.headers["ETag"] == '"1"'
    assert replay.headers["Idempotent-Replayed"] == "true"
    assert "Idempotent-Replayed" not in first.headers


def test_the_same_body_in_another_key_order_is_the_same_request(idempotent_api, customer):
    register(idempotent_api, "key-order", {"name": "Li Na", "email": "li.na@example.com"})
    replay = register(idempotent_api, "key-order", {"email": "li.na@example.com", "name": "Li Na"})
    assert replay.headers["Idempotent-Replayed"] == "true" and customer.register.call_count == 1


def test_the_same_key_with_a_different_body_is_422(idempotent_api, customer):
    register(idempotent_api, "key-2")
    response = register(idempotent_api, "key-2", {**REGISTRATION, "name": "Wang Wei"})
    assert response.status_code == 422
    error = body(response)["error"]
    assert error["code"] == "idempotency_key_reused" and "Idempotency-Key" in error["fields"]
    assert customer.register.call_count == 1


def test_the_same_key_on_another_path_is_422(idempotent_api, customer):
    idempotent_api.put(f"/v1/customers/{CUSTOMER_ID}/grade", {"value": 5, "structure": 3, "loyalty": 4},
                       headers={"Idempotency-Key": "key-3"})
    response = idempotent_api.put(f"/v1/customers/{CUSTOMER_ID}/credit-rating", {"value": 5, "structure": 3,
                                  "loyalty": 4}, headers={"Idempotency-Key": "key-3"})
    assert response.status_code == 422


def test_keys_belong_to_one_caller(idempotent_api, customer):
    register(idempotent_api, "shared-key")
    response = register(idempotent_api, "shared-key", Authorization=bearer("someone-else"))
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert customer.register.call_count == 2


def test_an_error_answer_is_replayed_too(idempotent_api, customer):
    customer.register.side_effect = ServiceError("conflict", "email taken", {"existing_customer_id": CUSTOMER_ID})
    first = register(idempotent_api, "key-4")
    replay = register(idempotent_api, "key-4")
    assert first.status_code == replay.status_code == 409
    assert body(replay) == body(first) and customer.register.call_count == 1


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "ünïcode"])
def test_a_malformed_key_is_400(idempotent_api, customer, key):
    response = register(idempotent_api, key.encode("utf-8").decode("latin-1"))
    assert response.status_code == 400
    customer.register.assert_not_called()


# --- command ids ------------------------------------------------------------------------------------

def test_every_mutating_call_carries_a_command_id_fresh_per_request_without_a_key(api, customer):
    for _ in range(2):
        api.patch(f"/v1/customers/{CUSTOMER_ID}", {"company": "Acme"}, headers={"If-Match": '"1"'})
        api.put(f"/v1/customers/{CUSTOMER_ID}/consents/email", CONSENT)
        api.put(f"/v1/customers/{CUSTOMER_ID}/credit-rating", {"rating": "AA"})
        api.put(f"/v1/customers/{CUSTOMER_ID}/grade", {"value": 5, "structure": 3, "loyalty": 4})
    ids = [call.kwargs["command_id"]
           for method in ("change_profile", "record_consent", "set_credit_rating", "grade")
           for call in getattr(customer, method).call_args_list]
    assert len(ids) == len(set(ids)) == 8 and all(uuid.UUID(i) for i in ids)


def test_each_key_gets_its_own_command_id_and_a_replay_sends_none(idempotent_api, customer):
    register(idempotent_api, "key-7")
    register(idempotent_api, "key-8")
    register(idempotent_api, "key-7")  # replayed: the service is not called
    first, second = (call.args[1] for call in customer.register.call_args_list)
    assert first != second and all(uuid.UUID(i) for i in (first, second))


def test_caller_and_key_never_run_together_into_one_command_id(idempotent_api, customer):
    register(idempotent_api, "c", Authorization=bearer("a:b"))
    register(idempotent_api, "b:c", Authorization=bearer("a"))
    first, second = (call.args[1] for call in customer.register.call_args_list)
    assert first != second


def test_after_the_ttl_the_same_key_with_a_new_body_registers_a_new_customer(idempotency_store):
    service = CustomerOverRpc()
    api = gateway(idempotency_store, service)
    first = register(api, "reused-key")
    idempotency_store.ttl_seconds = 0  # the key has expired
    second = register(api, "reused-key", {"name": "Wang Wei", "email": "wang.wei@example.com"})
    assert (first.status_code, second.status_code) == (201, 201)
    assert body(second)["id"] != body(first)["id"] and body(second)["name"] == "Wang Wei"
    assert "Idempotent-Replayed" not in second.headers


# --- ambiguous failures -------------------------------------------------------------------------------

def test_a_deadline_503_lets_a_retry_finish_the_same_command_and_not_record_the_consent_twice(idempotency_store):
    service = CustomerOverRpc()
    api = gateway(idempotency_store, service)
    customer_id = body(api.post("/v1/customers", REGISTRATION))["id"]
    consent = f"/v1/customers/{customer_id}/consents/email"
    service.lose_replies = 1  # the consent commits, but its reply misses the gateway's deadline
    assert api.put(consent, CONSENT, headers={"Idempotency-Key": "consent-1"}).status_code == 503
    retry = api.put(consent, CONSENT, headers={"Idempotency-Key": "consent-1"})
    assert retry.status_code == 200 and retry.headers["ETag"] == '"2"'  # registered, then one consent
    assert service.app.customer(uuid.UUID(customer_id)).version == 2
    replay = api.put(consent, CONSENT, headers={"Idempotency-Key": "consent-1"})
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.get_data() == retry.get_data()


def test_after_a_503_the_key_is_kept_for_the_same_request_under_the_same_command_id(idempotent_api, customer):
    customer.register.side_effect = ServiceUnavailableError("customer", "no answer within 10 s")
    assert register(idempotent_api, "key-5").status_code == 503
    other_body = register(idempotent_api, "key-5", {**REGISTRATION, "name": "Wang Wei"})
    assert other_body.status_code == 422  # the first command may yet commit: the key is not free
    customer.register.side_effect = None
    retry = register(idempotent_api, "key-5")
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers
    first, again = (call.args[1] for call in customer.register.call_args_list)
    assert first == again


# --- owners -----------------------------------------------------------------------------------------------

def test_concurrent_first_uses_run_the_command_once(idempotent_api, customer):
    release = eventlet.event.Event()
    calls = []

    def slow_register(payload, command_id):
        calls.append(payload)
        release.wait()
        return customer_answer()

    customer.register.side_effect = slow_register
    first = eventlet.spawn(register, idempotent_api, "key-6")
    eventlet.sleep(0.2)  # the first request has claimed the key and is inside the service
    duplicates = [eventlet.spawn(register, idempotent_api, "key-6") for _ in range(5)]
    answers = [d.wait() for d in duplicates]
    release.send(True)
    assert first.wait().status_code == 201
    assert [a.status_code for a in answers] == [409] * 5
    assert {body(a)["error"]["code"] for a in answers} == {"in_progress"}
    assert len(calls) == 1
    assert register(idempotent_api, "key-6").headers["Idempotent-Replayed"] == "true"


def test_racing_claims_have_one_winner(idempotency_store):
    def claim_or_error(_: int) -> str | int:
        try:
            return "claimed" if isinstance(idempotency_store.claim("p", "race", "fp"), Claim) else "stored"
        except ApiError as exc:
            return exc.status

    results = list(eventlet.GreenPool(20).imap(claim_or_error, range(20)))
    assert results.count("claimed") == 1 and results.count(409) == 19


class GatedCustomer:
    """A customer service whose n-th `register` call waits for gate n, then answers the customer at
    version n (or raises what the gate was opened with): each test says when each attempt ends."""

    def __init__(self) -> None:
        self.gates: dict[int, eventlet.event.Event] = {}
        self.command_ids: list[str] = []

    def gate(self, n: int) -> eventlet.event.Event:
        return self.gates.setdefault(n, eventlet.event.Event())

    def open(self, n: int, outcome: Exception | None = None) -> None:
        self.gate(n).send(outcome)

    def register(self, payload: dict[str, Any], command_id: str) -> dict[str, Any]:
        self.command_ids.append(command_id)
        n = len(self.command_ids)
        outcome = self.gate(n).wait()
        if isinstance(outcome, Exception):
            raise outcome
        return customer_answer(version=n)


def take_over(slow: Api, taker: Api, taker_store: IdempotencyStore, key: str) -> tuple[Any, Any]:
    """The slow gateway's attempt starts and hangs; the taker's gateway, finding it abandoned, takes over."""
    first = eventlet.spawn(register, slow, key)
    eventlet.sleep(0.2)
    taker_store.abandoned_after_seconds = 0
    second = eventlet.spawn(register, taker, key)
    eventlet.sleep(0.2)
    taker_store.abandoned_after_seconds = 120
    return first, second


def test_a_slow_first_attempt_cannot_overwrite_the_answer_of_the_attempt_that_took_over(
    idempotency_store, second_store
):
    service = GatedCustomer()
    slow, taker = gateway(idempotency_store, service), gateway(second_store, service)
    first, second = take_over(slow, taker, second_store, "slow-key")
    service.open(2)
    assert second.wait().headers["ETag"] == '"2"'
    service.open(1)
    assert first.wait().status_code == 201  # the slow attempt answers its own caller ...
    replay = register(taker, "slow-key")  # ... but the stored answer stays the taker's
    assert replay.headers["Idempotent-Replayed"] == "true" and replay.headers["ETag"] == '"2"'
    assert service.command_ids[0] == service.command_ids[1]  # a takeover re-runs the same command


def test_a_slow_first_attempt_failing_cannot_free_the_claim_of_the_attempt_that_took_over(
    idempotency_store, second_store
):
    service = GatedCustomer()
    slow, taker = gateway(idempotency_store, service), gateway(second_store, service)
    first, second = take_over(slow, taker, second_store, "slow-fail")
    service.open(1, ServiceUnavailableError("customer", "no answer within 10 s"))
    assert first.wait().status_code == 503
    service.open(3)  # a third run, if the 503 had freed the key
    meanwhile = register(taker, "slow-fail")
    assert meanwhile.status_code == 409 and body(meanwhile)["error"]["code"] == "in_progress"
    service.open(2)
    assert second.wait().status_code == 201
    assert register(taker, "slow-fail").headers["ETag"] == '"2"'
    assert len(service.command_ids) == 2 and len(set(service.command_ids)) == 1


def customer_answer_response() -> Any:
    """An answer to store under a claim."""
    return json_response(200, customer_answer())


def test_a_claim_of_a_dead_owner_is_taken_over_at_once_with_its_command_id(idempotency_store, second_store):
    claim = idempotency_store.claim("p", "dead-owner", "fp")
    assert isinstance(claim, Claim)
    with pytest.raises(ApiError) as raised:  # its owner is alive: in progress
        second_store.claim("p", "dead-owner", "fp")
    assert raised.value.status == 409
    sql(idempotency_store, "UPDATE gateway_instances SET seen_at = now() - interval '11 seconds' "
        "WHERE instance_id = %s", idempotency_store.instance_id)  # the owner's heartbeat went stale
    taken = second_store.claim("p", "dead-owner", "fp")
    assert isinstance(taken, Claim) and taken.command_id == claim.command_id and taken.token != claim.token
    assert idempotency_store.complete(claim, customer_answer_response()) is False  # the dead one wakes up late
    assert second_store.complete(taken, customer_answer_response()) is True


def test_a_claim_of_a_stopped_instance_is_taken_over_at_once(idempotency_store, second_store):
    claim = idempotency_store.claim("p", "stopped-owner", "fp")
    idempotency_store.retire()  # a clean stop deletes the instance's heartbeat
    taken = second_store.claim("p", "stopped-owner", "fp")
    assert isinstance(claim, Claim) and isinstance(taken, Claim) and taken.command_id == claim.command_id


def test_an_abandoned_claim_is_taken_over_even_when_its_owner_lives(idempotency_store):
    idempotency_store.abandoned_after_seconds = 0
    first = idempotency_store.claim("p", "crashed", "fp")
    again = idempotency_store.claim("p", "crashed", "fp")  # the first attempt never finished
    assert isinstance(first, Claim) and isinstance(again, Claim) and again.command_id == first.command_id


# --- lifetime and migration -------------------------------------------------------------------------

def test_expired_keys_are_purged(idempotency_store):
    idempotency_store.claim("p", "old", "fp")
    idempotency_store.ttl_seconds = 0
    assert idempotency_store.purge() == 1


def test_the_migration_upgrades_a_table_from_before_owners(test_database, postgres_schema):
    from tests.support.databases import dsn

    conn = psycopg2.connect(dsn(test_database, postgres_schema))
    with conn, conn.cursor() as cur:
        cur.execute("""CREATE TABLE idempotency_keys (
            principal text NOT NULL, key text NOT NULL, fingerprint text NOT NULL,
            claimed_at timestamptz NOT NULL DEFAULT now(), status smallint, headers jsonb, body bytea,
            completed_at timestamptz, PRIMARY KEY (principal, key))""")
        cur.execute("INSERT INTO idempotency_keys (principal, key, fingerprint, status, headers, body) "
                    "VALUES ('p', 'done', 'fp', 201, '{\"ETag\": \"\\\"1\\\"\"}', 'first')")
        cur.execute("INSERT INTO idempotency_keys (principal, key, fingerprint, claimed_at) "
                    "VALUES ('p', 'left', 'fp', now() - interval '1 hour')")
        create_tables(cur)
        create_tables(cur)  # a migration runs again on every deploy
    conn.close()
    store = IdempotencyStore(dsn(test_database, postgres_schema))
    try:
        stored = store.claim("p", "done", "fp")
        assert isinstance(stored, StoredResponse) and (stored.status, stored.body) == (201, b"first")
        taken = store.claim("p", "left", "fp")  # an old gateway's claim, long abandoned
        assert isinstance(taken, Claim) and taken.command_id == "p:left"  # the id that gateway sent
    finally:
        store.close()


def test_a_gateway_heartbeats_while_it_runs_and_retires_on_a_clean_stop(idempotency_store, second_store):
    provider = Idempotency()
    provider.container = MagicMock(spawn_managed_thread=lambda run, identifier: eventlet.spawn(run))
    provider.store, provider.interval = idempotency_store, 0.05
    provider.start()
    eventlet.sleep(0.2)
    seen = sql(second_store, "SELECT now() - seen_at < interval '1 second' FROM gateway_instances "
               "WHERE instance_id = %s", idempotency_store.instance_id)
    assert seen == [(True,)]
    claim = idempotency_store.claim("p", "left-running", "fp")  # say a worker was killed mid-request
    provider.stop()
    eventlet.sleep(0.1)  # a beat in flight must not bring the row back
    assert sql(second_store, "SELECT 1 FROM gateway_instances WHERE instance_id = %s",
               idempotency_store.instance_id) == []
    taken = second_store.claim("p", "left-running", "fp")
    assert isinstance(claim, Claim) and isinstance(taken, Claim) and taken.command_id == claim.command_id
