"""Loyalty domain events -> published integration events. The only place that translates."""

from __future__ import annotations

from typing import Any

from crm_contracts import loyalty as contracts
from crm_contracts.integration import IntegrationEvent, Translator, integration_event
from crm_loyalty.domain import Account

translator = Translator(origin="loyalty")


@translator.translates(Account.Enrolled)
def loyalty_account_enrolled(event: Account.Enrolled) -> IntegrationEvent:
    """An enrolment, as the 360 view and marketing see it."""
    return integration_event(
        contracts.LoyaltyAccountEnrolledV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "tier": event.tier,
            "currency": event.currency,
            "enrolled_at": event.enrolled_at,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Account.PointsEarned)
def points_earned(event: Account.PointsEarned) -> IntegrationEvent:
    """Points earned on one order, with the rate's tier and when they expire."""
    return integration_event(
        contracts.PointsEarnedV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "order_id": event.order_id,
            "amount": event.amount,
            "currency": event.currency,
            "points": event.points,
            "tier": event.tier,
            "points_per_unit": event.points_per_unit,
            "earned_at": event.earned_at,
            "expires_at": event.expires_at,
            "balance": event.balance,
            # Points earned before other currencies and debts existed have none of these.
            "programme_amount": getattr(event, "programme_amount", None),
            "exchange_rate": getattr(event, "exchange_rate", None),
            "debt_settled": getattr(event, "debt_settled", 0),
        },
        customer_id=event.customer_id,
    )


@translator.translates(Account.PointsRedeemed)
def points_redeemed(event: Account.PointsRedeemed) -> IntegrationEvent:
    """Points spent on a reward."""
    return integration_event(
        contracts.PointsRedeemedV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "redemption_id": event.redemption_id,
            "reward_code": event.reward_code,
            "points": event.points,
            "redeemed_at": event.redeemed_at,
            "balance": event.balance,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Account.PointsExpired)
def points_expired(event: Account.PointsExpired) -> IntegrationEvent:
    """Points that expired, with the lots (orders) they came from."""
    return integration_event(
        contracts.PointsExpiredV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "points": event.points,
            "lots": event.lots,
            "expired_at": event.expired_at,
            "balance": event.balance,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Account.PointsTakenBack)
def points_taken_back(event: Account.PointsTakenBack) -> IntegrationEvent:
    """Points a refund or return took back: from which lots, and what became a debt."""
    return integration_event(
        contracts.PointsTakenBackV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "order_id": event.order_id,
            "reversal_id": event.reversal_id,
            "refund": event.refund,
            "currency": event.currency,
            "points": event.points,
            "lots": event.lots,
            "owed": event.owed,
            "points_owed": event.points_owed,
            "taken_at": event.taken_at,
            "balance": event.balance,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Account.TierChanged)
def tier_changed(event: Account.TierChanged) -> IntegrationEvent:
    """A tier change up or down, with the rolling spend behind it."""
    return integration_event(
        contracts.TierChangedV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "from_tier": event.from_tier,
            "to_tier": event.to_tier,
            "direction": event.direction,
            "rolling_spend": event.rolling_spend,
            "currency": event.currency,
            "changed_at": event.changed_at,
            "reason": event.reason,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Account.BenefitGranted)
def retention_benefit_granted(event: Account.BenefitGranted) -> IntegrationEvent:
    """A retention benefit granted at one of the three levels."""
    return integration_event(
        contracts.RetentionBenefitGrantedV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "benefit_id": event.benefit_id,
            "level": event.level,
            "kind": event.kind,
            "description": event.description,
            "granted_at": event.granted_at,
            "reason": event.reason,
        },
        customer_id=event.customer_id,
    )



def _points_moved(event: Any, counterpart_id: Any, reason: str, direction: str, at: Any) -> IntegrationEvent:
    """A merge's or an unmerge's move of points, seen from the account of `event`."""
    return integration_event(
        contracts.LoyaltyPointsMovedV1,
        {
            "account_id": event.originator_id,
            "customer_id": event.customer_id,
            "counterpart_id": counterpart_id,
            "merge_id": event.merge_id,
            "reason": reason,
            "direction": direction,
            "points": sum(lot["remaining"] for lot in event.lots),
            "lots": [{key: lot[key] for key in ("order_id", "earned_at", "expires_at", "remaining")}
                     for lot in event.lots],
            "points_owed": event.points_owed,
            "moved_at": at,
            "balance": event.balance,
        },
        customer_id=event.customer_id,
    )


@translator.translates(Account.MergedInto)
def points_moved_out_by_merge(event: Account.MergedInto) -> IntegrationEvent:
    """The absorbed customer's account gave its points to the survivor's: `loyalty_points_moved`, out."""
    return _points_moved(event, event.survivor_id, "merge", "out", event.merged_at)


@translator.translates(Account.Absorbed)
def points_moved_in_by_merge(event: Account.Absorbed) -> IntegrationEvent:
    """The survivor's account took in the absorbed customer's points: `loyalty_points_moved`, in."""
    return _points_moved(event, event.merged_from, "merge", "in", event.merged_at)


@translator.translates(Account.GaveBack)
def points_moved_out_by_unmerge(event: Account.GaveBack) -> IntegrationEvent:
    """The survivor's account gave back what a merge had moved in: `loyalty_points_moved`, out."""
    return _points_moved(event, event.given_to, "unmerge", "out", event.unmerged_at)


@translator.translates(Account.Restored)
def points_moved_in_by_unmerge(event: Account.Restored) -> IntegrationEvent:
    """The unmerged customer's account took back what was left of its points: `loyalty_points_moved`, in."""
    return _points_moved(event, event.survivor_id, "unmerge", "in", event.unmerged_at)
