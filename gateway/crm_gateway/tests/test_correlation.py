"""Correlation ids: taken from X-Correlation-Id (or made), returned on every answer, handed to the
services with each RPC call, and written in the one access-log line of each request."""

from __future__ import annotations

import contextvars
import logging
import uuid
from types import SimpleNamespace

import pytest
from nameko.messaging import HeaderEncoder
from nameko.rpc import MethodProxy
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from crm_gateway.tests.conftest import CUSTOMER_ID
from crm_gateway.web import CorrelationId, correlation_id_of
from crm_runtime.eventstore import current_metadata


def test_the_callers_correlation_id_is_returned(api):
    response = api.get(f"/v1/customers/{CUSTOMER_ID}", headers={"X-Correlation-Id": "front-end-42"})
    assert response.headers["X-Correlation-Id"] == "front-end-42"


@pytest.mark.parametrize("given", [None, "", "has spaces", "x" * 129, "semi;colon"])
def test_a_missing_or_unusable_correlation_id_is_replaced_by_a_new_one(api, given):
    headers = {"X-Correlation-Id": given} if given is not None else {}
    response = api.get(f"/v1/customers/{CUSTOMER_ID}", headers=headers)
    uuid.UUID(response.headers["X-Correlation-Id"])


@pytest.mark.parametrize(
    ("method", "path", "token"),
    [("GET", "/v1/customers/nope", True), ("POST", "/v1/customers", False), ("GET", "/openapi.json", False)],
)
def test_error_and_public_answers_carry_it_too(api, method, path, token):
    if not token:
        api.token = None
    response = api.request(method, path, headers={"X-Correlation-Id": "c-1"})
    assert response.headers["X-Correlation-Id"] == "c-1"


def worker_ctx_for(request):
    return SimpleNamespace(args=(request,), data={}, call_id="gateway.register_customer.1")


def test_the_provider_puts_the_id_where_nameko_makes_rpc_headers_of_it():
    request = Request(EnvironBuilder(path="/v1/customers", headers={"X-Correlation-Id": "c-77"}).get_environ())
    worker_ctx = worker_ctx_for(request)
    worker_ctx.context_data = worker_ctx.data  # what MethodProxy reads when it publishes

    def in_a_worker():
        CorrelationId().worker_setup(worker_ctx)
        return current_metadata().correlation_id  # what the JSON log formatter writes

    # A copied context, as each nameko worker's green thread has: the test's own stays untouched.
    assert contextvars.copy_context().run(in_a_worker) == "c-77"
    assert worker_ctx.data["correlation_id"] == "c-77"
    assert issubclass(MethodProxy, HeaderEncoder)
    assert HeaderEncoder().get_message_headers(worker_ctx)["nameko.correlation_id"] == "c-77"


def test_the_provider_and_the_handler_agree_on_a_generated_id(api):
    request = Request(EnvironBuilder(path="/v1/customers").get_environ())
    worker_ctx = worker_ctx_for(request)
    contextvars.copy_context().run(CorrelationId().worker_setup, worker_ctx)

    assert correlation_id_of(request) == worker_ctx.data["correlation_id"]


def test_each_request_writes_one_access_log_line(api, caplog):
    with caplog.at_level(logging.INFO, logger="crm_gateway.access"):
        api.get(f"/v1/customers/{CUSTOMER_ID}", headers={"X-Correlation-Id": "c-9"})
    [record] = [r for r in caplog.records if r.name == "crm_gateway.access"]
    assert (record.method, record.path, record.status) == ("GET", f"/v1/customers/{CUSTOMER_ID}", 200)
    assert record.request_correlation_id == "c-9" and record.duration_ms >= 0
