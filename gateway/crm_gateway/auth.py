"""Bearer JWT authentication (HS256) with scopes.

The secret comes from CRM_JWT_SECRET. Without it a development secret is used and a warning is logged
at every start: tokens signed with it are worthless outside a developer's machine. When CRM_JWT_AUDIENCE
or CRM_JWT_ISSUER is set, a token must carry that `aud` (one of its audiences) or that `iss`.

Refused with 401: no token, another scheme, an Authorization header over MAX_AUTHORIZATION_LENGTH bytes,
anything but HS256 (`none`, RS256, HS512...), a bad signature, no or a past `exp`, a future `nbf` or
`iat` (beyond LEEWAY), no or an empty `sub`, a wrong audience or issuer, a subscriber's token that was
revoked (`crm-subscribers remove` or `rotate`). 403: a valid token without the scope.

Narrow scopes for ERP and SCM subscribers (crm_gateway.subscribers): `crm:events` reads the replay feed,
limited to the event types of its `events:<pattern>` scopes; `crm:facts` sends facts about orders
(shipments, deliveries, payments, returns, confirmations). A broader scope holds a narrower one
(IMPLIED_BY): `crm:admin` reads every event, `crm:write` may send facts. A subscriber's token carries its id
(`jti`) and its subscriber's name (`crm_subscriber`) and is checked against the gateway's registry on every
request, so it can be revoked alone.

Browser sign-in (the dashboard, crm_gateway.routes.dashboard): people named in CRM_DASHBOARD_USERS
(`name:hash` pairs, the hash from `python -m crm_gateway.auth hash-password`, scrypt) sign in with a password
and get a short-lived token (crm:read only, CRM_DASHBOARD_SESSION_MINUTES, default 15) in an HttpOnly,
SameSite=Strict cookie (Secure over https or with CRM_DASHBOARD_COOKIE_SECURE=true). `authenticate_request`
accepts that cookie in place of the Authorization header for GET and HEAD only: the cookie never authorises a
change (no cross-site request forgery can write), and a session token sent as a bearer token is refused.
Failed sign-ins are bounded per name and per client address (SignInAttempts).

`python -m crm_gateway.auth` prints a development token (what `make token` runs);
`python -m crm_gateway.auth hash-password` reads a password and prints its hash for CRM_DASHBOARD_USERS.
"""

from __future__ import annotations

import argparse
import base64
import getpass
import hashlib
import hmac
import logging
import os
import secrets
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import jwt
from nameko.extensions import DependencyProvider

from crm_gateway.errors import ApiError

log = logging.getLogger(__name__)

READ = "crm:read"
WRITE = "crm:write"
ADMIN = "crm:admin"
EVENTS = "crm:events"
FACTS = "crm:facts"
#: A scope `events:<pattern>` grants the event types whose routing key matches the AMQP topic pattern.
EVENT_TYPES_PREFIX = "events:"
#: Who else holds a scope: a broader scope implies a narrower one.
IMPLIED_BY: dict[str, frozenset[str]] = {EVENTS: frozenset({ADMIN}), FACTS: frozenset({WRITE})}
#: The claim naming the subscriber a token was issued to (its `jti` is then checked on every request).
SUBSCRIBER_CLAIM = "crm_subscriber"
ALGORITHM = "HS256"
#: Used only when CRM_JWT_SECRET is unset; long enough for HS256 (PyJWT warns about short keys).
DEVELOPMENT_SECRET = "crm-development-secret-do-not-use-in-production"
REALM = "crm"
#: Clock skew tolerated between the token issuer and this gateway, in seconds.
LEEWAY = 30
#: The longest Authorization header read (bytes); a longer one is 401 before any decoding.
MAX_AUTHORIZATION_LENGTH = 8 * 1024

_warned = False


@dataclass(frozen=True)
class Principal:
    """Who is calling: the token's subject and the scopes it grants."""

    subject: str
    scopes: frozenset[str]
    #: A subscriber's token: (subscriber name, token id), checked against the registry on every request.
    subscriber_token: tuple[str, str] | None = None
    #: A dashboard session's token: its id (`jti`), refused once signed out; accepted only as the cookie.
    session_id: str | None = None

    def holds(self, scope: str) -> bool:
        """Whether the token grants `scope`, itself or through a broader scope."""
        return scope in self.scopes or bool(IMPLIED_BY.get(scope, frozenset()) & self.scopes)


def jwt_secret() -> str:
    """The signing secret: CRM_JWT_SECRET, else the development secret (with a loud warning)."""
    global _warned
    secret = os.environ.get("CRM_JWT_SECRET")
    if secret:
        return secret
    if not _warned:
        _warned = True
        log.warning(
            "CRM_JWT_SECRET is not set: using the DEVELOPMENT secret. Anyone can mint tokens for this "
            "gateway. Set CRM_JWT_SECRET before exposing it to anything but your own machine."
        )
    return DEVELOPMENT_SECRET


@dataclass(frozen=True)
class TokenRules:
    """What a token must say beyond a valid signature: the audience and issuer, when configured."""

    audience: str | None
    issuer: str | None


def token_rules() -> TokenRules:
    """CRM_JWT_AUDIENCE and CRM_JWT_ISSUER (each optional: unset means not checked)."""
    return TokenRules(os.environ.get("CRM_JWT_AUDIENCE") or None, os.environ.get("CRM_JWT_ISSUER") or None)


def issue_token(
    subject: str = "developer",
    scopes: Iterable[str] = (READ, WRITE),
    ttl_seconds: int = 12 * 3600,
    secret: str | None = None,
    extra_claims: dict[str, Any] | None = None,
) -> str:
    """A signed token for `subject` with `scopes` (space-separated in the `scope` claim, as OAuth 2 does),
    with the configured audience and issuer when there are (and `extra_claims`, e.g. a subscriber's)."""
    now = int(time.time())
    claims: dict[str, Any] = {**(extra_claims or {}), "sub": subject, "scope": " ".join(scopes), "iat": now,
                              "exp": now + ttl_seconds}
    rules = token_rules()
    if rules.audience:
        claims["aud"] = rules.audience
    if rules.issuer:
        claims["iss"] = rules.issuer
    return jwt.encode(claims, secret or jwt_secret(), algorithm=ALGORITHM)


def _challenge(error: str | None = None, description: str | None = None, scope: str | None = None) -> str:
    # RFC 6750 section 3: a request without credentials gets the bare challenge, no error code.
    parts = [f'realm="{REALM}"']
    if error:
        parts.append(f'error="{error}"')
    if description:
        parts.append('error_description="{}"'.format(description.replace('"', "'")))
    if scope:
        parts.append(f'scope="{scope}"')
    return "Bearer " + ", ".join(parts)


def unauthorized(message: str, error: str | None = "invalid_token") -> ApiError:
    """401 with the WWW-Authenticate challenge."""
    challenge = _challenge(error, message if error else None)
    return ApiError(401, "unauthorized", message, headers={"WWW-Authenticate": challenge})


def scopes_of(claims: dict[str, Any]) -> frozenset[str]:
    """Scopes from `scope` (space-separated string) or `scopes` (list), whichever the issuer used."""
    raw = claims.get("scope", claims.get("scopes", ""))
    if isinstance(raw, str):
        return frozenset(raw.split())
    if isinstance(raw, list):
        return frozenset(str(s) for s in raw)
    return frozenset()


#: Tokens already verified, with their expiry: a client sends the same token with every request,
#: and checking its signature each time was a tenth of the gateway's CPU under load.
_verified_tokens: dict[tuple[str, str, TokenRules], tuple[Principal, float]] = {}
_VERIFIED_TOKENS_MAX = 10_000


def _verified(token: str, secret: str, rules: TokenRules) -> Principal:
    """The principal of a valid, unexpired token; 401 otherwise."""
    cache_key = (token, secret, rules)
    known = _verified_tokens.get(cache_key)
    if known is not None and time.time() < known[1] + LEEWAY:
        return known[0]
    required = ["exp", "sub"] + (["aud"] if rules.audience else []) + (["iss"] if rules.issuer else [])
    try:
        claims = jwt.decode(
            token, secret, algorithms=[ALGORITHM], leeway=LEEWAY, audience=rules.audience, issuer=rules.issuer,
            options={"require": required, "verify_aud": rules.audience is not None},
        )
    except jwt.ExpiredSignatureError:
        _verified_tokens.pop(cache_key, None)
        raise unauthorized("the token has expired") from None
    except jwt.InvalidTokenError as exc:
        raise unauthorized(f"the token is not valid: {exc}") from None
    except (ValueError, TypeError, OverflowError) as exc:  # what a decoder may raise on hostile claims
        raise unauthorized(f"the token is not valid: {type(exc).__name__}") from None
    if not str(claims["sub"]).strip():
        raise unauthorized("the token is not valid: its subject (sub) is empty")
    subscriber = claims.get(SUBSCRIBER_CLAIM)
    subscriber_token = (str(subscriber), str(claims.get("jti", ""))) if subscriber is not None else None
    session_id = str(claims.get("jti", "")) if claims.get(SESSION_CLAIM) == SESSION_KIND else None
    principal = Principal(subject=str(claims["sub"]), scopes=scopes_of(claims), subscriber_token=subscriber_token,
                          session_id=session_id)
    if len(_verified_tokens) >= _VERIFIED_TOKENS_MAX:
        _verified_tokens.clear()
    # Remembered until it expires (an absurdly far `exp` is remembered for a day at most).
    expires = min(float(min(claims["exp"], 2**53)), time.time() + 24 * 3600)
    _verified_tokens[cache_key] = (principal, expires)
    return principal


def authenticate(authorization: str | None, scope: str) -> Principal:
    """The caller of a request with this Authorization header, if it holds `scope`; else 401 or 403."""
    if not authorization:
        raise unauthorized("a bearer token is required (Authorization: Bearer <token>)", error=None)
    if len(authorization) > MAX_AUTHORIZATION_LENGTH:
        raise unauthorized(f"the Authorization header is longer than {MAX_AUTHORIZATION_LENGTH} bytes",
                           error="invalid_request")
    scheme, _, token = authorization.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise unauthorized("the Authorization header must be 'Bearer <token>'", error="invalid_request")
    principal = _verified(token, jwt_secret(), token_rules())
    if principal.session_id is not None:
        raise unauthorized("a dashboard session token is accepted only as its cookie")
    return _authorised(principal, scope)


def _authorised(principal: Principal, scope: str) -> Principal:
    """`principal` if its token is still current and grants `scope`; else 401 or 403."""
    if principal.subscriber_token is not None and not _token_is_current(*principal.subscriber_token):
        raise unauthorized("the token has been revoked")
    if not principal.holds(scope):
        raise ApiError(
            403,
            "forbidden",
            f"the token does not grant the scope {scope}",
            headers={"WWW-Authenticate": _challenge("insufficient_scope", f"requires {scope}", scope)},
        )
    return principal


#: Answers whether a subscriber's token id is still its current one (set by the gateway's SubscriberTokens
#: provider at start). Unset, no subscriber token is accepted: a revoked one must never pass by default.
TokenCheck = Callable[[str, str], bool]
_token_check: TokenCheck | None = None


def use_token_check(check: TokenCheck | None) -> None:
    """Install the check of subscribers' token ids (crm_gateway.subscribers.registry)."""
    global _token_check
    _token_check = check


def _token_is_current(subscriber: str, token_id: str) -> bool:
    return _token_check is not None and bool(token_id) and _token_check(subscriber, token_id)


class JwtSettings(DependencyProvider):
    """Reads the signing secret when the service starts, so a missing CRM_JWT_SECRET is reported then (and
    CRM_DASHBOARD_USERS, so an entry that is not name:hash is reported then too)."""

    def setup(self) -> None:
        jwt_secret()
        dashboard_users()

    def get_dependency(self, worker_ctx: Any) -> None:
        return None


# --- browser sign-in: configured users, session cookies ------------------------------------------

#: The cookie holding a dashboard session's token (HttpOnly: no script can read it).
SESSION_COOKIE = "crm_session"
#: The claim marking a token as a dashboard session's, and its value.
SESSION_CLAIM = "crm_session"
SESSION_KIND = "dashboard"
#: Methods a session cookie is accepted for: reads only.
COOKIE_METHODS = frozenset({"GET", "HEAD"})
DEFAULT_SESSION_MINUTES = 15
#: scrypt's cost: N = 2**15, r = 8, p = 1 (32 MiB and ~0.1 s per hash); each hash records its own, so a hash
#: made with a higher cost keeps working.
SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P = 15, 8, 1
_SCRYPT_KEY_BYTES = 32
HASH_SCHEME = "scrypt"
#: The longest password hashed (longer is refused before any work: no hashing of megabytes).
MAX_PASSWORD_LENGTH = 1024


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _scrypt(password: str, salt: bytes, log2_n: int, r: int, p: int) -> bytes:
    n = 2**log2_n
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=256 * n * r * p,
                          dklen=_SCRYPT_KEY_BYTES)


def hash_password(password: str) -> str:
    """`scrypt.<log2 N>.<r>.<p>.<salt>.<key>` (URL-safe base64): no `$` or `:`, so it sits unquoted in
    CRM_DASHBOARD_USERS, a shell or docker compose."""
    salt = secrets.token_bytes(16)
    key = _scrypt(password, salt, SCRYPT_LOG2_N, SCRYPT_R, SCRYPT_P)
    return ".".join([HASH_SCHEME, str(SCRYPT_LOG2_N), str(SCRYPT_R), str(SCRYPT_P), _b64(salt), _b64(key)])


#: The most memory one hash may ask scrypt for (128 x N x r bytes): a configured hash cannot exhaust the gateway.
_SCRYPT_MAX_MEMORY = 256 * 1024 * 1024


def _parsed_hash(encoded: str) -> tuple[bytes, int, int, int, bytes]:
    """(salt, log2 N, r, p, key) of a hash_password answer; ValueError for anything else."""
    scheme, log2_n, r, p, salt, key = encoded.split(".")
    cost = (int(log2_n), int(r), int(p))
    if scheme != HASH_SCHEME or not (10 <= cost[0] <= 24 and 1 <= cost[1] <= 32 and 1 <= cost[2] <= 4) \
            or 128 * 2**cost[0] * cost[1] > _SCRYPT_MAX_MEMORY:
        raise ValueError(f"not a {HASH_SCHEME} hash this gateway makes")
    salt_bytes, key_bytes = _unb64(salt), _unb64(key)
    if len(key_bytes) != _SCRYPT_KEY_BYTES or len(salt_bytes) < 16:
        raise ValueError(f"not a {HASH_SCHEME} hash this gateway makes")
    return salt_bytes, *cost, key_bytes


def verify_password(password: str, encoded: str) -> bool:
    """Whether `password` is the one `encoded` (hash_password) was made from; compared in constant time."""
    salt, log2_n, r, p, key = _parsed_hash(encoded)
    return hmac.compare_digest(_scrypt(password, salt, log2_n, r, p), key)


def dashboard_users() -> dict[str, str]:
    """CRM_DASHBOARD_USERS: `name:hash` pairs separated by spaces, commas or new lines. An entry that is not
    one is logged and left out (nobody signs in with it)."""
    users: dict[str, str] = {}
    for entry in os.environ.get("CRM_DASHBOARD_USERS", "").replace(",", " ").split():
        name, _, encoded = entry.partition(":")
        try:
            _parsed_hash(encoded)
        except (ValueError, TypeError):
            log.error("CRM_DASHBOARD_USERS: the entry for %r is not name:<hash from `python -m crm_gateway.auth "
                      "hash-password`>; nobody signs in with it", name)
            continue
        users[name] = encoded
    return users


_decoy_hash: str | None = None


def check_credentials(name: str, password: str) -> bool:
    """Whether `name` is a configured user and `password` theirs. An unknown name costs the same hashing
    as a known one, so neither the answer nor its time tells which part was wrong."""
    global _decoy_hash
    encoded = dashboard_users().get(name)
    if encoded is None:
        if _decoy_hash is None:
            _decoy_hash = hash_password(secrets.token_urlsafe(16))
        verify_password(password, _decoy_hash)
        return False
    return verify_password(password, encoded)


def session_seconds() -> int:
    """A session's lifetime: CRM_DASHBOARD_SESSION_MINUTES (default 15)."""
    return int(float(os.environ.get("CRM_DASHBOARD_SESSION_MINUTES") or DEFAULT_SESSION_MINUTES) * 60)


def issue_session(name: str) -> tuple[str, int]:
    """A dashboard session's token for `name` (crm:read only) and its lifetime in seconds."""
    ttl = session_seconds()
    token = issue_token(name, (READ,), ttl, extra_claims={SESSION_CLAIM: SESSION_KIND, "jti": uuid.uuid4().hex})
    return token, ttl


#: Sessions signed out before their expiry: token id -> expiry (this process; a session lives minutes).
_ended_sessions: dict[str, float] = {}
_ended_lock = threading.Lock()


def end_session(principal: Principal) -> None:
    """Refuse `principal`'s session token from now on (signing out)."""
    if principal.session_id is None:
        return
    now = time.time()
    with _ended_lock:
        for session_id in [s for s, expires in _ended_sessions.items() if expires < now]:
            del _ended_sessions[session_id]
        _ended_sessions[principal.session_id] = now + session_seconds() + LEEWAY


def session_principal(cookie: str | None) -> Principal:
    """The signed-in person of a session cookie's token; 401 when absent, invalid, expired or signed out."""
    if not cookie:
        raise unauthorized("sign in first (no session cookie)", error=None)
    if len(cookie) > MAX_AUTHORIZATION_LENGTH:
        raise unauthorized("the session cookie is too long", error="invalid_request")
    principal = _verified(cookie, jwt_secret(), token_rules())
    if not principal.session_id:
        raise unauthorized("the session cookie does not hold a dashboard session's token")
    if principal.session_id in _ended_sessions:
        raise unauthorized("the session has ended (signed out)")
    return principal


def token_expiry(token: str) -> float:
    """The `exp` of a token already verified (its signature is not checked again)."""
    return float(jwt.decode(token, options={"verify_signature": False})["exp"])


def authenticate_request(request: Any, scope: str) -> Principal:
    """The caller of a werkzeug request holding `scope`: its bearer token, or, for GET and HEAD without an
    Authorization header, its dashboard session cookie. 401 or 403 otherwise."""
    authorization = request.headers.get("Authorization")
    cookie = request.cookies.get(SESSION_COOKIE)
    if authorization or not cookie or request.method not in COOKIE_METHODS:
        return authenticate(authorization, scope)
    return _authorised(session_principal(cookie), scope)


class SignInAttempts:
    """Failed sign-ins remembered for `window` seconds: at most `per_name` for one user name and
    4 x `per_name` from one client address; past either, sign-in is refused (429) until the oldest ages out.
    In this process only (each gateway replica counts its own)."""

    MAX_KEYS = 10_000

    def __init__(self, per_name: int, window: float) -> None:
        self.per_name = per_name
        self.per_address = 4 * per_name
        self.window = window
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_environment(cls) -> SignInAttempts:
        """CRM_DASHBOARD_SIGNIN_ATTEMPTS (default 5) per CRM_DASHBOARD_SIGNIN_WINDOW_SECONDS (default 300)."""
        return cls(int(os.environ.get("CRM_DASHBOARD_SIGNIN_ATTEMPTS") or 5),
                   float(os.environ.get("CRM_DASHBOARD_SIGNIN_WINDOW_SECONDS") or 300))

    def _recent(self, key: str, now: float) -> deque[float]:
        failures = self._failures.get(key, deque())
        while failures and failures[0] <= now - self.window:
            failures.popleft()
        return failures

    def retry_after(self, name: str, address: str) -> int | None:
        """Seconds until another attempt is allowed, or None when one is allowed now."""
        now = time.monotonic()
        with self._lock:
            waits = [int(failures[0] + self.window - now) + 1
                     for key, limit in ((f"name:{name}", self.per_name), (f"address:{address}", self.per_address))
                     if len(failures := self._recent(key, now)) >= limit]
        return max(waits) if waits else None

    def failed(self, name: str, address: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._failures) >= self.MAX_KEYS:
                self._failures = {k: v for k, v in self._failures.items() if self._recent(k, now)}
            for key in (f"name:{name}", f"address:{address}"):
                self._failures.setdefault(key, deque()).append(now)

    def succeeded(self, name: str) -> None:
        with self._lock:
            self._failures.pop(f"name:{name}", None)


def main(argv: list[str] | None = None) -> None:
    """Print a development token, or (`hash-password`) a password's hash for CRM_DASHBOARD_USERS."""
    if argv is None:
        argv = sys.argv[1:]
    if argv[:1] == ["hash-password"]:
        hash_password_command(argv[1:])
        return
    parser = argparse.ArgumentParser(description="Print a CRM gateway JWT signed with CRM_JWT_SECRET "
                                                 "(or: hash-password, for CRM_DASHBOARD_USERS).")
    parser.add_argument("--subject", default="developer", help="the token's sub claim (default: developer)")
    parser.add_argument("--scope", action="append", default=[], help="an extra scope, e.g. crm:admin (repeatable)")
    parser.add_argument("--hours", type=float, default=12, help="lifetime in hours (default: 12)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    scopes = [READ, WRITE, *[s for s in args.scope if s not in (READ, WRITE)]]
    print(issue_token(args.subject, scopes, int(args.hours * 3600)))


def hash_password_command(argv: list[str]) -> None:
    """`hash-password [--user NAME]`: read a password (asked twice at a terminal, else one line of standard
    input) and print its hash, or the `NAME:hash` entry for CRM_DASHBOARD_USERS."""
    parser = argparse.ArgumentParser(prog="python -m crm_gateway.auth hash-password",
                                     description="Hash a dashboard user's password for CRM_DASHBOARD_USERS.")
    parser.add_argument("--user", help="print the whole NAME:hash entry")
    args = parser.parse_args(argv)
    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            raise SystemExit("the two passwords differ")
    else:
        password = sys.stdin.readline().rstrip("\r\n")
    if not password or len(password) > MAX_PASSWORD_LENGTH:
        raise SystemExit(f"the password must be 1 to {MAX_PASSWORD_LENGTH} characters")
    if args.user is not None and (not args.user or any(c in args.user for c in ":, \t\r\n")):
        raise SystemExit("a user name must not be empty nor hold ':', ',' or spaces")
    encoded = hash_password(password)
    print(f"{args.user}:{encoded}" if args.user else encoded)


if __name__ == "__main__":
    main()
