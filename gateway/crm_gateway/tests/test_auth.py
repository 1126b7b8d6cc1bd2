"""Bearer JWT with scopes: 401 without a usable token (with a challenge), 403 without the scope; a negative
corpus of hostile tokens and headers, each a JSON 401, never a 500."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
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


# --- the negative token corpus: each refused with a JSON 401 (or 403), never a 500 --------------------

#: A public key as an RS256 issuer would publish it: "HS/RS confusion" signs HS256 with it as the secret.
PUBLIC_KEY_PEM = (
    "-----BEGIN PUBLIC KEY-----\n"
    "MFwwDQYJKoZIhvcNAQEBBQADSwAwSAJBAMvnu1dpSl6E0Ppx3HqWMzl2GCu8F5pX\n"
    "3Oq1i0n9gL3wTQ2JjNaXyq0XY6m3qZ8dW7GkY0JmL1Qe1F0Q0r0p1zUCAwEAAQ==\n"
    "-----END PUBLIC KEY-----\n"
)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forge(claims: dict | bytes, header: dict | bytes | None = None, key: str | None = SECRET,
          signature: bytes | None = None) -> str:
    """A token built by hand, so any header, claims and signature can be tried (PyJWT refuses to make some)."""
    header = {"alg": "HS256", "typ": "JWT"} if header is None else header
    head = _b64(header if isinstance(header, bytes) else json.dumps(header).encode())
    body_ = _b64(claims if isinstance(claims, bytes) else json.dumps(claims).encode())
    signing_input = f"{head}.{body_}".encode()
    if signature is None:
        signature = hmac.new((key or "").encode(), signing_input, hashlib.sha256).digest()
    return f"{head}.{body_}.{_b64(signature)}"


def valid_claims(**overrides) -> dict:
    now = int(time.time())
    return {"sub": "mallory", "scope": "crm:read crm:write crm:admin", "iat": now, "exp": now + 600, **overrides}


def corpus() -> list:
    now = int(time.time())
    hs256 = {"alg": "HS256", "typ": "JWT"}
    return [
        pytest.param(forge(valid_claims(), {"alg": "none", "typ": "JWT"}, signature=b""), id="alg-none"),
        pytest.param(forge(valid_claims(), {"alg": "None"}, signature=b""), id="alg-None"),
        pytest.param(forge(valid_claims(), {"alg": "none"}, signature=b"")[:-1], id="alg-none-no-dot"),
        pytest.param(forge(valid_claims(), {"alg": "RS256", "typ": "JWT"}, signature=b"\x01" * 256),
                     id="rs256-token"),
        pytest.param(forge(valid_claims(), hs256, key=PUBLIC_KEY_PEM), id="hs256-signed-with-the-public-key"),
        pytest.param(forge(valid_claims(), {"alg": "HS512"}, key=SECRET), id="hs512"),
        pytest.param(forge(valid_claims(), hs256, key="another-secret-of-32-bytes-or-more!"), id="wrong-key"),
        pytest.param(forge(valid_claims(), hs256, key=""), id="empty-key"),
        pytest.param(forge(valid_claims(), hs256)[:-4] + "AAAA", id="tampered-signature"),
        pytest.param(forge(valid_claims(exp=now - 3600)), id="expired"),
        pytest.param(forge(valid_claims(exp=None)), id="exp-null"),
        pytest.param(forge({k: v for k, v in valid_claims().items() if k != "exp"}), id="no-exp"),
        pytest.param(forge(valid_claims(exp="tomorrow")), id="exp-not-a-number"),
        pytest.param(forge(b'{"sub": "mallory", "exp": 1e999}'), id="exp-infinite"),
        pytest.param(forge(b'{"sub": "mallory", "exp": ' + b"9" * 5000 + b"}"), id="exp-5000-digits"),
        pytest.param(forge(valid_claims(nbf=now + 3600)), id="not-yet-valid-nbf"),
        pytest.param(forge(valid_claims(iat=now + 3600, exp=now + 7200)), id="issued-in-the-future"),
        pytest.param(forge({k: v for k, v in valid_claims().items() if k != "sub"}), id="no-sub"),
        pytest.param(forge(valid_claims(sub="")), id="empty-sub"),
        pytest.param(forge(valid_claims(sub=42)), id="sub-not-a-string"),
        pytest.param(forge(b"[1, 2, 3]"), id="claims-not-an-object"),
        pytest.param(forge(valid_claims(), b"[]"), id="header-not-an-object"),
        pytest.param(forge(b'{"a": ' * 5000 + b"1" + b"}" * 5000), id="claims-deeply-nested"),
        pytest.param(forge(valid_claims(), {"alg": "HS256", "crit": ["b64"], "b64": False}), id="crit-header"),
        pytest.param("not.a.jwt", id="garbage"),
        pytest.param("a.b", id="two-parts"),
        pytest.param("....", id="only-dots"),
        pytest.param("é.é.é", id="non-ascii"),
        pytest.param(_b64(b"\xff" * 30) + "." + _b64(b"\xfe" * 30) + "." + _b64(b"\x00"), id="binary-parts"),
        pytest.param(forge(valid_claims(pad="x" * 9000)), id="oversize-token"),
    ]


@pytest.mark.parametrize("token", corpus())
def test_every_token_of_the_negative_corpus_is_a_json_401(api, customer, token):
    response = call(api, "POST", "/v1/customers", f"Bearer {token}")
    assert response.status_code == 401, body(response)
    assert body(response)["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"].startswith('Bearer realm="crm"')
    assert not customer.method_calls


@pytest.mark.parametrize(
    "authorization",
    [
        pytest.param("Bearer " + "a" * 9000, id="oversize-header"),
        pytest.param("Bearer a.b.c " + "x" * 9000, id="oversize-trailer"),
        pytest.param("Bearer  ", id="blank-token"),
        pytest.param("Token " + issue_token("x", (WRITE,), secret=SECRET), id="other-scheme"),
    ],
)
def test_unusable_authorization_headers_are_401(api, customer, authorization):
    response = call(api, "POST", "/v1/customers", authorization)
    assert response.status_code == 401 and body(response)["error"]["code"] == "unauthorized"
    assert not customer.method_calls


def test_a_far_future_expiry_is_no_crash(api, customer):
    """exp = 10**400 is a valid integer claim: accepted, and remembered for a day at most (no overflow)."""
    assert call(api, "POST", "/v1/customers", "Bearer " + forge(valid_claims(exp=10**400))).status_code == 201


def test_a_valid_token_without_the_scope_is_403_not_401(api, customer):
    response = call(api, "POST", "/v1/customers", "Bearer " + forge(valid_claims(scope="crm:read")))
    assert response.status_code == 403 and body(response)["error"]["code"] == "forbidden"


def test_the_forged_tokens_are_refused_for_their_flaw_alone(api, customer):
    """The corpus's control: the same hand-made token, flawless, gets past authentication."""
    response = call(api, "POST", "/v1/customers", "Bearer " + forge(valid_claims()))
    assert response.status_code == 201, body(response)


@pytest.fixture
def audience_and_issuer(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    settings = {"CRM_JWT_AUDIENCE": "crm-gateway", "CRM_JWT_ISSUER": "https://login.example.com/"}
    for name, value in settings.items():
        monkeypatch.setenv(name, value)
    return settings


@pytest.mark.parametrize(
    "overrides",
    [
        pytest.param({"aud": "someone-else"}, id="wrong-audience"),
        pytest.param({"aud": ["someone-else", "another"]}, id="wrong-audiences"),
        pytest.param({"aud": None}, id="no-audience"),
        pytest.param({"iss": "https://evil.example.com/"}, id="wrong-issuer"),
        pytest.param({"iss": None}, id="no-issuer"),
        pytest.param({"aud": 42}, id="audience-not-a-string"),
    ],
)
def test_a_configured_audience_and_issuer_are_required(api, customer, audience_and_issuer, overrides):
    claims = valid_claims(**{"aud": "crm-gateway", "iss": "https://login.example.com/", **overrides})
    claims = {k: v for k, v in claims.items() if v is not None}
    response = call(api, "POST", "/v1/customers", "Bearer " + forge(claims))
    assert response.status_code == 401 and body(response)["error"]["code"] == "unauthorized"
    assert not customer.method_calls


def test_a_token_for_the_configured_audience_and_issuer_is_accepted(api, audience_and_issuer):
    claims = valid_claims(aud=["other", "crm-gateway"], iss="https://login.example.com/")
    assert call(api, "POST", "/v1/customers", "Bearer " + forge(claims)).status_code == 201
    # The development tokens carry them too.
    assert call(api, "POST", "/v1/customers", "Bearer " + issue_token("x", (WRITE,), secret=SECRET)).status_code == 201


def test_a_token_remembered_without_the_audience_is_checked_again_once_it_is_configured(api, monkeypatch):
    token = "Bearer " + forge(valid_claims())
    assert call(api, "POST", "/v1/customers", token).status_code == 201
    monkeypatch.setenv("CRM_JWT_AUDIENCE", "crm-gateway")
    assert call(api, "POST", "/v1/customers", token).status_code == 401
