"""Marketing vocabulary."""

# Leads are graded on the customer levels of DOMAIN.md (seed, ordinary, key) and converted leads become
# customers, so the grades are kept once, in customer's module; money follows the order's rules.
from crm_contracts.vocabulary.customer import CUSTOMER_GRADES
from crm_contracts.vocabulary.money import CURRENCIES, MONEY_PLACES

__all__ = [
    "CAMPAIGN_CHANNELS",
    "CAMPAIGN_CONSENT_DEFAULT",
    "CAMPAIGN_STATUSES",
    "CURRENCIES",
    "ENGAGEMENT_KINDS",
    "LEAD_CHANNELS",
    "LEAD_GRADES",
    "LEAD_MOVES",
    "LEAD_STATUSES",
    "MAX_SCORE",
    "MONEY_PLACES",
    "OPEN_LEAD_STATUSES",
    "SEGMENT_CRITERIA",
    "campaign_consent_mapping",
]

#: Channels a campaign reaches its segment through (DOMAIN.md "Marketing").
CAMPAIGN_CHANNELS = ("traditional", "telephone", "online", "email")
#: The consent channel each campaign channel needs, as `CAMPAIGN_CONSENT_CHANNELS` writes it (marketing's
#: targeting and customer360's `campaign_channel` criterion read the same setting): email needs email
#: consent, telephone phone, SMS sms, post and the other traditional channels post, online advertising none.
CAMPAIGN_CONSENT_DEFAULT = "email=email,telephone=phone,sms=sms,traditional=post,online="


def campaign_consent_mapping(text: str) -> dict[str, str | None]:
    """`campaign channel=consent channel` pairs, comma-separated, as a dict (an empty consent channel: None,
    no consent needed). A campaign channel the mapping does not name reaches nobody."""
    mapping: dict[str, str | None] = {}
    for item in text.split(","):
        if not item.strip():
            continue
        channel, separator, consent = item.partition("=")
        if not separator or not channel.strip():
            raise ValueError(f"CAMPAIGN_CONSENT_CHANNELS: {item.strip()!r} is not 'campaign channel=consent channel'")
        mapping[channel.strip()] = consent.strip() or None
    return mapping


#: A campaign is planned, launched (active), then closed; a plan may be closed without launching.
CAMPAIGN_STATUSES = ("planned", "active", "closed")
#: Criteria a target segment may be described by; each names a list of values or a bound.
SEGMENT_CRITERIA = (
    "industries",
    "regions",
    "grades",
    "lifecycle_stages",
    "consent_channels",
    "company_size_min",
    "company_size_max",
)
#: Channels a lead is captured from.
LEAD_CHANNELS = ("web_form", "email", "phone", "event", "referral")
#: Lead levels, most valuable first (DOMAIN.md: key, ordinary and seed customers).
LEAD_GRADES = CUSTOMER_GRADES
#: A lead is captured, may be qualified, and ends converted (handed to sales) or disqualified.
LEAD_STATUSES = ("captured", "qualified", "disqualified", "converted")
OPEN_LEAD_STATUSES = ("captured", "qualified")
#: The only status changes a lead allows: conversion needs a qualified lead; the two ends are final.
LEAD_MOVES = {
    "captured": ("qualified", "disqualified"),
    "qualified": ("disqualified", "converted"),
    "disqualified": (),
    "converted": (),
}
#: Engagement a lead shows, each worth points in the scoring rule.
ENGAGEMENT_KINDS = ("open", "visit", "reply")
#: Lead scores run from 0 to MAX_SCORE.
MAX_SCORE = 100
