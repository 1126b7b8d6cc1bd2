"""Domain event -> integration event translation, shared by every service's publishing.py."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from marshmallow import Schema

from crm_contracts.catalog import catalog
from crm_contracts.fields import schema_of

E = TypeVar("E")


@dataclass(frozen=True)
class IntegrationEvent:
    """What a domain event means to the outside world: a typed, versioned, serialised payload."""

    type: str
    version: int
    payload: dict[str, Any]
    customer_id: str | None


def integration_event(
    schema: type[Schema], payload: dict[str, Any], customer_id: Any = None
) -> IntegrationEvent:
    """Serialise `payload` through the contract `schema` (registered in the catalog)."""
    contract = catalog.get(schema.event_type, schema.event_version)  # type: ignore[attr-defined]
    return IntegrationEvent(
        type=contract.type,
        version=contract.version,
        payload=schema_of(schema).dump(payload),
        customer_id=str(customer_id) if customer_id is not None else None,
    )


class Translator:
    """Maps domain event classes to functions that build their integration events.

    A domain event class with no translation is internal to its service and never published.
    """

    def __init__(self, origin: str) -> None:
        self.origin = origin
        self._translations: dict[type, Callable[[Any], IntegrationEvent]] = {}

    def translates(
        self, *event_classes: type[E]
    ) -> Callable[[Callable[[E], IntegrationEvent]], Callable[[E], IntegrationEvent]]:
        def register(func: Callable[[E], IntegrationEvent]) -> Callable[[E], IntegrationEvent]:
            for cls in event_classes:
                self._translations[cls] = func
            return func

        return register

    def translate(self, domain_event: Any) -> IntegrationEvent | None:
        """The integration event for `domain_event`, or None when it is internal."""
        func = self._translations.get(type(domain_event))
        return func(domain_event) if func else None

    @property
    def published_classes(self) -> list[type]:
        return list(self._translations)
