"""Customer vocabulary."""


SOURCE_CHANNELS = ("web", "email", "phone", "store", "event", "referral", "partner", "campaign", "import")
CONSENT_CHANNELS = ("email", "phone", "sms", "post")
#: Credit ratings, best first: "the basis for treating customers differently" (DOMAIN.md).
CREDIT_RATINGS = ("AAA", "AA", "A", "BBB", "BB", "B", "C", "D")
#: Customer grades, most valuable first (DOMAIN.md: key, ordinary and seed customers).
CUSTOMER_GRADES = ("key", "ordinary", "seed")
PROFILE_FIELDS = ("name", "email", "phone", "company")
#: Which of a customer's addresses: where invoices go, or where goods go (order ships to "shipping").
ADDRESS_KINDS = ("billing", "shipping")
