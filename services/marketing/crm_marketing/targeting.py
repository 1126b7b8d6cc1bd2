"""Which members of a saved segment a campaign may contact, on which of its channels: consent decides.

A campaign channel needs the customer's consent on one consent channel (crm_contracts.vocabulary.customer
CONSENT_CHANNELS), or none at all. The mapping is configuration, `CAMPAIGN_CONSENT_CHANNELS`: comma-separated
`campaign channel=consent channel` pairs, an empty consent channel meaning "none needed". The default:

    email=email,telephone=phone,sms=sms,traditional=post,online=

(email needs email consent, telephone needs phone, SMS needs sms, post and the other traditional
channels need post, online advertising needs none). A campaign channel the mapping does not name
reaches nobody: a channel nobody decided about is not a licence to contact. customer360 reads the same
variable for its `campaign_channel` segment criterion, so one setting configures both services.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from crm_contracts.vocabulary.marketing import CAMPAIGN_CONSENT_DEFAULT, campaign_consent_mapping
from crm_runtime import config

#: The configured mapping (read once, at import).
CAMPAIGN_CONSENT = campaign_consent_mapping(config.setting("CAMPAIGN_CONSENT_CHANNELS", CAMPAIGN_CONSENT_DEFAULT))


@dataclass(frozen=True)
class SegmentMember:
    """A customer of a saved segment, with the consent channels they granted (True) or refused (False);
    a channel not given is not granted."""

    customer_id: UUID
    consents: Mapping[str, bool] = field(default_factory=dict)


def reachable_channels(
    campaign_channels: Iterable[str], member: SegmentMember, mapping: Mapping[str, str | None]
) -> list[str]:
    """The campaign's channels on which `member` may be contacted: those needing no consent, and those
    whose consent channel the member granted; never a channel the mapping does not name."""
    reachable = []
    for channel in campaign_channels:
        if channel not in mapping:
            continue
        needed = mapping[channel]
        if needed is None or member.consents.get(needed) is True:
            reachable.append(channel)
    return reachable


def consent_needed(campaign_channels: Iterable[str], mapping: Mapping[str, str | None]) -> dict[str, str | None]:
    """The consent channel each of the campaign's channels needs (None: none); unmapped channels left out."""
    return {channel: mapping[channel] for channel in campaign_channels if channel in mapping}


#: Members asked of customer360 per call (its largest analytics page).
MEMBERS_PAGE_SIZE = 100


def members_of_segment(
    customer360: Any, segment_id: UUID, campaign_channels: Iterable[str], mapping: Mapping[str, str | None]
) -> list[SegmentMember]:
    """The saved segment's members now, with the consents the campaign's channels need, from customer360.

    customer360 answers a segment's criteria (`get_segment`) and the customers matching criteria, a page
    at a time (`customer_analytics`), where the criterion `consent` keeps only those who granted consent
    on that channel (from the 360 view's consents). For each consent channel the campaign needs, marketing
    asks for the segment's members with that consent granted and marks it granted on them; for a channel
    needing none, it asks for the segment's members as they are. A segment that itself demands another
    consent is honoured too: the members with ours are kept only if they are members of the segment.
    A member found on no channel is not in the answer. Raises customer360's not_found for no such segment."""
    criteria = dict(customer360.get_segment(str(segment_id))["criteria"])
    consents: dict[UUID, dict[str, bool]] = {}
    needed = set(consent_needed(campaign_channels, mapping).values())
    in_segment: set[UUID] | None = None
    for consent in sorted(needed, key=lambda c: c or ""):
        filters = dict(criteria)
        if consent is not None:
            if criteria.get("consent") not in (None, consent) and in_segment is None:
                in_segment = set(_customers(customer360, criteria))
            filters["consent"] = consent
        for customer_id in _customers(customer360, filters):
            if in_segment is not None and consent is not None and customer_id not in in_segment:
                continue
            granted = consents.setdefault(customer_id, {})
            if consent is not None:
                granted[consent] = True
    return [SegmentMember(customer_id, granted) for customer_id, granted in consents.items()]


def _customers(customer360: Any, filters: Mapping[str, Any]) -> Iterator[UUID]:
    """Every customer matching `filters`, page after page."""
    page = 1
    while True:
        found = customer360.customer_analytics(dict(filters), page, MEMBERS_PAGE_SIZE)
        for item in found["items"]:
            yield UUID(item["customer_id"])
        if not found["items"] or page * MEMBERS_PAGE_SIZE >= found["total"]:
            return
        page += 1
