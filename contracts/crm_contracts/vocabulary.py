"""Closed sets of values that are part of the public language. Pure constants: domains import them
too, so a value accepted at the edge is exactly a value the domain knows."""

SOURCE_CHANNELS = ("web", "email", "phone", "store", "event", "referral", "partner", "campaign", "import")
CONSENT_CHANNELS = ("email", "phone", "sms", "post")
#: Credit ratings, best first: "the basis for treating customers differently" (DOMAIN.md).
CREDIT_RATINGS = ("AAA", "AA", "A", "BBB", "BB", "B", "C", "D")
#: Customer grades, most valuable first (DOMAIN.md: key, ordinary and seed customers).
CUSTOMER_GRADES = ("key", "ordinary", "seed")
PROFILE_FIELDS = ("name", "email", "phone", "company")
