"""Order vocabulary."""

#: Fulfilment status of an order, in lifecycle order; "cancelled" is reachable only before shipping.
#: It is derived from the per-line quantities, so it can never disagree with them.
ORDER_STATUSES = (
    "placed",
    "confirmed",
    "partially_shipped",
    "shipped",
    "partially_delivered",
    "delivered",
    "cancelled",
)
#: Payment status: the sum of recorded payments against the order total.
PAYMENT_STATUSES = ("unpaid", "partially_paid", "paid")
#: How a payment reported by ERP was made.
PAYMENT_METHODS = ("bank_transfer", "card", "cash", "cheque", "direct_debit", "wallet", "credit_note", "other")
#: Fields of a shipping address; the required ones must be non-blank.
ADDRESS_FIELDS = ("recipient", "line1", "line2", "city", "region", "postal_code", "country", "phone")
REQUIRED_ADDRESS_FIELDS = ("recipient", "line1", "city", "country")
