"""The dashboard's sign-in (crm_gateway.auth, crm_gateway.routes.dashboard): passwords hashed with scrypt,
configured users only, a 401 that never says which part was wrong, failures bounded, a session cookie that
is HttpOnly and SameSite=Strict, accepted for reads only and refused after signing out; the page and its
assets behind a Content-Security-Policy of this origin only. The page in a real browser:
tests/e2e/test_dashboard_browser.py."""

from __future__ import annotations

import io
import re
from http.cookies import SimpleCookie

import pytest

from crm_gateway import auth
from crm_gateway.routes import dashboard
from crm_gateway.tests.conftest import body

PASSWORD = "correct horse battery staple"


@pytest.fixture(scope="module")
def analyst_hash() -> str:
    return auth.hash_password(PASSWORD)


@pytest.fixture(autouse=True)
def users(monkeypatch: pytest.MonkeyPatch, analyst_hash: str) -> None:
    monkeypatch.setenv("CRM_DASHBOARD_USERS", f"analyst:{analyst_hash}, broken:not-a-hash")
    monkeypatch.setattr(dashboard, "_attempts", auth.SignInAttempts(per_name=3, window=60))


def sign_in(api, username: str = "analyst", password: str = PASSWORD):
    api.token = None
    return api.post("/dashboard/login", {"username": username, "password": password})


def cookie_of(response) -> SimpleCookie:
    cookie = SimpleCookie()
    cookie.load(response.headers["Set-Cookie"])
    return cookie


def with_cookie(token: str) -> dict[str, str]:
    return {"Cookie": f"{auth.SESSION_COOKIE}={token}"}


# --- passwords --------------------------------------------------------------------------------------

def test_a_hash_verifies_its_password_only_and_salts_each_time(analyst_hash):
    assert auth.verify_password(PASSWORD, analyst_hash)
    assert not auth.verify_password(PASSWORD + " ", analyst_hash)
    assert auth.hash_password(PASSWORD) != analyst_hash
    scheme, log2_n, r, p, _salt, _key = analyst_hash.split(".")
    assert (scheme, int(log2_n), int(r), int(p)) == ("scrypt", auth.SCRYPT_LOG2_N, auth.SCRYPT_R, auth.SCRYPT_P)
    assert not set(analyst_hash) & set("$:, ")  # sits unquoted in CRM_DASHBOARD_USERS and docker compose


def test_only_well_formed_users_are_configured():
    assert list(auth.dashboard_users()) == ["analyst"]
    assert auth.check_credentials("analyst", PASSWORD)
    assert not auth.check_credentials("analyst", "wrong")
    assert not auth.check_credentials("nobody", PASSWORD)
    assert not auth.check_credentials("broken", "not-a-hash")


def test_a_hash_asking_scrypt_for_too_much_is_not_a_user(monkeypatch, analyst_hash):
    _scheme, _n, _r, _p, salt, key = analyst_hash.split(".")
    greedy = {"n30": f"scrypt.30.8.1.{salt}.{key}", "r64": f"scrypt.15.64.1.{salt}.{key}",
              "short": f"scrypt.15.8.1.{salt}.{key[:10]}", "other": f"bcrypt.15.8.1.{salt}.{key}"}
    monkeypatch.setenv("CRM_DASHBOARD_USERS", " ".join(f"{name}:{encoded}" for name, encoded in greedy.items()))
    assert auth.dashboard_users() == {}


def test_the_cli_prints_an_entry_for_crm_dashboard_users(monkeypatch, capsys):
    monkeypatch.setattr("sys.stdin", io.StringIO("s3cret pass\n"))
    auth.main(["hash-password", "--user", "manager"])
    name, _, encoded = capsys.readouterr().out.strip().partition(":")
    assert name == "manager" and auth.verify_password("s3cret pass", encoded)


# --- signing in -------------------------------------------------------------------------------------

def test_signing_in_sets_a_short_lived_read_only_http_only_strict_cookie(api):
    response = sign_in(api)
    assert response.status_code == 200 and body(response)["user"] == "analyst"
    assert response.headers["Cache-Control"] == "no-store"
    cookie = cookie_of(response)[auth.SESSION_COOKIE]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/"
    assert not cookie["secure"]  # plain http here; https or CRM_DASHBOARD_COOKIE_SECURE=true make it Secure
    assert int(cookie["max-age"]) == auth.DEFAULT_SESSION_MINUTES * 60
    principal = auth.session_principal(cookie.value)
    assert principal.subject == "analyst" and principal.scopes == frozenset({auth.READ})


def test_the_cookie_is_secure_when_configured(api, monkeypatch):
    monkeypatch.setenv("CRM_DASHBOARD_COOKIE_SECURE", "true")
    assert cookie_of(sign_in(api))[auth.SESSION_COOKIE]["secure"]


@pytest.mark.parametrize(("username", "password"), [("analyst", "wrong"), ("nobody", PASSWORD)])
def test_a_wrong_name_or_password_is_the_same_401(api, username, password):
    response = sign_in(api, username, password)
    assert response.status_code == 401
    assert body(response)["error"]["message"] == dashboard.WRONG_CREDENTIALS
    assert "Set-Cookie" not in response.headers


def test_a_malformed_sign_in_is_422_naming_the_field_and_not_counted(api):
    api.token = None
    for _ in range(5):
        response = api.post("/dashboard/login", {"username": "analyst"})
        assert response.status_code == 422 and "password" in body(response)["error"]["fields"]
    assert api.post("/dashboard/login", data="username=analyst", content_type="application/x-www-form-urlencoded",
                    ).status_code == 415  # a cross-site form cannot sign anyone in
    assert sign_in(api).status_code == 200


def test_failed_sign_ins_are_bounded_per_name_then_429_with_retry_after(api):
    for _ in range(3):
        assert sign_in(api, password="wrong").status_code == 401
    refused = sign_in(api)  # even the right password: the name is locked for the window
    assert refused.status_code == 429 and 1 <= int(refused.headers["Retry-After"]) <= 61
    assert sign_in(api, "someone-else", "wrong").status_code == 401  # another name still answered


def test_attempts_are_bounded_per_address_too():
    attempts = auth.SignInAttempts(per_name=2, window=60)
    for n in range(8):
        assert attempts.retry_after(f"name{n}", "10.0.0.9") is None
        attempts.failed(f"name{n}", "10.0.0.9")
    assert attempts.retry_after("fresh", "10.0.0.9") is not None
    assert attempts.retry_after("fresh", "10.0.0.10") is None


# --- the cookie on the API ----------------------------------------------------------------------------

def test_the_cookie_reads_the_api_but_never_writes(api, customer360):
    token = cookie_of(sign_in(api))[auth.SESSION_COOKIE].value
    customer360.report.return_value = {"report": "funnel", "as_of": None, "columns": [], "rows": []}
    assert api.get("/v1/reports/funnel", headers=with_cookie(token)).status_code == 200
    # A write with the cookie alone is as if unauthenticated (no cross-site request can change anything).
    refused = api.post("/v1/customers", {"name": "X", "email": "x@example.com"}, headers=with_cookie(token))
    assert refused.status_code == 401
    # crm:read only: an admin read is 403.
    assert api.get("/v1/webhooks", headers=with_cookie(token)).status_code == 403


def test_a_session_token_is_refused_as_a_bearer_token(api):
    token = cookie_of(sign_in(api))[auth.SESSION_COOKIE].value
    response = api.get("/v1/reports/funnel", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401 and "cookie" in body(response)["error"]["message"]


def test_a_bearer_token_in_the_cookie_is_refused(api):
    bearer = auth.issue_token("tester", (auth.READ,))
    api.token = None
    assert api.get("/v1/reports/funnel", headers=with_cookie(bearer)).status_code == 401


def test_signing_out_ends_the_session(api, customer360):
    token = cookie_of(sign_in(api))[auth.SESSION_COOKIE].value
    customer360.report.return_value = {"report": "funnel", "as_of": None, "columns": [], "rows": []}
    assert api.get("/dashboard/session", headers=with_cookie(token)).status_code == 200
    out = api.post("/dashboard/logout", headers=with_cookie(token))
    assert out.status_code == 204 and cookie_of(out)[auth.SESSION_COOKIE].value == ""
    assert api.get("/v1/reports/funnel", headers=with_cookie(token)).status_code == 401
    assert api.get("/dashboard/session", headers=with_cookie(token)).status_code == 401


def test_an_expired_session_is_refused(api, monkeypatch):
    monkeypatch.setenv("CRM_DASHBOARD_SESSION_MINUTES", "-2")  # expired beyond the leeway at once
    token = cookie_of(sign_in(api))[auth.SESSION_COOKIE].value
    assert api.get("/dashboard/session", headers=with_cookie(token)).status_code == 401


# --- the page -----------------------------------------------------------------------------------------

def test_without_a_session_the_page_sends_you_to_sign_in(api):
    api.token = None
    response = api.get("/dashboard")
    assert response.status_code == 303 and response.headers["Location"] == "/dashboard/login"
    assert api.get("/dashboard", headers=with_cookie("not-a-token")).status_code == 303
    assert api.get("/dashboard/session").status_code == 401
    assert api.get("/v1/reports/funnel").status_code == 401


def test_the_page_and_its_assets_allow_this_origin_only(api):
    token = cookie_of(sign_in(api))[auth.SESSION_COOKIE].value
    page = api.get("/dashboard", headers=with_cookie(token))
    assert page.status_code == 200 and b'src="/dashboard/static/dashboard/dashboard.js"' in page.get_data()
    policy = page.headers["Content-Security-Policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    assert "unsafe" not in policy and "http" not in policy
    for name in ("dashboard/dashboard.js", "dashboard/login.js", "dashboard/dashboard.css", "chartjs/chart.umd.min.js"):
        asset = api.get(f"/dashboard/static/{name}")
        assert asset.status_code == 200 and asset.headers["Content-Security-Policy"] == policy, name
    assert api.get("/dashboard/static/chartjs/chart.umd.min.js").mimetype in ("text/javascript",
                                                                              "application/javascript")
    # Only the dashboard's folders: not Swagger UI, nothing outside static/.
    assert api.get("/dashboard/static/swagger-ui/swagger-ui.css").status_code == 404
    assert api.get("/dashboard/static/dashboard/../../auth.py").status_code == 404
    login = api.get("/dashboard/login")
    assert login.status_code == 200 and login.headers["Content-Security-Policy"] == policy


def test_the_pages_load_nothing_from_elsewhere_and_run_no_inline_script():
    for name in ("index.html", "login.html"):
        html = dashboard.static_file(f"dashboard/{name}")[0].decode()
        assert "http://" not in html and "https://" not in html and "//" not in html.replace("://", "")
        assert "<script>" not in html and "style=" not in html and not re.search(r"\son[a-z]+=", html)


def test_chart_js_is_shipped_with_its_licences():
    from crm_gateway.routes.docs import STATIC_FILES

    assert {"chartjs/chart.umd.min.js", "chartjs/LICENSE.md", "chartjs/kurkle-color.LICENSE.md",
            "chartjs/README.md"} <= set(STATIC_FILES)
    assert "MIT License" in STATIC_FILES["chartjs/LICENSE.md"].read_text()
