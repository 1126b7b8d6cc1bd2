"""The 308 answer for a merged customer under hostile requests: its Location is always a relative path of this
gateway, made of the request's own route segments (percent-encoded) and the survivor's canonical UUID, with
the query percent-encoded: never another host, never a second header, never an id the service did not give."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from crm_contracts.errors import ServiceError
from crm_gateway.errors import response_for
from crm_gateway.tests.conftest import body
from crm_gateway.tests.test_merges import ABSORBED, SURVIVOR, moved


@pytest.mark.parametrize("spelling", [ABSORBED.upper(), ABSORBED.replace("-", ""), f"{{{ABSORBED}}}"])
def test_any_spelling_of_the_moved_id_in_the_path_redirects_to_the_canonical_survivor(api, customer, spelling):
    customer.get.side_effect = moved()
    response = api.get(f"/v1/customers/{spelling}")
    assert response.status_code == 308
    assert response.headers["Location"] == f"/v1/customers/{SURVIVOR}"


@pytest.mark.parametrize("survivor", ["//evil.example/x", "https://evil.example", "x\r\nSet-Cookie: a=b", "",
                                      "../../admin"])
def test_a_survivor_that_is_not_a_uuid_is_never_a_location(api, customer, survivor):
    customer.get.side_effect = ServiceError("moved", "merged", {"customer_id": ABSORBED, "survivor_id": survivor})
    response = api.get(f"/v1/customers/{ABSORBED}")
    assert response.status_code == 409 and "Location" not in response.headers
    assert body(response)["error"]["code"] == "moved"


def test_the_query_is_carried_percent_encoded_and_nothing_else_changes():
    # The routes validate their query (an unknown parameter is 422), so this asks the mapping directly.
    environ = EnvironBuilder(path=f"/v1/customers/{ABSORBED}/360").get_environ()
    environ["QUERY_STRING"] = 'as_of=2027-03-01T00:00:00%2B08:00&x=%0D%0A&a=<b> "c"&\u00e9=1'.encode().decode("latin-1")
    response = response_for(moved(), Request(environ))
    assert response.status_code == 308
    location = response.headers["Location"]
    assert location == (f"/v1/customers/{SURVIVOR}/360?as_of=2027-03-01T00:00:00%2B08:00&x=%0D%0A"
                        "&a=%3Cb%3E%20%22c%22&%C3%A9=1")


def test_the_other_segments_of_the_path_are_percent_encoded(api, customer):
    customer.record_consent.side_effect = moved()
    response = api.put(f"/v1/customers/{ABSORBED}/consents/email", {"granted": True})
    assert response.headers["Location"] == f"/v1/customers/{SURVIVOR}/consents/email"


def ids(n: int) -> list[str]:
    return [f"0b9c8d7e-2e1a-4f6b-9c7d-{i:012x}" for i in range(n)]


def test_more_customers_than_the_documented_bound_is_422_naming_the_field(api, customer):
    from crm_contracts.customer import MAX_ABSORBED

    too_many = api.post(f"/v1/customers/{SURVIVOR}/merges", {"absorb": ids(MAX_ABSORBED + 1)})
    assert too_many.status_code == 422 and "absorb" in body(too_many)["error"]["fields"]
    undo = api.post("/v1/merges/m-7/undo", {"customer_ids": ids(MAX_ABSORBED + 1)})
    assert undo.status_code == 422 and "customer_ids" in body(undo)["error"]["fields"]
    customer.merge.assert_not_called()
    customer.unmerge.assert_not_called()


@pytest.mark.parametrize("merge_id", ["m" * 101, "m-7\n", "ｍ-7", "m-7\u200b", ".m-7", "-m", "m 7"])
def test_a_merge_id_out_of_bounds_or_odd_unicode_is_422_in_the_body_and_404_in_the_path(api, customer, merge_id):
    response = api.post(f"/v1/customers/{SURVIVOR}/merges", {"absorb": [ABSORBED], "merge_id": merge_id})
    assert response.status_code == 422 and "merge_id" in body(response)["error"]["fields"]
    assert api.get(f"/v1/merges/{quote(merge_id, safe='')}").status_code == 404
    customer.merge.assert_not_called()
    customer.get_merge.assert_not_called()


def test_a_path_merge_id_of_any_length_is_404_without_echoing_it_whole(api, customer):
    response = api.get(f"/v1/merges/{'x' * 5000}!")
    assert response.status_code == 404 and len(body(response)["error"]["message"]) < 300
    customer.get_merge.assert_not_called()


def test_the_merge_location_is_a_relative_path_whatever_the_service_answers(api, customer):
    from crm_gateway.tests.test_merges import a_merge

    customer.merge.return_value = a_merge(merge_id="//evil.example/\r\nX: 1")
    response = api.post(f"/v1/customers/{SURVIVOR}/merges", {"absorb": [ABSORBED]})
    assert response.headers["Location"] == "/v1/merges/%2F%2Fevil.example%2F%0D%0AX%3A%201".replace("%3A", ":")
