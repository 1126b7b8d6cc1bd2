"""Order domain events -> published integration events. The only place that translates.

Every Order event is public but `CustomerForgotten` (the customer's erasure was published by the
customer service): ERP and SCM follow the whole lifecycle from these. CustomerTerms events and merge
records are internal (order's copy of customer facts that the customer service already published).
"""

from __future__ import annotations

from crm_contracts import order as contracts
from crm_contracts.integration import IntegrationEvent, Translator, integration_event
from crm_order.domain import Order
from crm_runtime.rights import customer_changed

translator = Translator(origin="order")


@translator.translates(Order.Placed)
def order_placed(event: Order.Placed) -> IntegrationEvent:
    """Order.Placed as `order_placed`: lines, totals and the shipping address."""
    return integration_event(
        contracts.OrderPlacedV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "currency": event.currency,
            "lines": event.lines,
            "subtotal": event.subtotal,
            "discount_total": event.discount_total,
            "total": event.total,
            "shipping_address": event.shipping_address,
            "opportunity_id": event.opportunity_id,
            "quote_id": event.quote_id,
            "placed_at": event.at,
            # Orders placed before the credit check have neither attribute.
            "over_credit_limit": getattr(event, "over_credit_limit", False),
            "credit_limit": getattr(event, "credit_limit", None),
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.Confirmed)
def order_confirmed(event: Order.Confirmed) -> IntegrationEvent:
    """Order.Confirmed as `order_confirmed`: what SCM needs to pick and pack."""
    return integration_event(
        contracts.OrderConfirmedV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "reference": event.reference,
            "currency": event.currency,
            "lines": event.lines,
            "total": event.total,
            "shipping_address": event.shipping_address,
            "confirmed_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.Shipped)
def order_shipped(event: Order.Shipped) -> IntegrationEvent:
    """Order.Shipped as `order_shipped`: one shipment, its lines and where it goes."""
    return integration_event(
        contracts.OrderShippedV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "shipment_id": event.shipment_id,
            "carrier": event.carrier,
            "tracking_number": event.tracking_number,
            "lines": event.lines,
            "shipping_address": event.shipping_address,
            "fully_shipped": event.fully_shipped,
            "shipped_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.ShipmentDelivered)
def order_delivered(event: Order.ShipmentDelivered) -> IntegrationEvent:
    """Order.ShipmentDelivered as `order_delivered`: one shipment delivered, maybe the last."""
    return integration_event(
        contracts.OrderDeliveredV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "shipment_id": event.shipment_id,
            "carrier": event.carrier,
            "lines": event.lines,
            "fully_delivered": event.fully_delivered,
            "delivered_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.PaymentRecorded)
def order_payment_recorded(event: Order.PaymentRecorded) -> IntegrationEvent:
    """Order.PaymentRecorded as `order_payment_recorded`, with the running totals."""
    return integration_event(
        contracts.OrderPaymentRecordedV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "payment_id": event.payment_id,
            "amount": event.amount,
            "currency": event.currency,
            "method": event.method,
            "reference": event.reference,
            "paid_total": event.paid_total,
            "outstanding": event.outstanding,
            "received_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.Paid)
def order_paid(event: Order.Paid) -> IntegrationEvent:
    """Order.Paid as `order_paid`: the paid amount and currency loyalty earns on."""
    return integration_event(
        contracts.OrderPaidV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "amount": event.amount,
            "currency": event.currency,
            "paid_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.Cancelled)
def order_cancelled(event: Order.Cancelled) -> IntegrationEvent:
    """Order.Cancelled as `order_cancelled`, with what was paid and must go back."""
    return integration_event(
        contracts.OrderCancelledV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "reason": event.reason,
            "currency": event.currency,
            "lines": event.lines,
            "total": event.total,
            "amount_paid": event.amount_paid,
            "cancelled_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.ReturnRecorded)
def order_return_recorded(event: Order.ReturnRecorded) -> IntegrationEvent:
    """Order.ReturnRecorded as `order_return_recorded`, with the refund."""
    return integration_event(
        contracts.OrderReturnRecordedV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "return_id": event.return_id,
            "lines": event.lines,
            "refund": event.refund,
            "currency": event.currency,
            "reason": event.reason,
            "refunded_total": event.refunded_total,
            "returned_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.Refunded)
def order_refunded(event: Order.Refunded) -> IntegrationEvent:
    """Order.Refunded as `order_refunded`: what a cancellation after payment paid back."""
    return integration_event(
        contracts.OrderRefundedV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "amount": event.amount,
            "currency": event.currency,
            "reason": event.reason,
            "refunded_total": event.refunded_total,
            "refunded_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.ShippingAddressSet)
def order_shipping_address_set(event: Order.ShippingAddressSet) -> IntegrationEvent:
    """Order.ShippingAddressSet as `order_shipping_address_set`: where a placed order will go."""
    return integration_event(
        contracts.OrderShippingAddressSetV1,
        {
            "order_id": event.originator_id,
            "customer_id": event.customer_id,
            "shipping_address": event.shipping_address,
            "set_at": event.at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Order.CustomerRepointed, Order.CustomerRestored)
def order_customer_changed(event: Order.CustomerRepointed | Order.CustomerRestored) -> IntegrationEvent:
    """Order.CustomerRepointed (a merge) and CustomerRestored (an unmerge) as `order_customer_changed`: the
    order follows its customer."""
    return customer_changed(contracts.OrderCustomerChangedV1, "order_id", event, event.timestamp)
