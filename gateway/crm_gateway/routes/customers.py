"""Customers (customer service): register, read, change profile, consents, credit rating, grade; and the
360 view and search (customer360), with the admin rebuild of the view."""

from __future__ import annotations

from werkzeug.wrappers import Request, Response

from crm_contracts import customer as contracts
from crm_contracts import customer360 as read_side
from crm_contracts.analytics import View360Query
from crm_contracts.fields import schema_of
from crm_gateway.auth import ADMIN, READ, WRITE
from crm_gateway.operation import CREATE_ERRORS, EXAMPLE_IDS, READ_ERRORS, WRITE_ERRORS, Operation
from crm_gateway.routes.common import Routes, read_response, resource_response
from crm_gateway.schemas import AddressKindPath, ConsentChannelPath
from crm_gateway.web import endpoint, if_match_version, json_response, load_body, load_query, uuid_path
from crm_runtime.nameko.web import http


def created(customer: dict) -> Response:
    return resource_response(customer, 201, f"/v1/customers/{customer['id']}")


class CustomerRoutes(Routes):
    """/v1/customers: the customer master record, the 360 view and search."""

    @http("POST", "/v1/customers")
    @endpoint(WRITE)
    def register_customer(self, request: Request) -> Response:
        payload = load_body(request, contracts.RegisterCustomerRequest)
        return self.once(request, payload, lambda command_id: self.with_duplicate_warning(
            self.customer.register(payload, command_id), payload), created)

    @http("GET", "/v1/customers/<customer_id>")
    @endpoint(READ)
    def get_customer(self, request: Request, customer_id: str) -> Response:
        return read_response(request, self.customer.get(uuid_path(customer_id)))

    @http("PATCH", "/v1/customers/<customer_id>")
    @endpoint(WRITE)
    def change_profile(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        expected = if_match_version(request, required=True)
        payload = load_body(request, contracts.ChangeProfileRequest)
        return self.once(request, payload, lambda command_id: self.customer.change_profile(
            customer_id, payload, expected, command_id=command_id))

    @http("PUT", "/v1/customers/<customer_id>/consents/<channel>")
    @endpoint(WRITE)
    def record_consent(self, request: Request, customer_id: str, channel: str) -> Response:
        customer_id = uuid_path(customer_id)
        schema_of(ConsentChannelPath).load({"channel": channel})
        expected = if_match_version(request, required=False)
        payload = load_body(request, contracts.RecordConsentRequest)
        return self.once(request, payload, lambda command_id: self.customer.record_consent(
            customer_id, channel, payload, expected, command_id=command_id))

    @http("PUT", "/v1/customers/<customer_id>/credit-rating")
    @endpoint(WRITE)
    def set_credit_rating(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        expected = if_match_version(request, required=False)
        payload = load_body(request, contracts.SetCreditRatingRequest)
        return self.once(request, payload, lambda command_id: self.customer.set_credit_rating(
            customer_id, payload, expected, command_id=command_id))

    @http("PUT", "/v1/customers/<customer_id>/grade")
    @endpoint(WRITE)
    def grade_customer(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        expected = if_match_version(request, required=False)
        payload = load_body(request, contracts.GradeCustomerRequest)
        return self.once(request, payload, lambda command_id: self.customer.grade(
            customer_id, payload, expected, command_id=command_id))

    @http("PUT", "/v1/customers/<customer_id>/addresses/<kind>")
    @endpoint(WRITE)
    def set_address(self, request: Request, customer_id: str, kind: str) -> Response:
        customer_id = uuid_path(customer_id)
        schema_of(AddressKindPath).load({"kind": kind})
        expected = if_match_version(request, required=False)
        payload = load_body(request, contracts.SetAddressRequest)
        return self.once(request, payload, lambda command_id: self.customer.set_address(
            customer_id, kind, payload, expected, command_id=command_id))

    # --- the 360 view ---------------------------------------------------------------------------

    @http("GET", "/v1/customers/<customer_id>/360")
    @endpoint(READ)
    def customer_360(self, request: Request, customer_id: str) -> Response:
        # No query string (the usual read): nothing to validate, the view now.
        as_of = load_query(request, View360Query)["as_of"] if request.query_string else None
        if as_of is None:
            return json_response(200, self.customer360_reads.view(uuid_path(customer_id)))
        return json_response(200, self.customer360_reads.view(uuid_path(customer_id), as_of=as_of.isoformat()))

    @http("GET", "/v1/customers")
    @endpoint(READ)
    def search_customers(self, request: Request) -> Response:
        query = load_query(request, read_side.SearchQuery)
        return json_response(200, self.customer360_reads.search(query["q"], query["page"], query["page_size"]))

    @http("POST", "/v1/admin/rebuild-360")
    @endpoint(ADMIN)
    def rebuild_360(self, request: Request) -> Response:
        return self.idempotency.run(
            request, {}, lambda _command_id: json_response(200, self.customer360_admin.rebuild())
        )


SCHEMAS = {
    "Customer": contracts.CustomerSchema,
    "Customer360": read_side.Customer360Schema,
    "SearchPage": read_side.SearchPageSchema,
    "RebuildReport": read_side.RebuildReportSchema,
}

_CUSTOMER = EXAMPLE_IDS["customer_id"]
#: A customer merged into another answers 308 to the same request for its survivor.
MOVED_READ_ERRORS = (*READ_ERRORS, 308)
MOVED_WRITE_ERRORS = (*WRITE_ERRORS, 308)
MOVED = ("A customer merged into another answers 308 `moved`, its Location the same request for the survivor "
         "(POST /v1/customers/{customer_id}/merges)")
_ADDRESS = {"address": {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"},
            "default": True}
_REGISTER = {"name": "Li Na", "email": "li.na@example.com", "phone": "+86 10 5555 0101", "source_channel": "web"}

OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "post", "/v1/customers", "registerCustomer",
        "Register a customer known by an email, a phone, or both", WRITE, 201, "Customer",
        CREATE_ERRORS,
        "POST /v1/customers\nIdempotency-Key: 7f1c0a52-reg-li-na\n\n"
        '{"name": "Li Na", "email": "li.na@example.com", "phone": "+86 10 5555 0101", "source_channel": "web"}\n\n'
        "A customer known by phone only (the answer's `email` is then null):\n\n"
        "POST /v1/customers\n\n"
        '{"name": "Wang Wei", "phone": "+86 21 5555 0177", "source_channel": "phone"}\n\n'
        "Give `email` or `phone` (or both): neither is 422 naming `email`. Each belongs to one customer: a "
        "taken email or phone is 409 `conflict` whose `details` name the existing customer",
        body="RegisterCustomerRequest", body_example=_REGISTER,
        idempotent=True, ok_headers=("ETag", "Location"),
    ),
    Operation(
        "get", "/v1/customers/{customer_id}", "getCustomer", "Get a customer (its version is the ETag)", READ, 200,
        "Customer", MOVED_READ_ERRORS, f"GET /v1/customers/{_CUSTOMER}\n\n" + MOVED,
        ok_headers=("ETag",), path_params=("customer_id",), not_modified=True,
    ),
    Operation(
        "patch", "/v1/customers/{customer_id}", "changeProfile", "Change profile fields (If-Match required)", WRITE,
        200, "Customer", (*MOVED_WRITE_ERRORS, 428),
        f'PATCH /v1/customers/{_CUSTOMER}\nIf-Match: "1"\n\n'
        '{"phone": "+86 10 5555 0199", "company": "Acme Group"}\n\n'
        "A taken email or phone is 409 `conflict`",
        body="ChangeProfileRequest", body_example={"phone": "+86 10 5555 0199", "company": "Acme Group"},
        if_match="required", idempotent=True, ok_headers=("ETag",), path_params=("customer_id",),
    ),
    Operation(
        "put", "/v1/customers/{customer_id}/consents/{channel}", "recordConsent",
        "Grant or withdraw consent on one channel", WRITE, 200, "Customer", MOVED_WRITE_ERRORS,
        f'PUT /v1/customers/{_CUSTOMER}/consents/email\n\n{{"granted": true, "source": "web form"}}',
        body="RecordConsentRequest", body_example={"granted": True, "source": "web form"},
        if_match="optional", idempotent=True, ok_headers=("ETag",), path_params=("customer_id", "channel"),
    ),
    Operation(
        "put", "/v1/customers/{customer_id}/credit-rating", "setCreditRating", "Set the credit rating", WRITE, 200,
        "Customer", MOVED_WRITE_ERRORS,
        f'PUT /v1/customers/{_CUSTOMER}/credit-rating\n\n'
        '{"rating": "A", "limit": "50000.00", "reason": "annual review"}',
        body="SetCreditRatingRequest", body_example={"rating": "A", "limit": "50000.00", "reason": "annual review"},
        if_match="optional", idempotent=True, ok_headers=("ETag",), path_params=("customer_id",),
    ),
    Operation(
        "put", "/v1/customers/{customer_id}/grade", "gradeCustomer", "Grade on value, structure and loyalty", WRITE,
        200, "Customer", MOVED_WRITE_ERRORS,
        f'PUT /v1/customers/{_CUSTOMER}/grade\n\n{{"value": 5, "structure": 3, "loyalty": 4}}',
        body="GradeCustomerRequest", body_example={"value": 5, "structure": 3, "loyalty": 4},
        if_match="optional", idempotent=True, ok_headers=("ETag",), path_params=("customer_id",),
    ),
    Operation(
        "put", "/v1/customers/{customer_id}/addresses/{kind}", "setAddress",
        "Set the billing or the shipping address (orders ship to the default shipping address)", WRITE, 200,
        "Customer", MOVED_WRITE_ERRORS,
        f'PUT /v1/customers/{_CUSTOMER}/addresses/shipping\n\n'
        '{"address": {"recipient": "Li Na", "line1": "88 Jianguo Road", "city": "Beijing", "country": "CN"}}',
        body="SetAddressRequest", body_example=_ADDRESS,
        if_match="optional", idempotent=True, ok_headers=("ETag",), path_params=("customer_id", "kind"),
    ),
    Operation(
        "get", "/v1/customers/{customer_id}/360", "getCustomer360", "The 360° view of a customer", READ, 200,
        "Customer360", (*MOVED_READ_ERRORS, 422),
        f"GET /v1/customers/{_CUSTOMER}/360\n\n"
        "With `as_of` (RFC 3339 with its offset; `+` escaped as %2B in a URL), the view as it stood then: the "
        "fold of the customer's events that occurred at or before it, analytics as of it. An instant without "
        "an offset or in the future is 422; one before anything about the customer happened is 404:\n\n"
        f"GET /v1/customers/{_CUSTOMER}/360?as_of=2027-03-01T00:00:00%2B08:00",
        path_params=("customer_id",), query=View360Query,
    ),
    Operation(
        "get", "/v1/customers", "searchCustomers", "Search customers by name or email, a page at a time", READ, 200,
        "SearchPage", (401, 403, 422, 503), "GET /v1/customers?q=li.na&page=1&page_size=20",
        query=read_side.SearchQuery,
    ),
    Operation(
        "post", "/v1/admin/rebuild-360", "rebuild360", "Rebuild the 360 view from every service's history", ADMIN,
        200, "RebuildReport", (400, 401, 403, 409, 422, 503), "POST /v1/admin/rebuild-360", idempotent=True,
        tag="admin",
    ),
)
