"""Sales vocabulary."""

# A won opportunity's accepted quote becomes an order, so quote lines obey the order's rules of money:
# the same ISO 4217 list, the same discount percentages, the same cents. Kept once, in order's module.
from crm_contracts.vocabulary.money import CURRENCIES, MAX_DISCOUNT_PERCENT, MONEY_PLACES

__all__ = [
    "CLOSED_STAGES",
    "CURRENCIES",
    "MAX_DISCOUNT_PERCENT",
    "MONEY_PLACES",
    "OPEN_STAGES",
    "QUOTE_LINE_FIELDS",
    "QUOTE_STAGES",
    "QUOTE_STATUSES",
    "STAGES",
    "STAGE_MOVES",
]

#: Stages an opportunity is worked through, in pipeline order (DOMAIN.md "opportunity management").
OPEN_STAGES = ("prospecting", "qualification", "proposal", "negotiation")
#: Where an opportunity ends; reached only by winning or losing it, never by a plain stage move.
CLOSED_STAGES = ("won", "lost")
STAGES = OPEN_STAGES + CLOSED_STAGES
#: Plain stage moves: forward one stage at a time, back to any earlier stage (a deal that cools).
STAGE_MOVES = {
    stage: OPEN_STAGES[:index] + OPEN_STAGES[index + 1 : index + 2] for index, stage in enumerate(OPEN_STAGES)
}
#: Stages in which a quote may be sent: a quote is the proposal.
QUOTE_STAGES = ("proposal", "negotiation")
#: A quote version is sent, then accepted or rejected; sending a newer version supersedes it.
QUOTE_STATUSES = ("sent", "accepted", "rejected", "superseded")
#: Fields of a quote line as a command gives it; `discount` is a percentage of the line's gross amount.
QUOTE_LINE_FIELDS = ("sku", "description", "quantity", "unit_price", "discount")
