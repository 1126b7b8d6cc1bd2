"""The catalog of published integration events: (type, version) -> schema and sample."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from apispec.ext.marshmallow import OpenAPIConverter
from marshmallow import Schema, fields

SchemaClass = type[Schema]

SAMPLES_DIR = Path(__file__).parent / "samples"
SCHEMAS_DIR = Path(__file__).parent / "schemas"


def _decimal_as_string(converter: Any, field: fields.Field, **_: Any) -> dict[str, Any]:
    # apispec binds this to its converter (hence `converter`). It documents every Decimal as a JSON
    # number; one dumped `as_string` is a string on the wire.
    if isinstance(field, fields.Decimal) and field.as_string:
        return {"type": ["string", "null"] if field.allow_none else "string", "format": "decimal"}
    return {}


def json_schema_of(schema: SchemaClass | Schema) -> dict[str, Any]:
    """A marshmallow schema as JSON Schema, nested schemas inline (what the event catalogs publish)."""
    converter = OpenAPIConverter("3.1.0", schema_name_resolver=lambda s: None, spec=None)  # type: ignore[arg-type]
    converter.add_attribute_function(_decimal_as_string)
    return converter.schema2jsonschema(schema)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class EventContract:
    """One published event type at one schema version."""

    type: str
    version: int
    origin: str
    schema: SchemaClass
    sample: dict[str, Any]

    @property
    def key(self) -> str:
        return f"{self.type}.v{self.version}"

    def json_schema(self) -> dict[str, Any]:
        """The payload schema as JSON Schema (draft 2020-12 compatible subset)."""
        body = json_schema_of(self.schema)
        return {
            "$schema": "https://json-schema.org/draft/2020-12/schema",
            "$id": f"crm:{self.key}",
            "title": self.key,
            "description": (self.schema.__doc__ or "").strip(),
            "x-origin": self.origin,
            "x-routing-key": f"{self.origin}.{self.type}",
            **body,
        }

    def recorded_sample(self) -> dict[str, Any] | None:
        path = SAMPLES_DIR / f"{self.key}.json"
        return json.loads(path.read_text()) if path.exists() else None


class Catalog:
    """Registry of every published event contract, filled by the per-service contract modules."""

    def __init__(self) -> None:
        self._contracts: dict[tuple[str, int], EventContract] = {}

    def event(
        self, event_type: str, version: int, *, origin: str, sample: dict[str, Any]
    ) -> Callable[[SchemaClass], SchemaClass]:
        """Class decorator: register a payload schema as event `event_type` at `version`."""

        def register(schema: SchemaClass) -> SchemaClass:
            key = (event_type, version)
            if key in self._contracts:
                raise ValueError(f"event contract {event_type} v{version} is registered twice")
            self._contracts[key] = EventContract(event_type, version, origin, schema, sample)
            schema.event_type = event_type  # type: ignore[attr-defined]
            schema.event_version = version  # type: ignore[attr-defined]
            return schema

        return register

    def get(self, event_type: str, version: int) -> EventContract:
        try:
            return self._contracts[(event_type, version)]
        except KeyError:
            raise KeyError(f"no contract for event {event_type!r} version {version}") from None

    def latest(self, event_type: str) -> EventContract:
        versions = [c for (t, _), c in self._contracts.items() if t == event_type]
        if not versions:
            raise KeyError(f"no contract for event {event_type!r}")
        return max(versions, key=lambda c: c.version)

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._contracts.values(), key=lambda c: (c.origin, c.type, c.version)))

    def __len__(self) -> int:
        return len(self._contracts)


catalog = Catalog()


def load_all() -> Catalog:
    """Import every contract module so the catalog is complete."""
    import importlib
    import pkgutil

    import crm_contracts

    for module in pkgutil.iter_modules(crm_contracts.__path__):
        if not module.ispkg and module.name not in {"catalog", "export", "__main__"}:
            importlib.import_module(f"crm_contracts.{module.name}")
    return catalog
