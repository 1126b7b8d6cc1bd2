"""crm-admin's dead letters of a policy: a parked reaction is listed with its reason, `retry` runs the
reaction once after its cause is fixed, a second retry applies nothing, and `discard` settles one
without applying it (crm_runtime.admin.deadletters).

Real: an event-sourced application on PostgreSQL (a fresh schema), its PolicyInbox parking a failing
reaction the way the consumer's last attempt does. Replaced: the service around them (no nameko).
"""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from eventsourcing.domain import Aggregate, event

from crm_runtime.admin import deadletters
from crm_runtime.admin.positions import read_lag
from crm_runtime.commands import derived_id
from crm_runtime.eventstore import ServiceApplication
from crm_runtime.policy import Policies, PolicyInbox
from tests.support.databases import dsn
from tests.support.envelopes import Stream

pytestmark = pytest.mark.integration

NAMESPACE = uuid.UUID("0b9d52b1-7f5e-4c1b-9a43-6c2f1e0d8a71")


class Reward(Aggregate):
    """What the reaction makes: one per event reacted to."""

    @event("Granted")
    def __init__(self, order_id: str) -> None:
        self.order_id = order_id

    @staticmethod
    def create_id(order_id: str) -> uuid.UUID:
        return derived_id(NAMESPACE, order_id)


class Campaign:
    """The reaction, with a cause that an operator can fix (a missing campaign, say)."""

    def __init__(self) -> None:
        self.missing = True

    def __call__(self, app: Any, envelope: dict[str, Any]) -> None:
        if self.missing:
            raise ValueError("no campaign is running for this order")
        app.save(Reward(envelope["payload"]["order_id"]))


@pytest.fixture
def parked(test_database: dict[str, str], postgres_schema: str) -> Any:
    """A policy whose reaction failed for two events, both parked; yields (app, policies, reaction, env)."""
    app_class = type("Rewards", (ServiceApplication,), {"service": postgres_schema})
    app = app_class(env={**test_database, "POSTGRES_SCHEMA": postgres_schema}, create_table=True)
    reaction = Campaign()
    policies = Policies(postgres_schema)
    policies.reacts_to("order", "order_paid")(reaction)
    stream = Stream("order")
    envelopes = [stream.publish("order_paid", {"order_id": str(uuid.uuid4())}) for _ in range(2)]
    outcome = PolicyInbox(app, policies, fetch=None).receive(envelopes, park=True)
    assert len(outcome.parked) == 2
    yield app, policies, reaction, test_database
    app.close()


def test_a_parked_reaction_is_listed_and_retried_exactly_once(parked: Any) -> None:
    app, policies, reaction, env = parked
    letters = deadletters.list_dead_letters(dsn=dsn(env))
    assert [(d.kind, d.name, d.type) for d in letters] == [("policy", "order:1", "order_paid"),
                                                           ("policy", "order:2", "order_paid")]
    first = letters[0]
    assert "no campaign is running" in first.reason and first.envelope["position"] == 1

    with pytest.raises(deadletters.DeadLetterError, match="still fails"):  # not fixed: nothing saved
        deadletters.settle_reaction(app, policies, first, react=True)
    reaction.missing = False
    deadletters.settle_reaction(app, policies, first, react=True)
    reward = app.repository.get(Reward.create_id(first.envelope["payload"]["order_id"]))
    assert reward.version == 1

    with pytest.raises(deadletters.DeadLetterError, match="already"):
        deadletters.settle_reaction(app, policies, first, react=True)
    assert app.repository.get(reward.id).version == 1  # once

    second = deadletters.list_dead_letters(dsn=dsn(env))[0]
    deadletters.settle_reaction(app, policies, second, react=False)  # discard: settled, never applied
    assert deadletters.list_dead_letters(dsn=dsn(env)) == []
    assert Reward.create_id(second.envelope["payload"]["order_id"]) not in app.repository
    lag = read_lag(dsn(env))
    assert lag.parked[app.service] == 0 and lag.consumers[app.service]["order"] == 2  # settled ones are no origin
    assert not any(origin.startswith("parked:") for origin in lag.consumers[app.service])
