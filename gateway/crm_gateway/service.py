"""The gateway nameko service: the platform's HTTP API under /v1, thin handlers over the services.

The handlers live in crm_gateway/routes, one mixin per resource (customers, campaigns, leads,
opportunities, orders, cases, faqs, loyalty), with that resource's OpenAPI operations beside them;
GatewayService combines them and injects the clients they call (nameko finds the `@http` entrypoints of
every mixin on the combined class). Each handler checks its input through a contract schema (bad input
never reaches a service), calls one service, and shapes the answer; `endpoint` does auth, error
mapping, correlation ids and the access log.
"""

from __future__ import annotations

from typing import Any

from nameko.timer import timer
from werkzeug.wrappers import Request, Response

from crm_gateway import openapi
from crm_gateway.auth import JwtSettings
from crm_gateway.idempotency import Idempotency
from crm_gateway.routes.analytics import AnalyticsRoutes
from crm_gateway.routes.campaigns import CampaignRoutes
from crm_gateway.routes.cases import CaseRoutes
from crm_gateway.routes.customers import CustomerRoutes
from crm_gateway.routes.dashboard import DashboardRoutes
from crm_gateway.routes.docs import DocsRoutes
from crm_gateway.routes.duplicates import DuplicateRoutes
from crm_gateway.routes.events import EventRoutes
from crm_gateway.routes.faqs import FaqRoutes
from crm_gateway.routes.leads import LeadRoutes
from crm_gateway.routes.loyalty import LoyaltyRoutes
from crm_gateway.routes.merges import MergeRoutes
from crm_gateway.routes.opportunities import OpportunityRoutes
from crm_gateway.routes.orders import OrderRoutes
from crm_gateway.routes.privacy import PrivacyRoutes
from crm_gateway.routes.reports import ReportRoutes
from crm_gateway.routes.segments import SegmentRoutes
from crm_gateway.routes.webhooks import WebhookRoutes
from crm_gateway.subscribers.registry import SubscriberTokens
from crm_gateway.subscribers.webhooks import Webhooks
from crm_gateway.web import CorrelationId, endpoint
from crm_runtime.nameko.client import ServiceClient
from crm_runtime.nameko.service import ServiceWithHealth
from crm_runtime.nameko.web import http


def client(service: str) -> ServiceClient:
    """A client of `service` whose calls end within GATEWAY_RPC_TIMEOUT seconds."""
    return ServiceClient(service, timeout_setting="GATEWAY_RPC_TIMEOUT")


class GatewayService(
    CustomerRoutes, CampaignRoutes, LeadRoutes, OpportunityRoutes, OrderRoutes, CaseRoutes, FaqRoutes,
    LoyaltyRoutes, DocsRoutes, PrivacyRoutes, DuplicateRoutes, EventRoutes, AnalyticsRoutes, ReportRoutes,
    WebhookRoutes, SegmentRoutes, MergeRoutes, DashboardRoutes, ServiceWithHealth,
):
    """HTTP API for front ends: every resource of the six services, the 360 view and search."""

    name = "gateway"
    jwt_settings = JwtSettings()
    correlation_id = CorrelationId()
    customer = client("customer")
    customer360 = client("customer360")
    # The 360 view and search: answers customer360 serialised are passed on as they came (RawJson).
    customer360_reads = ServiceClient("customer360", timeout_setting="GATEWAY_RPC_TIMEOUT", raw_json=True)
    # A rebuild reads every origin's history: it gets a deadline of its own.
    customer360_admin = ServiceClient("customer360", timeout_setting="GATEWAY_REBUILD_TIMEOUT", default_timeout=900)
    marketing = client("marketing")
    sales = client("sales")
    order = client("order")
    service = client("service")
    loyalty = client("loyalty")
    idempotency = Idempotency()
    # Subscribers' tokens are checked against the registry on every request (revocable one by one).
    subscriber_tokens = SubscriberTokens()
    webhooks = Webhooks()

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
