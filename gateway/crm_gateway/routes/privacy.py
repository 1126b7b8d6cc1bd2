"""A customer's rights on the platform: export of everything every service holds about them (GDPR Art.
15, 20), erasure by crypto-shredding (Art. 17, 19), and where an erasure stands in every service."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from marshmallow import Schema, fields
from werkzeug.wrappers import Request, Response

from crm_contracts import customer as contracts
from crm_contracts.errors import ServiceError
from crm_gateway.auth import ADMIN
from crm_gateway.operation import EXAMPLE_IDS, READ_ERRORS, WRITE_ERRORS, Operation
from crm_gateway.routes.common import Routes
from crm_gateway.web import endpoint, json_response, load_optional_body, uuid_path
from crm_runtime import config
from crm_runtime.nameko.client import ServiceFailedError, ServiceUnavailableError
from crm_runtime.nameko.web import http

log = logging.getLogger(__name__)

#: Services that forget a customer on customer_erased by themselves and say where that stands over RPC
#: (`erasure_status`, crm_runtime.nameko.rights): the status asks each; an erasure is complete only once
#: every one answers "done".
FORGETTING_SERVICES = ("marketing", "sales", "order", "service", "loyalty")
#: The format of an export archive; a reader checks it before reading `data`.
EXPORT_FORMAT = "crm-customer-export/1"
#: Rows per page when an export reads a service's list.
EXPORT_PAGE = 100
#: How long before an erasure a command still in flight may have claimed its key (well over the
#: gateway's deadline per call), so that the status purges the answers such commands stored late.
IN_FLIGHT_SECONDS = 900


class PrivacyRoutes(Routes):
    """/v1/customers/{id}/erasure: erase a customer; where the erasure stands in every service."""

    @http("GET", "/v1/customers/<customer_id>/export")
    @endpoint(ADMIN)
    def export_customer(self, request: Request, customer_id: str) -> Response:
        return json_response(200, self._export(uuid_path(customer_id)), {
            "Content-Disposition": f'attachment; filename="customer-{customer_id}.json"'})

    @http("POST", "/v1/customers/<customer_id>/erasure")
    @endpoint(ADMIN)
    def erase_customer(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        payload = load_optional_body(request, contracts.EraseCustomerRequest)
        location = {"Location": f"/v1/customers/{customer_id}/erasure"}
        return self.once(request, payload, lambda command_id: self._erase(customer_id, payload, command_id),
                         lambda status: json_response(202, status, location))

    @http("GET", "/v1/customers/<customer_id>/erasure")
    @endpoint(ADMIN)
    def erasure_status(self, request: Request, customer_id: str) -> Response:
        return json_response(200, self._status(uuid_path(customer_id)))

    def _export(self, customer_id: str) -> dict[str, Any]:
        """Every service's reads about the customer in one archive, with a manifest saying where each part
        came from and whether it could be read (an unavailable service is named, never silently left out)."""
        customer = self.customer.export(customer_id)  # 404 for an unknown customer: nothing to gather
        sources: list[tuple[str, str, Callable[[], Any]]] = [
            ("customer360", "customer360.view", lambda: self.customer360.view(customer_id)),
            ("marketing", "marketing.list_leads(customer_id)",
             lambda: self._all(self.marketing.list_leads, customer_id)),
            ("sales", "sales.list_opportunities(customer_id)",
             lambda: self._all(self.sales.list_opportunities, customer_id)),
            ("order", "order.orders_of_customer", lambda: self.order.orders_of_customer(customer_id)),
            ("service", "service.list_cases(customer_id)", lambda: self._all(self.service.list_cases, customer_id)),
            ("loyalty", "loyalty.get", lambda: self.loyalty.get(customer_id)),
        ]
        data: dict[str, Any] = {"customer": customer}
        manifest = [{"source": "customer", "call": "customer.export", "status": "ok",
                     "items": len(customer["events"])}]
        for source, call, read in sources:
            entry: dict[str, Any] = {"source": source, "call": call}
            try:
                part = read()
            except ServiceError as error:
                if error.code != "not_found":
                    raise
                part, entry["status"] = None, "none"  # the service holds nothing about the customer
            except (ServiceUnavailableError, ServiceFailedError) as error:
                part, entry["status"], entry["reason"] = None, "unavailable", str(error)
            else:
                entry["status"] = "ok"
                entry["items"] = len(part) if isinstance(part, list) else 1
            data[source] = part
            manifest.append(entry)
        return {
            "format": EXPORT_FORMAT,
            "customer_id": customer_id,
            "exported_at": datetime.now(UTC).isoformat(),
            "complete": all(entry["status"] != "unavailable" for entry in manifest),
            "manifest": manifest,
            "data": data,
        }

    @staticmethod
    def _all(list_call: Callable[..., dict[str, Any]], customer_id: str) -> list[Any]:
        """Every row of a service's list filtered by the customer, page by page."""
        rows: list[Any] = []
        page = 1
        while True:
            answer = list_call({"customer_id": customer_id}, page, EXPORT_PAGE)
            rows += answer["items"]
            if len(answer["items"]) < EXPORT_PAGE or len(rows) >= answer.get("total", len(rows)):
                return rows
            page += 1

    def _erase(self, customer_id: str, payload: dict[str, Any], command_id: str) -> dict[str, Any]:
        self.customer.erase(customer_id, payload, command_id=command_id)
        # Every stored answer naming the customer or one of their leads (answers from before a lead was
        # linked name only the lead), once: a scan of the whole table.
        forgotten = sum(self.idempotency.forget(subject) for subject in self._subjects(customer_id))
        return self._status(customer_id, forgotten)

    def _subjects(self, customer_id: str) -> list[str]:
        """The ids a stored answer may name the customer by: theirs and their leads' (marketing says which;
        only theirs when it does not answer — README, "Known limits")."""
        try:
            leads = self._all(self.marketing.list_leads, customer_id)
        except (ServiceUnavailableError, ServiceFailedError) as error:
            log.warning("the stored answers of %s's leads are not purged now: %s", customer_id, error)
            leads = []
        return [customer_id, *(str(lead["id"]) for lead in leads if lead.get("id"))]

    def _status(self, customer_id: str, forgotten: int = 0) -> dict[str, Any]:
        """The customer service's ledger, then each copy checked; the gateway's stored answers purged again
        of what commands in flight at the erasure stored after it (keys claimed since shortly before)."""
        record = self.customer.erasure(customer_id)
        in_flight = datetime.fromisoformat(record["requested_at"]) - timedelta(seconds=IN_FLIGHT_SECONDS)
        forgotten += sum(self.idempotency.forget(subject, in_flight) for subject in self._subjects(customer_id))
        shredded = record.get("shredded_at")
        # Another replica may hold the unwrapped key for up to CRM_DATA_KEY_TTL after the shredding.
        settled = shredded is not None and datetime.fromisoformat(shredded) + timedelta(
            seconds=float(config.setting("CRM_DATA_KEY_TTL", "5"))) <= datetime.now(UTC)
        services: dict[str, dict[str, Any]] = {
            "customer": {"state": "done" if settled else "pending", "erased_at": record.get("erased_at"),
                         "shredded_at": shredded},
            "customer360": {"state": "done" if self._view_forgotten(customer_id) else "pending"},
            "gateway": {"state": "done", "stored_answers_replaced": forgotten},
            **{name: self._service_erasure(name, customer_id) for name in FORGETTING_SERVICES},
        }
        return {
            "customer_id": customer_id,
            "request_id": record["request_id"],
            "requested_at": record["requested_at"],
            "services": services,
            "complete": all(s["state"] == "done" for s in services.values()),
        }

    def _service_erasure(self, name: str, customer_id: str) -> dict[str, Any]:
        """Where the erasure stands in the service `name` ("done" | "pending"), or "unavailable" with the
        reason when it does not answer (not running, or failing): the erasure is then not complete."""
        try:
            answer = getattr(self, name).erasure_status(customer_id)
        except (ServiceUnavailableError, ServiceFailedError, ServiceError) as error:
            return {"state": "unavailable", "reason": str(error)}
        state = answer.get("state") if isinstance(answer, dict) else None
        if state not in ("done", "pending"):
            return {"state": "unavailable", "reason": f"the {name} service answered {answer!r}"}
        return {"state": state}

    def _view_forgotten(self, customer_id: str) -> bool:
        try:
            view = self.customer360.view(customer_id)
        except ServiceError as error:
            if error.code == "not_found":
                return True  # the view never held the customer
            raise
        return bool((view.get("profile") or {}).get("erased"))


class ServiceErasureSchema(Schema):
    state = fields.String(metadata={
        "description": "done (this service has forgotten the customer: keys shredded, copies purged), pending "
                       "(not yet: ask again), or unavailable (the service did not answer: see reason)"})
    reason = fields.String(metadata={"description": "unavailable: why the service could not say"})
    erased_at = fields.AwareDateTime(allow_none=True, metadata={"description": "customer: customer_erased recorded"})
    shredded_at = fields.AwareDateTime(allow_none=True, metadata={"description": "customer: the data key destroyed"})
    stored_answers_replaced = fields.Integer(metadata={"description": "gateway: idempotent answers replaced now"})


class ErasureStatusSchema(Schema):
    """Where a customer's erasure stands in every service."""

    customer_id = fields.UUID()
    request_id = fields.String()
    requested_at = fields.AwareDateTime()
    services = fields.Dict(keys=fields.String(), values=fields.Nested(ServiceErasureSchema))
    complete = fields.Boolean(metadata={
        "description": "every service (customer, customer360, gateway, marketing, sales, order, service, "
                       "loyalty) is done"})


class ExportSourceSchema(Schema):
    source = fields.String(metadata={"description": "the service"})
    call = fields.String(metadata={"description": "the read that gathered it"})
    status = fields.String(metadata={"description": "ok, none (holds nothing), or unavailable (read again)"})
    items = fields.Integer()
    reason = fields.String()


class CustomerExportSchema(Schema):
    """Everything every service holds about a customer (GDPR Art. 15, 20), machine-readable."""

    format = fields.String(metadata={"description": EXPORT_FORMAT})
    customer_id = fields.UUID()
    exported_at = fields.AwareDateTime()
    complete = fields.Boolean(metadata={"description": "every source could be read"})
    manifest = fields.List(fields.Nested(ExportSourceSchema))
    data = fields.Dict(keys=fields.String(), metadata={"description": "by source, as each service answers"})


SCHEMAS = {"ErasureStatus": ErasureStatusSchema, "EraseCustomerRequest": contracts.EraseCustomerRequest,
           "CustomerExport": CustomerExportSchema}

_CUSTOMER = EXAMPLE_IDS["customer_id"]

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get", "/v1/customers/{customer_id}/export", "exportCustomer",
        "Everything every service holds about a customer, as one JSON archive with a manifest (GDPR Art. 15, 20)",
        ADMIN, 200, "CustomerExport", READ_ERRORS, f"GET /v1/customers/{_CUSTOMER}/export",
        path_params=("customer_id",), tag="privacy",
    ),
    Operation(
        "post", "/v1/customers/{customer_id}/erasure", "eraseCustomer",
        "Erase a customer (GDPR Art. 17) by crypto-shredding; idempotent", ADMIN, 202, "ErasureStatus",
        WRITE_ERRORS,
        f"POST /v1/customers/{_CUSTOMER}/erasure\nIdempotency-Key: 2b7e-erase-li-na\n\n"
        '{"request_id": "DSR-2026-0042"}'
        "\n\nThe customer's data key is destroyed: their events stay, unreadable; customer_erased tells every "
        "subscriber to forget them. Asking again answers where the erasure stands",
        body="EraseCustomerRequest", body_example={"request_id": "DSR-2026-0042"}, body_optional=True,
        idempotent=True, ok_headers=("Location",), path_params=("customer_id",), tag="privacy",
    ),
    Operation(
        "get", "/v1/customers/{customer_id}/erasure", "getErasure",
        "Where a customer's erasure stands in every service (404: never asked): each of customer, "
        "customer360, gateway, marketing, sales, order, service and loyalty is done, pending or unavailable; "
        "complete once all are done", ADMIN, 200, "ErasureStatus",
        READ_ERRORS, f"GET /v1/customers/{_CUSTOMER}/erasure", path_params=("customer_id",), tag="privacy",
    ),
)
