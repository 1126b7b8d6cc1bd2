"""Contract tests of the AsyncAPI catalog: the document is valid AsyncAPI 2.6 (the official JSON Schema,
shipped beside this test); every published event type is in it, on its routing key; the example of every
message validates against that message's schema (with formats checked); a message that breaks its
contract does not."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema_rs
import pytest

from crm_contracts import asyncapi
from crm_contracts.catalog import SAMPLES_DIR, SCHEMAS_DIR, load_all
from crm_contracts.envelope import EXCHANGE

CONTRACTS = list(load_all())
DOCUMENT = asyncapi.document()


def validator(schema: dict) -> jsonschema_rs.Validator:
    return jsonschema_rs.validator_for(schema, validate_formats=True)


def test_the_document_is_valid_asyncapi_2_6():
    spec = json.loads((Path(__file__).parent / "asyncapi_spec" / "asyncapi-2.6.0.schema.json").read_text())
    errors = [f"{list(e.instance_path)}: {e.message[:200]}" for e in validator(spec).iter_errors(DOCUMENT)]
    assert errors == []
    assert not validator(spec).is_valid({k: v for k, v in DOCUMENT.items() if k != "info"})


def test_every_published_event_type_is_a_message_on_its_routing_key():
    published = {(c.origin, c.type, c.version) for c in CONTRACTS}
    listed = set()
    for name, channel in DOCUMENT["channels"].items():
        assert channel["bindings"]["amqp"]["exchange"]["name"] == EXCHANGE
        message = channel["subscribe"]["message"]
        for ref in message.get("oneOf", [message]):
            found = DOCUMENT["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]
            assert found["x-routing-key"] == name
            listed.add((found["x-origin"], found["name"], found["x-version"]))
    assert listed == published


def test_every_recorded_sample_has_its_message():
    recorded = {path.name.removesuffix(".json") for path in SAMPLES_DIR.glob("*.json")}
    assert recorded <= set(DOCUMENT["components"]["messages"])


@pytest.mark.parametrize("contract", CONTRACTS, ids=lambda c: c.key)
def test_the_example_validates_against_its_message_schema(contract):
    message = DOCUMENT["components"]["messages"][contract.key]
    [example] = message["examples"]
    errors = [error.message for error in validator(message["payload"]).iter_errors(example["payload"])]
    assert errors == []
    assert contract.schema().validate(example["payload"]["payload"]) == {}


@pytest.mark.parametrize("contract", CONTRACTS[:: max(1, len(CONTRACTS) // 8)], ids=lambda c: c.key)
def test_a_message_breaking_its_contract_does_not_validate(contract):
    message = DOCUMENT["components"]["messages"][contract.key]
    schema = validator(message["payload"])
    broken = copy.deepcopy(message["examples"][0]["payload"])
    broken["payload"].pop(sorted(contract.schema().fields.keys() & set(message["payload"]["properties"]["payload"]
                                                                         ["required"]))[0])
    assert not schema.is_valid(broken)
    assert not schema.is_valid({**message["examples"][0]["payload"], "type": "something_else"})
    assert not schema.is_valid({**message["examples"][0]["payload"], "event_id": "not-a-uuid"})


def test_the_committed_document_is_the_generated_one():
    assert json.loads((SCHEMAS_DIR / "asyncapi.json").read_text()) == DOCUMENT


def test_the_html_rendering_names_every_channel_and_loads_nothing_from_elsewhere():
    page = asyncapi.render_html(DOCUMENT)
    for name in DOCUMENT["channels"]:
        assert f'id="{name}"' in page
    assert "<script" not in page and "http://" not in page and "https://" not in page
