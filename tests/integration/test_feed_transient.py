"""A database error while the feed translates an event (the mapper reads the person's data key from
PostgreSQL) is an outage, not poison: the relay retries it and parks nothing. In the chaos run's
database outage such events were once parked and never reached the 360 view."""

from __future__ import annotations

from typing import Any

import eventsourcing.persistence
import psycopg
import psycopg2
import pytest

from crm_customer.publishing import translator
from crm_runtime.feed import EventFeed

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("error", [
    eventsourcing.persistence.OperationalError,  # what the event store's own queries raise
    eventsourcing.persistence.InterfaceError,
    psycopg.OperationalError,
    psycopg2.OperationalError,
])
def test_a_database_error_while_translating_propagates_and_parks_nothing(customers, monkeypatch, error):
    registered = customers.register("Li Na", "li.na@example.com")
    to_domain_event = customers.mapper.to_domain_event
    failures = [error("couldn't get a connection after 30.00 sec")]

    def mapper_in_an_outage(stored: Any) -> Any:
        if failures:
            raise failures.pop()
        return to_domain_event(stored)

    monkeypatch.setattr(customers.mapper, "to_domain_event", mapper_in_an_outage)
    feed = EventFeed(customers, translator)
    with pytest.raises(error):
        feed.read(0, 10)
    page = feed.read(0, 10)  # the database is back
    assert page.unpublishable == []
    assert [envelope["customer_id"] for envelope in page.envelopes] == [str(registered.id)]
