"""Contracts of the loyalty service: its published events and its request/response payloads."""

from __future__ import annotations

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from crm_contracts.catalog import catalog
from crm_contracts.fields import EventPayload, Request, Text, integer, money
from crm_contracts.vocabulary.loyalty import (
    BENEFIT_KINDS,
    BENEFIT_LEVELS,
    REWARD_CODE_MAX_LENGTH,
    TIER_CHANGE_REASONS,
    TIER_DIRECTIONS,
)

ORIGIN = "loyalty"
_ACCOUNT = "9a4e1c6b-2f3d-5b7a-8c1e-4d6f0a2b3c5d"
_CUSTOMER = "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"
_ORDER = "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f"

CURRENCY = validate.Length(equal=3)
POINTS = validate.Range(min=0)


# --- published events ---------------------------------------------------------------------------

@catalog.event(
    "loyalty_account_enrolled", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER, "tier": "bronze", "currency": "CNY",
            "enrolled_at": "2026-11-20T09:30:00+00:00"},
)
class LoyaltyAccountEnrolledV1(EventPayload):
    """The customer joined the loyalty programme (one account per customer) in its entry tier."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    tier = fields.String(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    enrolled_at = fields.AwareDateTime(required=True)


@catalog.event(
    "points_earned", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER, "order_id": _ORDER, "amount": "12400.00",
            "currency": "CNY", "points": 15500, "tier": "silver", "points_per_unit": "1.25",
            "earned_at": "2026-11-25T16:45:00+00:00", "expires_at": "2027-11-25T16:45:00+00:00",
            "balance": 28100},
)
class PointsEarnedV1(EventPayload):
    """Points were earned on a paid order at the tier's rate (once per order); they expire at `expires_at`.

    An order in another currency than the programme's earns on `programme_amount`, its amount converted at
    `exchange_rate` (programme currency units per unit of `currency`). `debt_settled` of the points went to
    settle points owed from an earlier refund; `balance` is after that."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    order_id = fields.UUID(required=True)
    amount = money(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    points = fields.Integer(required=True, validate=POINTS)
    tier = fields.String(required=True, metadata={"description": "the tier whose rate applied"})
    points_per_unit = fields.Decimal(required=True, as_string=True)
    earned_at = fields.AwareDateTime(required=True)
    expires_at = fields.AwareDateTime(required=True)
    balance = fields.Integer(required=True, validate=POINTS, metadata={"description": "points held afterwards"})
    programme_amount = money(allow_none=True, load_default=None,
                             metadata={"description": "the amount in the programme currency; null: `amount`"})
    exchange_rate = fields.Decimal(as_string=True, allow_none=True, load_default=None)
    debt_settled = fields.Integer(load_default=0, validate=POINTS)


@catalog.event(
    "points_redeemed", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER,
            "redemption_id": "0e8d7c6b-5a49-4382-9170-6f5e4d3c2b1a", "reward_code": "VOUCHER-100",
            "points": 10000, "redeemed_at": "2026-12-01T10:00:00+00:00", "balance": 18100},
)
class PointsRedeemedV1(EventPayload):
    """Points were spent on a reward, oldest points first; the balance never goes below zero."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    redemption_id = fields.UUID(required=True)
    reward_code = fields.String(required=True)
    points = fields.Integer(required=True, validate=validate.Range(min=1))
    redeemed_at = fields.AwareDateTime(required=True)
    balance = fields.Integer(required=True, validate=POINTS, metadata={"description": "points held afterwards"})


class ExpiredLotV1(EventPayload):
    """The points of one earning (one order) that expired."""

    order_id = fields.UUID(required=True)
    earned_at = fields.AwareDateTime(required=True)
    points = fields.Integer(required=True, validate=validate.Range(min=1))


@catalog.event(
    "points_expired", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER, "points": 2600,
            "lots": [{"order_id": _ORDER, "earned_at": "2025-11-25T16:45:00+00:00", "points": 2600}],
            "expired_at": "2026-11-26T00:00:00+00:00", "balance": 15500},
)
class PointsExpiredV1(EventPayload):
    """Points reached the end of their validity and expired, oldest first; `lots` says which earnings."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    points = fields.Integer(required=True, validate=validate.Range(min=1))
    lots = fields.List(fields.Nested(ExpiredLotV1), required=True)
    expired_at = fields.AwareDateTime(required=True)
    balance = fields.Integer(required=True, validate=POINTS, metadata={"description": "points held afterwards"})


class TakenLotV1(EventPayload):
    """The points taken back from one earning (one order's lot)."""

    order_id = fields.UUID(required=True)
    earned_at = fields.AwareDateTime(required=True)
    points = fields.Integer(required=True, validate=validate.Range(min=1))


@catalog.event(
    "points_taken_back", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER, "order_id": _ORDER, "reversal_id": "return:RMA-0031",
            "refund": "1080.00", "currency": "CNY", "points": 1350,
            "lots": [{"order_id": _ORDER, "earned_at": "2026-11-25T16:45:00+00:00", "points": 1000}],
            "owed": 350, "points_owed": 350, "taken_at": "2026-12-01T09:00:00+00:00", "balance": 0},
)
class PointsTakenBackV1(EventPayload):
    """A refund (a cancellation after payment, or a return) took back the points its share of the order
    earned, once per refund: `points` in all, of which the available ones came out of `lots` (the order's
    own first, then the oldest) and `owed` had already been spent and became a debt, settled from future
    earnings (`points_owed` is the whole debt after). `balance` never goes below zero."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    order_id = fields.UUID(required=True)
    reversal_id = fields.String(required=True,
                                metadata={"description": "\"cancellation\" or \"return:<return id>\""})
    refund = money(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    points = fields.Integer(required=True, validate=POINTS)
    lots = fields.List(fields.Nested(TakenLotV1), required=True)
    owed = fields.Integer(required=True, validate=POINTS)
    points_owed = fields.Integer(required=True, validate=POINTS)
    taken_at = fields.AwareDateTime(required=True)
    balance = fields.Integer(required=True, validate=POINTS, metadata={"description": "points held afterwards"})


class MovedLotV1(EventPayload):
    """One points lot moved between accounts, with what is left of it."""

    order_id = fields.UUID(required=True)
    earned_at = fields.AwareDateTime(required=True)
    expires_at = fields.AwareDateTime(required=True)
    remaining = fields.Integer(required=True, validate=POINTS)


@catalog.event(
    "loyalty_points_moved", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER,
            "counterpart_id": "9d8e7f6a-5b4c-4d3e-8f2a-1b0c9d8e7f6a", "merge_id": "merge-2026-0007",
            "reason": "merge", "direction": "out", "points": 1200,
            "lots": [{"order_id": _ORDER, "earned_at": "2026-11-25T16:45:00+00:00",
                      "expires_at": "2027-11-25T16:45:00+00:00", "remaining": 1200}],
            "points_owed": 0, "moved_at": "2026-12-01T09:00:00+00:00", "balance": 0},
)
class LoyaltyPointsMovedV1(EventPayload):
    """Points moved between two customers' accounts because the customer service merged or unmerged
    them (customer_merged / customer_unmerged, `merge_id`). Published on both accounts: on a merge,
    "out" on the absorbed customer's account (closed as merged from then on) and "in" on the survivor's;
    on an unmerge, "out" on the survivor's and "in" on the customer given back its own. `counterpart_id`
    is the other customer; `lots` the lots moved, with what is left of each (`points` in all); `balance`
    and `points_owed` are this account's afterwards (spend history and order earnings move with the
    lots; the tier follows in a tier_changed)."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    counterpart_id = fields.UUID(required=True)
    merge_id = fields.String(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(("merge", "unmerge")))
    direction = fields.String(required=True, validate=validate.OneOf(("in", "out")))
    points = fields.Integer(required=True, validate=POINTS)
    lots = fields.List(fields.Nested(MovedLotV1), required=True)
    points_owed = fields.Integer(required=True, validate=POINTS)
    moved_at = fields.AwareDateTime(required=True)
    balance = fields.Integer(required=True, validate=POINTS, metadata={"description": "points held afterwards"})


@catalog.event(
    "tier_changed", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER, "from_tier": "bronze", "to_tier": "silver",
            "direction": "up", "rolling_spend": "12400.00", "currency": "CNY",
            "changed_at": "2026-11-25T16:45:00+00:00", "reason": "earn"},
)
class TierChangedV1(EventPayload):
    """The tier moved up or down with the rolling 12-month spend; `reason` is the command that noticed."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    from_tier = fields.String(required=True)
    to_tier = fields.String(required=True)
    direction = fields.String(required=True, validate=validate.OneOf(TIER_DIRECTIONS))
    rolling_spend = money(required=True)
    currency = fields.String(required=True, validate=CURRENCY)
    changed_at = fields.AwareDateTime(required=True)
    reason = fields.String(required=True, validate=validate.OneOf(TIER_CHANGE_REASONS))


@catalog.event(
    "retention_benefit_granted", 1, origin=ORIGIN,
    sample={"account_id": _ACCOUNT, "customer_id": _CUSTOMER,
            "benefit_id": "5b4a3928-1706-4f5e-8d4c-3b2a19080706", "level": "financial", "kind": "discount",
            "description": "5% off every order", "granted_at": "2026-11-25T16:45:00+00:00",
            "reason": "reached silver tier"},
)
class RetentionBenefitGrantedV1(EventPayload):
    """A retention benefit was granted: financial (discounts, points), social (personal attention) or
    structural (bonds that raise switching cost)."""

    account_id = fields.UUID(required=True)
    customer_id = fields.UUID(required=True)
    benefit_id = fields.UUID(required=True)
    level = fields.String(required=True, validate=validate.OneOf(BENEFIT_LEVELS))
    kind = fields.String(required=True)
    description = fields.String(required=True)
    granted_at = fields.AwareDateTime(required=True)
    reason = fields.String(allow_none=True, load_default=None)


# --- requests and responses ---------------------------------------------------------------------

class EnrolRequest(Request):
    """Enrol a customer in the loyalty programme. Example: {"customer_id": "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e"}"""

    customer_id = fields.UUID(required=True)
    at = fields.AwareDateTime(load_default=None, allow_none=True)


class EarnPointsRequest(Request):
    """Earn points on a paid order (idempotent per order).
    Example: {"order_id": "7c1d2e3f-4a5b-4c6d-8e9f-0a1b2c3d4e5f", "amount": "12400.00", "currency": "CNY",
    "paid_at": "2026-11-25T16:45:00+00:00"}"""

    order_id = fields.UUID(required=True)
    amount = money(required=True, validate=validate.Range(min=0))
    currency = Text(required=True, validate=CURRENCY)
    paid_at = fields.AwareDateTime(required=True)


class RedeemPointsRequest(Request):
    """Redeem points for a reward. Example: {"reward_code": "VOUCHER-100", "points": 10000}"""

    reward_code = Text(required=True, validate=validate.Length(min=1, max=REWARD_CODE_MAX_LENGTH))
    points = integer(required=True, validate=validate.Range(min=1))


class ExpirePointsRequest(Request):
    """Expire the points due at `now` (default: the time of the request) and review the tier. Example: {}"""

    now = fields.AwareDateTime(load_default=None, allow_none=True)


class ReviewTierRequest(Request):
    """Re-evaluate the tier from the rolling spend at `now` (default: the time of the request). Example: {}"""

    now = fields.AwareDateTime(load_default=None, allow_none=True)


class GrantBenefitRequest(Request):
    """Grant a retention benefit.
    Example: {"level": "social", "kind": "personal_call", "description": "call after the complaint was closed"}"""

    level = Text(required=True, validate=validate.OneOf(BENEFIT_LEVELS))
    kind = Text(required=True)
    description = Text(multiline=True, required=True, validate=validate.Length(min=1, max=500))
    reason = Text(allow_none=True, load_default=None, validate=validate.Length(max=500))

    @validates_schema
    def kind_of_level(self, data: dict, **kwargs: object) -> None:
        level, kind = data.get("level"), data.get("kind")
        if level in BENEFIT_KINDS and kind not in BENEFIT_KINDS[level]:
            raise ValidationError(f"must be one of {', '.join(BENEFIT_KINDS[level])} for {level}", "kind")


class PointsLotSchema(Schema):
    """Points earned on one order, and what is left of them."""

    order_id = fields.UUID()
    earned_at = fields.AwareDateTime()
    expires_at = fields.AwareDateTime()
    points = fields.Integer()
    remaining = fields.Integer()
    redeemed = fields.Integer()
    expired = fields.Integer()
    taken_back = fields.Integer(metadata={"description": "taken back by refunds, or settling a debt"})


class BenefitSchema(Schema):
    """A retention benefit granted to the customer."""

    benefit_id = fields.UUID()
    level = fields.String(validate=validate.OneOf(BENEFIT_LEVELS))
    kind = fields.String()
    description = fields.String()
    granted_at = fields.AwareDateTime()
    reason = fields.String(allow_none=True)


class LoyaltyAccountSchema(Schema):
    """A customer's loyalty account as the loyalty service holds it."""

    id = fields.UUID()
    version = fields.Integer(metadata={"description": "the concurrency token; the gateway's ETag"})
    customer_id = fields.UUID()
    tier = fields.String()
    currency = fields.String()
    balance = fields.Integer()
    points_earned = fields.Integer()
    points_redeemed = fields.Integer()
    points_expired = fields.Integer()
    points_taken_back = fields.Integer(metadata={"description": "taken back by refunds and returns"})
    points_owed = fields.Integer(metadata={"description": "taken back after they were spent: settled from "
                                                         "the next points earned"})
    lots = fields.List(fields.Nested(PointsLotSchema))
    benefits = fields.List(fields.Nested(BenefitSchema))
    enrolled_at = fields.AwareDateTime()
    modified_at = fields.AwareDateTime()


class RedemptionSchema(Schema):
    """Points spent on a reward."""

    redemption_id = fields.UUID()
    reward_code = fields.String()
    points = fields.Integer()
    redeemed_at = fields.AwareDateTime()


class RedemptionAnswerSchema(Schema):
    """The answer to a redemption: what was redeemed (for a repeated command, what its first delivery
    redeemed) and the account as it is now."""

    redemption = fields.Nested(RedemptionSchema)
    account = fields.Nested(LoyaltyAccountSchema)


class BenefitGrantAnswerSchema(Schema):
    """The answer to a benefit grant: the benefit (for a repeated command, the one its first delivery
    granted) and the account as it is now."""

    benefit = fields.Nested(BenefitSchema)
    account = fields.Nested(LoyaltyAccountSchema)
