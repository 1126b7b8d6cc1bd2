"""A customer's export and erasure over HTTP (GDPR Art. 15, 17): an operator exports everything the platform
holds about a customer as one archive, then erases them at the gateway; the customer
service shreds the key, customer_erased reaches the 360 view, the gateway's stored answers are replaced;
the status resource says so (naming the services this platform does not run as unavailable); and no byte
of the person is left in the platform's database.

Real: the shared e2e platform (customer, customer360, gateway), pg_dump of its database."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid

import pytest

from tests.support.polling import eventually

pytestmark = pytest.mark.e2e


def test_an_erased_customer_is_forgotten_everywhere_the_platform_keeps_them(running_platform):
    marker = uuid.uuid4().hex[:10]
    name, email, phone = f"Erasable {marker}", f"erasable.{marker}@example.org", f"+86 20 {int(marker, 16) % 10**8:08d}"
    key, request_id = f"register-{uuid.uuid4().hex}", f"DSR-{uuid.uuid4().hex[:6]}"
    body = {"name": name, "email": email, "phone": phone}
    registered = running_platform.http("POST", "/v1/customers", json=body, headers={"Idempotency-Key": key})
    assert registered.status_code == 201, registered.text
    cid = registered.json()["id"]
    address = {"address": {"recipient": name, "line1": f"{marker} Zhongshan Road", "city": "Guangzhou",
                           "country": "CN"}}
    assert running_platform.http("PUT", f"/v1/customers/{cid}/addresses/shipping", json=address).status_code == 200
    eventually(lambda: running_platform.view(cid)["addresses"].get("shipping", {}).get("recipient") == name)

    exported = running_platform.http("GET", f"/v1/customers/{cid}/export", token=running_platform.admin_token)
    assert exported.status_code == 200, exported.text
    archive = exported.json()
    assert [m["source"] for m in archive["manifest"]] == [
        "customer", "customer360", "marketing", "sales", "order", "service", "loyalty"]
    statuses = {m["source"]: m["status"] for m in archive["manifest"]}
    assert statuses["customer"] == statuses["customer360"] == "ok"
    # Services this platform does not run are named as unavailable, and the archive says it is partial.
    assert archive["complete"] is (set(statuses.values()) <= {"ok", "none"})
    assert archive["data"]["customer"]["record"]["name"] == name
    assert [e["type"] for e in archive["data"]["customer"]["events"]] == ["Registered", "AddressChanged"]
    assert archive["data"]["customer360"]["profile"]["email"] == email

    assert running_platform.http("POST", f"/v1/customers/{cid}/erasure", json={}).status_code == 403  # not admin
    erased = running_platform.http("POST", f"/v1/customers/{cid}/erasure", token=running_platform.admin_token,
                                   json={"request_id": request_id})
    assert erased.status_code == 202, erased.text
    assert erased.json()["request_id"] == request_id

    def acted():
        status = running_platform.http("GET", f"/v1/customers/{cid}/erasure", token=running_platform.admin_token)
        assert status.status_code == 200, status.text
        services = status.json()["services"]
        assert [services[s]["state"] for s in ("customer", "customer360", "gateway")] == ["done"] * 3
        return status.json()

    status = eventually(acted, timeout=30)
    # The services this platform does not run cannot say: named unavailable, and the erasure not complete
    # (tests/e2e/test_rights.py runs them all and sees it complete).
    unanswered = {s["state"] for name, s in status["services"].items() if name not in ("customer", "customer360",
                                                                                        "gateway")}
    assert status["complete"] is False and unanswered <= {"unavailable", "done", "pending"}, status
    assert all(s.get("reason") for s in status["services"].values() if s["state"] == "unavailable"), status

    customer = running_platform.http("GET", f"/v1/customers/{cid}").json()
    assert customer["erased"] is True and (customer["name"], customer["email"], customer["phone"]) == (None,) * 3
    view = running_platform.http("GET", f"/v1/customers/{cid}/360").json()
    assert view["profile"]["erased"] is True and view["addresses"] == {}
    assert marker not in repr(view)
    # The registration's stored answer is replaced: a replay neither shows the person nor registers again.
    replay = running_platform.http("POST", "/v1/customers", json=body, headers={"Idempotency-Key": key})
    assert replay.status_code == 410 and marker not in replay.text
    assert running_platform.http("PATCH", f"/v1/customers/{cid}", json={"company": "X"},
                                 headers={"If-Match": f'"{customer["version"]}"'}).status_code == 409
    again = running_platform.http("POST", f"/v1/customers/{cid}/erasure", token=running_platform.admin_token, json={})
    assert again.status_code == 202 and again.json()["request_id"] == request_id  # idempotent

    pg_dump = shutil.which("pg_dump")
    if pg_dump is not None:
        env = running_platform.env
        dumped = subprocess.run(
            [pg_dump, "-h", env["POSTGRES_HOST"], "-p", env["POSTGRES_PORT"], "-U", env["POSTGRES_USER"],
             "-d", env["POSTGRES_DBNAME"], "--no-owner"],
            capture_output=True, check=True, timeout=120,
            env={**os.environ, "PGPASSWORD": env.get("POSTGRES_PASSWORD", "")},
        ).stdout.lower()
        for secret in (marker, email, phone):
            for form in (secret.lower().encode(), secret.encode().hex().encode()):
                at = dumped.find(form)
                assert at < 0, dumped[max(0, at - 300):at + 100]

    after = running_platform.http("GET", f"/v1/customers/{cid}/export", token=running_platform.admin_token).json()
    assert after["data"]["customer"]["record"]["erased"] is True and marker not in repr(after["data"])

    newcomer = running_platform.register(name=name, email=email, phone=phone)
    assert newcomer.status_code == 201 and newcomer.json()["id"] != cid  # the address is free: a new customer


def test_two_registrations_of_one_person_through_different_channels_are_flagged(running_platform):
    marker = uuid.uuid4().hex[:8]
    first = running_platform.http("POST", "/v1/customers", json={
        "name": f"Liang Meiling {marker}", "email": f"liang.meiling.{marker}@gmail.com", "company": "Pearl Foods",
        "source_channel": "web"})
    assert first.status_code == 201, first.text
    fid = first.json()["id"]
    running_platform.view(fid)  # the 360 view knows the first one
    second = running_platform.http("POST", "/v1/customers", json={
        "name": f"Liang Mei-ling {marker}", "email": f"liangmeiling.{marker}+shop@gmail.com",
        "phone": "+86 20 5555 0188", "source_channel": "phone"})
    assert second.status_code == 201, second.text  # a warning, never a refusal
    warned = {c["customer_id"]: c for c in second.json()["possible_duplicates"]}
    assert fid in warned and {r["reason"] for r in warned[fid]["reasons"]} >= {"email"}
    sid = second.json()["id"]
    running_platform.view(sid)

    found = running_platform.http("GET", f"/v1/customers/{sid}/duplicates").json()
    assert fid in {c["customer_id"] for c in found["candidates"]}
    pairs: list[list[str]] = []  # the batch check, every page (the shared platform has other tests' pairs)
    for page in range(1, 101):
        items = running_platform.http("GET", "/v1/duplicates",
                                      params={"threshold": 0.9, "page_size": 100, "page": page}).json()["items"]
        pairs += [p["customer_ids"] for p in items]
        if sorted([fid, sid]) in pairs or len(items) < 100:
            break
    assert sorted([fid, sid]) in pairs
    assert running_platform.http("GET", "/v1/duplicates", params={"threshold": 7}).status_code == 422
