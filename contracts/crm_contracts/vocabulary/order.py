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
#: Line discounts are percentages of the line's gross amount.
MAX_DISCOUNT_PERCENT = 100
#: Amounts travel as money() fields with two decimal places (crm_contracts.fields), so the domain
#: refuses finer amounts rather than let the wire round them silently.
MONEY_PLACES = 2
#: Active ISO 4217 currency codes (funds, precious metals and testing codes left out).
CURRENCIES = (
    "AED", "AFN", "ALL", "AMD", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT", "BGN", "BHD", "BIF",
    "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD", "CDF", "CHF", "CLP", "CNY", "COP",
    "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD",
    "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK",
    "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP",
    "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP",
    "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY", "TTD",
    "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF",
    "XPF", "YER", "ZAR", "ZMW", "ZWG",
)
