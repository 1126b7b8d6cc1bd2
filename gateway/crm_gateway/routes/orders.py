"""Orders (order service): place, read ("where is my order"), list, per customer; shipping address,
confirm, shipments, deliveries, payments, cancel, returns.

If-Match: confirming, cancelling and setting the shipping address are REQUIRED (a person decides on the
order they saw). Shipments, deliveries, payments and returns carry their own external ids (a resend of
the same id is harmless) and only add, so If-Match is accepted but optional.

Facts coming back from ERP and SCM (confirmations, shipments, deliveries, payments, returns) need only the
scope `crm:facts` (a subscriber's token from `crm-subscribers add --facts`; `crm:write` holds it too). Each
carries the ERP's own id (`reference`, `shipment_id`, `payment_id`, `return_id`): resent, it changes nothing.
An ERP confirms with `If-Match: *` (it confirms whatever version the order is at).
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from werkzeug.wrappers import Request, Response

from crm_contracts import order as contracts
from crm_gateway.auth import FACTS, READ, WRITE
from crm_gateway.operation import OPTIONAL, REQUIRED, Operation, command, create, listing, read
from crm_gateway.routes.common import Routes, list_call, read_response, resource_response
from crm_gateway.schemas import CustomerOrdersSchema, OrderQuery, page_of
from crm_gateway.web import endpoint, json_response, load_body, load_query, uuid_path
from crm_runtime.nameko.web import http


def created(order: dict[str, Any]) -> Response:
    return resource_response(order, 201, f"/v1/orders/{order['order_id']}")


class OrderRoutes(Routes):
    """/v1/orders and /v1/customers/{id}/orders."""

    @http("POST", "/v1/orders")
    @endpoint(WRITE)
    def place_order(self, request: Request) -> Response:
        payload = load_body(request, contracts.PlaceOrderRequest)
        return self.once(request, payload, lambda command_id: self.order.place(payload, command_id), created)

    @http("GET", "/v1/orders/<order_id>")
    @endpoint(READ)
    def get_order(self, request: Request, order_id: str) -> Response:
        return read_response(request, self.order.get(uuid_path(order_id, "order")))

    @http("GET", "/v1/orders")
    @endpoint(READ)
    def list_orders(self, request: Request) -> Response:
        return json_response(200, self.order.list_orders(*list_call(load_query(request, OrderQuery))))

    @http("GET", "/v1/customers/<customer_id>/orders")
    @endpoint(READ)
    def orders_of_customer(self, request: Request, customer_id: str) -> Response:
        customer_id = uuid_path(customer_id)
        return json_response(200, {"customer_id": customer_id, "orders": self.order.orders_of_customer(customer_id)})

    @http("PUT", "/v1/orders/<order_id>/shipping-address")
    @endpoint(WRITE)
    def set_shipping_address(self, request: Request, order_id: str) -> Response:
        return self.act(request, order_id, "order", self.order.set_shipping_address,
                        contracts.SetShippingAddressRequest, if_match=True)

    @http("POST", "/v1/orders/<order_id>/confirm")
    @endpoint(FACTS)
    def confirm_order(self, request: Request, order_id: str) -> Response:
        return self.act(request, order_id, "order", self.order.confirm, contracts.ConfirmOrderRequest, if_match=True)

    @http("POST", "/v1/orders/<order_id>/shipments")
    @endpoint(FACTS)
    def ship_order(self, request: Request, order_id: str) -> Response:
        return self.act(request, order_id, "order", self.order.ship, contracts.ShipOrderRequest, if_match=False)

    @http("POST", "/v1/orders/<order_id>/deliveries")
    @endpoint(FACTS)
    def record_delivery(self, request: Request, order_id: str) -> Response:
        return self.act(request, order_id, "order", self.order.record_delivery, contracts.RecordDeliveryRequest,
                        if_match=False)

    @http("POST", "/v1/orders/<order_id>/payments")
    @endpoint(FACTS)
    def record_payment(self, request: Request, order_id: str) -> Response:
        return self.act(request, order_id, "order", self.order.record_payment, contracts.RecordPaymentRequest,
                        if_match=False)

    @http("POST", "/v1/orders/<order_id>/cancel")
    @endpoint(WRITE)
    def cancel_order(self, request: Request, order_id: str) -> Response:
        return self.act(request, order_id, "order", self.order.cancel, contracts.CancelOrderRequest, if_match=True)

    @http("POST", "/v1/orders/<order_id>/returns")
    @endpoint(FACTS)
    def record_return(self, request: Request, order_id: str) -> Response:
        return self.act(request, order_id, "order", self.order.record_return, contracts.RecordReturnRequest,
                        if_match=False)


SCHEMAS = {
    "Order": contracts.OrderProgressSchema,
    "OrderPage": page_of(contracts.OrderProgressSchema, "OrderPage"),
    "CustomerOrders": CustomerOrdersSchema,
    "PlaceOrderRequest": contracts.PlaceOrderRequest,
    "SetShippingAddressRequest": contracts.SetShippingAddressRequest,
    "ConfirmOrderRequest": contracts.ConfirmOrderRequest,
    "ShipOrderRequest": contracts.ShipOrderRequest,
    "RecordDeliveryRequest": contracts.RecordDeliveryRequest,
    "RecordPaymentRequest": contracts.RecordPaymentRequest,
    "CancelOrderRequest": contracts.CancelOrderRequest,
    "RecordReturnRequest": contracts.RecordReturnRequest,
}

_TAG = "orders"


def fact(operation: Operation) -> Operation:
    """An operation that ERP and SCM call with the narrow scope crm:facts (crm:write holds it too)."""
    return replace(operation, scope=FACTS, summary=operation.summary + " (ERP/SCM: scope crm:facts)")

_ITEM = "/v1/orders/{order_id}"

OPERATIONS = (
    create("/v1/orders", "placeOrder",
           "Place an order (without `shipping_address` it takes the customer's default shipping address, if known)",
           _TAG, "Order", contracts.PlaceOrderRequest),
    read(_ITEM, "getOrder", "Where is my order: status, per-line quantities, shipments with carrier, money", _TAG,
         "Order"),
    listing("/v1/orders", "listOrders", "List orders, a page at a time, by status or customer", _TAG, "OrderPage",
            OrderQuery, "?status=shipped&page=1&page_size=20"),
    read("/v1/customers/{customer_id}/orders", "getOrdersOfCustomer",
         "Where are my orders: every order of one customer, oldest first", _TAG, "CustomerOrders", etag=False),
    command("put", f"{_ITEM}/shipping-address", "setOrderShippingAddress",
            "Set the shipping address of a placed, unconfirmed order", _TAG, "Order",
            contracts.SetShippingAddressRequest, REQUIRED),
    fact(command("post", f"{_ITEM}/confirm", "confirmOrder", "Confirm an order (it needs a shipping address)", _TAG,
                 "Order", contracts.ConfirmOrderRequest, REQUIRED)),
    fact(command("post", f"{_ITEM}/shipments", "shipOrder", "Record a shipment (its `shipment_id` makes a resend "
                 "harmless)", _TAG, "Order", contracts.ShipOrderRequest, OPTIONAL)),
    fact(command("post", f"{_ITEM}/deliveries", "recordOrderDelivery", "Record that a shipment was delivered", _TAG,
                 "Order", contracts.RecordDeliveryRequest, OPTIONAL)),
    fact(command("post", f"{_ITEM}/payments", "recordOrderPayment", "Record a payment (its `payment_id` makes a resend "
                 "harmless)", _TAG, "Order", contracts.RecordPaymentRequest, OPTIONAL)),
    command("post", f"{_ITEM}/cancel", "cancelOrder", "Cancel an order before it ships (a paid one is refunded)",
            _TAG, "Order", contracts.CancelOrderRequest, REQUIRED),
    fact(command("post", f"{_ITEM}/returns", "recordOrderReturn", "Record a return with its refund (its `return_id` "
                 "makes a resend harmless)", _TAG, "Order", contracts.RecordReturnRequest, OPTIONAL)),
)
