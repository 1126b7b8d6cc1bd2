"""Bearer JWT with scopes: 401 without a usable token (with a challenge), 403 without the scope."""

from __future__ import annotations

from datetime import UTC

import jwt
import pytest

from crm_gateway.auth import ADMIN, READ, WRITE, issue_token, main, scopes_of
from crm_gateway.tests.conftest import CUSTOMER_ID, SECRET, body

ENDPOINTS = [
    ("GET", f"/v1/customers/{CUSTOMER_ID}", READ),
    ("GET", f"/v1/customers/{CUSTOMER_ID}/360", READ),
    ("GET", "/v1/customers?q=li", READ),
    ("POST", "/v1/customers", WRITE),
    ("PATCH", f"/v1/customers/{CUSTOMER_ID}", WRITE),
    ("PUT", f"/v1/customers/{CUSTOMER_ID}/consents/email", WRITE),
    ("PUT", f"/v1/customers/{CUSTOMER_ID}/credit-rating", WRITE),
    ("PUT", f"/v1/customers/{CUSTOMER_ID}/grade", WRITE),
    ("POST", "/v1/admin/rebuild-360", ADMIN),
]


def call(api, method, path, authorization):
    return api.request(method, path, {"name": "Li Na", "email": "li.na@example.com"},
                       headers={"Authorization": authorization, "If-Match": '"1"'})


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("", id="missing"),
        pytest.param("Basic dXNlcjpwYXNz", id="basic-scheme"),
        pytest.param("Bearer", id="empty-bearer"),
        pytest.param("Bearer not.a.jwt", id="garbage"),
        pytest.param("Bearer " + issue_token("x", (READ, WRITE, ADMIN), secret="another-secret-of-32-bytes-or-more!"),
                     id="wrong-secret"),
        pytest.param("Bearer " + issue_token("x", (READ, WRITE, ADMIN), ttl_seconds=-3600, secret=SECRET),
                     id="expired"),
        pytest.param("Bearer " + jwt.encode({"sub": "x", "scope": "crm:read crm:write crm:admin"}, SECRET),
                     id="no-expiry"),
        pytest.param("Bearer " + jwt.encode({"sub": "x", "scope": "crm:read", "exp": 9999999999}, SECRET,
                                            algorithm="HS512"), id="other-algorithm"),
    ],
)
def test_requests_without_a_usable_token_are_401_with_a_challenge(api, customer, customer360, method, path, scope,
                                                                   authorization):
    response = call(api, method, path, authorization)
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="crm"')
    assert body(response)["error"]["code"] == "unauthorized"
    assert not customer.method_calls and not customer360.method_calls


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_a_token_without_the_scope_is_403(api, customer, method, path, scope):
    others = [s for s in (READ, WRITE, ADMIN) if s != scope]
    response = call(api, method, path, "Bearer " + issue_token("x", others, secret=SECRET))
    assert response.status_code == 403
    assert f'scope="{scope}"' in response.headers["WWW-Authenticate"]
    assert not customer.method_calls


@pytest.mark.parametrize(("method", "path", "scope"), ENDPOINTS)
def test_a_token_with_only_the_scope_gets_past_auth(api, customer360, method, path, scope):
    customer360.rebuild.return_value = {"events": 0}
    response = call(api, method, path, "Bearer " + issue_token("x", [scope], secret=SECRET))
    assert response.status_code not in {401, 403}, body(response)


def test_a_missing_token_gets_the_bare_challenge(api):
    response = call(api, "GET", f"/v1/customers/{CUSTOMER_ID}", "")
    assert response.headers["WWW-Authenticate"] == 'Bearer realm="crm"'


@pytest.mark.parametrize("path", ["/openapi.json", "/health/live"])
def test_documents_and_liveness_need_no_token(api, path):
    api.token = None
    assert api.get(path).status_code == 200


def test_scopes_come_from_a_scope_string_or_a_scopes_list():
    assert scopes_of({"scope": "crm:read crm:write"}) == {READ, WRITE}
    assert scopes_of({"scopes": ["crm:read"]}) == {READ}
    assert scopes_of({}) == frozenset()


def test_the_development_token_has_read_and_write(capsys):
    main([])
    claims = jwt.decode(capsys.readouterr().out.strip(), SECRET, algorithms=["HS256"])
    assert scopes_of(claims) == {READ, WRITE} and claims["sub"] == "developer"


def test_without_a_configured_secret_the_development_secret_is_used_loudly(monkeypatch, caplog):
    import crm_gateway.auth as auth

    monkeypatch.delenv("CRM_JWT_SECRET")
    monkeypatch.setattr(auth, "_warned", False)
    assert auth.jwt_secret() == auth.DEVELOPMENT_SECRET
    assert "DEVELOPMENT secret" in caplog.text


def test_a_remembered_token_is_refused_once_it_expires(monkeypatch):
    """Verified tokens are remembered, but never past their expiry (plus the clock leeway)."""
    import time

    from crm_gateway import auth
    from crm_gateway.errors import ApiError

    token = issue_token("x", (READ,), ttl_seconds=60, secret=SECRET)
    monkeypatch.setenv("CRM_JWT_SECRET", SECRET)
    assert auth.authenticate(f"Bearer {token}", READ).subject == "x"  # verified, now remembered
    later = time.time() + 60 + auth.LEEWAY + 1
    monkeypatch.setattr(auth.time, "time", lambda: later)
    monkeypatch.setattr(jwt.api_jwt, "datetime", _frozen_datetime(later), raising=False)
    with pytest.raises(ApiError) as refused:
        auth.authenticate(f"Bearer {token}", READ)
    assert refused.value.status == 401


def _frozen_datetime(timestamp):
    from datetime import datetime

    class Frozen(datetime):
        @classmethod
        def now(cls, tz=None):
            return datetime.fromtimestamp(timestamp, tz or UTC)

    return Frozen
