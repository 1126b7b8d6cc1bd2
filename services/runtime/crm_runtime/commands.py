"""Commands that take effect once: a command id recorded in the same transaction as the command's events.

A command reaches a service more than once when the broker redelivers it (a replica killed mid-call)
or when a client retries after an ambiguous answer (the gateway's RPC deadline passed, but the command
may still commit). Each command carries an id (the gateway's per-claim id, or one derived from the
event a policy reacts to). `IdempotentApplication.once` runs a command under its id:

- the first run saves a `ProcessedCommand` marker, whose aggregate id is derived from the command id,
  in the same `save()` (one transaction) as the command's own aggregates, so both commit or neither;
- a later run finds the marker and answers the current state instead of running again;
- two runs racing each other both pass that check, but the event store's unique
  (originator_id, version) lets only one marker (and so only one set of effects) commit; the loser's
  failure, whatever the application made of it (a version conflict, a taken email), is turned into
  the current state too, because the marker now exists.

Markers are internal: no publishing.py translates `ProcessedCommand`, so the relay and the feed skip
them (a Translator answers None for a class it does not know).

Ids derived from several parts use `derived_id`: uuid5 over a JSON array, never a joined string, so
("a:b", "c") and ("a", "b:c") differ.

How a service uses it (crm_customer.application is the worked example):

1. its application subclasses `IdempotentApplication` instead of `ServiceApplication`;
2. each command method takes `command_id: str | None = None` and wraps its load-call-save in
   `self.once(command_id, run, current)`, where `current` loads what the command answers (the
   aggregate as it is now); a command that creates derives the new id from the command id
   (`derived_id(NAMESPACE, command_id)`, or with more parts for an entry inside an aggregate);
3. its `@rpc` methods take `command_id` and pass it on; the gateway sends one with every mutating
   call, and a policy uses the id of the event it reacts to.

A command should make one successful save (the marker rides on the first one). Do not nest `once`.
"""

from __future__ import annotations

import contextvars
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from eventsourcing.domain import Aggregate, event

from crm_runtime.eventstore import ServiceApplication

T = TypeVar("T")

#: Namespace of the marker ids (uuid5); fixed forever, or every processed command is forgotten.
PROCESSED_COMMAND_NAMESPACE = uuid.UUID("6f1c2b9e-3d47-4a8e-9b15-c0d7e2a4f863")


def derived_id(namespace: uuid.UUID, *parts: str | int | uuid.UUID) -> uuid.UUID:
    """A deterministic id from `parts`: uuid5 over their JSON array, so no two part lists collide."""
    encoded = json.dumps([str(part) if isinstance(part, uuid.UUID) else part for part in parts],
                         separators=(",", ":"), ensure_ascii=True)
    return uuid.uuid5(namespace, encoded)


class ProcessedCommand(Aggregate):
    """The record that command `command_id` took effect. One event, never changed; its id is derived
    from the command id, so a second marker for the same command collides in the event store."""

    @staticmethod
    def id_for(command_id: str) -> uuid.UUID:
        return derived_id(PROCESSED_COMMAND_NAMESPACE, command_id)

    @classmethod
    def create_id(cls, command_id: str) -> uuid.UUID:
        return cls.id_for(command_id)

    @event("Processed")
    def __init__(self, command_id: str) -> None:
        self.command_id = command_id


@dataclass
class _RunningCommand:
    """The command this (green) thread is running: its id, and whether its marker is saved yet."""

    command_id: str
    recorded: bool = False


_running: contextvars.ContextVar[_RunningCommand | None] = contextvars.ContextVar("crm_running_command", default=None)


class IdempotentApplication(ServiceApplication):
    """A ServiceApplication whose commands run `once` per command id."""

    def once(self, command_id: str | None, command: Callable[[], T], current: Callable[[], T]) -> T:
        """Run `command` unless `command_id` took effect already; then (or when a racing run of the
        same command won) answer `current()`, the state as it is now. No id: just run it."""
        if command_id is None:
            return command()
        # No look-up first: a command that took effect already fails when run again (its marker, saved
        # with its first save, collides in the event store, or the domain refuses the repeat), and the
        # look-up below tells that failure from a real one. A retry costs a second run; every first
        # delivery saves the round trip.
        token = _running.set(_RunningCommand(command_id))
        try:
            return command()
        except Exception:
            # Another delivery of this command may have committed while this one ran: then this
            # failure (typically its lost race) is not the command's outcome; the current state is.
            if self.processed(command_id):
                return current()
            raise
        finally:
            _running.reset(token)

    def processed(self, command_id: str) -> bool:
        """Whether the command with this id has taken effect."""
        return bool(self.recorder.select_events(ProcessedCommand.id_for(command_id), limit=1))

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """Save, adding the running command's marker to its first successful save (same transaction)."""
        running = _running.get()
        if running is None or running.recorded:
            return super().save(*objs, **kwargs)
        # A fresh marker per attempt: a failed save consumes the pending events of what it was given.
        result = super().save(*objs, ProcessedCommand(command_id=running.command_id), **kwargs)
        running.recorded = True
        return result
