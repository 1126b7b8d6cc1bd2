"""Idempotency-Key against real PostgreSQL: a replay returns the first answer, another body is 422, and
concurrent first uses run the command once (guarantee 7)."""

from __future__ import annotations

import eventlet
import pytest

from crm_contracts.errors import ServiceError
from crm_gateway.errors import ServiceUnavailableError
from crm_gateway.tests.conftest import CUSTOMER_ID, body, customer_answer

REGISTRATION = {"name": "Li Na", "email": "li.na@example.com"}


def register(api, key, payload=REGISTRATION, **headers):
    return api.post("/v1/customers", payload, headers={"Idempotency-Key": key, **headers})


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
    from crm_gateway.auth import WRITE, issue_token
    from crm_gateway.tests.conftest import SECRET

    register(idempotent_api, "shared-key")
    other = "Bearer " + issue_token("someone-else", [WRITE], secret=SECRET)
    response = register(idempotent_api, "shared-key", Authorization=other)
    assert response.status_code == 201 and "Idempotent-Replayed" not in response.headers
    assert customer.register.call_count == 2


def test_an_error_answer_is_replayed_too(idempotent_api, customer):
    customer.register.side_effect = ServiceError("conflict", "email taken", {"existing_customer_id": CUSTOMER_ID})
    first = register(idempotent_api, "key-4")
    replay = register(idempotent_api, "key-4")
    assert first.status_code == replay.status_code == 409
    assert body(replay) == body(first) and customer.register.call_count == 1


def test_an_unavailable_service_releases_the_key_for_a_retry(idempotent_api, customer):
    customer.register.side_effect = ServiceUnavailableError("customer", "it is not running")
    assert register(idempotent_api, "key-5").status_code == 503
    customer.register.side_effect = None
    retry = register(idempotent_api, "key-5")
    assert retry.status_code == 201 and "Idempotent-Replayed" not in retry.headers


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


def test_the_command_carries_an_id_stable_per_caller_and_key(idempotent_api, customer):
    register(idempotent_api, "key-7")
    register(idempotent_api, "key-8")
    first, second = (call.args[1] for call in customer.register.call_args_list)
    assert first.endswith(":key-7") and second.endswith(":key-8")


def test_racing_claims_have_one_winner(idempotency_store):
    outcomes = eventlet.GreenPool(20).imap(
        lambda _: _claim_or_error(idempotency_store), range(20)
    )
    results = list(outcomes)
    assert results.count("claimed") == 1 and results.count(409) == 19


def _claim_or_error(store):
    from crm_gateway.errors import ApiError

    try:
        return "claimed" if store.claim("p", "race", "fp") is None else "stored"
    except ApiError as exc:
        return exc.status


@pytest.mark.parametrize("key", ["", "x" * 256, "has space", "ünïcode"])
def test_a_malformed_key_is_400(idempotent_api, customer, key):
    response = register(idempotent_api, key.encode("utf-8").decode("latin-1"))
    assert response.status_code == 400
    customer.register.assert_not_called()


def test_an_abandoned_claim_is_taken_over(idempotency_store):
    idempotency_store.abandoned_after_seconds = 0
    assert idempotency_store.claim("p", "crashed", "fp") is None
    assert idempotency_store.claim("p", "crashed", "fp") is None  # the first claimer never completed


def test_expired_keys_are_purged(idempotency_store):
    idempotency_store.claim("p", "old", "fp")
    idempotency_store.ttl_seconds = 0
    assert idempotency_store.purge() == 1
