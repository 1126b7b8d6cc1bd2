"""What every route module shares: answering with a resource and its ETag, reads with If-None-Match,
running a command once under its command id, and turning a list query into a service's list call."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from marshmallow import Schema
from werkzeug.wrappers import Request, Response

from crm_gateway.web import etag, if_match_version, json_response, load_body, uuid_path

Answer = dict[str, Any]


def resource_response(answer: Answer, status: int = 200, location: str | None = None,
                      version: int | None = None) -> Response:
    """A resource with its aggregate version as ETag (`version` when the answer nests it); a new one with
    its Location."""
    headers = {"ETag": etag(answer["version"] if version is None else version)}
    if location is not None:
        headers["Location"] = location
    return json_response(status, answer, headers)


def read_response(request: Request, answer: Answer, version: int | None = None) -> Response:
    """A read: 304 (no body) when If-None-Match names the current version, else the resource and its ETag."""
    tag = etag(answer["version"] if version is None else version)
    if request.headers.get("If-None-Match") == tag:
        return Response(status=304, headers={"ETag": tag})
    return resource_response(answer, version=version)


def list_call(query: dict[str, Any]) -> tuple[dict[str, str], int, int]:
    """A loaded list query as a service's `list_*` arguments: (filters given, as strings; page; page_size)."""
    filters = {name: str(value) for name, value in query.items() if name not in ("page", "page_size")}
    return filters, query["page"], query["page_size"]


class Routes:
    """Base of the route mixins. GatewayService injects these dependencies (nameko gives each worker
    its clients); they are declared here, untyped, so every mixin may use them."""

    customer: Any
    customer360: Any
    customer360_reads: Any
    customer360_admin: Any
    marketing: Any
    sales: Any
    order: Any
    service: Any
    loyalty: Any
    idempotency: Any
    #: A registration's answer with its candidate duplicates (routes.duplicates.DuplicateRoutes).
    with_duplicate_warning: Any

    def once(self, request: Request, payload: Any, command: Callable[[str], Answer],
             respond: Callable[[Answer], Response] = resource_response) -> Response:
        """Run a command once per Idempotency-Key under its command id (the service applies one command id
        once) and answer with what it returned (by default: the resource and its ETag)."""
        return self.idempotency.run(request, payload, lambda command_id: respond(command(command_id)))

    def act(self, request: Request, aggregate_id: str, what: str, call: Callable[..., Answer],
            body: type[Schema] | None = None, *, if_match: bool,
            respond: Callable[[Answer], Response] = resource_response) -> Response:
        """A command on one aggregate: its path id (404 unless a UUID), If-Match (`if_match`: required),
        the body through `body` when it takes one, then `call(id, [payload,] expected_version, command_id=...)`
        once per Idempotency-Key, answered by `respond` (by default the aggregate and its ETag)."""
        checked_id = uuid_path(aggregate_id, what)
        expected = if_match_version(request, required=if_match)
        if body is None:
            return self.once(request, {}, lambda command_id: call(checked_id, expected, command_id=command_id),
                             respond)
        payload = load_body(request, body)
        return self.once(request, payload, lambda command_id: call(checked_id, payload, expected,
                                                                   command_id=command_id), respond)
