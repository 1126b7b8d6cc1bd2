"""GET /openapi.json: a structurally valid OpenAPI 3 document covering every route, generated from the
contract schemas (openapi-spec-validator is not installed here, so the structure is checked by hand)."""

from __future__ import annotations

import re

import pytest

from crm_contracts import customer as contracts
from crm_gateway.openapi import COMPONENT_SCHEMAS, OPERATIONS, document
from crm_gateway.tests.conftest import Api, body

METHODS = {"get", "put", "post", "patch", "delete"}


@pytest.fixture(scope="module")
def doc():
    return document()


def served_routes():
    """(method, OpenAPI path) of every @http entrypoint of the service."""
    routes = set()
    for rule in Api.routes.iter_rules():
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        routes |= {(m.lower(), path) for m in rule.methods if m not in {"HEAD", "OPTIONS"}}
    return routes


def test_it_is_served_without_auth(api):
    api.token = None
    response = api.get("/openapi.json")
    assert response.status_code == 200 and response.mimetype == "application/json"
    assert body(response)["openapi"].startswith("3.")


def test_every_served_route_is_documented_and_nothing_else(doc):
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops if m in METHODS}
    assert documented == served_routes()


def test_the_top_level_structure(doc):
    assert doc["openapi"] == "3.0.3"
    assert doc["info"]["title"] and doc["info"]["version"]
    assert doc["components"]["securitySchemes"]["bearer"] == {
        "type": "http", "scheme": "bearer", "bearerFormat": "JWT", "description": doc["components"][
            "securitySchemes"]["bearer"]["description"]}


def test_every_operation_is_complete(doc):
    operation_ids = set()
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            assert op["responses"], (method, path)
            if not path.startswith("/v1/"):
                continue
            operation_ids.add(op["operationId"])
            assert "Example request" in op["description"] and path.split("{")[0] in op["description"]
            assert op["security"] and list(op["security"][0]) == ["bearer"]
            names = {p["name"] for p in op["parameters"] if p["in"] == "path"}
            assert names == set(re.findall(r"{(\w+)}", path)), (method, path)
            for status, response in op["responses"].items():
                if int(status) >= 400:
                    assert response == {"$ref": f"#/components/responses/Error{status}"}
    assert len(operation_ids) == len(OPERATIONS)


def test_every_reference_resolves(doc):
    def refs(node):
        if isinstance(node, dict):
            if "$ref" in node:
                yield node["$ref"]
            for value in node.values():
                yield from refs(value)
        elif isinstance(node, list):
            for value in node:
                yield from refs(value)

    found = set(refs(doc))
    assert found
    for ref in found:
        _, section, kind, name = ref.split("/")
        assert name in doc[section][kind], ref


def test_request_schemas_come_from_the_contracts(doc):
    schemas = doc["components"]["schemas"]
    assert set(COMPONENT_SCHEMAS) <= set(schemas)
    register = schemas["RegisterCustomerRequest"]
    assert set(register["properties"]) == set(contracts.RegisterCustomerRequest().fields)
    assert set(register["required"]) == {"name", "email"}
    assert register["additionalProperties"] is False  # unknown fields are rejected
    grade = schemas["GradeCustomerRequest"]["properties"]["value"]
    assert (grade["minimum"], grade["maximum"]) == (1, 5)
    assert set(schemas["Error"]["properties"]) == {"error"}
    assert {"code", "message", "fields"} <= set(schemas["ErrorDetail"]["properties"])


def test_bodies_have_examples_that_pass_their_own_schemas(doc):
    for op in OPERATIONS:
        if op.body:
            example = doc["paths"][op.path][op.method]["requestBody"]["content"]["application/json"]["example"]
            getattr(contracts, op.body)().load(example)


def test_search_parameters_are_documented(doc):
    params = {p["name"]: p for p in doc["paths"]["/v1/customers"]["get"]["parameters"]}
    assert params["page_size"]["schema"]["maximum"] == 100 and params["q"]["in"] == "query"
