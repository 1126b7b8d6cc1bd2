"""`list_cases` and `list_faqs`: cases and FAQ articles made through commands, then listed.

Real: PostgreSQL (a fresh schema) for the event store and the listing; the projector is driven
synchronously (`project()`); the worker is nameko's worker_factory with those real dependencies."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest

from crm_contracts.errors import InvalidRequestError
from crm_runtime.tests.listing_support import listed_service, postgres_env
from crm_service.application import ServiceDesk
from crm_service.service import CustomerCareService


@pytest.fixture
def listed(test_database: dict[str, str], postgres_schema: str) -> Iterator[Any]:
    app = ServiceDesk(env=postgres_env(test_database, postgres_schema))
    with listed_service(CustomerCareService, app, test_database, postgres_schema) as found:
        yield found
    app.close()


def a_message(**overrides: Any) -> dict[str, Any]:
    """An email about an invoice (routed to finance)."""
    return {"channel": "email", "subject": "Invoice 42 is wrong", "body": "see the attached statement",
            "sender": "ap@acme.example", **overrides}


def test_cases_are_listed_by_status_customer_and_department(listed):
    service, project = listed
    customer = str(uuid4())
    resolved = service.open_case(a_message(customer_id=customer))
    still_open = service.open_case(a_message(customer_id=customer))
    service.open_case(a_message(customer_id=str(uuid4())))
    service.resolve_case(resolved["id"], {"resolution": "credit note sent"}, expected_version=resolved["version"])
    project()

    mine = service.list_cases({"customer_id": customer})
    assert [c["id"] for c in mine["items"]] == [resolved["id"], still_open["id"]]
    assert mine["items"][0] == service.get_case(resolved["id"])  # an item is what `get_case` answers
    assert [c["id"] for c in service.list_cases({"status": "open", "customer_id": customer})["items"]] == [
        still_open["id"]
    ]
    department = still_open["department"]
    assert service.list_cases({"department": department, "status": "open"})["total"] == 2


def test_faqs_are_listed_by_status(listed):
    service, project = listed
    draft = {"question": "Where is my parcel?", "answer": "Track it online", "keywords": ["parcel", "tracking"]}
    article = service.draft_faq(draft, command_id="k1")
    service.draft_faq({**draft, "question": "How do I pay?"}, command_id="k2")
    published = service.publish_faq(article["id"], expected_version=article["version"])
    project()

    assert service.list_faqs({"status": "published"})["items"] == [published]
    assert service.list_faqs({"status": "draft"})["total"] == 1


def test_an_unknown_filter_is_refused_naming_it(listed):
    service, _ = listed
    with pytest.raises(InvalidRequestError) as refused:
        service.list_cases({"subject": "Invoice"})
    assert list(refused.value.details["fields"]) == ["subject"]
