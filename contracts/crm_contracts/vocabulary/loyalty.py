"""Loyalty vocabulary: the words the loyalty domain and its contracts share."""

#: The default tiers, lowest first (DOMAIN.md: tiers by spend). A programme may name its own.
TIERS = ("bronze", "silver", "gold", "platinum")

#: The three levels of retention strategy (DOMAIN.md, from 000): financial benefits (discounts,
#: points), social benefits (personal attention), structural bonds (raising switching cost).
BENEFIT_LEVELS = ("financial", "social", "structural")

#: The kinds of benefit a customer can be granted at each level.
BENEFIT_KINDS = {
    "financial": ("discount", "bonus_points", "voucher", "free_shipping", "price_protection"),
    "social": ("personal_advisor", "birthday_greeting", "member_event", "priority_service", "personal_call"),
    "structural": ("dedicated_account_manager", "system_integration", "extended_warranty", "custom_terms",
                   "early_access"),
}

#: Which way a tier changed.
TIER_DIRECTIONS = ("up", "down")

#: The command that re-evaluated the tier when it changed.
TIER_CHANGE_REASONS = ("earn", "redeem", "expire", "review")

#: Longest reward code accepted.
REWARD_CODE_MAX_LENGTH = 64
