"""The dashboard: a page for an analyst or a manager (the funnel, the CLV distribution, the RFM grid, loyalty
type by churn risk, the customers at risk, one customer's 360 view with its timeline), and its sign-in.

The page is a client of the public API: its script reads /v1/reports/funnel, /v1/reports/analytics,
/v1/analytics/customers, /v1/customers?q= and /v1/customers/{id}/360 with the session cookie this module
sets (crm_gateway.auth: a short-lived crm:read token, HttpOnly, SameSite=Strict, accepted for GET and HEAD
only). Nothing here computes a figure.

- GET /dashboard: the page, or a redirect (303) to the sign-in page without a valid session;
- GET /dashboard/login: the sign-in page; POST /dashboard/login: `{"username", "password"}` as JSON (a
  cross-site form cannot send JSON without the browser asking first, which this gateway never allows),
  200 with the cookie, 401 "wrong user name or password" whichever part was wrong, 429 after too many
  failures (auth.SignInAttempts);
- POST /dashboard/logout: ends the session (its token is refused from then on) and clears the cookie;
- GET /dashboard/session: who is signed in, until when (401 without a session);
- GET /dashboard/static/<name>: the page's own files and Chart.js (static/chartjs, vendored from npm).

Every page and asset is served with a Content-Security-Policy that allows this origin only: no script, style,
image or fetch from anywhere else, no inline script, no framing.
"""

from __future__ import annotations

import time
from typing import Any

from eventlet import tpool
from marshmallow import validate
from werkzeug.wrappers import Request, Response

from crm_contracts.fields import Request as RequestSchema
from crm_contracts.fields import Text
from crm_gateway import auth
from crm_gateway.errors import ApiError
from crm_gateway.routes.common import Routes
from crm_gateway.routes.docs import STATIC_FILES, static_file
from crm_gateway.web import endpoint, json_response, load_body
from crm_runtime import config
from crm_runtime.nameko.web import http

#: The folders of static/ the dashboard serves.
ASSET_FOLDERS = ("dashboard/", "chartjs/")
#: This origin only, for everything; no inline script or style, no framing, forms post here only.
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                           "connect-src 'self'; font-src 'self'; form-action 'self'; frame-ancestors 'none'; "
                           "base-uri 'none'")
PAGE_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
                "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY"}
WRONG_CREDENTIALS = "wrong user name or password"


class SignInRequest(RequestSchema):
    """POST /dashboard/login: a configured user's name and password (CRM_DASHBOARD_USERS)."""

    username = Text(required=True, validate=validate.Length(min=1, max=200))
    password = Text(required=True, validate=validate.Length(min=1, max=auth.MAX_PASSWORD_LENGTH))


#: Failed sign-ins of this process (read from the environment at the first sign-in).
_attempts: auth.SignInAttempts | None = None


def sign_in_attempts() -> auth.SignInAttempts:
    global _attempts
    if _attempts is None:
        _attempts = auth.SignInAttempts.from_environment()
    return _attempts


def page(name: str) -> Response:
    body, content_type = static_file(f"dashboard/{name}")
    return Response(body, status=200, content_type=content_type, headers={**PAGE_HEADERS, "Cache-Control": "no-store"})


def secure_cookie(request: Request) -> bool:
    """Secure over https, or always when CRM_DASHBOARD_COOKIE_SECURE=true (behind a TLS-ending proxy)."""
    return request.scheme == "https" or config.setting("CRM_DASHBOARD_COOKIE_SECURE", "false").lower() == "true"


class DashboardRoutes(Routes):
    """/dashboard: the page, its assets, signing in and out."""

    @http("GET", "/dashboard")
    @endpoint(None)
    def dashboard(self, request: Request) -> Response:
        try:
            auth.session_principal(request.cookies.get(auth.SESSION_COOKIE))
        except ApiError:
            return Response(status=303, headers={"Location": "/dashboard/login", "Cache-Control": "no-store"})
        return page("index.html")

    @http("GET", "/dashboard/login")
    @endpoint(None)
    def login_page(self, request: Request) -> Response:
        return page("login.html")

    @http("POST", "/dashboard/login")
    @endpoint(None)
    def login(self, request: Request) -> Response:
        # A malformed request is refused before it counts as an attempt.
        credentials = load_body(request, SignInRequest)
        name, address = credentials["username"], request.remote_addr or "unknown"
        attempts = sign_in_attempts()
        wait = attempts.retry_after(name, address)
        if wait is not None:
            raise ApiError(429, "too_many_requests", f"too many failed sign-ins: try again in {wait} s",
                           headers={"Retry-After": str(wait)})
        # scrypt takes ~0.1 s of CPU: in a thread of its own, not on the gateway's event loop.
        if not tpool.execute(auth.check_credentials, name, credentials["password"]):
            attempts.failed(name, address)
            raise ApiError(401, "unauthorized", WRONG_CREDENTIALS)
        attempts.succeeded(name)
        token, ttl = auth.issue_session(name)
        response = json_response(200, session_body(name, time.time() + ttl), {"Cache-Control": "no-store"})
        response.set_cookie(auth.SESSION_COOKIE, token, max_age=ttl, path="/", httponly=True,
                            secure=secure_cookie(request), samesite="Strict")
        return response

    @http("POST", "/dashboard/logout")
    @endpoint(None)
    def logout(self, request: Request) -> Response:
        try:
            auth.end_session(auth.session_principal(request.cookies.get(auth.SESSION_COOKIE)))
        except ApiError:
            pass  # no session, or one already over: signed out all the same
        response = Response(status=204, headers={"Cache-Control": "no-store"})
        response.delete_cookie(auth.SESSION_COOKIE, path="/", httponly=True, secure=secure_cookie(request),
                               samesite="Strict")
        return response

    @http("GET", "/dashboard/session")
    @endpoint(None)
    def session(self, request: Request) -> Response:
        principal = auth.session_principal(request.cookies.get(auth.SESSION_COOKIE))
        token = request.cookies[auth.SESSION_COOKIE]
        expires = auth.token_expiry(token)
        return json_response(200, session_body(principal.subject, expires), {"Cache-Control": "no-store"})

    @http("GET", "/dashboard/static/<path:name>")
    @endpoint(None)
    def dashboard_static(self, request: Request, name: str) -> Response:
        if not name.startswith(ASSET_FOLDERS) or name not in STATIC_FILES:
            raise ApiError(404, "not_found", f"no dashboard asset {name!r}")
        body, content_type = static_file(name)
        return Response(body, status=200, content_type=content_type,
                        headers={**PAGE_HEADERS, "Cache-Control": "no-cache"})


def session_body(name: str, expires_at: float) -> dict[str, Any]:
    return {"user": name, "expires_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(expires_at))}


def document_paths(spec: Any) -> None:
    """The dashboard's paths in the OpenAPI document (crm_gateway.openapi): public pages, sign-in, sign-out."""
    html = {"200": {"description": "the page", "content": {"text/html": {"schema": {"type": "string"}}}}}
    error = {str(status): {"$ref": f"#/components/responses/Error{status}"} for status in (400, 413, 415, 422)}
    session = {"type": "object", "properties": {"user": {"type": "string"},
                                                "expires_at": {"type": "string", "format": "date-time"}}}
    public: dict[str, Any] = {"security": [], "tags": ["dashboard"]}
    spec.components.schema("SignInRequest", schema=SignInRequest)
    spec.path(path="/dashboard", operations={"get": {
        **public, "summary": "The dashboard page; without a session, a redirect to the sign-in page",
        "responses": {**html, "303": {"description": "not signed in: Location /dashboard/login"}}}})
    spec.path(path="/dashboard/login", operations={
        "get": {**public, "summary": "The dashboard's sign-in page", "responses": html},
        "post": {
            **public, "summary": "Sign in to the dashboard",
            "description": "A user of CRM_DASHBOARD_USERS signs in with their password; the answer sets the "
                           f"`{auth.SESSION_COOKIE}` cookie (HttpOnly, SameSite=Strict, Secure over https): a "
                           "crm:read token, valid for CRM_DASHBOARD_SESSION_MINUTES, that the API accepts in place "
                           "of a bearer token for GET and HEAD only. A wrong name or password is 401 without saying "
                           "which; too many failures are 429.",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": {"$ref": "#/components/schemas/SignInRequest"},
                "example": {"username": "analyst", "password": "correct horse battery staple"}}}},
            "responses": {
                "200": {"description": "signed in (Set-Cookie)",
                        "content": {"application/json": {"schema": session}}},
                "401": {"description": WRONG_CREDENTIALS,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                "429": {"description": "too many failed sign-ins for this name or from this address (Retry-After)",
                        "headers": {"Retry-After": {"schema": {"type": "integer"}}},
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                **error}}})
    spec.path(path="/dashboard/logout", operations={"post": {
        **public, "summary": "Sign out of the dashboard: the session's token is refused from now on",
        "responses": {"204": {"description": "signed out; the cookie is cleared"}}}})
    spec.path(path="/dashboard/session", operations={"get": {
        **public, "summary": "Who is signed in to the dashboard (by the session cookie)",
        "responses": {"200": {"description": "the session", "content": {"application/json": {"schema": session}}},
                      "401": {"$ref": "#/components/responses/Error401"}}}})
    spec.path(path="/dashboard/static/{name}", operations={"get": {
        **public, "summary": "An asset of /dashboard (its script, style sheet, Chart.js)",
        "parameters": [{"in": "path", "name": "name", "required": True, "schema": {"type": "string"},
                        "example": "dashboard/dashboard.js"}],
        "responses": {"200": {"description": "the asset"}, "404": {"$ref": "#/components/responses/Error404"}}}})
