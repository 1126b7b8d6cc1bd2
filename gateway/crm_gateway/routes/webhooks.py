"""Webhook subscriptions (crm:admin): create (URL, event types, secret), list, read, delete, resume, and the
delivery log; and the timer that delivers them (one replica: crm_gateway.subscribers.webhooks)."""

from __future__ import annotations

import logging
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate, validates
from werkzeug.wrappers import Request, Response

from crm_contracts.fields import Text
from crm_gateway.auth import ADMIN
from crm_gateway.errors import ApiError
from crm_gateway.operation import CREATE_ERRORS, READ_ERRORS, Operation
from crm_gateway.routes.common import Routes
from crm_gateway.routes.events import PATTERN, Selection, is_pattern, read_page
from crm_gateway.subscribers import webhooks
from crm_gateway.web import endpoint, json_response, load_body, load_query, uuid_path
from crm_runtime import config
from crm_runtime.nameko.leader import leader_timer
from crm_runtime.nameko.web import http

log = logging.getLogger(__name__)


class CreateWebhookRequest(Schema):
    """Subscribe a URL to event types. Example: {"url": "https://erp.example.com/crm-events",
    "types": ["order.*", "customer.customer_registered"]}"""

    url = Text(required=True, validate=[validate.Length(min=1, max=2000), validate.Regexp(r"^https?://\S+$")],
               metadata={"description": "http(s); refused when its host is, or resolves to, an address that is not "
                                        "public (loopback, private, link-local...)"})
    types = fields.List(Text(validate=[validate.Length(max=255), validate.Regexp(PATTERN)]), required=True,
                        validate=validate.Length(min=1, max=50))
    secret = Text(load_default=None, validate=validate.Length(min=16, max=200), metadata={
        "description": "the HMAC key of the signatures; absent, the gateway makes one (answered once)"})

    @validates("url")
    def public_url(self, value: str, **_: Any) -> None:
        try:
            webhooks.check_url(value, resolve=None)  # resolved before every delivery
        except webhooks.RefusedUrlError as exc:
            raise ValidationError(str(exc)) from None

    @validates("types")
    def patterns(self, value: list[str], **_: Any) -> None:
        if not all(is_pattern(p) for p in value):
            raise ValidationError("must be routing-key patterns like order.* or customer.customer_registered")
        if len(set(value)) != len(value):
            raise ValidationError("names a pattern twice")


class WebhookSchema(Schema):
    """A webhook subscription (its secret only in the answer that created it)."""

    id = fields.UUID(required=True)
    url = fields.String(required=True)
    types = fields.List(fields.String(), required=True)
    status = fields.String(required=True, validate=validate.OneOf(["active", "paused"]))
    failures = fields.Integer(required=True, metadata={"description": "failed attempts in a row"})
    next_attempt_at = fields.String(required=True)
    last_error = fields.String(allow_none=True, required=True)
    created_at = fields.String(required=True)
    secret = fields.String(metadata={"description": "only when created: store it, it is not shown again"})


class WebhookListSchema(Schema):
    """Every webhook subscription."""

    items = fields.List(fields.Nested(WebhookSchema), required=True)


class DeliverySchema(Schema):
    """One delivery attempt."""

    event_id = fields.UUID(required=True)
    type = fields.String(required=True)
    origin = fields.String(required=True)
    position = fields.Integer(required=True)
    attempt = fields.Integer(required=True)
    status = fields.Integer(allow_none=True, required=True, metadata={"description": "the receiver's HTTP status"})
    error = fields.String(allow_none=True, required=True)
    at = fields.String(required=True)


class DeliveryLogSchema(Schema):
    """A subscription's newest delivery attempts first."""

    items = fields.List(fields.Nested(DeliverySchema), required=True)


class DeliveryLogQuery(Schema):
    """How many attempts to show."""

    limit = fields.Integer(load_default=100, validate=validate.Range(min=1, max=1000))


def not_found(webhook_id: str) -> ApiError:
    return ApiError(404, "not_found", f"no webhook subscription {webhook_id}")


class WebhookRoutes(Routes):
    """/v1/webhooks."""

    webhooks: Any

    @http("POST", "/v1/webhooks")
    @endpoint(ADMIN)
    def create_webhook(self, request: Request) -> Response:
        payload = load_body(request, CreateWebhookRequest)
        secret = payload.get("secret") or webhooks.new_secret()

        def create(command_id: str) -> dict[str, Any]:
            hook = self.webhooks.store.create(webhooks.webhook_id_for(command_id), payload["url"], payload["types"],
                                              secret)
            return {**hook.public(), "secret": hook.secret}

        return self.once(request, payload, create,
                         lambda hook: json_response(201, hook, {"Location": f"/v1/webhooks/{hook['id']}"}))

    @http("GET", "/v1/webhooks")
    @endpoint(ADMIN)
    def list_webhooks(self, request: Request) -> Response:
        return json_response(200, {"items": [hook.public() for hook in self.webhooks.store.all()]})

    @http("GET", "/v1/webhooks/<webhook_id>")
    @endpoint(ADMIN)
    def get_webhook(self, request: Request, webhook_id: str) -> Response:
        webhook_id = uuid_path(webhook_id, "webhook subscription")
        try:
            return json_response(200, self.webhooks.store.get(webhook_id).public())
        except webhooks.WebhookNotFoundError:
            raise not_found(webhook_id) from None

    @http("DELETE", "/v1/webhooks/<webhook_id>")
    @endpoint(ADMIN)
    def delete_webhook(self, request: Request, webhook_id: str) -> Response:
        webhook_id = uuid_path(webhook_id, "webhook subscription")

        def delete(command_id: str) -> dict[str, Any]:
            try:
                self.webhooks.store.delete(webhook_id)
            except webhooks.WebhookNotFoundError:
                raise not_found(webhook_id) from None
            return {}

        return self.once(request, {}, delete, lambda _: Response(status=204))

    @http("POST", "/v1/webhooks/<webhook_id>/resume")
    @endpoint(ADMIN)
    def resume_webhook(self, request: Request, webhook_id: str) -> Response:
        webhook_id = uuid_path(webhook_id, "webhook subscription")

        def resume(command_id: str) -> dict[str, Any]:
            try:
                return self.webhooks.store.resume(webhook_id).public()  # type: ignore[no-any-return]
            except webhooks.WebhookNotFoundError:
                raise not_found(webhook_id) from None

        return self.once(request, {}, resume, lambda hook: json_response(200, hook))

    @http("GET", "/v1/webhooks/<webhook_id>/deliveries")
    @endpoint(ADMIN)
    def webhook_deliveries(self, request: Request, webhook_id: str) -> Response:
        webhook_id = uuid_path(webhook_id, "webhook subscription")
        query = load_query(request, DeliveryLogQuery)
        try:
            return json_response(200, {"items": self.webhooks.store.deliveries(webhook_id, query["limit"])})
        except webhooks.WebhookNotFoundError:
            raise not_found(webhook_id) from None

    @leader_timer(interval=1.0)
    def deliver_webhooks(self) -> None:
        """Deliver what is due (one replica runs it; the next tick starts when this one ends)."""
        if config.setting("WEBHOOKS_ENABLED", "true").lower() != "true":
            return

        def page(types: list[str], positions: dict[str, int], limit: int) -> Any:
            return read_page(lambda origin: getattr(self, origin).events_since, Selection(["#"], types), positions,
                             limit)

        try:
            webhooks.deliver_due(self.webhooks.store, self.webhooks.sender, page)
        except Exception:  # noqa: BLE001 - a failed round (database, a service down) is retried next tick
            log.exception("delivering webhooks failed; retried at the next tick")


SCHEMAS = {"CreateWebhookRequest": CreateWebhookRequest, "Webhook": WebhookSchema, "WebhookList": WebhookListSchema,
           "DeliveryLog": DeliveryLogSchema}

_TAG = "webhooks"
_ITEM = "/v1/webhooks/{webhook_id}"
_ID = "0b8f4e52-6c1d-5a3e-9f70-2d4c6b8a1e39"
_IDEMPOTENT = {"Idempotency-Key": "7f1c0a52-4b1e-4d6a-9a51-2f0c8d3e6b10"}
_CREATE_EXAMPLE = {"url": "https://erp.example.com/crm-events", "types": ["order.*", "customer.customer_registered"]}


def _example(method: str, path: str, body: str = "") -> str:
    lines = [f"{method} {path.replace('{webhook_id}', _ID)}", *(f"{k}: {v}" for k, v in _IDEMPOTENT.items())]
    return "\n".join(lines + (["", body] if body else []))


OPERATIONS = (
    Operation("post", "/v1/webhooks", "createWebhook",
              "Subscribe a URL to event types: signed deliveries (CRM-Signature, HMAC-SHA256 over timestamp and "
              "body), retried with back-off, paused after repeated failure; a URL that is not public is refused",
              ADMIN, 201, "Webhook", CREATE_ERRORS,
              _example("POST", "/v1/webhooks", '{"url": "https://erp.example.com/crm-events", "types": ["order.*"]}'),
              body="CreateWebhookRequest", body_example=_CREATE_EXAMPLE, idempotent=True,
              tag=_TAG),
    Operation("get", "/v1/webhooks", "listWebhooks", "Every webhook subscription", ADMIN, 200, "WebhookList",
              (401, 403, 503), "GET /v1/webhooks", tag=_TAG),
    Operation("get", _ITEM, "getWebhook", "One webhook subscription: status, failures, last error", ADMIN, 200,
              "Webhook", READ_ERRORS, f"GET /v1/webhooks/{_ID}", path_params=("webhook_id",), tag=_TAG),
    Operation("delete", _ITEM, "deleteWebhook", "Delete a webhook subscription and its delivery log", ADMIN, 204,
              None, (400, 401, 403, 404, 409, 422, 503), _example("DELETE", _ITEM), idempotent=True,
              path_params=("webhook_id",), tag=_TAG),
    Operation("post", f"{_ITEM}/resume", "resumeWebhook",
              "Resume a paused subscription from the last event it delivered", ADMIN, 200, "Webhook",
              (400, 401, 403, 404, 409, 422, 503), _example("POST", f"{_ITEM}/resume"), idempotent=True,
              path_params=("webhook_id",), tag=_TAG),
    Operation("get", f"{_ITEM}/deliveries", "getWebhookDeliveries", "The delivery log, newest attempt first", ADMIN,
              200, "DeliveryLog", (401, 403, 404, 422, 503), f"GET /v1/webhooks/{_ID}/deliveries?limit=20",
              query=DeliveryLogQuery, path_params=("webhook_id",), tag=_TAG),
)
