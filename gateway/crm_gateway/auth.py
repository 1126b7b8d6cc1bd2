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

`python -m crm_gateway.auth` prints a development token (what `make token` runs).
"""

from __future__ import annotations

import argparse
import logging
import os
import time
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
    principal = Principal(subject=str(claims["sub"]), scopes=scopes_of(claims), subscriber_token=subscriber_token)
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
    """Reads the signing secret when the service starts, so a missing CRM_JWT_SECRET is reported then."""

    def setup(self) -> None:
        jwt_secret()

    def get_dependency(self, worker_ctx: Any) -> None:
        return None


def main(argv: list[str] | None = None) -> None:
    """Print a development token."""
    parser = argparse.ArgumentParser(description="Print a CRM gateway JWT signed with CRM_JWT_SECRET.")
    parser.add_argument("--subject", default="developer", help="the token's sub claim (default: developer)")
    parser.add_argument("--scope", action="append", default=[], help="an extra scope, e.g. crm:admin (repeatable)")
    parser.add_argument("--hours", type=float, default=12, help="lifetime in hours (default: 12)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    scopes = [READ, WRITE, *[s for s in args.scope if s not in (READ, WRITE)]]
    print(issue_token(args.subject, scopes, int(args.hours * 3600)))


if __name__ == "__main__":
    main()
