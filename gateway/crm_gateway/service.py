"""The gateway nameko service: the platform's HTTP API under /v1, thin handlers over RPC.

Each handler checks its input through a contract schema (bad input never reaches a service), calls one
service, and shapes the answer; `endpoint` does auth, error mapping, correlation ids and the access log.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from nameko.timer import timer
from werkzeug.wrappers import Request, Response

from crm_contracts import customer as contracts
from crm_contracts.customer360 import SearchQuery
from crm_contracts.fields import schema_of
from crm_gateway import openapi
from crm_gateway.auth import ADMIN, READ, WRITE, JwtSettings
from crm_gateway.idempotency import Idempotency, command_id
from crm_gateway.schemas import ConsentChannelPath
from crm_gateway.web import (
    CorrelationId,
    DeadlineRpcProxy,
    endpoint,
    etag,
    if_match_version,
    json_response,
    load_body,
    load_query,
    uuid_path,
)
from crm_runtime.nameko.service import ServiceWithHealth
from crm_runtime.nameko.web import http


def customer_response(customer: dict[str, Any], status: int = 200) -> Response:
    """A customer with its version as ETag; a new one (201) also with its Location."""
    headers = {"ETag": etag(customer["version"])}
    if status == 201:
        headers["Location"] = f"/v1/customers/{customer['id']}"
    return json_response(status, customer, headers)


class GatewayService(ServiceWithHealth):
    """HTTP API for front ends: customers, consents, credit rating, grading, the 360 view and search."""

    name = "gateway"
    jwt_settings = JwtSettings()
    correlation_id = CorrelationId()
    customer = DeadlineRpcProxy("customer")
    customer360 = DeadlineRpcProxy("customer360")
    # A rebuild reads every origin's history: it gets a deadline of its own.
    customer360_admin = DeadlineRpcProxy("customer360", timeout_setting="GATEWAY_REBUILD_TIMEOUT", default=900)
    idempotency = Idempotency()

    # --- customers ------------------------------------------------------------------------------

    @http("POST", "/v1/customers")
    @endpoint(WRITE)
    def register_customer(self, request: Request) -> Response:
        payload = load_body(request, contracts.RegisterCustomerRequest)
        command = command_id(request)
        return self.idempotency.run(
            request, payload, lambda: customer_response(self.customer.register(payload, command), 201)
        )

    @http("GET", "/v1/customers/<customer_id>")
    @endpoint(READ)
    def get_customer(self, request: Request, customer_id: str) -> Response:
        customer = self.customer.get(uuid_path(customer_id))
        if request.headers.get("If-None-Match") == etag(customer["version"]):
            return Response(status=304, headers={"ETag": etag(customer["version"])})
        return customer_response(customer)

    @http("PATCH", "/v1/customers/<customer_id>")
    @endpoint(WRITE)
    def change_profile(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        expected = if_match_version(request, required=True)
        payload = load_body(request, contracts.ChangeProfileRequest)
        return self._once(request, payload, lambda: self.customer.change_profile(customer_id, payload, expected))

    @http("PUT", "/v1/customers/<customer_id>/consents/<channel>")
    @endpoint(WRITE)
    def record_consent(self, request: Request, customer_id: str, channel: str) -> Response:
        customer_id = uuid_path(customer_id)
        schema_of(ConsentChannelPath).load({"channel": channel})
        expected = if_match_version(request, required=False)
        payload = load_body(request, contracts.RecordConsentRequest)
        return self._once(
            request, payload, lambda: self.customer.record_consent(customer_id, channel, payload, expected)
        )

    @http("PUT", "/v1/customers/<customer_id>/credit-rating")
    @endpoint(WRITE)
    def set_credit_rating(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        expected = if_match_version(request, required=False)
        payload = load_body(request, contracts.SetCreditRatingRequest)
        return self._once(request, payload, lambda: self.customer.set_credit_rating(customer_id, payload, expected))

    @http("PUT", "/v1/customers/<customer_id>/grade")
    @endpoint(WRITE)
    def grade_customer(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        expected = if_match_version(request, required=False)
        payload = load_body(request, contracts.GradeCustomerRequest)
        return self._once(request, payload, lambda: self.customer.grade(customer_id, payload, expected))

    def _once(self, request: Request, payload: dict[str, Any], command: Callable[[], dict[str, Any]]) -> Response:
        """Run a customer command (once per Idempotency-Key) and answer with the changed customer."""
        return self.idempotency.run(request, payload, lambda: customer_response(command()))

    # --- the 360 view ---------------------------------------------------------------------------

    @http("GET", "/v1/customers/<customer_id>/360")
    @endpoint(READ)
    def customer_360(self, request: Request, customer_id: str) -> Response:
        return json_response(200, self.customer360.view(uuid_path(customer_id)))

    @http("GET", "/v1/customers")
    @endpoint(READ)
    def search_customers(self, request: Request) -> Response:
        query = load_query(request, SearchQuery)
        return json_response(200, self.customer360.search(query["q"], query["page"], query["page_size"]))

    @http("POST", "/v1/admin/rebuild-360")
    @endpoint(ADMIN)
    def rebuild_360(self, request: Request) -> Response:
        return self.idempotency.run(request, {}, lambda: json_response(200, self.customer360_admin.rebuild()))

    # --- documents and health -------------------------------------------------------------------

    @http("GET", "/openapi.json")
    @endpoint(None)
    def openapi_document(self, request: Request) -> Response:
        return Response(openapi.document_json(), status=200, mimetype="application/json")

    @http("GET", "/health/live")
    @endpoint(None)
    def live(self, request: Any) -> Response:
        return ServiceWithHealth.live(self, request)

    @http("GET", "/health/ready")
    @endpoint(None)
    def ready(self, request: Any) -> Response:
        return ServiceWithHealth.ready(self, request)

    @timer(interval=3600)
    def purge_idempotency_keys(self) -> None:
        """Forget idempotency keys past their TTL."""
        self.idempotency.purge()
