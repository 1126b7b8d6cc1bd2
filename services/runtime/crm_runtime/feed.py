"""A service's published event feed: its notification log translated into envelopes.

The outbox relay publishes from it and `events_since` serves it over RPC, so a re-published or
re-pulled event is byte-for-byte the event first published (guarantees 2, 3 and 4; an erasure redacts
its personal fields, see below).

A notification that can never become an envelope (the mapper cannot decode its state, or the
service's publishing.py raises on it) is a poison event. The feed treats it as "not published",
exactly as it treats an internal event: the relay and `events_since` skip it alike, so the
`previous` chain goes from the event before it to the event after it, and no consumer ever sees it
as a gap. The page reports it (`FeedPage.unpublishable`) so the relay parks it where an operator
sees it. Translation is a function of the stored event and, for personal fields, of whether the
person's data key still exists (crm_runtime.crypto): after an erasure the same event translates to
the same envelope with those fields redacted, at the same position, so the chain never changes.

An event whose class this process cannot import (TopicError) is not poison: during a rolling deploy
a newer replica wrote it, and that replica's relay can publish it. The error propagates; the relay
backs off, gives up its leadership for a while, and retries. Nor is a database error while
translating (a mapper that reads the data key of a person, crm_runtime.crypto, during an outage):
it propagates too, and the relay retries, rather than parking an event that is fine.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import eventsourcing.persistence
import psycopg
import psycopg2
from eventsourcing.application import Application
from eventsourcing.utils import TopicError

from crm_contracts.envelope import event_id_for
from crm_contracts.integration import Translator
from crm_runtime.eventstore import event_metadata
from crm_runtime.tracing import TRACEPARENT

log = logging.getLogger(__name__)

#: Failures to translate that say nothing about the event: a class this process does not know yet, or
#: the database unavailable (eventsourcing's datastore re-raises psycopg's errors as its own).
NOT_POISON: tuple[type[BaseException], ...] = (
    TopicError,
    eventsourcing.persistence.OperationalError,
    eventsourcing.persistence.InterfaceError,
    psycopg.OperationalError,
    psycopg2.OperationalError,
)

#: Notifications read from the log per query while scanning.
SCAN_PAGE = 1000


@dataclass(frozen=True)
class Unpublishable:
    """A notification that can never be published: where it is, what it is, and why."""

    position: int
    topic: str
    reason: str


@dataclass
class FeedPage:
    """Envelopes read after a position, and where the scan stopped."""

    envelopes: list[dict[str, Any]] = field(default_factory=list)
    #: The last notification id scanned (published or internal): resume after it.
    scanned_to: int = 0
    #: The position of the last published event up to `scanned_to`.
    last_published: int = 0
    #: Poison notifications scanned and skipped (see the module docstring).
    unpublishable: list[Unpublishable] = field(default_factory=list)


class EventFeed:
    """Reads an application's notification log as envelopes of integration events."""

    def __init__(self, app: Application, translator: Translator) -> None:
        self.app = app
        self.translator = translator
        self.origin = translator.origin

    def head(self) -> int:
        """The newest notification id in the log (0 when empty)."""
        return self.app.recorder.max_notification_id() or 0

    def read(self, after: int, limit: int, previous: int | None = None) -> FeedPage:
        """Up to `limit` envelopes for notifications after `after`.

        `previous` is the position of the last published event at or before `after`; a consumer
        asking from its tracked position passes nothing, since that position is a published one.
        """
        page = FeedPage(scanned_to=after, last_published=after if previous is None else previous)
        while len(page.envelopes) < limit:
            notifications = self.app.recorder.select_notifications(
                start=page.scanned_to, limit=SCAN_PAGE, inclusive_of_start=False
            )
            preload = getattr(self.app.mapper, "preload", None)
            if preload is not None:  # personal data: every key this page needs, in one query (crm_runtime.crypto)
                preload(notifications)
            for notification in notifications:
                page.scanned_to = notification.id
                envelope = self._envelope(notification, page.last_published)
                if isinstance(envelope, Unpublishable):
                    page.unpublishable.append(envelope)
                elif envelope is not None:
                    page.envelopes.append(envelope)
                    page.last_published = notification.id
                    if len(page.envelopes) >= limit:
                        return page
            if len(notifications) < SCAN_PAGE:
                break
        return page

    def events_since(self, position: int, limit: int) -> list[dict[str, Any]]:
        """The envelopes published after `position` (a consumer's tracked position), oldest first."""
        return self.read(position, limit).envelopes

    def _envelope(self, notification: Any, previous: int) -> dict[str, Any] | Unpublishable | None:
        """The envelope of one notification; None for an internal event; Unpublishable for poison."""
        try:
            return self._translate(notification, previous)
        except NOT_POISON:
            raise  # not the event's fault: see the module docstring
        except Exception as exc:  # noqa: BLE001 - any other failure to translate is poison: reported, never raised
            reason = f"{type(exc).__name__}: {exc}"
            log.warning("%s: notification %s (%s) cannot be published: %s", self.origin, notification.id,
                        notification.topic, reason)
            return Unpublishable(notification.id, notification.topic, reason[:2000])

    def _translate(self, notification: Any, previous: int) -> dict[str, Any] | None:
        domain_event = self.app.mapper.to_domain_event(notification)
        integration = self.translator.translate(domain_event)
        if integration is None:
            return None
        meta = event_metadata(domain_event)
        envelope = {
            "event_id": event_id_for(notification.originator_id, notification.originator_version),
            "type": integration.type,
            "version": integration.version,
            "origin": self.origin,
            "position": notification.id,
            "previous": previous,
            "occurred_at": domain_event.timestamp.isoformat(),  # type: ignore[attr-defined]
            "customer_id": integration.customer_id,
            "correlation_id": meta.correlation_id,
            "causation_id": meta.causation_id,
        }
        if meta.traceparent is not None:  # only what was stored with the event: the same bytes every time
            envelope[TRACEPARENT] = meta.traceparent
        envelope["payload"] = integration.payload
        return envelope
