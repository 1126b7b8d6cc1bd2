"""nameko's HTTP entrypoint with JSON errors: an unknown path or method answers like every other
error of the platform, `{"error": {"code", "message", "fields"}}`, not werkzeug's HTML page."""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Iterable
from typing import Any

from nameko.exceptions import IncorrectSignature
from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer, WsgiApp
from werkzeug.exceptions import HTTPException, MethodNotAllowed
from werkzeug.wrappers import Request

StartResponse = Callable[..., Any]


def json_routing_error(exc: HTTPException, start_response: StartResponse) -> Iterable[bytes]:
    """Answer a request no route matches (404, 405) with a JSON error."""
    code = "method_not_allowed" if isinstance(exc, MethodNotAllowed) else "not_found"
    body = json.dumps({"error": {"code": code, "message": exc.description, "fields": {}}}).encode()
    headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
    if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
        headers.append(("Allow", ", ".join(exc.valid_methods)))
    start_response(f"{exc.code} {exc.name}", headers)
    return [body]


class JsonErrorsWsgiApp(WsgiApp):
    """nameko's WSGI app, answering routing errors as JSON. The request is routed once (a wrapper that
    matched it before nameko did cost a tenth of a read's CPU)."""

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ, shallow=True)  # shallow: as nameko's own (see WsgiApp.__call__)
        try:
            provider, values = self.url_map.bind_to_environ(environ).match()
        except HTTPException as exc:
            return json_routing_error(exc, start_response)
        request.path_values = values  # type: ignore[attr-defined]  # where nameko passes them on
        try:
            answer = provider.handle_request(request)
        except HTTPException as exc:
            answer = exc
        return answer(environ, start_response)  # type: ignore[no-any-return]


class JsonErrorsWebServer(WebServer):
    """nameko's web server, with JSON answers for unroutable requests."""

    def get_wsgi_app(self) -> Any:
        return JsonErrorsWsgiApp(self)


class HttpEntrypoint(HttpRequestHandler):
    """`@http` served by JsonErrorsWebServer."""

    server = JsonErrorsWebServer()
    _signature: inspect.Signature | None = None

    def check_signature(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        """nameko's check that a call fits the method, with the method's signature read once instead of on
        every request (inspect.getcallargs re-reads it: a twentieth of a read's CPU)."""
        if self._signature is None:
            method = getattr(self.container.service_cls, self.method_name)
            self._signature = inspect.signature(method, follow_wrapped=False)  # as getcallargs sees it
        try:
            self._signature.bind(None, *args, **kwargs)
        except TypeError as exc:
            raise IncorrectSignature(str(exc)) from None


http = HttpEntrypoint.decorator
