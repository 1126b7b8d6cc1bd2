"""How one endpoint is described in the OpenAPI document, and short constructors for the usual shapes.

Each route module declares its operations beside its handlers (`OPERATIONS`), and openapi.py turns them
all into the document. An operation's example request is written out from its method, an example path,
its headers and its body example (by default the "Example: {...}" of its contract's docstring), so the
example shown is the one test_openapi loads through the same contract.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from marshmallow import Schema

from crm_gateway.auth import READ, WRITE

#: Example ids used in example paths (the contracts' own sample ids where they have one).
EXAMPLE_IDS: dict[str, str] = {
    "customer_id": "3f2b8c1e-5d4a-4f6b-9c7d-2e1a0b9c8d7e",
    "campaign_id": "8c1d2e3f-4a5b-4c6d-9e7f-0a1b2c3d4e5f",
    "lead_id": "7a6b5c4d-3e2f-4a1b-8c9d-0e1f2a3b4c5d",
    "opportunity_id": "5b7e1c2d-8a4f-4e6b-9d3c-1f0a2b3c4d5e",
    "quote_id": "7a8b9c0d-1e2f-4a3b-8c4d-5e6f7a8b9c0d",
    "order_id": "9c4e2f7a-1b3d-4e5f-8a6b-7c8d9e0f1a2b",
    "case_id": "9a4f2c1d-7b3e-4d5a-8c6f-1e2d3c4b5a69",
    "article_id": "c5d6e7f8-1a2b-4c3d-9e4f-5a6b7c8d9e0f",
    "survey_id": "2b7d9e41-6c3a-5f08-9d2e-4a1b7c6e8f30",
    "channel": "email",
}

#: What every read can answer besides 200; lists and queries; writes (404: the resource, or one a body names).
READ_ERRORS = (401, 403, 404, 503)
QUERY_ERRORS = (401, 403, 422, 503)
WRITE_ERRORS = (400, 401, 403, 404, 409, 412, 413, 415, 422, 503)
CREATE_ERRORS = (400, 401, 403, 404, 409, 413, 415, 422, 503)

REQUIRED = "required"
OPTIONAL = "optional"


@dataclass(frozen=True)
class Operation:
    """One endpoint as the document describes it."""

    method: str
    path: str
    operation_id: str
    summary: str
    scope: str | None
    ok_status: int
    ok_schema: str | None
    errors: tuple[int, ...]
    example: str
    body: str | None = None
    body_example: dict[str, Any] | None = None
    query: Any = None
    if_match: str | None = None  # REQUIRED, OPTIONAL or None
    idempotent: bool = False
    ok_headers: tuple[str, ...] = ()
    path_params: tuple[str, ...] = field(default=())
    tag: str = "customers"
    body_optional: bool = False
    not_modified: bool = False  # a read that answers 304 to a current If-None-Match
    csv: bool = False  # the answer is also served as text/csv (`?format=csv`)


def example_of(schema: type[Schema]) -> dict[str, Any]:
    """The JSON example a contract's docstring gives after "Example:" (every request contract has one)."""
    doc = " ".join((schema.__doc__ or "").split())
    found = re.search(r"Example:\s*", doc)
    if found is None:
        raise ValueError(f"{schema.__name__} has no 'Example: {{...}}' in its docstring")
    example, _ = json.JSONDecoder().raw_decode(doc[found.end():])
    return example  # type: ignore[no-any-return]


def _params(path: str) -> tuple[str, ...]:
    return tuple(re.findall(r"{(\w+)}", path))


def _example_request(method: str, path: str, headers: dict[str, str], body: dict[str, Any] | None,
                     query: str = "") -> str:
    concrete = re.sub(r"{(\w+)}", lambda m: EXAMPLE_IDS[m.group(1)], path) + query
    lines = [f"{method.upper()} {concrete}", *(f"{name}: {value}" for name, value in headers.items())]
    if body is not None:
        lines += ["", json.dumps(body, ensure_ascii=False)]
    return "\n".join(lines)


def create(path: str, operation_id: str, summary: str, tag: str, ok_schema: str, body: type[Schema],
           *, body_example: dict[str, Any] | None = None, method: str = "post",
           body_optional: bool = False) -> Operation:
    """A creating call: 201 with Location and ETag, under an Idempotency-Key."""
    example = body_example if body_example is not None else example_of(body)
    headers = {"Idempotency-Key": "7f1c0a52-4b1e-4d6a-9a51-2f0c8d3e6b10"}
    return Operation(
        method, path, operation_id, summary, WRITE, 201, ok_schema, CREATE_ERRORS,
        _example_request(method, path, headers, example), body=body.__name__, body_example=example,
        idempotent=True, ok_headers=("ETag", "Location"), path_params=_params(path), tag=tag,
        body_optional=body_optional,
    )


def read(path: str, operation_id: str, summary: str, tag: str, ok_schema: str, *, etag: bool = True,
         query: type[Schema] | None = None, query_example: str = "") -> Operation:
    """A read of one resource (its version as ETag, 304 on a current If-None-Match) or of a derived view."""
    errors = (401, 403, 404, 422, 503) if query is not None else READ_ERRORS
    return Operation(
        "get", path, operation_id, summary, READ, 200, ok_schema, errors,
        _example_request("get", path, {}, None, query_example), query=query,
        ok_headers=("ETag",) if etag else (), path_params=_params(path), tag=tag, not_modified=etag,
    )


def listing(path: str, operation_id: str, summary: str, tag: str, ok_schema: str, query: type[Schema],
            query_example: str) -> Operation:
    """A page of a collection, filtered by the query's parameters (unknown ones are 422)."""
    return Operation(
        "get", path, operation_id, summary, READ, 200, ok_schema, QUERY_ERRORS,
        _example_request("get", path, {}, None, query_example), query=query, path_params=_params(path), tag=tag,
    )


def command(method: str, path: str, operation_id: str, summary: str, tag: str, ok_schema: str,
            body: type[Schema] | None, if_match: str, *, body_example: dict[str, Any] | None = None,
            ok_status: int = 200) -> Operation:
    """A command on a resource: If-Match REQUIRED (a person decides on what they saw) or OPTIONAL."""
    example = None if body is None else body_example if body_example is not None else example_of(body)
    headers = {"If-Match": '"3"'} if if_match == REQUIRED else {}
    errors = WRITE_ERRORS if body is not None else tuple(s for s in WRITE_ERRORS if s not in (413, 415))
    if if_match == REQUIRED:
        errors = (*errors, 428)
    return Operation(
        method, path, operation_id, summary, WRITE, ok_status, ok_schema, errors,
        _example_request(method, path, headers, example), body=None if body is None else body.__name__,
        body_example=example, if_match=if_match, idempotent=True, ok_headers=("ETag",),
        path_params=_params(path), tag=tag,
    )
