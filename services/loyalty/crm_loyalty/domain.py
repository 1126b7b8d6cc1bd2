"""Loyalty accounts as event-sourced aggregates: points, tiers and retention benefits. Pure Python.

Decisions a reader needs:
- Orders in any currency earn. The Programme holds an exchange table (`exchange_rates`: units of the
  programme currency per unit of another, configurable, DEFAULT_EXCHANGE_RATES by default): a paid
  amount is converted to the programme currency, rounded half-up to cents, and earns and counts
  towards the tier in that currency. A currency without a rate is refused (the event is parked
  where an operator sees it, adds the rate and replays it), never earned at a made-up rate.
- A refund or a return takes back the points earned on that order in proportion to the money
  refunded: floor(points x refunded so far / amount paid), so refunding the whole order takes back
  every point and partial refunds never take more than their share. What is still available is
  removed at once, the order's own points first, then the oldest; what was already redeemed (or
  expired) becomes a debt (`points_owed`), settled from the next points earned before they count.
  The balance shown never goes below zero. The refunded amount also leaves the rolling spend; the
  tier follows at the next earn, redemption, expiry or review.
- Each refund or return takes points back once: it is identified within its order (`reversal_id`:
  "cancellation", or "return:<return id>"), and the same one again changes nothing.
- Merge (the customer service folded a duplicate customer into a survivor): the absorbed account's
  lots that still hold points, its spend history (which the tier counts), its orders' earnings (so a
  later refund of one of its orders takes back from the survivor, and a redelivered payment does not
  earn twice) and its debt move to the survivor's account, each entry tagged with the merge's id; the
  absorbed account is closed as merged (its commands answer `moved`, naming the survivor) and the
  survivor's tier is reviewed (reaching a tier grants its benefits). Counters (points earned, redeemed,
  ...) stay each account's own history; benefits stay where they were granted.
- Unmerge: every entry tagged with that merge goes back, as it is now: a lot gives back what is left
  of it (points the survivor redeemed from it, or that expired or were taken back while merged, stay
  gone, and the redemption stays the survivor's); what the survivor earned after the merge stays with
  it; a debt gives back what the survivor has not settled yet. Both tiers are reviewed.
"""

from __future__ import annotations

import bisect
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

from eventsourcing.domain import Aggregate, event

from crm_contracts.errors import ConflictError, InvalidRequestError, NotFoundError, RuleViolationError
from crm_contracts.vocabulary.loyalty import BENEFIT_KINDS, BENEFIT_LEVELS, REWARD_CODE_MAX_LENGTH

ACCOUNT_NAMESPACE = uuid.UUID("6b0f7d2e-3c1a-4e8b-9a55-1f4c7e2d9b30")
#: Redemptions and benefits get ids derived from the command that made them, one namespace each, so
#: a redelivered command finds its first run's entry instead of redeeming or granting twice.
REDEMPTION_FROM_COMMAND_NAMESPACE = uuid.UUID("f0a3c6d9-5e2b-4c71-8d94-2b6e1a7f3c05")
BENEFIT_FROM_COMMAND_NAMESPACE = uuid.UUID("1c9e4b27-a6d3-4f80-b5e2-9d7a3f0c6e18")
ZERO = Decimal("0.00")
CENT = Decimal("0.01")


# --- errors ----------------------------------------------------------------------------------------

class AccountNotFoundError(NotFoundError):
    """The customer has no loyalty account."""


class AlreadyEnrolledError(ConflictError):
    """The customer is already enrolled: one account per customer."""

    def __init__(self, customer_id: uuid.UUID) -> None:
        super().__init__(f"customer {customer_id} is already enrolled", customer_id=str(customer_id))


class OrderAlreadyEarnedError(ConflictError):
    """Points were already earned on this order, for a different amount."""

    def __init__(self, order_id: uuid.UUID, earned_amount: Decimal, amount: Decimal) -> None:
        super().__init__(
            f"order {order_id} already earned points on {earned_amount}, not {amount}",
            order_id=str(order_id),
            earned_amount=str(earned_amount),
        )


class DuplicateEntryError(ConflictError):
    """A redemption or benefit id reused for different facts."""

    def __init__(self, kind: str, entry_id: uuid.UUID) -> None:
        super().__init__(
            f"{kind} {entry_id} was already recorded with other details",
            **{f"{kind}_id": str(entry_id)},
        )


class InsufficientPointsError(RuleViolationError):
    """A redemption asked for more points than the account has available."""

    def __init__(self, available: int, requested: int) -> None:
        super().__init__(
            f"only {available} points available, {requested} requested",
            available_points=available,
            requested_points=requested,
        )


class InvalidLoyaltyDataError(InvalidRequestError):
    """A command argument breaks a rule; names the field and the reason."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}", fields={field_name: [reason]})


class ProgrammeConfigurationError(ValueError):
    """The loyalty programme's configuration is inconsistent (a deployment error, not a request error)."""


# --- the programme -------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tier:
    """One tier: the rolling spend from which it applies and how many points each currency unit earns."""

    name: str
    threshold: Decimal
    points_per_unit: Decimal


@dataclass(frozen=True)
class TierBenefit:
    """A retention benefit granted when an account reaches a tier."""

    tier: str
    level: str
    kind: str
    description: str


#: Units of CNY per unit of each currency: indicative rates for a deployment to replace with its own
#: (Programme.exchange_rates; the loyalty service reads LOYALTY_EXCHANGE_RATES, e.g. "USD=7.10,EUR=7.70").
DEFAULT_EXCHANGE_RATES: dict[str, Decimal] = {
    "CNY": Decimal("1"),
    "USD": Decimal("7.10"),
    "EUR": Decimal("7.70"),
    "GBP": Decimal("9.00"),
    "HKD": Decimal("0.91"),
    "SGD": Decimal("5.30"),
    "AUD": Decimal("4.70"),
    "CAD": Decimal("5.20"),
    "CHF": Decimal("8.10"),
    "JPY": Decimal("0.048"),
}

DEFAULT_TIERS = (
    Tier("bronze", Decimal("0"), Decimal("1")),
    Tier("silver", Decimal("10000"), Decimal("1.25")),
    Tier("gold", Decimal("50000"), Decimal("1.5")),
    Tier("platinum", Decimal("200000"), Decimal("2")),
)

# One benefit per retention level, rising with the tier: money first, then attention, then bonds.
DEFAULT_TIER_BENEFITS = (
    TierBenefit("silver", "financial", "discount", "5% off every order"),
    TierBenefit("gold", "social", "personal_advisor", "a named advisor who calls each quarter"),
    TierBenefit("platinum", "structural", "dedicated_account_manager", "a dedicated account manager"),
)


@dataclass(frozen=True)
class Programme:
    """The loyalty programme's rules: currency, tiers by rolling spend, earning rates, expiry, benefits."""

    currency: str = "CNY"
    tiers: tuple[Tier, ...] = DEFAULT_TIERS
    spend_window: timedelta = timedelta(days=365)
    points_valid_for: timedelta = timedelta(days=365)
    tier_benefits: tuple[TierBenefit, ...] = DEFAULT_TIER_BENEFITS
    exchange_rates: Mapping[str, Decimal] = field(default_factory=lambda: dict(DEFAULT_EXCHANGE_RATES), hash=False)
    _by_name: dict[str, Tier] = field(init=False, repr=False, compare=False, hash=False)

    def __post_init__(self) -> None:
        if not self.tiers or self.tiers[0].threshold != 0:
            raise ProgrammeConfigurationError("the lowest tier must start at a spend of 0")
        thresholds = [tier.threshold for tier in self.tiers]
        if thresholds != sorted(set(thresholds)):
            raise ProgrammeConfigurationError("tier thresholds must rise strictly, lowest tier first")
        names = [tier.name for tier in self.tiers]
        if len(set(names)) != len(names):
            raise ProgrammeConfigurationError("tier names must be unique")
        if any(tier.points_per_unit < 0 for tier in self.tiers):
            raise ProgrammeConfigurationError("points per currency unit must not be negative")
        if self.spend_window <= timedelta(0) or self.points_valid_for <= timedelta(0):
            raise ProgrammeConfigurationError("the spend window and the points' validity must be positive")
        for benefit in self.tier_benefits:
            if benefit.tier not in names:
                raise ProgrammeConfigurationError(f"benefit for unknown tier {benefit.tier}")
            try:
                check_benefit(benefit.level, benefit.kind, benefit.description)
            except InvalidLoyaltyDataError as error:
                raise ProgrammeConfigurationError(f"benefit for {benefit.tier}: {error}") from None
        if any(not isinstance(rate, Decimal) or not rate.is_finite() or rate <= 0
               for rate in self.exchange_rates.values()):
            raise ProgrammeConfigurationError("exchange rates must be positive Decimals")
        if self.exchange_rates.get(self.currency, Decimal(1)) != 1:
            raise ProgrammeConfigurationError(f"the rate of the programme currency {self.currency} must be 1")
        object.__setattr__(self, "_by_name", {tier.name: tier for tier in self.tiers})

    @property
    def entry_tier(self) -> Tier:
        """The tier every account starts in."""
        return self.tiers[0]

    def tier(self, name: str) -> Tier:
        """The tier called `name`."""
        return self._by_name[name]

    def rank(self, name: str) -> int:
        """Position of a tier, lowest 0, so tiers compare; -1 for a tier this programme no longer has."""
        tier = self._by_name.get(name)
        return self.tiers.index(tier) if tier is not None else -1

    def tier_for(self, rolling_spend: Decimal) -> Tier:
        """The highest tier whose threshold the rolling spend reaches."""
        reached = [tier for tier in self.tiers if rolling_spend >= tier.threshold]
        return reached[-1]

    def points_for(self, amount: Decimal, tier: Tier) -> int:
        """Whole points earned on `amount` at `tier`'s rate; fractions of a point are dropped."""
        return int((amount * tier.points_per_unit).to_integral_value(rounding=ROUND_FLOOR))

    def rate_of(self, currency: str) -> Decimal:
        """Units of the programme currency one unit of `currency` is worth (1 for the programme's own)."""
        if currency == self.currency:
            return Decimal(1)
        rate = self.exchange_rates.get(currency)
        if rate is None:
            raise InvalidLoyaltyDataError(
                "currency", f"the programme has no exchange rate for {currency} into {self.currency}"
            )
        return rate

    def convert(self, amount: Decimal, currency: str) -> Decimal:
        """`amount` of `currency` in the programme currency, rounded half-up to cents."""
        return (amount * self.rate_of(currency)).quantize(CENT, rounding=ROUND_HALF_UP)

    def benefits_of(self, tier_name: str) -> tuple[TierBenefit, ...]:
        """The benefits granted on reaching `tier_name`."""
        return tuple(benefit for benefit in self.tier_benefits if benefit.tier == tier_name)


# --- the account ---------------------------------------------------------------------------------

class Account(Aggregate):
    """One customer's loyalty account: points held in lots by earning date, tier, benefits granted."""

    @staticmethod
    def id_for(customer_id: uuid.UUID) -> uuid.UUID:
        """The account id of a customer: derived, so a second enrolment collides in the event store."""
        return uuid.uuid5(ACCOUNT_NAMESPACE, str(customer_id))

    @classmethod
    def create_id(cls, customer_id: uuid.UUID) -> uuid.UUID:
        """eventsourcing's hook for a new aggregate's id: the customer's derived account id."""
        return cls.id_for(customer_id)

    @event("Enrolled")
    def __init__(self, customer_id: uuid.UUID, currency: str, tier: str, enrolled_at: datetime) -> None:
        self.customer_id = customer_id
        self.currency = currency
        self.tier = tier
        self.enrolled_at = enrolled_at
        # Lots of points, oldest first: each remembers when it was earned and when it expires.
        self.lots: list[dict[str, Any]] = []
        self.spends: list[dict[str, Any]] = []
        self.earned_orders: dict[uuid.UUID, Decimal] = {}
        # Per order that earned: what was paid and earned, and what refunds took back since.
        self.earnings: dict[uuid.UUID, dict[str, Any]] = {}
        self.redemptions: list[dict[str, Any]] = []
        self.benefits: list[dict[str, Any]] = []
        self.points_earned = 0
        self.points_redeemed = 0
        self.points_expired = 0
        self.points_taken_back = 0
        #: Points taken back that had already been spent: settled from the next points earned.
        self.points_owed = 0
        #: {"survivor_id", "merge_id"} while this customer is merged into another (the account is closed).
        self.merged_into: dict[str, Any] | None = None
        #: The merges that moved another account's entries in, by merge id: {"merged_from", "owed"}.
        self.absorbed: dict[str, dict[str, Any]] = {}

    @classmethod
    def enrol(cls, customer_id: uuid.UUID, programme: Programme, at: datetime) -> Account:
        """Open the account of a customer in the programme's entry tier."""
        check_aware("enrolled_at", at)
        return cls(customer_id=customer_id, currency=programme.currency, tier=programme.entry_tier.name,
                   enrolled_at=at)

    # --- queries ---

    @property
    def balance(self) -> int:
        """Points held, including any due to expire that no command has expired yet."""
        return sum(lot["remaining"] for lot in self.lots)

    def available(self, now: datetime) -> int:
        """Points that can be redeemed at `now`: those not yet due to expire."""
        return sum(lot["remaining"] for lot in self.lots if lot["expires_at"] > now)

    def rolling_spend(self, now: datetime, window: timedelta) -> Decimal:
        """Paid order amounts in the window ending at `now`."""
        start = now - window
        return sum((s["amount"] for s in self.spends if start < s["paid_at"] <= now), ZERO)

    def redemption(self, redemption_id: uuid.UUID | None) -> dict[str, Any] | None:
        """The redemption with this id, if the account has it."""
        return next((r for r in self.redemptions if r["redemption_id"] == redemption_id), None)

    def benefit(self, benefit_id: uuid.UUID | None) -> dict[str, Any] | None:
        """The benefit with this id, if it was granted."""
        return next((b for b in self.benefits if b["benefit_id"] == benefit_id), None)

    @staticmethod
    def id_for_redemption(command_id: str) -> uuid.UUID:
        """The id of the redemption made by command `command_id`: the same for every delivery."""
        return uuid.uuid5(REDEMPTION_FROM_COMMAND_NAMESPACE, command_id)

    @staticmethod
    def id_for_benefit(command_id: str) -> uuid.UUID:
        """The id of the benefit granted by command `command_id`: the same for every delivery."""
        return uuid.uuid5(BENEFIT_FROM_COMMAND_NAMESPACE, command_id)

    def has_benefit(self, level: str, kind: str) -> bool:
        """Whether a benefit of this level and kind was ever granted."""
        return any(b["level"] == level and b["kind"] == kind for b in self.benefits)

    # --- commands ---

    def earn(
        self,
        programme: Programme,
        order_id: uuid.UUID,
        amount: Decimal,
        currency: str,
        paid_at: datetime,
        now: datetime,
    ) -> bool:
        """Earn points on a paid order at the tier's rate; False when the order already earned them."""
        check_aware("paid_at", paid_at)
        check_aware("now", now)
        if amount < 0:
            raise InvalidLoyaltyDataError("amount", "must not be negative")
        programme_amount = programme.convert(amount, currency)
        earned = self.earned_orders.get(order_id)
        if earned is not None:
            # The order service delivers at least once: the same payment again is a no-op.
            if earned != amount:
                raise OrderAlreadyEarnedError(order_id, earned, amount)
            return False
        # Another service's clock may run a little ahead of ours; never evaluate before the payment.
        at = max(now, paid_at)
        # The rate is the tier the customer holds when paying, before this order counts towards it.
        tier = programme.tier_for(self.rolling_spend(at, programme.spend_window))
        points = programme.points_for(programme_amount, tier)
        settled = min(points, self.points_owed)
        self._points_earned(
            customer_id=self.customer_id,
            order_id=order_id,
            amount=amount,
            currency=currency,
            points=points,
            tier=tier.name,
            points_per_unit=tier.points_per_unit,
            earned_at=paid_at,
            expires_at=paid_at + programme.points_valid_for,
            balance=self.balance + points - settled,
            programme_amount=programme_amount,
            exchange_rate=programme.rate_of(currency),
            debt_settled=settled,
        )
        self._review(programme, at, "earn")
        return True

    def take_back(
        self,
        programme: Programme,
        order_id: uuid.UUID,
        reversal_id: str,
        refund: Decimal,
        currency: str,
        at: datetime,
    ) -> bool:
        """Take back the points a refund of `order_id` cancels (see the module docstring); False when
        there is nothing to take back: the order earned nothing here, or this refund was taken already."""
        check_aware("at", at)
        if not isinstance(reversal_id, str) or not reversal_id.strip():
            raise InvalidLoyaltyDataError("reversal_id", "must not be blank")
        if not isinstance(refund, Decimal) or not refund.is_finite() or refund < 0:
            raise InvalidLoyaltyDataError("refund", "must be an amount, not negative")
        earning = self.earnings.get(order_id)
        if earning is None or reversal_id in earning["reversals"]:
            return False
        if currency != earning["currency"]:
            raise InvalidLoyaltyDataError("currency", f"must be {earning['currency']}, the order's currency")
        paid = earning["amount"]
        refunded = min(earning["refunded"] + refund, paid)
        if refunded == earning["refunded"]:
            return False
        target = int((earning["points"] * refunded / paid).to_integral_value(rounding=ROUND_FLOOR))
        points = target - earning["taken_back"]
        spend = (earning["programme_amount"] * (paid - refunded) / paid).quantize(CENT, rounding=ROUND_HALF_UP)
        taken = self._take_from_lots(order_id, points, at)
        owed = points - sum(entry["points"] for entry in taken)
        self._points_taken_back(
            customer_id=self.customer_id,
            order_id=order_id,
            reversal_id=reversal_id,
            refund=refunded - earning["refunded"],
            currency=currency,
            points=points,
            lots=taken,
            owed=owed,
            points_owed=self.points_owed + owed,
            spend=spend,
            taken_at=at,
            balance=self.balance - (points - owed),
        )
        return True

    def _take_from_lots(self, order_id: uuid.UUID, points: int, at: datetime) -> list[dict[str, Any]]:
        """Which available points (still valid at `at`) `points` takes: the order's own, then the oldest."""
        valid = [lot for lot in self.lots if lot["remaining"] > 0 and lot["expires_at"] > at]
        ordered = [lot for lot in valid if lot["order_id"] == order_id] + [
            lot for lot in valid if lot["order_id"] != order_id
        ]
        taken: list[dict[str, Any]] = []
        left = points
        for lot in ordered:
            if left == 0:
                break
            take = min(lot["remaining"], left)
            taken.append({"order_id": lot["order_id"], "earned_at": lot["earned_at"], "points": take})
            left -= take
        return taken

    def redeem(
        self,
        programme: Programme,
        reward_code: str,
        points: int,
        now: datetime,
        redemption_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Spend points on a reward, oldest lots first; never more than are available.

        With `redemption_id` (derived from the command), a redemption the account already has is
        answered, not made again; the same id for another reward or amount is a conflict.
        """
        check_aware("now", now)
        check_reward_code(reward_code)
        if isinstance(points, bool) or not isinstance(points, int) or points <= 0:
            raise InvalidLoyaltyDataError("points", "must be a positive whole number")
        existing = self.redemption(redemption_id)
        if existing is not None:
            # Checked before the balance: the first run may have spent the points this one asks for.
            if (existing["reward_code"], existing["points"]) != (reward_code.strip(), points):
                raise DuplicateEntryError("redemption", existing["redemption_id"])
            return existing["redemption_id"]  # type: ignore[no-any-return]
        available = self.available(now)
        if points > available:
            raise InsufficientPointsError(available, points)
        # Due lots go first so the redemption can only consume points that are still valid.
        self._expire_due(now)
        redemption_id = redemption_id or uuid.uuid4()
        self._points_redeemed(
            customer_id=self.customer_id,
            redemption_id=redemption_id,
            reward_code=reward_code.strip(),
            points=points,
            redeemed_at=now,
            balance=self.balance - points,
        )
        self._review(programme, now, "redeem")
        return redemption_id

    def expire(self, programme: Programme, now: datetime) -> int:
        """Expire every lot due at `now`, oldest first, then re-evaluate the tier; returns the points expired."""
        check_aware("now", now)
        expired = self._expire_due(now)
        self._review(programme, now, "expire")
        return expired

    def review_tier(self, programme: Programme, now: datetime) -> None:
        """Re-evaluate the tier from the rolling spend at `now` (spend ages out of the window)."""
        check_aware("now", now)
        self._review(programme, now, "review")

    def grant_benefit(
        self,
        level: str,
        kind: str,
        description: str,
        now: datetime,
        reason: str | None = None,
        benefit_id: uuid.UUID | None = None,
    ) -> uuid.UUID:
        """Record a retention benefit granted to the customer.

        With `benefit_id` (derived from the command), a benefit already granted is answered, not
        granted again; the same id for another benefit is a conflict.
        """
        check_aware("now", now)
        check_benefit(level, kind, description)
        existing = self.benefit(benefit_id)
        if existing is not None:
            if (existing["level"], existing["kind"], existing["description"], existing["reason"]) != (
                level, kind, description.strip(), reason
            ):
                raise DuplicateEntryError("benefit", existing["benefit_id"])
            return existing["benefit_id"]  # type: ignore[no-any-return]
        benefit_id = benefit_id or uuid.uuid4()
        self._benefit_granted(
            customer_id=self.customer_id,
            benefit_id=benefit_id,
            level=level,
            kind=kind,
            description=description.strip(),
            granted_at=now,
            reason=reason,
        )
        return benefit_id

    # --- merges ---

    def merge_into(self, survivor: Account, merge_id: str, programme: Programme, now: datetime) -> bool:
        """Move what counts (see the module docstring) to `survivor`'s account and close this one; then
        review the survivor's tier. False when this merge happened already."""
        if self.merged_into is not None:
            return False
        moved = self._movable()
        out, into = self._after_move(moved, -1), survivor._after_move(moved, +1)
        self._merged_into(customer_id=self.customer_id, survivor_id=survivor.customer_id, merge_id=merge_id,
                          merged_at=now, **moved, **out)
        survivor._absorbed(customer_id=survivor.customer_id, merged_from=self.customer_id, merge_id=merge_id,
                           merged_at=now, **moved, **into)
        survivor._review(programme, now, "review")
        return True

    def restore_from(self, survivor: Account, merge_id: str, programme: Programme, now: datetime) -> bool:
        """Take back from `survivor` what merge `merge_id` moved there (as it is now) and reopen this
        account; then review both tiers. False when it was given back already (or never moved)."""
        if self.merged_into is None or self.merged_into["merge_id"] != merge_id or merge_id not in survivor.absorbed:
            return False
        if survivor.merged_into is not None:
            return False  # the later merge of the survivor is undone first (the customer service insists)
        moved = survivor._moved_by(merge_id)
        out, into = survivor._after_move(moved, -1), self._after_move(moved, +1)
        survivor._gave_back(customer_id=survivor.customer_id, given_to=self.customer_id, merge_id=merge_id,
                            unmerged_at=now, **moved, **out)
        self._restored(customer_id=self.customer_id, survivor_id=survivor.customer_id, merge_id=merge_id,
                       unmerged_at=now, **moved, **into)
        survivor._review(programme, now, "review")
        self._review(programme, now, "review")
        return True

    def _after_move(self, moved: dict[str, Any], sign: int) -> dict[str, int]:
        """This account's balance and debt once `moved` has left it (sign -1) or arrived (+1)."""
        points = sum(lot["remaining"] for lot in moved["lots"])
        return {"balance": self.balance + sign * points, "points_owed": self.points_owed + sign * moved["owed"]}

    def _movable(self) -> dict[str, Any]:
        """What a merge moves out of this account: lots still holding points, spends, earnings, debt."""
        return {
            "lots": [lot for lot in self.lots if lot["remaining"] > 0],
            "spends": list(self.spends),
            "earnings": [{"order_id": order_id, **earning} for order_id, earning in self.earnings.items()],
            "owed": self.points_owed,
        }

    def _moved_by(self, merge_id: str) -> dict[str, Any]:
        """The entries merge `merge_id` moved into this account, as they are now, and the debt left."""

        def moved(entry: dict[str, Any]) -> bool:
            return bool(entry.get("merges")) and entry["merges"][-1] == merge_id

        return {
            "lots": [lot for lot in self.lots if moved(lot)],
            "spends": [spend for spend in self.spends if moved(spend)],
            "earnings": [{"order_id": order_id, **earning} for order_id, earning in self.earnings.items()
                         if moved(earning)],
            "owed": min(self.absorbed[merge_id]["owed"], self.points_owed),
        }

    def _take_in(self, merge_id: str | None, lots: list[dict[str, Any]], spends: list[dict[str, Any]],
                 earnings: list[dict[str, Any]]) -> None:
        """Add moved entries (copies), tagged with `merge_id` (a merge), or with their last tag removed
        (None: an unmerge gives them back)."""

        def tagged(entry: dict[str, Any]) -> dict[str, Any]:
            merges = list(entry.get("merges", []))
            return {**entry, "merges": [*merges, merge_id] if merge_id is not None else merges[:-1]}

        for lot in lots:
            index = bisect.bisect_right([existing["earned_at"] for existing in self.lots], lot["earned_at"])
            self.lots.insert(index, tagged(lot))
        self.spends.extend(tagged(spend) for spend in spends)
        for entry in earnings:
            earning = tagged({key: value for key, value in entry.items() if key != "order_id"})
            earning["reversals"] = list(earning["reversals"])
            self.earnings[entry["order_id"]] = earning
            self.earned_orders[entry["order_id"]] = earning["amount"]

    def _give_out(self, lots: list[dict[str, Any]], spends: list[dict[str, Any]],
                  earnings: list[dict[str, Any]]) -> None:
        """Remove moved entries: lots and spends by their order, earnings by order."""
        lot_orders = {lot["order_id"] for lot in lots}
        spend_orders = {spend["order_id"] for spend in spends}
        self.lots = [lot for lot in self.lots if lot["order_id"] not in lot_orders]
        self.spends = [spend for spend in self.spends if spend["order_id"] not in spend_orders]
        for entry in earnings:
            self.earnings.pop(entry["order_id"], None)
            self.earned_orders.pop(entry["order_id"], None)

    # --- the steps commands share ---

    def _expire_due(self, now: datetime) -> int:
        due = [lot for lot in self.lots if lot["remaining"] > 0 and lot["expires_at"] <= now]
        if not due:
            return 0
        points = sum(lot["remaining"] for lot in due)
        self._points_expired(
            customer_id=self.customer_id,
            lots=[{"order_id": lot["order_id"], "earned_at": lot["earned_at"], "points": lot["remaining"]}
                  for lot in due],
            points=points,
            expired_at=now,
            balance=self.balance - points,
        )
        return points

    def _review(self, programme: Programme, now: datetime, reason: str) -> None:
        spend = self.rolling_spend(now, programme.spend_window)
        implied = programme.tier_for(spend)
        if implied.name == self.tier:
            return
        up = programme.rank(implied.name) > programme.rank(self.tier)
        self._tier_changed(
            customer_id=self.customer_id,
            from_tier=self.tier,
            to_tier=implied.name,
            direction="up" if up else "down",
            rolling_spend=spend,
            currency=self.currency,
            changed_at=now,
            reason=reason,
        )
        if up:
            # A jump of several tiers brings the benefits of each tier passed. A benefit once given is
            # kept: a return to a tier after a dip grants nothing twice.
            for tier in programme.tiers[: programme.rank(implied.name) + 1]:
                for benefit in programme.benefits_of(tier.name):
                    if not self.has_benefit(benefit.level, benefit.kind):
                        self.grant_benefit(benefit.level, benefit.kind, benefit.description, now,
                                           reason=f"reached {implied.name} tier")

    # --- events ---

    @event("PointsEarned")
    def _points_earned(
        self,
        customer_id: uuid.UUID,
        order_id: uuid.UUID,
        amount: Decimal,
        currency: str,
        points: int,
        tier: str,
        points_per_unit: Decimal,
        earned_at: datetime,
        expires_at: datetime,
        balance: int,  # carried for consumers; the account derives its own from the lots
        # Defaults: points earned before other currencies and debts existed were earned in the
        # programme currency and settled nothing.
        programme_amount: Decimal | None = None,
        exchange_rate: Decimal | None = None,
        debt_settled: int = 0,
    ) -> None:
        spent = amount if programme_amount is None else programme_amount
        self.earned_orders[order_id] = amount
        self.earnings[order_id] = {"amount": amount, "currency": currency, "programme_amount": spent,
                                   "points": points, "refunded": ZERO, "taken_back": 0, "reversals": []}
        self.spends.append({"order_id": order_id, "amount": spent, "paid_at": earned_at})
        self.points_earned += points
        self.points_owed -= debt_settled
        self.points_taken_back += debt_settled
        if points:
            lot = {"order_id": order_id, "earned_at": earned_at, "expires_at": expires_at, "points": points,
                   "remaining": points - debt_settled, "redeemed": 0, "expired": 0, "taken_back": debt_settled}
            # Orders can be paid (or delivered to us) out of order: keep lots sorted by earning date,
            # a later arrival with the same date after the earlier ones.
            index = bisect.bisect_right([existing["earned_at"] for existing in self.lots], earned_at)
            self.lots.insert(index, lot)

    @event("PointsRedeemed")
    def _points_redeemed(
        self,
        customer_id: uuid.UUID,
        redemption_id: uuid.UUID,
        reward_code: str,
        points: int,
        redeemed_at: datetime,
        balance: int,
    ) -> None:
        left = points
        for lot in self.lots:
            if left == 0:
                break
            taken = min(lot["remaining"], left)
            lot["remaining"] -= taken
            lot["redeemed"] += taken
            left -= taken
        self.points_redeemed += points
        self.redemptions.append(
            {"redemption_id": redemption_id, "reward_code": reward_code, "points": points, "redeemed_at": redeemed_at}
        )

    @event("PointsExpired")
    def _points_expired(
        self,
        customer_id: uuid.UUID,
        lots: list[dict[str, Any]],
        points: int,
        expired_at: datetime,
        balance: int,
    ) -> None:
        expiring = {entry["order_id"]: entry["points"] for entry in lots}
        for lot in self.lots:
            taken = expiring.get(lot["order_id"], 0)
            lot["remaining"] -= taken
            lot["expired"] += taken
        self.points_expired += points

    @event("PointsTakenBack")
    def _points_taken_back(
        self,
        customer_id: uuid.UUID,
        order_id: uuid.UUID,
        reversal_id: str,
        refund: Decimal,
        currency: str,
        points: int,
        lots: list[dict[str, Any]],
        owed: int,
        points_owed: int,
        spend: Decimal,
        taken_at: datetime,
        balance: int,
    ) -> None:
        taking = {entry["order_id"]: entry["points"] for entry in lots}
        for lot in self.lots:
            take = taking.get(lot["order_id"], 0)
            lot["remaining"] -= take
            lot["taken_back"] += take
        self.points_taken_back += points - owed
        self.points_owed += owed
        earning = self.earnings[order_id]
        earning["refunded"] += refund
        earning["taken_back"] += points
        earning["reversals"].append(reversal_id)
        for entry in self.spends:
            if entry["order_id"] == order_id:
                entry["amount"] = spend

    @event("TierChanged")
    def _tier_changed(
        self,
        customer_id: uuid.UUID,
        from_tier: str,
        to_tier: str,
        direction: str,
        rolling_spend: Decimal,
        currency: str,
        changed_at: datetime,
        reason: str,
    ) -> None:
        self.tier = to_tier

    @event("BenefitGranted")
    def _benefit_granted(
        self,
        customer_id: uuid.UUID,
        benefit_id: uuid.UUID,
        level: str,
        kind: str,
        description: str,
        granted_at: datetime,
        reason: str | None,
    ) -> None:
        self.benefits.append(
            {"benefit_id": benefit_id, "level": level, "kind": kind, "description": description,
             "granted_at": granted_at, "reason": reason}
        )


    # Merge events: each carries what moved (lots, spends, earnings as they were, the debt), so the log
    # alone tells where every point went, and (for consumers) the account's balance and debt afterwards.
    # Published as loyalty_points_moved.

    @event("MergedInto")
    def _merged_into(
        self, customer_id: uuid.UUID, survivor_id: uuid.UUID, merge_id: str, lots: list[dict[str, Any]],
        spends: list[dict[str, Any]], earnings: list[dict[str, Any]], owed: int, merged_at: datetime, balance: int,
        points_owed: int,
    ) -> None:
        self._give_out(lots, spends, earnings)
        self.points_owed -= owed
        self.merged_into = {"survivor_id": survivor_id, "merge_id": merge_id}

    @event("Absorbed")
    def _absorbed(
        self, customer_id: uuid.UUID, merged_from: uuid.UUID, merge_id: str, lots: list[dict[str, Any]],
        spends: list[dict[str, Any]], earnings: list[dict[str, Any]], owed: int, merged_at: datetime, balance: int,
        points_owed: int,
    ) -> None:
        self._take_in(merge_id, lots, spends, earnings)
        self.points_owed += owed
        self.absorbed[merge_id] = {"merged_from": merged_from, "owed": owed}

    @event("GaveBack")
    def _gave_back(
        self, customer_id: uuid.UUID, given_to: uuid.UUID, merge_id: str, lots: list[dict[str, Any]],
        spends: list[dict[str, Any]], earnings: list[dict[str, Any]], owed: int, unmerged_at: datetime, balance: int,
        points_owed: int,
    ) -> None:
        self._give_out(lots, spends, earnings)
        self.points_owed -= owed
        del self.absorbed[merge_id]

    @event("Restored")
    def _restored(
        self, customer_id: uuid.UUID, survivor_id: uuid.UUID, merge_id: str, lots: list[dict[str, Any]],
        spends: list[dict[str, Any]], earnings: list[dict[str, Any]], owed: int, unmerged_at: datetime, balance: int,
        points_owed: int,
    ) -> None:
        self._take_in(None, lots, spends, earnings)
        self.points_owed += owed
        self.merged_into = None


# --- checks --------------------------------------------------------------------------------------

def check_aware(field_name: str, value: datetime) -> None:
    """Times must carry a timezone: expiry and rolling windows compare them across services."""
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidLoyaltyDataError(field_name, "must be a date and time with a timezone")


def check_reward_code(reward_code: str) -> None:
    """A reward code is a short, non-blank name."""
    if not reward_code or not reward_code.strip():
        raise InvalidLoyaltyDataError("reward_code", "must not be blank")
    if len(reward_code.strip()) > REWARD_CODE_MAX_LENGTH:
        raise InvalidLoyaltyDataError("reward_code", f"must be at most {REWARD_CODE_MAX_LENGTH} characters")


def check_benefit(level: str, kind: str, description: str) -> None:
    """A benefit names one of the three retention levels, a kind of that level and what it is."""
    if level not in BENEFIT_LEVELS:
        raise InvalidLoyaltyDataError("level", f"must be one of {', '.join(BENEFIT_LEVELS)}")
    if kind not in BENEFIT_KINDS[level]:
        raise InvalidLoyaltyDataError("kind", f"must be one of {', '.join(BENEFIT_KINDS[level])} for {level}")
    if not description or not description.strip():
        raise InvalidLoyaltyDataError("description", "must not be blank")
