"""The 360° view of one customer as a pure fold over envelopes. No database, no framework.

Events come from six origins in no global order, so every rule here is an upsert that gives the same
result in any interleaving across origins (within one origin, events arrive in order): values owned by
one origin are set by that origin only; cross-origin values are maxima, sums or set unions. That is
what makes a rebuilt view equal the incrementally built one, row for row.
"""

from __future__ import annotations

from copy import deepcopy
from typing import Any

Envelope = dict[str, Any]
View = dict[str, Any]

#: Relationship stages (DOMAIN.md), in the order a customer walks them. The stage is the furthest
#: reached: events only ever move it forward, so any interleaving gives the same stage.
STAGES = ("prospect", "lead", "qualified_lead", "opportunity", "customer", "repeat_customer", "loyal")
STAGE_REACHED_BY = {
    "customer_registered": "prospect",
    "lead_captured": "lead",
    "lead_qualified": "qualified_lead",
    "lead_converted": "qualified_lead",
    "opportunity_opened": "opportunity",
    "opportunity_won": "opportunity",
    "order_paid": "customer",
}
#: Each relationship stage shown with the relationship-cycle phase of the practice notes (002).
CYCLE_PHASES = {
    "prospect": "breakthrough",
    "lead": "breakthrough",
    "qualified_lead": "breakthrough",
    "opportunity": "breakthrough",
    "customer": "consolidation",
    "repeat_customer": "consolidation",
    "loyal": "harvest",
}
TIMELINE_SUMMARIES = {
    "customer_registered": "registered via {source_channel}",
    "customer_profile_changed": "profile changed",
    "customer_consent_changed": "consent for {channel} set to {granted}",
    "customer_credit_rating_changed": "credit rating set to {rating}",
    "customer_graded": "graded {grade}",
}


def empty_view(customer_id: str) -> View:
    return {
        "customer_id": customer_id,
        "profile": {},
        "consents": {},
        "credit": None,
        "grade": None,
        "lifecycle_stage": None,
        "relationship_phase": None,
        "registered_at": None,
        "first_seen_at": None,
        "last_activity_at": None,
        "events": {},
        "paid_orders": 0,
    }


def apply(view: View | None, envelope: Envelope) -> View:
    """The view after `envelope` (which must carry a customer_id); `view` itself is left as it was."""
    fresh = deepcopy(view) if view is not None else empty_view(envelope["customer_id"])
    fold_into(fresh, envelope)
    return fresh


def fold_into(view: View, envelope: Envelope) -> None:
    """Apply `envelope` to `view` in place: for batches that own their views (no copy per event)."""
    occurred = envelope["occurred_at"]
    view["first_seen_at"] = min(filter(None, [view["first_seen_at"], occurred]))
    view["last_activity_at"] = max(filter(None, [view["last_activity_at"], occurred]))
    view["events"][envelope["origin"]] = view["events"].get(envelope["origin"], 0) + 1
    handler = _HANDLERS.get(envelope["type"])
    if handler is not None:
        handler(view, envelope["payload"], envelope)
    _advance_stage(view, envelope["type"])


def timeline_summary(envelope: Envelope) -> str:
    """A one-line, human-readable account of the event for the timeline."""
    template = TIMELINE_SUMMARIES.get(envelope["type"])
    if template is None:
        return envelope["type"].replace("_", " ")
    try:
        return template.format(**envelope["payload"])
    except (KeyError, IndexError):
        return envelope["type"].replace("_", " ")


def _advance_stage(view: View, event_type: str) -> None:
    reached = STAGE_REACHED_BY.get(event_type)
    if event_type == "order_paid" and view["paid_orders"] > 1:
        reached = "repeat_customer"
    if reached is None:
        return
    current = view["lifecycle_stage"]
    if current is None or STAGES.index(reached) > STAGES.index(current):
        view["lifecycle_stage"] = reached
        view["relationship_phase"] = CYCLE_PHASES[reached]


def _registered(view: View, payload: dict[str, Any], envelope: Envelope) -> None:
    view["profile"] = {k: payload.get(k) for k in ("name", "email", "phone", "company", "source_channel")}
    view["registered_at"] = envelope["occurred_at"]


def _profile_changed(view: View, payload: dict[str, Any], envelope: Envelope) -> None:
    view["profile"].update(payload["changes"])


def _consent_changed(view: View, payload: dict[str, Any], envelope: Envelope) -> None:
    view["consents"][payload["channel"]] = {
        "granted": payload["granted"], "source": payload["source"], "at": payload["at"]
    }


def _credit_rating_changed(view: View, payload: dict[str, Any], envelope: Envelope) -> None:
    view["credit"] = {"rating": payload["rating"], "limit": payload.get("limit"), "reason": payload.get("reason")}


def _graded(view: View, payload: dict[str, Any], envelope: Envelope) -> None:
    view["grade"] = {"grade": payload["grade"], "scores": payload["scores"], "reason": payload.get("reason")}


def _order_paid(view: View, payload: dict[str, Any], envelope: Envelope) -> None:
    view["paid_orders"] += 1


_HANDLERS = {
    "customer_registered": _registered,
    "customer_profile_changed": _profile_changed,
    "customer_consent_changed": _consent_changed,
    "customer_credit_rating_changed": _credit_rating_changed,
    "customer_graded": _graded,
    "order_paid": _order_paid,
}
