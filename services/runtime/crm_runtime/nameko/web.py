"""nameko's HTTP entrypoint with JSON errors: an unknown path or method answers like every other
error of the platform, `{"error": {"code", "message", "fields"}}`, not werkzeug's HTML page."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from typing import Any

from nameko.web.handlers import HttpRequestHandler
from nameko.web.server import WebServer
from werkzeug.exceptions import HTTPException, MethodNotAllowed

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


def json_routing_errors(app: WsgiApp, url_map_of: Callable[[], Any]) -> WsgiApp:
    """Answer requests no route matches (404, 405) with a JSON error before they reach `app`."""
    url_map = url_map_of()

    def routed(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        try:
            url_map.bind_to_environ(environ).match()
        except HTTPException as exc:
            code = "method_not_allowed" if isinstance(exc, MethodNotAllowed) else "not_found"
            body = json.dumps({"error": {"code": code, "message": exc.description, "fields": {}}}).encode()
            headers = [("Content-Type", "application/json"), ("Content-Length", str(len(body)))]
            if isinstance(exc, MethodNotAllowed) and exc.valid_methods:
                headers.append(("Allow", ", ".join(exc.valid_methods)))
            start_response(f"{exc.code} {exc.name}", headers)
            return [body]
        return app(environ, start_response)

    return routed


class JsonErrorsWebServer(WebServer):
    """nameko's web server, with JSON answers for unroutable requests."""

    def get_wsgi_app(self) -> Any:
        return json_routing_errors(super().get_wsgi_app(), self.make_url_map)


class HttpEntrypoint(HttpRequestHandler):
    """`@http` served by JsonErrorsWebServer."""

    server = JsonErrorsWebServer()


http = HttpEntrypoint.decorator
