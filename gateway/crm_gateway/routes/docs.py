"""Documents for people and programs: `/docs` (Swagger UI over /openapi.json), `/asyncapi.json` (every
published event, crm_contracts.asyncapi) and `/asyncapi.html` (the same, readable, offline).

Every asset is shipped in crm_gateway/static (Swagger UI from the npm package swagger-ui-dist, see
static/swagger-ui/README.md): nothing is loaded from a CDN, so the docs work on a network without the
internet. Only the files found there at start are served; any other path is 404.
"""

from __future__ import annotations

import functools
import mimetypes
from pathlib import Path

from werkzeug.wrappers import Request, Response

from crm_contracts import asyncapi
from crm_gateway.errors import ApiError
from crm_gateway.routes.common import Routes
from crm_gateway.web import endpoint
from crm_runtime.nameko.web import http

STATIC_DIR = Path(__file__).resolve().parent.parent / "static"

#: Every file under static/, by its path relative to it: the whole of what /docs/static serves.
STATIC_FILES: dict[str, Path] = {
    path.relative_to(STATIC_DIR).as_posix(): path for path in STATIC_DIR.rglob("*") if path.is_file()
}

#: Assets change only with a release of the gateway; an hour keeps a browser from asking again and again.
CACHE_CONTROL = "public, max-age=3600"


@functools.cache
def static_file(name: str) -> tuple[bytes, str]:
    """The bytes and content type of one shipped asset (read once per process)."""
    path = STATIC_FILES[name]
    content_type = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    if content_type.startswith("text/") or content_type in ("application/javascript", "text/javascript"):
        content_type += "; charset=utf-8"
    return path.read_bytes(), content_type


@functools.cache
def asyncapi_json() -> str:
    return asyncapi.document_json()


@functools.cache
def asyncapi_html() -> str:
    return asyncapi.render_html()


class DocsRoutes(Routes):
    """/docs, /docs/static/..., /asyncapi.json, /asyncapi.html: public, like /openapi.json."""

    @http("GET", "/docs")
    @endpoint(None)
    def docs(self, request: Request) -> Response:
        body, content_type = static_file("docs/index.html")
        return Response(body, status=200, content_type=content_type)

    @http("GET", "/docs/static/<path:name>")
    @endpoint(None)
    def docs_static(self, request: Request, name: str) -> Response:
        if name not in STATIC_FILES:
            raise ApiError(404, "not_found", f"no document asset {name!r}")
        body, content_type = static_file(name)
        return Response(body, status=200, content_type=content_type, headers={"Cache-Control": CACHE_CONTROL})

    @http("GET", "/asyncapi.json")
    @endpoint(None)
    def asyncapi_document(self, request: Request) -> Response:
        return Response(asyncapi_json(), status=200, mimetype="application/json")

    @http("GET", "/asyncapi.html")
    @endpoint(None)
    def asyncapi_page(self, request: Request) -> Response:
        return Response(asyncapi_html(), status=200, content_type="text/html; charset=utf-8")
