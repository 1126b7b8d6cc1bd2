"""Erasure in the service context on real PostgreSQL: before, a `pg_dump` of the service's schema holds
the customer's texts (in the cases' listing rows; the events hold them sealed); after `customer_erased`
is applied, no byte of them is left anywhere in the schema (event store, data keys, listing), and the
`erasure_status` RPC says "done".

Real: PostgreSQL (a fresh schema), the service application, its listing projector (driven with
`project()`), the policy inbox, nameko's worker_factory for the RPCs, pg_dump."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from crm_runtime.policy import PolicyInbox
from crm_runtime.tests.listing_support import listed_application
from crm_service.application import ServiceDesk
from crm_service.policies import policies
from crm_service.service import CustomerCareService
from tests.support.databases import leaked, pg_dump
from tests.support.envelopes import Stream, customer_erased

SUBJECT, BODY, SENDER = "Kettle from Qiao Wenjing leaks", "Qiao Wenjing, 19 Shennan Avenue", "qiao.wenjing@example.org"
ANSWER, COMMENT = "Dear Qiao Wenjing, a new one is on its way", "Wenjing says: fine in the end"
SECRETS = ("Qiao Wenjing", "Shennan Avenue", SENDER, "Wenjing says")


@pytest.fixture
def listed(test_database: dict[str, str], postgres_schema: str) -> Iterator[Any]:
    with listed_application(ServiceDesk, CustomerCareService, test_database, postgres_schema) as (app, worker, project):
        assert app.data_keys is not None
        app.data_keys.ttl = 0  # no cache: a shredded key is gone at once (erasure_status waits out the TTL)
        yield app, worker, project


def test_after_forgetting_no_byte_of_the_customer_s_texts_is_in_the_service_schema(
    listed, test_database, postgres_schema
):
    app, service, project = listed
    customer = uuid4()
    case = service.open_case({"channel": "email", "subject": SUBJECT, "body": BODY, "sender": SENDER,
                              "customer_id": str(customer)}, command_id="c-1")
    service.respond_to_case(case["id"], {"agent": "wang.agent", "body": ANSWER})
    service.resolve_case(case["id"], {"resolution": "replaced"})
    service.close_case(case["id"])
    service.complete_survey(case["id"], {"score": 4, "comment": COMMENT})
    project()
    assert set(leaked(pg_dump(test_database, postgres_schema), SECRETS)) == set(SECRETS)  # the scan can fail
    assert service.erasure_status(str(customer)) == {"state": "pending"}

    forget = customer_erased(Stream("customer"), customer)
    assert PolicyInbox(app, policies, fetch=None).receive([forget]).applied == 1
    project()
    assert leaked(pg_dump(test_database, postgres_schema), SECRETS) == []
    listed_case = service.list_cases({"customer_id": str(customer)})["items"][0]
    assert (listed_case["subject"], listed_case["status"], listed_case["survey_score"]) == ("", "closed", 4)
    assert service.get_case(case["id"]) == listed_case
    assert service.erasure_status(str(customer)) == {"state": "done"}
