"""Segments back into campaigns (issue 9's closed loop), over HTTP on a platform of this module's own
(customer, marketing, customer360, gateway): two customers in a saved segment, one with email consent;
an email campaign planned for the segment reaches only that one when launched, the 360 view of the one
reached shows the campaign, the other's never does, and a second launch reaches nobody again."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import rabbit_vhost
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import RunningPlatform, platform_of_its_own
from tests.support.polling import eventually

pytestmark = pytest.mark.e2e

SEGMENT_CAMPAIGN_PORT = int(os.environ.get("CRM_SEGMENT_CAMPAIGN_GATEWAY_PORT", "31400"))


@pytest.fixture(scope="module")
def platform(infra: Infrastructure, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningPlatform]:
    with rabbit_vhost(infra, "crm_segment_campaigns") as vhost, platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("segment-campaigns")), label="segments", amqp_uri=vhost,
        gateway_port=SEGMENT_CAMPAIGN_PORT, service_base_port=SEGMENT_CAMPAIGN_PORT + 1,
        settings={"CRM_SERVICES": "customer,marketing,customer360,gateway"}, timeout=120,
    ) as running:
        yield running


def ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return response.json()


def email_consent(platform: RunningPlatform, customer_id: str) -> bool | None:
    """The email consent the 360 view shows (None while it shows none)."""
    return platform.view(customer_id)["consents"].get("email", {}).get("granted")


def test_a_campaign_to_a_saved_segment_reaches_only_members_with_consent_and_shows_in_their_view(platform):
    tag = uuid.uuid4().hex[:8]
    consenting = ok(platform.register(name=f"Consenting {tag}", source_channel="web"), 201)["id"]
    refusing = ok(platform.register(name=f"Refusing {tag}", source_channel="web"), 201)["id"]
    ok(platform.http("PUT", f"/v1/customers/{consenting}/consents/email", json={"granted": True, "source": "form"}))
    ok(platform.http("PUT", f"/v1/customers/{refusing}/consents/email", json={"granted": False, "source": "form"}))
    eventually(lambda: email_consent(platform, consenting) is True, timeout=30)
    eventually(lambda: email_consent(platform, refusing) is False, timeout=30)
    ok(platform.http("POST", "/v1/admin/refresh-analytics", token=platform.admin_token))
    segment = ok(platform.http("POST", "/v1/segments", json={"name": f"prospects {tag}",
                                                             "criteria": {"lifecycle_stage": "prospect"}}), 201)
    assert segment["members"] == 2

    planned = ok(platform.http("POST", "/v1/campaigns", json={
        "name": f"Welcome {tag}", "objective": "first orders", "segment_id": segment["id"], "channels": ["email"],
        "starts_on": "2026-01-01", "ends_on": "2027-12-31", "budget": "800.00", "currency": "CNY"}), 201)
    assert (planned["segment_id"], planned["segment"], planned["reached"]) == (segment["id"], {}, {})
    launched = ok(platform.http("POST", f"/v1/campaigns/{planned['id']}/launch"))
    assert launched["status"] == "active" and launched["reached"] == {"email": 1}

    def shown() -> bool:
        return planned["id"] in platform.view(consenting)["marketing"]["campaigns"]

    eventually(shown, timeout=30)
    assert planned["id"] not in platform.view(refusing)["marketing"]["campaigns"]
    again = platform.http("POST", f"/v1/campaigns/{planned['id']}/launch")
    assert again.status_code in (409, 422), again.text
    assert ok(platform.http("GET", f"/v1/campaigns/{planned['id']}"))["reached"] == {"email": 1}

    unknown = platform.http("POST", "/v1/campaigns", json={**{k: planned[k] for k in (
        "name", "objective", "channels", "currency")}, "segment_id": str(uuid.uuid4()), "starts_on": "2026-01-01",
        "ends_on": "2027-12-31", "budget": "1.00"})
    assert unknown.status_code == 422 and "segment_id" in unknown.json()["error"]["fields"], unknown.text
