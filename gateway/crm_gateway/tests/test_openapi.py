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
    assert set(register["required"]) == {"name"}  # and an email or a phone:
    assert [rule["required"] for rule in register["anyOf"]] == [["email"], ["phone"]]
    assert register["additionalProperties"] is False  # unknown fields are rejected
    grade = schemas["GradeCustomerRequest"]["properties"]["value"]
    assert (grade["minimum"], grade["maximum"]) == (1, 5)
    assert set(schemas["Error"]["properties"]) == {"error"}
    assert {"code", "message", "fields"} <= set(schemas["ErrorDetail"]["properties"])


def test_bodies_have_examples_that_pass_their_own_schemas(doc):
    for op in OPERATIONS:
        if op.body:
            example = doc["paths"][op.path][op.method]["requestBody"]["content"]["application/json"]["example"]
            COMPONENT_SCHEMAS[op.body]().load(example)


def test_search_parameters_are_documented(doc):
    params = {p["name"]: p for p in doc["paths"]["/v1/customers"]["get"]["parameters"]}
    assert params["page_size"]["schema"]["maximum"] == 100 and params["q"]["in"] == "query"


def test_the_document_states_the_edge_rules(doc):
    """What the code refuses, the document says: text patterns, money, headers, size, 503 Retry-After."""
    from crm_contracts.fields import EMAIL_PATTERN, NON_NEGATIVE_MONEY_PATTERN, SINGLE_LINE_PATTERN
    from crm_gateway.web import IF_MATCH_PATTERN

    schemas = doc["components"]["schemas"]
    register = schemas["RegisterCustomerRequest"]["properties"]
    assert register["name"]["pattern"] == SINGLE_LINE_PATTERN and register["email"]["pattern"] == EMAIL_PATTERN
    limit = schemas["SetCreditRatingRequest"]["properties"]["limit"]
    assert (limit["type"], limit["pattern"]) == ("string", NON_NEGATIVE_MONEY_PATTERN) and "minimum" not in limit
    assert schemas["ChangeProfileRequest"]["minProperties"] == 1
    assert doc["components"]["responses"]["Error503"]["headers"]["Retry-After"]
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if "requestBody" in op:
                assert "413" in op["responses"], (method, path)
            params = {p["name"]: p for p in op.get("parameters", []) if p["in"] == "header"}
            if "If-Match" in params:
                assert params["If-Match"]["schema"]["pattern"] == IF_MATCH_PATTERN
            if "X-Correlation-Id" in params:
                assert params["X-Correlation-Id"]["schema"] == {"type": "string"}  # any value: replaced if unusable


def test_every_operation_says_whether_it_requires_if_match(doc):
    """Decisions require If-Match (428 documented), appends accept it; the description says which."""
    for op in OPERATIONS:
        documented = doc["paths"][op.path][op.method]
        params = {p["name"]: p for p in documented["parameters"] if p["in"] == "header"}
        if op.if_match is None:
            assert "If-Match" not in params, op.operation_id
            continue
        required = op.if_match == "required"
        assert params["If-Match"]["required"] is required, op.operation_id
        assert ("428" in documented["responses"]) is required, op.operation_id
        assert ("Requires `If-Match`" if required else "does not require it") in documented["description"]


def test_every_v1_operation_documents_503_and_takes_an_idempotency_key_when_it_writes(doc):
    for path, operations in doc["paths"].items():
        for method, op in operations.items():
            if not path.startswith("/v1/"):
                continue
            assert "503" in op["responses"], (method, path)
            headers = {p["name"] for p in op["parameters"] if p["in"] == "header"}
            assert (method != "get") == ("Idempotency-Key" in headers), (method, path)


def test_creates_answer_201_with_location_and_etag(doc):
    for op in OPERATIONS:
        if op.ok_status == 201 and "Location" in op.ok_headers:
            headers = doc["paths"][op.path][op.method]["responses"]["201"]["headers"]
            assert {"ETag", "Location"} <= set(headers), op.operation_id


def test_list_queries_document_their_filters_and_paging(doc):
    params = {p["name"]: p for p in doc["paths"]["/v1/cases"]["get"]["parameters"] if p["in"] == "query"}
    assert {"status", "priority", "complaint_category", "customer_id", "page", "page_size"} <= set(params)
    assert params["page_size"]["schema"]["maximum"] == 100
    page = doc["components"]["schemas"]["CasePage"]["properties"]
    assert page["items"]["items"] == {"$ref": "#/components/schemas/Case"}
