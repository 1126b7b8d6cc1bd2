"""The purge of an erased customer's dead letters, in a service (crm_runtime.nameko.deadletters): which
queues it reads (its consumers' dead-letter queues), which dead letters name whom
(crm_runtime.admin.deadletters.named_ids), and that a service's `erasure_status` says "done" only once the
purge ran. The purge itself against PostgreSQL and RabbitMQ: tests/integration/test_dead_letters_erased.py."""

from __future__ import annotations

import uuid
from types import SimpleNamespace
from unittest.mock import Mock

from crm_runtime.admin.deadletters import given_ids, named_ids
from crm_runtime.nameko.deadletters import DeadLetterPurge
from crm_runtime.nameko.dependencies import InboxConsumer, PolicyConsumer
from crm_runtime.nameko.rights import CustomerRightsService
from crm_runtime.policy import Policies


class Forgetting(CustomerRightsService):
    name = "forgetting"


def test_a_service_purges_the_dead_letter_queues_of_its_own_consumers() -> None:
    policies = Policies("order")
    policies.reacts_to("customer", "customer_erased")(lambda app, envelope: None)
    purge = DeadLetterPurge()
    purge.container = SimpleNamespace(  # type: ignore[assignment]
        service_name="order", config={"AMQP_URI": "amqp://broker//"},
        dependencies=[PolicyConsumer(policies), InboxConsumer("order.listing", [], [], "order", None), purge])
    purge.setup()
    assert purge.schema == "order" and purge.amqp_uri == "amqp://broker//"
    assert purge.queues == ["order.events.dead-letter", "order.listing.dead-letter"]


def test_a_dead_letter_names_every_id_written_in_it_whatever_its_form() -> None:
    customer, other = uuid.uuid4(), uuid.uuid4()
    envelope = {"customer_id": str(customer), "payload": {"survivor_id": str(other).upper(), "n": 1}}
    assert named_ids(envelope) == {str(customer), str(other)}
    assert named_ids(f"parked: no such customer {customer}".encode()) == {str(customer)}
    assert named_ids("no id here") == set()
    assert given_ids([str(customer)])({str(customer), str(other)}) == {str(customer)}


def test_the_erasure_status_is_done_only_once_the_dead_letters_are_purged() -> None:
    application, purge = Mock(), Mock()
    service = Forgetting()  # a worker, as nameko makes one, with its dependencies injected
    service.application, service.dead_letter_purge = application, purge
    customer = str(uuid.uuid4())

    application.erasure_state.return_value = "pending"
    assert service.erasure_status(customer) == {"state": "pending"}
    purge.purge_now.assert_not_called()  # nothing to purge before the service forgot the customer

    application.erasure_state.return_value = "done"
    purge.purge_now.return_value = False  # the broker or the database did not answer
    assert service.erasure_status(customer) == {"state": "pending"}
    purge.purge_now.return_value = True
    assert service.erasure_status(customer) == {"state": "done"}
