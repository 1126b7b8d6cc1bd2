"""The order service: orders from placement to payment, shipment, delivery and returns."""
