"""Candidate duplicates among the customers of the 360 view: the same normalised email, the same phone in
E.164, or a similar name (pg_trgm trigram similarity) at a similar company. Read-only; a merge is always
an operator's decision.

The normalisations are deliberately stricter than the customer service's claims (which only lower-case an
email and keep a phone's digits): "li.na+shop@example.com" and "lina@example.com" at Gmail, or
"010 5555 0101" and "+86 10 5555 0101", are different claims but likely one person. Phones are parsed with
`phonenumbers` (Google's libphonenumber metadata: trunk prefixes, country codes, number lengths) in the
region CRM_DEFAULT_PHONE_REGION (default CN) when a number has no country code.

Scores run 0..1: an email match 1.0, a phone match 0.95, a name match its similarity, raised by a similar
company (0.7 name + 0.3 company when both have one). Erased customers have no name, email or phone in the
view, so they are never candidates.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import phonenumbers

from crm_runtime import config

#: Trigram similarity of names (0..1) from which a pair is a candidate (DUPLICATE_NAME_THRESHOLD).
NAME_THRESHOLD = float(config.setting("DUPLICATE_NAME_THRESHOLD", "0.6"))
#: The region a phone without a country code is read in.
PHONE_REGION = config.setting("CRM_DEFAULT_PHONE_REGION", "CN")
#: Mail providers that ignore dots in the local part.
DOTLESS_DOMAINS = frozenset({"gmail.com", "googlemail.com"})
EMAIL_SCORE, PHONE_SCORE = 1.0, 0.95


def normalise_email(email: str | None) -> str | None:
    """Lower case, without a +tag; without dots where the provider ignores them."""
    if not email or "@" not in email:
        return None
    local, _, domain = email.strip().lower().rpartition("@")
    local = local.split("+", 1)[0]
    if domain in DOTLESS_DOMAINS:
        local, domain = local.replace(".", ""), "gmail.com"
    return f"{local}@{domain}" if local else None


def e164(phone: str | None, region: str = PHONE_REGION) -> str | None:
    """The number in E.164 (+8610...), or None when it is not a possible phone number."""
    if not phone:
        return None
    try:
        number = phonenumbers.parse(phone, region)
    except phonenumbers.NumberParseException:
        return None
    if not phonenumbers.is_possible_number(number):
        return None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


#: The SQL twin of `normalise_email` (emails are validated: one @), for an index and for lookups.
NORMALISED_EMAIL_SQL = """(CASE WHEN split_part(lower(email), '@', 2) IN ('gmail.com', 'googlemail.com')
    THEN replace(split_part(split_part(lower(email), '@', 1), '+', 1), '.', '') || '@gmail.com'
    ELSE split_part(split_part(lower(email), '@', 1), '+', 1) || '@' || split_part(lower(email), '@', 2) END)"""


def create_extension(cur: Any) -> None:
    """Migration (readmodel.create_tables): pg_trgm, whose similarity() scores names and companies."""
    cur.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm WITH SCHEMA public")


def create_indexes(cur: Any) -> None:
    """Migration and rebuild (readmodel.create_indexes): a trigram index of names and an index of normalised
    emails, so a registration's check is two index lookups. Both index columns that change only with a
    name or an email, so the view's other updates stay HOT. Phones have no index (the view keeps them in
    `doc` only): the on-demand and batch checks scan for them, the registration's check leaves them out."""
    cur.execute("CREATE INDEX IF NOT EXISTS customer_view_duplicate_name ON customer_view "
                "USING gin (lower(name) public.gin_trgm_ops)")
    cur.execute(f"CREATE INDEX IF NOT EXISTS customer_view_duplicate_email ON customer_view ({NORMALISED_EMAIL_SQL})")


@dataclass(frozen=True)
class Probe:
    """Who we look for: a registration's fields, or a customer's profile."""

    name: str | None
    email: str | None = None
    phone: str | None = None
    company: str | None = None


_COLUMNS = """customer_id::text, name, email, doc->'profile'->>'phone', doc->'profile'->>'company',
       public.similarity(lower(coalesce(name, '')), lower(%(name)s)),
       public.similarity(lower(coalesce(doc->'profile'->>'company', '')), lower(%(company)s))"""
_NOT_EXCLUDED = "(%(exclude)s::uuid IS NULL OR customer_id <> %(exclude)s::uuid) AND name IS NOT NULL"
#: Candidates: the same normalised email, or a trigram-similar name (both through their indexes), or,
#: when phones are scanned, the same last seven digits of a phone; then scored exactly here.
_BY_EMAIL = f"SELECT {_COLUMNS} FROM customer_view WHERE {_NOT_EXCLUDED} AND {NORMALISED_EMAIL_SQL} = %(email)s"
_BY_NAME = (f"SELECT {_COLUMNS} FROM customer_view WHERE {_NOT_EXCLUDED} "
            "AND lower(name) OPERATOR(public.%%) lower(%(name)s)")
_BY_PHONE = (f"SELECT {_COLUMNS} FROM customer_view WHERE {_NOT_EXCLUDED} "
             "AND right(regexp_replace(doc->'profile'->>'phone', '[^0-9]', '', 'g'), 7) = %(digits)s")


def candidates(cur: Any, probe: Probe, exclude: str | None = None, threshold: float = NAME_THRESHOLD,
               limit: int = 20, scan_phones: bool = True) -> list[dict[str, Any]]:
    """The customers `probe` may duplicate, best first, each with its score and reasons. Without
    `scan_phones` (a registration's check) only indexed lookups run: emails and names."""
    email = normalise_email(probe.email)
    phone = e164(probe.phone)
    digits = "".join(c for c in (phone or "") if c.isdigit())[-7:]
    name = (probe.name or "").strip()
    parts = [_BY_EMAIL] if email else []
    if name:
        parts.append(_BY_NAME)
    if scan_phones and len(digits) == 7:
        parts.append(_BY_PHONE)
    if not parts:
        return []
    cur.execute("SELECT set_config('pg_trgm.similarity_threshold', %s, true)", (str(threshold),))
    cur.execute(" UNION ".join(parts) + " LIMIT %(scan)s", {
        "exclude": exclude, "name": name, "company": (probe.company or "").strip(), "email": email,
        "digits": digits, "scan": max(limit * 10, 100),
    })
    found = []
    for customer_id, their_name, their_email, their_phone, their_company, name_sim, company_sim in cur.fetchall():
        reasons: list[dict[str, Any]] = []
        if email and normalise_email(their_email) == email:
            reasons.append({"reason": "email", "score": EMAIL_SCORE, "value": email})
        if phone and e164(their_phone) == phone:
            reasons.append({"reason": "phone", "score": PHONE_SCORE, "value": phone})
        if name and name_sim >= threshold:
            both = bool(probe.company and their_company)
            score = 0.7 * name_sim + 0.3 * company_sim if both else name_sim
            reasons.append({"reason": "name_company" if both else "name", "score": round(float(score), 3),
                            "name_similarity": round(float(name_sim), 3),
                            "company_similarity": round(float(company_sim), 3) if their_company else None})
        if reasons:
            found.append({"customer_id": customer_id, "name": their_name, "email": their_email,
                          "phone": their_phone, "company": their_company,
                          "score": max(float(r["score"]) for r in reasons), "reasons": reasons})
    found.sort(key=lambda c: (-c["score"], c["customer_id"]))
    return found[:limit]


def candidates_of(cur: Any, customer_id: str, threshold: float = NAME_THRESHOLD,
                  limit: int = 20) -> list[dict[str, Any]] | None:
    """The candidate duplicates of a customer of the view (None: no such customer)."""
    cur.execute("SELECT doc->'profile' FROM customer_view WHERE customer_id = %s", (customer_id,))
    row = cur.fetchone()
    if row is None:
        return None
    profile = row[0] or {}
    probe = Probe(profile.get("name"), profile.get("email"), profile.get("phone"), profile.get("company"))
    return candidates(cur, probe, exclude=customer_id, threshold=threshold, limit=limit)


def duplicate_pairs(cur: Any, threshold: float = NAME_THRESHOLD, page: int = 1, page_size: int = 20
                    ) -> dict[str, Any]:
    """Every candidate pair of the view (a batch check), best first, a page at a time."""
    cur.execute("SELECT customer_id::text, doc->'profile' FROM customer_view WHERE name IS NOT NULL "
                "ORDER BY customer_id")
    pairs: dict[tuple[str, str], dict[str, Any]] = {}
    for customer_id, profile in cur.fetchall():
        profile = profile or {}
        probe = Probe(profile.get("name"), profile.get("email"), profile.get("phone"), profile.get("company"))
        for found in candidates(cur, probe, exclude=customer_id, threshold=threshold, limit=50):
            pair = tuple(sorted((customer_id, found["customer_id"])))
            pairs.setdefault(pair, {"customer_ids": list(pair), "score": found["score"],  # type: ignore[arg-type]
                                    "reasons": found["reasons"]})
    ranked = sorted(pairs.values(), key=lambda p: (-p["score"], p["customer_ids"]))
    start = (page - 1) * page_size
    return {"items": ranked[start:start + page_size], "page": page, "page_size": page_size, "total": len(ranked)}
