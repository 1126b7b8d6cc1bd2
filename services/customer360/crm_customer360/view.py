"""The 360° view of one customer as a pure fold over envelopes. No database, no framework.

Commuting across origins
------------------------
Events come from six origins in no global order (within one origin they arrive in order), so every
rule gives the same result in any interleaving across origins: a value owned by one origin is set by
that origin only (an order's status by order, a case's by service, the balance by loyalty); values
fed by several origins are maxima, minima, sums or unions. Everything a reader sees that mixes
origins or depends on time (lifecycle stage, totals, CSI, points expiring) is *derived*: recomputed
by `finish` from those facts alone, never updated step by step. That is what makes a rebuilt view
equal the incrementally built one, row for row.

Lead events reach the customer's timeline
-----------------------------------------
marketing's lead events carry a lead id and no customer id; customer.lead_linked (customer origin)
says which customer a lead became, before or after the lead's own events arrive. Leads are folded on
their own (`fold_lead`, a `lead_view` row per lead, marketing events only, so in order) and keep the
customer they link to. Whichever comes second attaches the lead to the customer:
- a lead event of a lead already linked updates the lead and copies it into the customer's
  `marketing.leads` (`attach_lead`);
- lead_linked of a lead already folded copies the lead as it stands into the customer.
Either way the customer ends holding the fully folded lead, its events counted once in `events`
(attach adds only the lead events not counted yet), and first/last activity widened (min/max). A
lead links once (the customer service's rule): a second lead_linked of a lead already linked to
another customer changes nothing. The timeline rows of lead events carry the lead id and get the
customer id when the link is known (readmodel).

Stages, and the instant they are computed as of
-----------------------------------------------
The ladder (DOMAIN.md) is the furthest stage the facts reach: prospect (any event) → lead (a lead
attached) → qualified_lead (a lead qualified or converted) → opportunity (any opportunity) → customer
(one paid order) → repeat_customer (two) → loyal (LOYAL_MIN_PAID_ORDERS). For a customer with a paid
order, rules then override it, in this order, as of `stage_as_of`:
- churned: no order placed or paid for CHURNED_AFTER_DAYS;
- at_risk: no order for AT_RISK_AFTER_DAYS, or an unresolved complaint, or spend falling (net spend
  of the last SPEND_WINDOW_DAYS below SPEND_FALL_RATIO of the window before, per currency);
- won_back: the newest paid order came more than CHURNED_AFTER_DAYS after the one before it.
`stage_as_of` is never the wall clock: it is the later of the newest event this customer's view has
seen (`last_activity_at`) and the view's clock (`clock`), an instant stored with the view that a
periodic refresh moves forward (readmodel.advance_clock) and a rebuild copies. Both are facts of the
view, so a rebuild computes the same stages.

Merged customers (customer.customer_merged / customer_unmerged)
----------------------------------------------------------------
Every original customer keeps its own view, its *part*, folded from the events about it; a merge only
changes which parts are shown together. The customer a merge absorbed is shown by its survivor (the
final one, following merges of merges): `show` combines the survivor's part with the parts of every
customer merged into it (`combine`) and finishes the result, so a merge and an unmerge are pure
changes of the links (`apply_merge`), never of the facts, and unmerging gives each customer back
exactly its own part. Parts fold in any interleaving as before; the links fold in customer order; the
shown view is a function of both, so a rebuild still equals the live view.

Which part an event belongs to is decided per *record* (an order, an opportunity, a case, a survey, a
loyalty account: `record_of`): the part of the customer the record's first event carried
(`assign_owners`). The services re-point an absorbed customer's records to the survivor, and give
them back on unmerge, so later events of one record may carry the survivor's id or the absorbed
one's: the record stays in its first customer's part whichever they carry, shown under the survivor
while merged and given back with the part on unmerge. A record first seen carrying the survivor's id
(created after the merge) stays the survivor's. An event that carries an absorbed id and no record
(or a record first seen with that id, e.g. created by a service that had not re-pointed yet) belongs
to that absorbed customer: it is shown under the survivor while merged and goes back with the
absorbed customer on unmerge (it was about them: the id says so).

Merge bookkeeping (customer_merged, customer_unmerged, and any event carrying a `merge_id`, such as a
service's re-pointing of a record) is shown on the timeline but is not the customer's activity: it is
not counted in `events` and moves no first/last activity, so an unmerged customer's view is its view
from before the merge plus what happened to it since.

Erasure: erasing a survivor erases the merged view, so the parts merged into it are forgotten too
(`show` gives each the survivor's `erased_at`); an absorbed customer erased on its own is forgotten in
its part only.

Money is decimal strings, summed in Decimal, per currency (no exchange rates here).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from copy import deepcopy
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any
from uuid import UUID

Envelope = dict[str, Any]
View = dict[str, Any]
Lead = dict[str, Any]
Payload = dict[str, Any]

# --- rules and thresholds (DOMAIN.md defaults; see the module docstring) -------------------------
#: Paid orders that make a customer loyal (two make a repeat customer).
LOYAL_MIN_PAID_ORDERS = 4
#: No order for this long: at risk (dormant).
AT_RISK_AFTER_DAYS = 180
#: No order for this long: churned. A churned customer who buys again is won back.
CHURNED_AFTER_DAYS = 365
#: Spend falling: net spend of the last window below this share of the window before it.
SPEND_WINDOW_DAYS = 180
SPEND_FALL_RATIO = Decimal("0.5")
#: Points whose expiry falls within this many days of the as-of instant are "expiring".
POINTS_EXPIRING_WITHIN_DAYS = 90

#: Relationship stages (DOMAIN.md), the ladder in the order a customer walks it, then the rule stages.
STAGES = ("prospect", "lead", "qualified_lead", "opportunity", "customer", "repeat_customer", "loyal")
RULE_STAGES = ("at_risk", "churned", "won_back")
#: Each stage shown with the relationship-cycle phase of the practice notes (003).
CYCLE_PHASES = {
    "prospect": "breakthrough",
    "lead": "breakthrough",
    "qualified_lead": "breakthrough",
    "opportunity": "breakthrough",
    "customer": "consolidation",
    "repeat_customer": "consolidation",
    "won_back": "consolidation",
    "loyal": "harvest",
    "at_risk": "dormancy",
    "churned": "pause",
}

#: marketing events about a lead (keyed by lead id, no customer id): folded by `fold_lead`.
LEAD_EVENTS = frozenset(
    {"lead_captured", "lead_scored", "lead_graded", "lead_qualified", "lead_disqualified", "lead_converted"}
)
#: Published events that say nothing about one customer: they never reach a view (campaign totals,
#: the FAQ catalogue). Listed so that a test notices a new event type nobody decided about.
NOT_ABOUT_A_CUSTOMER = frozenset(
    {"campaign_planned", "campaign_launched", "campaign_response_recorded", "campaign_closed",
     "faq_published", "faq_retired"}
)

#: customer events that link or unlink a customer to its survivor (`apply_merge`), folded into no part.
MERGE_EVENTS = frozenset({"customer_merged", "customer_unmerged"})
#: A service's re-pointing of one of its records to a merge's survivor, or back (they carry a `merge_id`):
#: shown on the timeline of the record's owner, changing nothing else (the record stays in its part).
RECORD_MOVES = frozenset({"order_customer_changed", "opportunity_customer_changed", "case_customer_changed",
                          "survey_customer_changed"})
#: The payload fields naming the record an event of each origin is about (the first present decides).
RECORD_FIELDS = {
    "sales": ("opportunity_id",),
    "order": ("order_id",),
    "service": ("case_id", "survey_id"),
    "loyalty": ("account_id",),
}

TIMELINE_SUMMARIES = {
    # customer
    "customer_registered": "registered via {source_channel}",
    "customer_profile_changed": "profile changed",
    "customer_consent_changed": "consent for {channel} set to {granted}",
    "customer_credit_rating_changed": "credit rating set to {rating}",
    "customer_graded": "graded {grade}",
    "customer_address_changed": "{kind} address changed",
    "lead_linked": "became a customer from lead {name} ({matched_by})",
    "customer_erased": "customer erased (request {request_id})",
    "customer_merged": "merged into customer {survivor_id} (merge {merge_id})",
    "customer_unmerged": "given back its own record from customer {survivor_id} (merge {merge_id})",
    # marketing
    "lead_captured": "lead captured from {channel}",
    "lead_scored": "lead scored {score}",
    "lead_graded": "lead graded {grade}",
    "lead_qualified": "lead qualified with score {score}",
    "lead_disqualified": "lead disqualified: {reason}",
    "lead_converted": "lead converted, estimated {estimated_amount} {currency}",
    "campaign_member_reached": "reached by campaign {campaign_id}",
    # sales
    "opportunity_opened": "opportunity opened: {title} ({amount} {currency}, {owner})",
    "opportunity_stage_changed": "opportunity moved from {from_stage} to {to_stage}",
    "opportunity_amount_changed": "opportunity amount changed to {amount} {currency}",
    "opportunity_close_date_changed": "opportunity close date moved to {expected_close_date}",
    "opportunity_reassigned": "opportunity reassigned to {owner}",
    "quote_sent": "quote v{quote_version} sent: {total} {currency}",
    "quote_accepted": "quote v{quote_version} accepted: {total} {currency}",
    "quote_rejected": "quote v{quote_version} rejected",
    "opportunity_won": "opportunity won: {total} {currency} ({owner})",
    "opportunity_lost": "opportunity lost: {reason}",
    "opportunity_customer_changed": "opportunity moved to customer {customer_id} ({change}, merge {merge_id})",
    # order
    "order_placed": "order placed: {total} {currency}",
    "order_confirmed": "order confirmed",
    "order_shipping_address_set": "order shipping address set",
    "order_shipped": "order shipped by {carrier}",
    "order_delivered": "order delivered",
    "order_payment_recorded": "payment of {amount} {currency} received",
    "order_paid": "order paid: {amount} {currency}",
    "order_cancelled": "order cancelled: {reason}",
    "order_return_recorded": "return {return_id} recorded: refund {refund} {currency}",
    "order_refunded": "order refunded: {amount} {currency}",
    "order_customer_changed": "order moved to customer {customer_id} ({change}, merge {merge_id})",
    # service
    "case_opened": "case opened via {channel}: {subject}",
    "case_acknowledged": "case acknowledged, answer due by {respond_by}",
    "case_classified": "case classified {priority} for {department}",
    "case_assigned": "case assigned to {group}",
    "case_responded": "case answered by {agent}",
    "case_sla_breached": "case missed its {target} deadline",
    "case_escalated": "case escalated to {to}",
    "case_resolved": "case resolved: {resolution}",
    "case_closed": "case closed",
    "case_reopened": "case reopened: {reason}",
    "complaint_registered": "complaint registered",
    "complaint_assessed": "complaint assessed: {category}, {severity}",
    "complaint_resolved": "complaint resolved: {resolution}",
    "complaint_summarised": "complaint summarised: {summary}",
    "faq_used": "FAQ article used",
    "survey_requested": "satisfaction survey requested for {subject}",
    "survey_answered": "satisfaction survey of {subject} answered: {score}/5",
    "survey_completed": "case satisfaction survey answered: {score}/5",
    "case_customer_changed": "case moved to customer {customer_id} ({change}, merge {merge_id})",
    "survey_customer_changed": "survey moved to customer {customer_id} ({change}, merge {merge_id})",
    # loyalty
    "loyalty_account_enrolled": "enrolled in the loyalty programme ({tier})",
    "points_earned": "earned {points} points",
    "points_redeemed": "redeemed {points} points for {reward_code}",
    "points_expired": "{points} points expired",
    "points_taken_back": "{points} points taken back",
    "tier_changed": "loyalty tier changed from {from_tier} to {to_tier}",
    "loyalty_points_moved": "{points} points moved {direction} ({reason}, merge {merge_id})",
    "retention_benefit_granted": "benefit granted: {description}",
}

_CENT = Decimal("0.01")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def key(value: Any) -> str:
    """The canonical text of an id (as PostgreSQL prints a uuid): the key of views and leads."""
    return str(UUID(str(value)))


def empty_view(customer_id: str) -> View:
    return {
        "customer_id": customer_id,
        "profile": {},
        "consents": {},
        "credit": None,
        "grade": None,
        "addresses": {},
        "lifecycle_stage": None,
        "relationship_phase": None,
        "stage_reached": None,
        "stage_as_of": None,
        "stage_reasons": [],
        "registered_at": None,
        "first_seen_at": None,
        "last_activity_at": None,
        "events": {},
        "paid_orders": 0,
        "marketing": {"leads": {}, "linked_campaigns": [], "campaigns": [], "lead_score": None, "lead_grade": None},
        "pipeline": {"opportunities": {}, "open_total": {}, "won_total": {}, "won_by_owner": {}, "owners": []},
        "orders": {"by_id": {}, "revenue": {}, "outstanding": {}, "last_order": None},
        "service": {"cases": {}, "surveys": {}, "scores": {}, "open_cases": 0, "sla_breaches": 0,
                    "complaints": {"total": 0, "unresolved": 0}, "satisfaction": {"csi": None, "responses": 0}},
        "loyalty": {"account_id": None, "tier": None, "currency": None, "enrolled_at": None, "balance": 0,
                    "points_owed": 0, "rolling_spend": None, "lots": {}, "benefits": {}, "points_expiring": 0,
                    "next_expiry_at": None},
    }


def empty_lead(lead_id: str) -> Lead:
    return {
        "lead_id": lead_id, "customer_id": None, "campaign_id": None, "channel": None, "name": None,
        "company": None, "status": None, "score": None, "grade": None, "captured_at": None,
        "first_at": None, "last_at": None, "events": 0,
    }


def apply(view: View | None, envelope: Envelope, clock: str | None = None) -> View:
    """The view after `envelope` (which must carry a customer_id); `view` itself is left as it was."""
    fresh = deepcopy(view) if view is not None else empty_view(key(envelope["customer_id"]))
    fold_into(fresh, envelope)
    finish(fresh, clock)
    return fresh


def fold_batch(customers: dict[str, View], leads: dict[str, Lead], envelopes: list[Envelope],
               owners: dict[tuple[str, str], str] | None = None) -> set[str]:
    """Fold `envelopes` into the views and leads given (keyed by `key`), creating what is missing.

    `customers` are the customers' own views (their *parts*, see the module docstring): an event is
    folded into the part of its record's owner (`owners`, filled by `assign_owners` for records seen
    first here), else of the customer it carries. Merge events are not folded (`apply_merge`).
    Returns the ids of the customers touched; call `finish` (or `show`) before showing or storing them.
    The caller provides every lead the batch names (`lead_ids_of`) and every customer those leads
    link to, so the batch needs nothing else.
    """
    owners = {} if owners is None else owners
    assign_owners(owners, envelopes)
    touched: set[str] = set()
    for envelope in envelopes:
        lead_id = lead_id_of(envelope)
        if envelope["type"] in LEAD_EVENTS and lead_id is not None:
            lead = leads.setdefault(lead_id, empty_lead(lead_id))
            fold_lead(lead, envelope)
            if lead["customer_id"] is not None:
                attach_lead(customers.setdefault(lead["customer_id"], empty_view(lead["customer_id"])), lead)
                touched.add(lead["customer_id"])
            continue
        customer_id = owner_of(envelope, owners)
        if customer_id is None or envelope["type"] in MERGE_EVENTS:
            continue  # not about one customer (a campaign, the FAQ), or a link between customers
        view = customers.setdefault(customer_id, empty_view(customer_id))
        fold_into(view, envelope)
        touched.add(customer_id)
        if envelope["type"] == "lead_linked" and lead_id is not None:
            lead = leads.setdefault(lead_id, empty_lead(lead_id))
            if lead["customer_id"] is None:  # a lead links once: the first link (in customer order) holds
                lead["customer_id"] = customer_id
                attach_lead(view, lead)
    return touched


def record_of(envelope: Envelope) -> str | None:
    """The record (order, opportunity, case, survey, loyalty account) an event is about, as "field:id"."""
    payload = envelope["payload"]
    for field in RECORD_FIELDS.get(envelope["origin"], ()):
        if payload.get(field):
            return f"{field}:{payload[field]}"
    return None


def assign_owners(owners: dict[tuple[str, str], str], envelopes: list[Envelope]) -> dict[tuple[str, str], str]:
    """Give each record first seen in `envelopes` (in its origin's order) the customer its first event
    carries, for good; returns the records assigned here."""
    assigned = {}
    for envelope in envelopes:
        record = record_of(envelope) if envelope.get("customer_id") else None
        if record is not None and (envelope["origin"], record) not in owners:
            owners[(envelope["origin"], record)] = assigned[(envelope["origin"], record)] = key(
                envelope["customer_id"])
    return assigned


def owner_of(envelope: Envelope, owners: Mapping[tuple[str, str], str]) -> str | None:
    """The customer whose part `envelope` belongs to: its record's owner, else the customer it carries."""
    if not envelope.get("customer_id"):
        return None
    record = record_of(envelope)
    owner = owners.get((envelope["origin"], record)) if record is not None else None
    return owner or key(envelope["customer_id"])


def is_merge_bookkeeping(envelope: Envelope) -> bool:
    """A merge, an unmerge, or a service's re-pointing of a record under a merge: not the customer's activity."""
    return envelope["type"] in MERGE_EVENTS or "merge_id" in envelope["payload"]


def lead_id_of(envelope: Envelope) -> str | None:
    """The lead a lead event or a lead_linked is about, or None."""
    if envelope["type"] not in LEAD_EVENTS and envelope["type"] != "lead_linked":
        return None
    lead_id = envelope["payload"].get("lead_id")
    return key(lead_id) if lead_id else None


def fold_into(view: View, envelope: Envelope) -> None:
    """Apply one customer's `envelope` to `view` in place (the facts only; `finish` derives the rest)."""
    if not is_merge_bookkeeping(envelope):
        occurred = envelope["occurred_at"]
        view["first_seen_at"] = _earliest(view["first_seen_at"], occurred)
        view["last_activity_at"] = _latest(view["last_activity_at"], occurred)
        view["events"][envelope["origin"]] = view["events"].get(envelope["origin"], 0) + 1
    handler = _HANDLERS.get(envelope["type"])
    if handler is not None:
        handler(view, envelope["payload"], envelope)


def fold_lead(lead: Lead, envelope: Envelope) -> None:
    """Apply a marketing lead event to its lead."""
    payload, occurred = envelope["payload"], envelope["occurred_at"]
    lead["events"] += 1
    lead["first_at"] = _earliest(lead["first_at"], occurred)
    lead["last_at"] = _latest(lead["last_at"], occurred)
    if payload.get("campaign_id"):
        lead["campaign_id"] = payload["campaign_id"]
    for field in ("score", "grade"):
        if payload.get(field) is not None:
            lead[field] = payload[field]
    kind = envelope["type"]
    if kind == "lead_captured":
        lead.update(channel=payload.get("channel"), name=payload.get("name"), company=payload.get("company"),
                    captured_at=payload.get("captured_at"), status="captured")
    elif kind in ("lead_qualified", "lead_disqualified", "lead_converted"):
        lead["status"] = kind.removeprefix("lead_")


def attach_lead(view: View, lead: Lead) -> None:
    """Show `lead`, linked to this customer, in the view: its newest state, its events counted once."""
    shown = view["marketing"]["leads"].get(lead["lead_id"])
    new_events = lead["events"] - (shown["events"] if shown else 0)
    if new_events:
        view["events"]["marketing"] = view["events"].get("marketing", 0) + new_events
    view["marketing"]["leads"][lead["lead_id"]] = {k: v for k, v in lead.items() if k not in ("lead_id",)}
    if lead["first_at"]:
        view["first_seen_at"] = _earliest(view["first_seen_at"], lead["first_at"])
        view["last_activity_at"] = _latest(view["last_activity_at"], lead["last_at"])


# --- merged customers: links between parts, and the view shown for a survivor ----------------------
#: Links: the absorbed customer's id -> {"survivor_id", "merge_id", "merged_at"} of the merge in force.
Links = dict[str, dict[str, str]]


def apply_merge(links: Links, envelope: Envelope) -> None:
    """Link (customer_merged) or unlink (customer_unmerged of the same merge) an absorbed customer."""
    payload = envelope["payload"]
    absorbed = key(payload["customer_id"])
    if envelope["type"] == "customer_merged":
        links[absorbed] = {"survivor_id": key(payload["survivor_id"]), "merge_id": payload["merge_id"],
                           "merged_at": payload.get("merged_at") or envelope["occurred_at"]}
    elif envelope["type"] == "customer_unmerged" and links.get(absorbed, {}).get("merge_id") == payload["merge_id"]:
        del links[absorbed]


def root_of(links: Mapping[str, Mapping[str, str]], customer_id: str) -> str:
    """The customer that shows `customer_id`: itself, or the final survivor of the merges it went into."""
    seen = {customer_id}
    while (link := links.get(customer_id)) is not None and link["survivor_id"] not in seen:
        customer_id = link["survivor_id"]
        seen.add(customer_id)
    return customer_id


def members_of(links: Mapping[str, Mapping[str, str]], root: str) -> list[str]:
    """`root` and every customer it shows (merged into it, directly or through merges of merges)."""
    return [root, *sorted(absorbed for absorbed in links if absorbed != root and root_of(links, absorbed) == root)]


def show(root: str, parts: dict[str, View], clock: str | None = None) -> View:
    """The view shown for `root`, given the parts of `members_of` it: its own part alone, or combined
    with the others (`combine`); finished as of `clock`. Erasing the survivor erases the parts merged
    into it: each gets the survivor's `erased_at`. Finishes the parts of a merge as of no clock (as
    stored, so that they never depend on the view's clock); the shown view of a customer alone is its part."""
    own = parts[root]
    if len(parts) == 1:
        finish(own, clock)
        return own
    erased_at = own.get("erased_at")
    for customer_id, part in parts.items():
        if erased_at and customer_id != root:
            part["erased_at"] = _earliest(part.get("erased_at"), erased_at)
        finish(part)
    shown = combine(root, parts)
    finish(shown, clock)
    return shown


def combine(root: str, parts: Mapping[str, View]) -> View:
    """One view of `root`'s part and the parts merged into it (their facts; `finish` derives the rest).

    The survivor speaks for the person (profile, credit, grade, addresses, registration, erasure);
    a consent any part refused stays refused (the most restrictive wins); leads, opportunities,
    orders, cases, surveys and loyalty lots and benefits are the union (each record is in one part);
    points, debts and event counts add up; first and last activity are the earliest and the latest.
    The loyalty account shown is the survivor's, else the first part's that has one.
    """
    shown = deepcopy(parts[root])
    others = sorted(customer_id for customer_id in parts if customer_id != root)
    for customer_id in others:
        part = parts[customer_id]
        shown["first_seen_at"] = _earliest(shown["first_seen_at"], part["first_seen_at"])
        shown["last_activity_at"] = _latest(shown["last_activity_at"], part["last_activity_at"])
        for origin, count in part["events"].items():
            shown["events"][origin] = shown["events"].get(origin, 0) + count
        for channel, consent in part["consents"].items():
            mine = shown["consents"].get(channel)
            if not consent.get("granted") and (mine is None or mine.get("granted")):
                shown["consents"][channel] = deepcopy(consent)
        marketing = shown["marketing"]
        marketing["leads"].update(deepcopy(part["marketing"]["leads"]))
        marketing["linked_campaigns"] = sorted(set(marketing["linked_campaigns"])
                                               | set(part["marketing"]["linked_campaigns"]))
        shown["pipeline"]["opportunities"].update(deepcopy(part["pipeline"]["opportunities"]))
        shown["orders"]["by_id"].update(deepcopy(part["orders"]["by_id"]))
        for records in ("cases", "surveys", "scores"):
            shown["service"][records].update(deepcopy(part["service"][records]))
        loyalty, theirs = shown["loyalty"], part["loyalty"]
        loyalty["balance"] += theirs["balance"]
        loyalty["points_owed"] += theirs["points_owed"]
        loyalty["lots"].update(deepcopy(theirs["lots"]))
        loyalty["benefits"].update(deepcopy(theirs["benefits"]))
        if loyalty["account_id"] is None and theirs["account_id"] is not None:
            loyalty.update({field: theirs[field] for field in
                            ("account_id", "tier", "currency", "enrolled_at", "rolling_spend")})
    shown["merged_from"] = others
    return shown


def shown_views(parts: dict[str, View], links: Links, clock: str | None = None) -> dict[str, View]:
    """Every shown view (keyed by its root) of these parts under these links: what the read model holds.
    The parts are finished in place, as the read model stores them (`show`)."""
    roots = sorted({root_of(links, customer_id) for customer_id in parts})
    for root in roots:
        parts.setdefault(root, empty_view(root))
    return {root: show(root, {member: parts[member] for member in members_of(links, root) if member in parts}, clock)
            for root in roots}


def timeline_summary(envelope: Envelope) -> str:
    """A one-line, human-readable account of the event for the timeline."""
    template = TIMELINE_SUMMARIES.get(envelope["type"])
    if template is None:
        return envelope["type"].replace("_", " ")
    try:
        return template.format(**envelope["payload"])
    except (KeyError, IndexError):
        return envelope["type"].replace("_", " ")


# --- derived values: pure functions of the facts and the as-of instant ---------------------------

def finish(view: View, clock: str | None = None) -> None:
    """Derive every value that mixes origins or depends on time, as of max(newest event, `clock`)."""
    if view.get("erased_at"):
        forget_person(view)
    as_of = _latest(view["last_activity_at"], clock)
    view["stage_as_of"] = as_of
    _derive_marketing(view["marketing"])
    _derive_pipeline(view["pipeline"])
    view["paid_orders"] = _derive_orders(view["orders"])
    _derive_service(view["service"])
    _derive_loyalty(view["loyalty"], as_of)
    reached = _stage_reached(view)
    stage, reasons = _rule_stage(view, as_of) if view["paid_orders"] else (None, [])
    view["stage_reached"] = reached
    view["lifecycle_stage"] = stage or reached
    view["relationship_phase"] = CYCLE_PHASES[view["lifecycle_stage"]]
    view["stage_reasons"] = reasons


def _stage_reached(view: View) -> str:
    leads = view["marketing"]["leads"].values()
    paid = view["paid_orders"]
    if paid >= LOYAL_MIN_PAID_ORDERS:
        return "loyal"
    if paid >= 2:
        return "repeat_customer"
    if paid == 1:
        return "customer"
    if view["pipeline"]["opportunities"]:
        return "opportunity"
    if any(lead["status"] in ("qualified", "converted") for lead in leads):
        return "qualified_lead"
    if leads:
        return "lead"
    return "prospect"


def _rule_stage(view: View, as_of: str | None) -> tuple[str | None, list[str]]:
    """The rule-based stage (churned, at_risk, won_back) of a customer with a paid order, and why."""
    orders = view["orders"]["by_id"].values()
    now = _instant(as_of)
    last_order = max((_at(t) for o in orders for t in (o["placed_at"], o["paid_at"]) if t), default=None)
    idle = (now - last_order).days if now and last_order else 0
    if idle >= CHURNED_AFTER_DAYS:
        return "churned", [f"no order for {idle} days"]
    reasons = []
    if idle >= AT_RISK_AFTER_DAYS:
        reasons.append(f"no order for {idle} days")
    if view["service"]["complaints"]["unresolved"]:
        reasons.append("unresolved complaint")
    falling = _spend_falling(orders, now)
    if falling:
        reasons.append(f"spend falling in {', '.join(falling)}")
    if reasons:
        return "at_risk", reasons
    paid_at = sorted(_at(o["paid_at"]) for o in orders if o["paid_at"])
    if len(paid_at) >= 2 and (paid_at[-1] - paid_at[-2]).days > CHURNED_AFTER_DAYS:
        return "won_back", [f"bought again after {(paid_at[-1] - paid_at[-2]).days} days"]
    return None, []


def _spend_falling(orders: Any, now: datetime | None) -> list[str]:
    """Currencies whose net spend in the last window fell below SPEND_FALL_RATIO of the window before."""
    if now is None:
        return []
    window = timedelta(days=SPEND_WINDOW_DAYS)
    recent: dict[str, Decimal] = {}
    before: dict[str, Decimal] = {}
    for order in orders:
        paid_at = _instant(order["paid_at"])
        if paid_at is None or order["currency"] is None:
            continue
        net = _dec(order["paid"]) - _dec(order["refunded"])
        if now - window < paid_at <= now:
            recent[order["currency"]] = recent.get(order["currency"], Decimal(0)) + net
        elif now - 2 * window < paid_at <= now - window:
            before[order["currency"]] = before.get(order["currency"], Decimal(0)) + net
    return sorted(currency for currency, spent in before.items()
                  if spent > 0 and recent.get(currency, Decimal(0)) < spent * SPEND_FALL_RATIO)


def _derive_marketing(marketing: dict[str, Any]) -> None:
    leads = marketing["leads"]
    campaigns = {lead["campaign_id"] for lead in leads.values() if lead["campaign_id"]}
    marketing["campaigns"] = sorted(campaigns | set(marketing["linked_campaigns"]))
    # The newest lead (by capture, then id) speaks for the customer's score and grade.
    newest = max(leads.items(), key=lambda item: (item[1]["captured_at"] or "", item[0]), default=None)
    marketing["lead_score"] = newest[1]["score"] if newest else None
    marketing["lead_grade"] = newest[1]["grade"] if newest else None


def _derive_pipeline(pipeline: dict[str, Any]) -> None:
    open_total: dict[str, Decimal] = {}
    won_total: dict[str, Decimal] = {}
    won_by_owner: dict[str, dict[str, Decimal]] = {}
    for opportunity in pipeline["opportunities"].values():
        currency = opportunity["currency"]
        if currency is None:
            continue
        if opportunity["status"] == "open":
            _add(open_total, currency, opportunity["amount"])
        elif opportunity["status"] == "won":
            _add(won_total, currency, opportunity["won_amount"])
            _add(won_by_owner.setdefault(opportunity["owner"] or "", {}), currency, opportunity["won_amount"])
    pipeline["open_total"] = _money_map(open_total)
    pipeline["won_total"] = _money_map(won_total)
    pipeline["won_by_owner"] = {owner: _money_map(totals) for owner, totals in won_by_owner.items()}
    pipeline["owners"] = sorted({o["owner"] for o in pipeline["opportunities"].values() if o["owner"]})


def _derive_orders(orders: dict[str, Any]) -> int:
    """Totals of the orders; returns how many orders were ever paid."""
    revenue: dict[str, Decimal] = {}
    outstanding: dict[str, Decimal] = {}
    for order in orders["by_id"].values():
        due = Decimal(0)
        if order["status"] != "cancelled" and order["total"] is not None:
            due = max(_dec(order["total"]) - _dec(order["paid"]), Decimal(0))
        order["outstanding"] = _money(due)
        if order["currency"] is None:
            continue
        _add(revenue, order["currency"], str(_dec(order["paid"]) - _dec(order["refunded"])))
        if due:
            _add(outstanding, order["currency"], str(due))
    orders["revenue"] = _money_map(revenue)
    orders["outstanding"] = _money_map(outstanding)
    newest = max(orders["by_id"].items(), key=lambda item: (_order_time(item[1]), item[0]), default=None)
    orders["last_order"] = (
        {"order_id": newest[0], "status": newest[1]["status"], "total": newest[1]["total"],
         "currency": newest[1]["currency"], "placed_at": newest[1]["placed_at"]}
        if newest else None
    )
    return sum(1 for order in orders["by_id"].values() if order["paid_at"])


def _derive_service(service: dict[str, Any]) -> None:
    cases = service["cases"].values()
    service["open_cases"] = sum(1 for case in cases if case["status"] == "open")
    service["sla_breaches"] = sum(case["sla_breaches"] for case in cases)
    complaints = [case for case in cases if case["complaint"] is not None or case["is_complaint"]]
    service["complaints"] = {
        "total": len(complaints),
        "unresolved": sum(1 for case in complaints if case["status"] != "closed"
                          and case["complaint"] is not None and case["complaint"]["status"] == "open"),
    }
    scores = list(service["scores"].values())
    service["satisfaction"] = {"csi": satisfaction_index(scores), "responses": len(scores)}


def satisfaction_index(scores: list[int]) -> str | None:
    """CSI 0-100 of survey scores 1-5, as the service context defines it: (mean - 1) / 4 * 100, one decimal."""
    if not scores:
        return None
    index = Decimal((sum(scores) - len(scores)) * 25) / Decimal(len(scores))
    return str(index.quantize(Decimal("0.1"), rounding=ROUND_HALF_UP))


def _derive_loyalty(loyalty: dict[str, Any], as_of: str | None) -> None:
    """Points expiring: the balance is what is left of the newest lots (loyalty spends oldest first)."""
    left = loyalty["balance"]
    horizon = _at(as_of) + timedelta(days=POINTS_EXPIRING_WITHIN_DAYS) if as_of else None
    expiring, next_expiry = 0, None
    newest_first = sorted(loyalty["lots"].items(), key=lambda item: (_instant(item[1]["earned_at"]) or _EPOCH, item[0]),
                          reverse=True)
    for _, lot in newest_first:
        remaining = min(lot["points"], left)
        left -= remaining
        if remaining <= 0 or lot["expires_at"] is None:
            continue
        next_expiry = _earliest(next_expiry, lot["expires_at"])
        if horizon is not None and _at(lot["expires_at"]) <= horizon:
            expiring += remaining
    loyalty["points_expiring"] = expiring
    loyalty["next_expiry_at"] = next_expiry


# --- customer --------------------------------------------------------------------------------------

def _registered(view: View, payload: Payload, envelope: Envelope) -> None:
    view["profile"] = {k: payload.get(k) for k in ("name", "email", "phone", "company", "source_channel")}
    view["registered_at"] = envelope["occurred_at"]


def _profile_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    view["profile"].update(payload.get("changes") or {})


def _consent_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    view["consents"][payload["channel"]] = {
        "granted": payload["granted"], "source": payload.get("source"), "at": payload.get("at")
    }


def _credit_rating_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    view["credit"] = {"rating": payload["rating"], "limit": payload.get("limit"), "reason": payload.get("reason")}


def _graded(view: View, payload: Payload, envelope: Envelope) -> None:
    view["grade"] = {"grade": payload["grade"], "scores": payload.get("scores"), "reason": payload.get("reason")}


def _address_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    if payload.get("default", True):
        view["addresses"][payload["kind"]] = payload["address"]


def _lead_linked(view: View, payload: Payload, envelope: Envelope) -> None:
    # The campaign the lead came from is known here even before marketing's lead events arrive.
    _link_campaign(view, payload.get("campaign_id"))


def _link_campaign(view: View, campaign: str | None) -> None:
    if campaign and campaign not in view["marketing"]["linked_campaigns"]:
        view["marketing"]["linked_campaigns"] = sorted([*view["marketing"]["linked_campaigns"], campaign])


def _campaign_reached(view: View, payload: Payload, envelope: Envelope) -> None:
    _link_campaign(view, payload.get("campaign_id"))  # a campaign that reached the customer


def _erased(view: View, payload: Payload, envelope: Envelope) -> None:
    # The earliest erasure holds (one per customer in practice); `finish` forgets the person, so
    # whatever any origin folds before or after it, the view ends the same (rebuild equals live).
    view["erased_at"] = _earliest(view.get("erased_at"), payload.get("erased_at") or envelope["occurred_at"])


# --- erasure: what the view forgets of an erased customer (GDPR Art. 17, 19) -----------------------
#: Parts of payload keys that can name or reach a person, in any origin's events (a name, an address,
#: free text): such keys are dropped, at any depth, from an erased customer's timeline rows. Amounts,
#: dates, statuses, codes and ids stay (anonymous facts).
PERSONAL_KEY_PARTS = (
    "name", "email", "phone", "company", "address", "changes", "recipient", "sender", "contact", "line",
    "city", "postal", "body", "subject", "comment", "note", "description", "summary", "resolution", "reason",
    "title", "assessment",
)


def forget_person(view: View) -> None:
    """Clear every personal value of an erased customer's view; keep its anonymous facts."""
    view["profile"] = {"name": None, "email": None, "phone": None, "company": None,
                       "source_channel": view["profile"].get("source_channel"), "erased": True}
    view["addresses"] = {}
    for lead in view["marketing"]["leads"].values():
        lead.update(name=None, company=None)
    for opportunity in view["pipeline"]["opportunities"].values():
        opportunity.update(title=None, lost_reason=None)
    for case in view["service"]["cases"].values():
        case["subject"] = None
        if case.get("complaint"):
            case["complaint"]["summary"] = None


def forget_payload(payload: Any) -> Any:
    """A timeline payload of an erased customer: without the keys that can hold personal data."""
    if isinstance(payload, dict):
        return {k: forget_payload(v) for k, v in payload.items()
                if not any(part in k.lower() for part in PERSONAL_KEY_PARTS)}
    if isinstance(payload, list):
        return [forget_payload(item) for item in payload]
    return payload


def forgotten_summary(event_type: str, payload: Payload) -> str:
    """The timeline summary of an erased customer's event, from its forgotten payload."""
    return timeline_summary({"type": event_type, "payload": forget_payload(payload)})


# --- sales -----------------------------------------------------------------------------------------

def _opportunity(view: View, payload: Payload) -> dict[str, Any]:
    return view["pipeline"]["opportunities"].setdefault(payload["opportunity_id"], {
        "title": None, "status": "open", "stage": None, "probability": None, "amount": None, "currency": None,
        "owner": None, "expected_close_date": None, "opened_at": None, "lead_id": None, "quote": None,
        "won_amount": None, "closed_at": None, "lost_reason": None,
    })


def _opportunity_opened(view: View, payload: Payload, envelope: Envelope) -> None:
    _opportunity(view, payload).update({k: payload.get(k) for k in (
        "title", "stage", "probability", "amount", "currency", "owner", "expected_close_date", "opened_at", "lead_id")})


def _opportunity_stage_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    _opportunity(view, payload).update(stage=payload["to_stage"], probability=payload.get("probability"))


def _opportunity_amount_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    _opportunity(view, payload).update(amount=payload["amount"], currency=payload.get("currency"))


def _opportunity_close_date_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    _opportunity(view, payload)["expected_close_date"] = payload["expected_close_date"]


def _opportunity_reassigned(view: View, payload: Payload, envelope: Envelope) -> None:
    _opportunity(view, payload)["owner"] = payload["owner"]


def _quote(status: str) -> Callable[[View, Payload, Envelope], None]:
    def handle(view: View, payload: Payload, envelope: Envelope) -> None:
        opportunity = _opportunity(view, payload)
        shown = opportunity["quote"] or {}
        # A rejection carries no total: the quote's own, when it is the one shown.
        total = payload.get("total") or (shown.get("total") if shown.get("quote_id") == payload["quote_id"] else None)
        opportunity["quote"] = {"quote_id": payload["quote_id"], "version": payload.get("quote_version"),
                                "status": status, "total": total}
    return handle


def _opportunity_won(view: View, payload: Payload, envelope: Envelope) -> None:
    _opportunity(view, payload).update(
        status="won", stage="won", owner=payload.get("owner"), won_amount=payload.get("total"),
        currency=payload.get("currency"), closed_at=payload.get("won_at"))


def _opportunity_lost(view: View, payload: Payload, envelope: Envelope) -> None:
    _opportunity(view, payload).update(
        status="lost", stage="lost", owner=payload.get("owner"), lost_reason=payload.get("reason"),
        closed_at=payload.get("lost_at"))


# --- order -----------------------------------------------------------------------------------------

def _order(view: View, payload: Payload) -> dict[str, Any]:
    return view["orders"]["by_id"].setdefault(payload["order_id"], {
        "status": None, "currency": None, "total": None, "paid": "0.00", "refunded": "0.00", "outstanding": "0.00",
        "placed_at": None, "paid_at": None, "opportunity_id": None, "over_credit_limit": False,
        "shipments": 0, "returns": 0, "skus": [], "discounted": False,
    })


def _order_placed(view: View, payload: Payload, envelope: Envelope) -> None:
    _order(view, payload).update(
        status="placed", currency=payload.get("currency"), total=payload.get("total"),
        placed_at=payload.get("placed_at") or envelope["occurred_at"], opportunity_id=payload.get("opportunity_id"),
        over_credit_limit=bool(payload.get("over_credit_limit")))
    _order_lines(view, payload)


def _order_lines(view: View, payload: Payload) -> None:
    # What was bought (the analytics' cross-sell and depth) and whether at a discount (a promotion).
    lines = payload.get("lines") or []
    _order(view, payload).update(skus=sorted({line["sku"] for line in lines if line.get("sku")}),
                                 discounted=any(_dec(line.get("discount")) > 0 for line in lines))


def _order_confirmed(view: View, payload: Payload, envelope: Envelope) -> None:
    order = _order(view, payload)
    order.update(status="confirmed", total=payload.get("total", order["total"]),
                 currency=payload.get("currency", order["currency"]))


def _order_noted(view: View, payload: Payload, envelope: Envelope) -> None:
    _order(view, payload)  # e.g. a shipping address set: shown on the timeline, nothing to total


def _order_shipped(view: View, payload: Payload, envelope: Envelope) -> None:
    order = _order(view, payload)
    order["shipments"] += 1
    order["status"] = "shipped" if payload.get("fully_shipped", True) else "partly_shipped"


def _order_delivered(view: View, payload: Payload, envelope: Envelope) -> None:
    order = _order(view, payload)
    order["status"] = "delivered" if payload.get("fully_delivered", True) else "partly_delivered"


def _order_payment_recorded(view: View, payload: Payload, envelope: Envelope) -> None:
    order = _order(view, payload)
    order.update(paid=payload.get("paid_total", order["paid"]), currency=payload.get("currency", order["currency"]))


def _order_paid(view: View, payload: Payload, envelope: Envelope) -> None:
    order = _order(view, payload)
    order.update(status="paid", paid=payload.get("amount", order["total"] or order["paid"]),
                 currency=payload.get("currency", order["currency"]),
                 paid_at=payload.get("paid_at") or envelope["occurred_at"])


def _order_cancelled(view: View, payload: Payload, envelope: Envelope) -> None:
    _order(view, payload).update(status="cancelled", paid=payload.get("amount_paid", "0.00"))


def _order_return_recorded(view: View, payload: Payload, envelope: Envelope) -> None:
    order = _order(view, payload)
    order["returns"] += 1
    order["refunded"] = payload.get("refunded_total", order["refunded"])


def _order_refunded(view: View, payload: Payload, envelope: Envelope) -> None:
    order = _order(view, payload)
    order["refunded"] = payload.get("refunded_total", order["refunded"])
    if _dec(order["refunded"]) >= _dec(order["paid"]):
        order["status"] = "refunded"


# --- service ---------------------------------------------------------------------------------------

def _case(view: View, payload: Payload) -> dict[str, Any]:
    return view["service"]["cases"].setdefault(payload["case_id"], {
        "status": "open", "channel": None, "subject": None, "opened_at": None, "department": None,
        "priority": None, "group": None, "agent": None, "responded": False, "sla_breaches": 0,
        "escalation_level": 0, "resolved_at": None, "closed_at": None, "is_complaint": False, "complaint": None,
    })


def _case_opened(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload).update(status="open", channel=payload.get("channel"), subject=payload.get("subject"),
                                opened_at=payload.get("opened_at"))


def _case_noted(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload)  # acknowledged: known, nothing to show beyond the timeline


def _case_classified(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload).update(department=payload.get("department"), priority=payload.get("priority"))


def _case_assigned(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload).update(group=payload.get("group"), agent=payload.get("agent"))


def _case_responded(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload)["responded"] = True


def _case_sla_breached(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload)["sla_breaches"] += 1


def _case_escalated(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload)["escalation_level"] = payload.get("level", 0)


def _case_resolved(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload).update(status="resolved", resolved_at=payload.get("resolved_at"))


def _case_closed(view: View, payload: Payload, envelope: Envelope) -> None:
    case = _case(view, payload)
    case.update(status="closed", closed_at=payload.get("closed_at"),
                is_complaint=bool(payload.get("is_complaint")) or case["is_complaint"])


def _case_reopened(view: View, payload: Payload, envelope: Envelope) -> None:
    _case(view, payload).update(status="open", resolved_at=None, closed_at=None)


def _complaint(view: View, payload: Payload) -> dict[str, Any]:
    case = _case(view, payload)
    if case["complaint"] is None:
        case["complaint"] = {"status": "open", "category": None, "severity": None, "summary": None}
    return case["complaint"]


def _complaint_registered(view: View, payload: Payload, envelope: Envelope) -> None:
    _complaint(view, payload)
    _case(view, payload)["is_complaint"] = True


def _complaint_assessed(view: View, payload: Payload, envelope: Envelope) -> None:
    _complaint(view, payload).update(category=payload.get("category"), severity=payload.get("severity"))


def _complaint_resolved(view: View, payload: Payload, envelope: Envelope) -> None:
    _complaint(view, payload)["status"] = "resolved"


def _complaint_summarised(view: View, payload: Payload, envelope: Envelope) -> None:
    _complaint(view, payload)["summary"] = payload.get("summary")


def _faq_used(view: View, payload: Payload, envelope: Envelope) -> None:
    pass  # shown on the timeline only


def _survey_requested(view: View, payload: Payload, envelope: Envelope) -> None:
    view["service"]["surveys"][payload["survey_id"]] = {
        "subject": payload.get("subject"), "subject_id": payload.get("subject_id"),
        "requested_at": payload.get("requested_at"), "score": None,
    }


def _survey_answered(view: View, payload: Payload, envelope: Envelope) -> None:
    survey = view["service"]["surveys"].setdefault(payload["survey_id"], {
        "subject": payload.get("subject"), "subject_id": payload.get("subject_id"), "requested_at": None,
        "score": None})
    survey["score"] = payload["score"]
    # One score per surveyed subject, as the service context's CSI counts them.
    view["service"]["scores"][str(payload.get("subject_id") or payload["survey_id"])] = payload["score"]


def _survey_completed(view: View, payload: Payload, envelope: Envelope) -> None:
    view["service"]["scores"][str(payload["case_id"])] = payload["score"]


# --- loyalty ---------------------------------------------------------------------------------------

def _enrolled(view: View, payload: Payload, envelope: Envelope) -> None:
    view["loyalty"].update(account_id=payload.get("account_id"), tier=payload.get("tier"),
                           currency=payload.get("currency"), enrolled_at=payload.get("enrolled_at"))


def _lot_key(lot: Payload) -> str:
    return f"{lot.get('order_id')}|{lot.get('earned_at')}"


def _points_earned(view: View, payload: Payload, envelope: Envelope) -> None:
    loyalty = view["loyalty"]
    loyalty.update(balance=payload.get("balance", loyalty["balance"]), tier=payload.get("tier", loyalty["tier"]))
    points = payload.get("points", 0) - payload.get("debt_settled", 0)
    if points > 0:
        loyalty["lots"][_lot_key(payload)] = {
            "points": points, "earned_at": payload.get("earned_at"), "expires_at": payload.get("expires_at")}


def _take_from_lots(loyalty: dict[str, Any], lots: list[Payload]) -> None:
    for lot in lots:
        held = loyalty["lots"].get(_lot_key(lot))
        if held is None:
            continue
        held["points"] -= lot.get("points", 0)
        if held["points"] <= 0:
            del loyalty["lots"][_lot_key(lot)]


def _points_redeemed(view: View, payload: Payload, envelope: Envelope) -> None:
    view["loyalty"]["balance"] = payload.get("balance", view["loyalty"]["balance"])


def _points_expired(view: View, payload: Payload, envelope: Envelope) -> None:
    view["loyalty"]["balance"] = payload.get("balance", view["loyalty"]["balance"])
    _take_from_lots(view["loyalty"], payload.get("lots") or [])


def _points_taken_back(view: View, payload: Payload, envelope: Envelope) -> None:
    loyalty = view["loyalty"]
    loyalty.update(balance=payload.get("balance", loyalty["balance"]),
                   points_owed=payload.get("points_owed", loyalty["points_owed"]))
    _take_from_lots(loyalty, payload.get("lots") or [])


def _points_moved(view: View, payload: Payload, envelope: Envelope) -> None:
    # A merge or an unmerge moved lots between two customers' accounts: one event on each account, each
    # with that account's balance afterwards (what a merged view adds up stays the same).
    loyalty = view["loyalty"]
    loyalty.update(balance=payload.get("balance", loyalty["balance"]),
                   points_owed=payload.get("points_owed", loyalty["points_owed"]))
    for lot in payload.get("lots") or []:
        if payload.get("direction") == "in":
            loyalty["lots"][_lot_key(lot)] = {"points": lot.get("remaining", 0), "earned_at": lot.get("earned_at"),
                                              "expires_at": lot.get("expires_at")}
        else:
            loyalty["lots"].pop(_lot_key(lot), None)


def _tier_changed(view: View, payload: Payload, envelope: Envelope) -> None:
    view["loyalty"].update(tier=payload["to_tier"], rolling_spend=payload.get("rolling_spend"))


def _benefit_granted(view: View, payload: Payload, envelope: Envelope) -> None:
    view["loyalty"]["benefits"][payload["benefit_id"]] = {
        "level": payload.get("level"), "kind": payload.get("kind"), "description": payload.get("description"),
        "granted_at": payload.get("granted_at")}


_HANDLERS: dict[str, Callable[[View, Payload, Envelope], None]] = {
    "customer_registered": _registered,
    "customer_profile_changed": _profile_changed,
    "customer_consent_changed": _consent_changed,
    "customer_credit_rating_changed": _credit_rating_changed,
    "customer_graded": _graded,
    "customer_address_changed": _address_changed,
    "lead_linked": _lead_linked,
    "customer_erased": _erased,
    "campaign_member_reached": _campaign_reached,
    "opportunity_opened": _opportunity_opened,
    "opportunity_stage_changed": _opportunity_stage_changed,
    "opportunity_amount_changed": _opportunity_amount_changed,
    "opportunity_close_date_changed": _opportunity_close_date_changed,
    "opportunity_reassigned": _opportunity_reassigned,
    "quote_sent": _quote("sent"),
    "quote_accepted": _quote("accepted"),
    "quote_rejected": _quote("rejected"),
    "opportunity_won": _opportunity_won,
    "opportunity_lost": _opportunity_lost,
    "order_placed": _order_placed,
    "order_confirmed": _order_confirmed,
    "order_shipping_address_set": _order_noted,
    "order_shipped": _order_shipped,
    "order_delivered": _order_delivered,
    "order_payment_recorded": _order_payment_recorded,
    "order_paid": _order_paid,
    "order_cancelled": _order_cancelled,
    "order_return_recorded": _order_return_recorded,
    "order_refunded": _order_refunded,
    "case_opened": _case_opened,
    "case_acknowledged": _case_noted,
    "case_classified": _case_classified,
    "case_assigned": _case_assigned,
    "case_responded": _case_responded,
    "case_sla_breached": _case_sla_breached,
    "case_escalated": _case_escalated,
    "case_resolved": _case_resolved,
    "case_closed": _case_closed,
    "case_reopened": _case_reopened,
    "complaint_registered": _complaint_registered,
    "complaint_assessed": _complaint_assessed,
    "complaint_resolved": _complaint_resolved,
    "complaint_summarised": _complaint_summarised,
    "faq_used": _faq_used,
    "survey_requested": _survey_requested,
    "survey_answered": _survey_answered,
    "survey_completed": _survey_completed,
    "loyalty_account_enrolled": _enrolled,
    "points_earned": _points_earned,
    "points_redeemed": _points_redeemed,
    "points_expired": _points_expired,
    "points_taken_back": _points_taken_back,
    "tier_changed": _tier_changed,
    "loyalty_points_moved": _points_moved,
    "retention_benefit_granted": _benefit_granted,
}
#: Every event type this view knows: folded into a customer, into a lead, or deliberately not at all.
KNOWN_EVENTS = frozenset(_HANDLERS) | LEAD_EVENTS | NOT_ABOUT_A_CUSTOMER | MERGE_EVENTS | RECORD_MOVES


# --- small helpers ---------------------------------------------------------------------------------

def _instant(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def _earliest(a: str | None, b: str | None) -> str | None:
    """The earlier instant of two (as given); on the same instant the smaller text, so order never matters."""
    if a is None or b is None:
        return a or b
    return min(a, b, key=lambda t: (_instant(t), t))


def _latest(a: str | None, b: str | None) -> str | None:
    if a is None or b is None:
        return a or b
    return max(a, b, key=lambda t: (_instant(t), t))


def _dec(amount: Any) -> Decimal:
    try:
        return Decimal(str(amount)) if amount is not None else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def _money(amount: Decimal) -> str:
    return str(amount.quantize(_CENT, rounding=ROUND_HALF_UP))


def _add(totals: dict[str, Decimal], currency: str, amount: Any) -> None:
    totals[currency] = totals.get(currency, Decimal(0)) + _dec(amount)


def _money_map(totals: dict[str, Decimal]) -> dict[str, str]:
    return {currency: _money(amount) for currency, amount in sorted(totals.items())}


def _order_time(order: dict[str, Any]) -> tuple[datetime, str]:
    at = order["placed_at"] or order["paid_at"]
    return (_instant(at) or _EPOCH, at or "")
