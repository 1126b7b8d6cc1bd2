"""Policies: a service's reactions to other services' integration events, applied exactly once.

A policy is a function `(app, envelope) -> None` that calls one of the service's own commands (the
process-application pattern). The PolicyInbox feeds it, per origin in log order, and makes the
command's events and the inbox's tracking record ONE transaction: eventsourcing's process recorder
writes a tracking row (origin, position) in the same transaction as the events, and refuses a
position at or below the one it holds. So:

- a crash before the commit leaves neither the effect nor the tracking: the event is applied again;
- a crash after it leaves both: the redelivered event is a duplicate and is dropped;
- two replicas reacting to the same event at once: one commit wins, the other's tracking insert
  fails, and its command (whose ids derive from the event, so it collides too) changes nothing.

A reaction makes at most one save (one transaction). A reaction that saves nothing still records its
tracking, alone. Events with no reaction at all (most of an origin's stream) only move the position:
it is recorded at most once per `skip_record_interval` and when the consumer goes idle, never per
event, since forgetting it costs only a re-pull of events that change nothing. The position is kept
in memory and read again from the database only when an envelope does not follow it (another
replica moved it). The gap rules are the read-side inbox's (crm_runtime.inbox): an envelope whose
`previous` is the tracked position is applied, one at or below it is a duplicate, one further ahead
makes the inbox pull the missing range from the origin's feed first.

An event whose reaction keeps failing for a reason of its own (not a database or feed outage) is
parked on the consumer's last attempt: a ParkedReaction (the envelope and the reason, in the
service's own event store, never published) is saved with the event's tracked position, in one
transaction, so the reaction happened zero times, visibly, and the origin's later events flow on.
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from eventsourcing.domain import Aggregate
from eventsourcing.persistence import IntegrityError, Tracking

from crm_contracts.errors import StaleVersionError
from crm_runtime import tracing
from crm_runtime.commands import derived_id
from crm_runtime.eventstore import ReactionSavedTwiceError, ServiceApplication, command_metadata, reaction_tracking
from crm_runtime.inbox import Envelope, FeedUnavailableError, Fetch, Outcome, is_transient, receive_by_origin

log = logging.getLogger(__name__)

Reaction = Callable[[Any, Envelope], None]

_PARKED_NAMESPACE = uuid.UUID("5f0c6a52-2b0e-4d43-9d77-2f4b1c3a9e10")


class ParkedReaction(Aggregate):
    """An event a policy could not react to, with the reason: for an operator, in the service's own store."""

    def __init__(self, origin: str, position: int, event_type: str, reason: str, envelope: dict[str, Any]) -> None:
        self.origin = origin
        self.position = position
        self.event_type = event_type
        self.reason = reason
        self.envelope = envelope

    @staticmethod
    def create_id(origin: str, position: int, **_: Any) -> uuid.UUID:
        return derived_id(_PARKED_NAMESPACE, origin, position)


class Policies:
    """A service's reactions, by (origin, event type): what its policy queue binds and applies."""

    def __init__(self, service: str) -> None:
        self.service = service
        self._reactions: dict[tuple[str, str], Reaction] = {}

    def reacts_to(self, origin: str, event_type: str) -> Callable[[Reaction], Reaction]:
        """Register `reaction` for events of `event_type` published by `origin`."""

        def register(reaction: Reaction) -> Reaction:
            self._reactions[(origin, event_type)] = reaction
            return reaction

        return register

    def reaction_for(self, envelope: Envelope) -> Reaction | None:
        return self._reactions.get((envelope.get("origin"), envelope.get("type")))  # type: ignore[arg-type]

    @property
    def origins(self) -> list[str]:
        return sorted({origin for origin, _ in self._reactions})

    @property
    def bindings(self) -> list[str]:
        """Routing keys of crm.events the policy queue binds (each origin's whole stream, for the chain)."""
        return [f"{origin}.#" for origin in self.origins]

    @property
    def queue(self) -> str:
        return f"{self.service}.events"


@dataclass
class PolicyInbox:
    """Applies envelopes to an event-sourced application through its policies, exactly once."""

    app: ServiceApplication
    policies: Policies
    fetch: Fetch | None
    pull_limit: int = 1000
    attempts: int = 5
    #: Seconds between recordings of a position moved only by events with no reaction.
    skip_record_interval: float = 1.0
    #: The position of every origin as far as this process knows (applied, or skipped and maybe not recorded).
    _tracked: dict[str, int] = field(default_factory=dict)
    #: The position known to be recorded in the database, and when this process last recorded one.
    _recorded: dict[str, int] = field(default_factory=dict)
    _recorded_at: dict[str, float] = field(default_factory=dict)

    parked_since_start: int = 0

    def positions(self) -> dict[str, int]:
        """The tracked position of every origin the policies listen to."""
        return {origin: self._position(origin) for origin in self.policies.origins}

    def close(self) -> None:
        """Record what was skipped; the application itself belongs to the service."""
        with contextlib.suppress(Exception):  # best effort: forgetting it costs a re-pull, nothing else
            self.flush()

    def flush(self) -> None:
        """Record every position moved only by events with no reaction (the consumer calls it when idle)."""
        for origin, position in list(self._tracked.items()):
            self._record_skipped(origin, position, now=True)

    def parked_count(self) -> int:
        """Events parked by this process since it started (each is a ParkedReaction in the event store)."""
        return self.parked_since_start

    def acts_on(self, envelope: Envelope) -> bool:
        """Whether a policy reacts to the envelope; the others matter only for their place in the chain."""
        return self.policies.reaction_for(envelope) is not None

    def receive(self, envelopes: Iterable[Envelope], park: bool = False) -> Outcome:
        """Apply a batch of envelopes from any origins, in any order, possibly repeated.

        With `park`, an event whose reaction fails for a reason of its own is parked and the rest of
        its origin applies; without it, a failure leaves the origin's remaining events for a retry.
        """
        return receive_by_origin(envelopes, lambda origin, group, outcome: self._receive_from(
            origin, group, outcome, park=park))

    def catch_up(self, origin: str, park: bool = True) -> Outcome:
        """Pull and apply everything `origin` published after the tracked position (parking poison:
        catch-up is itself the late retry of whatever the queue could not apply)."""
        outcome = Outcome()
        while True:
            before = outcome.applied + outcome.duplicates + len(outcome.parked)
            self._receive_from(origin, [], outcome, pull_always=True, park=park)
            if outcome.applied + outcome.duplicates + len(outcome.parked) == before:
                return outcome

    # -- one origin ------------------------------------------------------------------------------

    def _receive_from(
        self, origin: str, group: list[Envelope], outcome: Outcome, pull_always: bool = False, park: bool = False
    ) -> None:
        tracked = self._position(origin)
        pending = deque(sorted(group, key=lambda e: e["position"]))
        if pull_always:
            pulled = self._pull(origin, tracked)
            outcome.pulled += len(pulled)
            pending.extendleft(reversed(pulled))
        try:
            while pending:
                envelope = pending.popleft()
                if envelope["position"] <= tracked:
                    outcome.duplicates += 1
                elif envelope["previous"] == tracked and self.policies.reaction_for(envelope) is None:
                    # Nothing to do: only the position moves, recorded later for the run of such events
                    # (_record_skipped, or with the next reaction's save, whose tracking is further still).
                    tracked = self._tracked[origin] = envelope["position"]
                    outcome.applied += 1
                elif envelope["previous"] == tracked:
                    try:
                        applied = self._apply(envelope)
                    except Exception as exc:
                        if not park or is_transient(exc):
                            raise
                        self._park(envelope, f"{type(exc).__name__}: {exc}", outcome)
                    else:
                        outcome.applied += applied
                        outcome.duplicates += not applied
                    tracked = self._position(origin)
                elif (fresh := self._position(origin, refresh=True)) != tracked:
                    tracked = fresh  # another replica moved it: judge the envelope again
                    pending.appendleft(envelope)
                else:
                    pulled = self._pull(origin, tracked)
                    outcome.pulled += len(pulled)
                    if not pulled or pulled[0]["position"] > envelope["position"]:
                        raise FeedUnavailableError(
                            f"{origin} feed has nothing after {tracked} up to {envelope['position']}"
                        )
                    pending.appendleft(envelope)
                    pending.extendleft(reversed(pulled))
        except Exception:
            with contextlib.suppress(Exception):  # best effort: the error below is what the caller acts on
                self._record_skipped(origin, tracked)
            raise
        with contextlib.suppress(Exception):  # best effort: forgetting it costs a re-pull, nothing else
            self._record_skipped(origin, tracked)

    def _record_skipped(self, origin: str, position: int, now: bool = False) -> None:
        """Record `position` when events with no reaction moved it past the recorded one (nothing saved
        it): at most once per `skip_record_interval`, or `now`."""
        if position <= self._recorded.get(origin, 0):
            return
        clock = time.monotonic()
        last = self._recorded_at.get(origin)
        if not now and last is not None and clock - last < self.skip_record_interval:
            return
        try:
            self.app.record_tracking(Tracking(origin, position))
        except IntegrityError:
            pass  # another replica recorded this position or a later one: nothing is lost
        self._recorded[origin] = position
        self._recorded_at[origin] = clock

    def _apply(self, envelope: Envelope) -> bool:
        """React to one envelope; False when another replica got there first (a duplicate)."""
        origin, position = envelope["origin"], envelope["position"]
        reaction = self.policies.reaction_for(envelope)
        for attempt in range(1, self.attempts + 1):
            tracking = Tracking(origin, position)
            try:
                with command_metadata(envelope.get("correlation_id"), envelope["event_id"]), \
                        tracing.reacting(envelope), reaction_tracking(tracking) as pending:
                    if reaction is not None:
                        reaction(self.app, envelope)
                    if not pending.recorded:
                        self.app.record_tracking(tracking)
            except ReactionSavedTwiceError:
                raise
            except Exception as exc:
                # Either this position is tracked already (another replica reacted: its collision may
                # surface as the domain's own conflict error), or the command lost a race on one of
                # its aggregates and is tried again on fresh state.
                if self._position(origin, refresh=True) >= position:
                    return False
                if attempt == self.attempts or not isinstance(exc, IntegrityError | StaleVersionError):
                    raise
                continue
            self._tracked[origin] = self._recorded[origin] = position
            return True
        return False  # not reached: the last attempt returns or raises

    def _park(self, envelope: Envelope, reason: str, outcome: Outcome) -> None:
        """Record that `envelope` could not be reacted to, with its tracked position, in one transaction."""
        origin, position = envelope["origin"], envelope["position"]
        log.error("parked event %s of %s (%s): %s", position, origin, envelope.get("type"), reason,
                  extra={"origin": origin, "reason": reason})
        parked = ParkedReaction(origin, position, envelope.get("type", ""), reason[:2000], envelope)
        with reaction_tracking(Tracking(origin, position)):
            try:
                self.app.save(parked)
            except IntegrityError:
                if self._position(origin, refresh=True) < position:
                    raise
                return  # another replica got there first
        self._tracked[origin] = self._recorded[origin] = position
        self.parked_since_start += 1
        outcome.parked.append((envelope, reason))

    def _position(self, origin: str, refresh: bool = False) -> int:
        """The tracked position: this process's own, or, with `refresh`, the database's where it is
        further (another replica's work; what this process skipped may not be recorded yet)."""
        if refresh or origin not in self._tracked:
            recorded = self.app.tracked_position(origin)
            self._recorded[origin] = max(recorded, self._recorded.get(origin, 0))
            self._tracked[origin] = max(recorded, self._tracked.get(origin, 0))
        return self._tracked[origin]

    def _pull(self, origin: str, position: int) -> list[Envelope]:
        if self.fetch is None:
            raise FeedUnavailableError("this inbox has no feed to pull from")
        try:
            return self.fetch(origin, position, self.pull_limit)
        except Exception as exc:  # noqa: BLE001 - any transport failure means "not now"
            raise FeedUnavailableError(f"pulling {origin} after {position} failed: {exc}") from exc
