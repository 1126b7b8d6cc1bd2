"""The event catalog as an AsyncAPI 2.6 document, and a plain HTML page that renders it offline.

Both are generated from the same catalog as the JSON Schemas (`make contracts` writes
`schemas/asyncapi.json`; the gateway serves `/asyncapi.json` and `/asyncapi.html`), so an ERP reads the
very contracts the publishers are tested against. One channel per routing key `<service>.<event>` on the
topic exchange `crm.events`; one message per (type, version), whose payload schema is the whole envelope
with that event's payload schema inside it, and whose example is the recorded sample in an envelope.
"""

from __future__ import annotations

import html
import json
from typing import Any

from crm_contracts.catalog import Catalog, EventContract, json_schema_of, load_all
from crm_contracts.envelope import DEAD_LETTER_EXCHANGE, EXCHANGE, EnvelopeSchema, event_id_for, routing_key

ASYNCAPI_VERSION = "2.6.0"
DOCUMENT_VERSION = "1.0.0"
TITLE = "CRM platform events"

DESCRIPTION = f"""Every integration event the CRM's six services publish, on the RabbitMQ topic exchange
`{EXCHANGE}` with routing key `<service>.<event>`.

Guarantees: at least once; in order per origin (`position` grows within an origin, and `previous` names
the position of that origin's event before it, so a gap is visible and a duplicate is `position <=` what
you applied); no order across origins. `event_id` is deterministic: a re-published event has the same id.
Consumers ignore fields they do not know (publishers add optional fields within a version); a breaking
change is a new `version` published beside the old one.

Three ways in: a queue of your own bound to these routing keys (`crm-subscribers add`), the replay feed
`GET /v1/events` (every event from the beginning of history, nothing expires), or webhooks.

Customer events carry personal data (names, emails, addresses): a subscriber is either entitled to them
or not bound to them (AMQP cannot hide fields per subscriber). A subscriber that keeps customer data must
bind `customer.customer_erased` and erase what it holds when it arrives (GDPR Articles 17 and 19)."""


def envelope_schema() -> dict[str, Any]:
    """The envelope as JSON Schema (any payload)."""
    schema = json_schema_of(EnvelopeSchema)
    schema["description"] = (EnvelopeSchema.__doc__ or "").strip()
    return schema


def message_schema(contract: EventContract) -> dict[str, Any]:
    """The whole message of one event type and version: the envelope, pinned to it, with its payload schema.
    Self-contained (no $ref), so any JSON Schema validator checks a message with it alone."""
    schema = envelope_schema()
    properties = dict(schema["properties"])
    properties["type"] = {**properties["type"], "const": contract.type}
    properties["version"] = {**properties["version"], "const": contract.version}
    properties["origin"] = {**properties["origin"], "const": contract.origin}
    payload = json_schema_of(contract.schema)
    payload["description"] = (contract.schema.__doc__ or "").strip()
    properties["payload"] = payload
    return {**schema, "properties": properties, "description": f"{contract.key} in its envelope"}


def example_envelope(contract: EventContract) -> dict[str, Any]:
    """The event's sample (the recorded one, which contract tests hold the schema to) in an envelope."""
    payload = contract.recorded_sample() or contract.sample
    customer_id = payload.get("customer_id")
    return {
        "event_id": event_id_for("00000000-0000-4000-8000-000000000000", 1),
        "type": contract.type,
        "version": contract.version,
        "origin": contract.origin,
        "position": 42,
        "previous": 41,
        "occurred_at": "2026-11-25T16:45:00+00:00",
        "customer_id": customer_id if isinstance(customer_id, str) else None,
        "correlation_id": "3b0d1c5e-8f7a-4e2b-9c6d-0a1b2c3d4e5f",
        "causation_id": None,
        "payload": payload,
    }


def message_name(contract: EventContract) -> str:
    return contract.key


def document(catalog: Catalog | None = None) -> dict[str, Any]:
    """The AsyncAPI 2.6 document of every published event."""
    contracts = list(catalog if catalog is not None else load_all())
    channels: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    by_key: dict[str, list[EventContract]] = {}
    for contract in contracts:
        by_key.setdefault(routing_key(contract.origin, contract.type), []).append(contract)
        messages[message_name(contract)] = {
            "name": contract.type,
            "title": f"{contract.type} v{contract.version}",
            "summary": (contract.schema.__doc__ or "").strip().splitlines()[0] if contract.schema.__doc__ else "",
            "contentType": "application/json",
            "payload": message_schema(contract),
            "examples": [{"name": f"{contract.key}-sample", "payload": example_envelope(contract)}],
            "headers": {"type": "object", "properties": {}},
            "x-origin": contract.origin,
            "x-version": contract.version,
            "x-routing-key": routing_key(contract.origin, contract.type),
            "bindings": {"amqp": {"messageType": contract.type, "bindingVersion": "0.2.0"}},
        }
    for key, versions in sorted(by_key.items()):
        refs = [{"$ref": f"#/components/messages/{message_name(c)}"} for c in versions]
        origin = versions[0].origin
        channels[key] = {
            "description": f"`{versions[0].type}` events of the {origin} service "
                           f"(routing key `{key}` on `{EXCHANGE}`).",
            "subscribe": {
                "operationId": f"receive_{key.replace('.', '_')}",
                "summary": f"Receive {versions[0].type}",
                "message": refs[0] if len(refs) == 1 else {"oneOf": refs},
            },
            "bindings": {"amqp": {
                "is": "routingKey",
                "exchange": {"name": EXCHANGE, "type": "topic", "durable": True, "autoDelete": False, "vhost": "/"},
                "bindingVersion": "0.2.0",
            }},
        }
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "id": "urn:crm:events",
        "info": {"title": TITLE, "version": DOCUMENT_VERSION, "description": DESCRIPTION,
                 "license": {"name": "open source"}},
        "defaultContentType": "application/json",
        "servers": {
            "rabbitmq": {
                "url": "{host}:{port}",
                "protocol": "amqp",
                "protocolVersion": "0.9.1",
                "description": f"The broker: exchange `{EXCHANGE}` (topic), dead letters on `{DEAD_LETTER_EXCHANGE}`. "
                               "Each subscriber has its own user, queue and dead-letter queue.",
                "variables": {"host": {"default": "127.0.0.1"}, "port": {"default": "5672"}},
            },
        },
        "channels": channels,
        "components": {"schemas": {"Envelope": envelope_schema()}, "messages": messages},
    }


def document_json(catalog: Catalog | None = None) -> str:
    """The document as the JSON text `make contracts` writes and the gateway serves."""
    return json.dumps(document(catalog), indent=2, sort_keys=True) + "\n"


# --- the offline HTML rendering --------------------------------------------------------------------

_STYLE = """body{font-family:system-ui,sans-serif;max-width:70rem;margin:2rem auto;padding:0 1rem;color:#222}
h1{margin-bottom:.2rem}h2{border-bottom:1px solid #ccc;margin-top:2.5rem}h3{margin-bottom:.3rem}
code,pre{background:#f5f5f5;border-radius:3px}pre{padding:.6rem;overflow-x:auto;font-size:.85rem}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ddd;padding:.25rem .5rem;text-align:left;
vertical-align:top;font-size:.9rem}nav ul{columns:3;font-size:.9rem}.channel{margin-bottom:2rem}"""


def _fields_table(schema: dict[str, Any]) -> str:
    required = set(schema.get("required", []))
    rows = []
    for name, field in sorted(schema.get("properties", {}).items()):
        kind = field.get("type", "")
        kind = " | ".join(kind) if isinstance(kind, list) else kind
        details = ", ".join(f"{k}: {v}" for k, v in sorted(field.items())
                            if k in ("format", "enum", "const", "pattern", "minimum", "maximum"))
        rows.append(f"<tr><td><code>{html.escape(name)}</code></td><td>{html.escape(str(kind))}</td>"
                    f"<td>{'yes' if name in required else ''}</td><td>{html.escape(details)}</td></tr>")
    return ("<table><tr><th>field</th><th>type</th><th>required</th><th>rules</th></tr>"
            + "".join(rows) + "</table>")


def render_html(doc: dict[str, Any] | None = None) -> str:
    """A self-contained page (no script, no external asset) listing every channel and message."""
    doc = doc or document()
    messages = doc["components"]["messages"]
    out = [f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{html.escape(doc['info']['title'])}"
           f"</title><link rel=icon href=\"data:,\"><style>{_STYLE}</style></head><body>",
           f"<h1>{html.escape(doc['info']['title'])}</h1><p>AsyncAPI {html.escape(doc['asyncapi'])} · "
           f"version {html.escape(doc['info']['version'])} · <a href=\"/asyncapi.json\">asyncapi.json</a></p>"]
    out += [f"<p>{html.escape(paragraph)}</p>" for paragraph in doc["info"]["description"].split("\n\n")]
    out.append("<h2>Envelope</h2>" + _fields_table(doc["components"]["schemas"]["Envelope"]))
    out.append("<h2>Channels</h2><nav><ul>" + "".join(
        f"<li><a href=\"#{html.escape(name)}\">{html.escape(name)}</a></li>" for name in doc["channels"]
    ) + "</ul></nav>")
    for name, channel in doc["channels"].items():
        message = channel["subscribe"]["message"]
        refs = message.get("oneOf", [message])
        out.append(f"<div class=channel id=\"{html.escape(name)}\"><h2>{html.escape(name)}</h2>"
                   f"<p>{html.escape(channel['description'])}</p>")
        for ref in refs:
            found = messages[ref["$ref"].rsplit("/", 1)[1]]
            payload = found["payload"]["properties"]["payload"]
            example = json.dumps(found["examples"][0]["payload"], indent=2, sort_keys=True)
            out.append(f"<h3>{html.escape(found['title'])}</h3><p>{html.escape(payload.get('description', ''))}</p>"
                       f"{_fields_table(payload)}<details><summary>example message</summary>"
                       f"<pre>{html.escape(example)}</pre></details>")
        out.append("</div>")
    out.append("</body></html>\n")
    return "".join(out)
