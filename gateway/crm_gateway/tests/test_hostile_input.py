"""Hostile input at the gateway: size, nesting, numbers and text that would hurt a parser or a store are
answered 4xx naming the problem, never 500, and never reach a service."""

from __future__ import annotations

import io
import json

import pytest
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from crm_gateway.tests.conftest import CUSTOMER_ID, body
from crm_gateway.web import DEFAULT_MAX_BODY_BYTES, MAX_JSON_DEPTH, read_body

CUSTOMER = f"/v1/customers/{CUSTOMER_ID}"


def nested(depth: int) -> str:
    return '{"name": "Li Na", "email": "li.na@example.com", "x": ' + '{"a": ' * depth + "1" + "}" * depth + "}"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        pytest.param("[" * 60_000, "nested deeper", id="60k-open-brackets"),
        pytest.param('{"a": ' * 9_000 + "1" + "}" * 9_000, "nested deeper", id="9k-nested-objects"),
        pytest.param('{"name": ' + "9" * 5000 + "}", "not valid JSON", id="5000-digit-integer"),
        pytest.param('{"name": NaN}', "not valid JSON", id="nan"),
        pytest.param('{"name": -Infinity}', "not valid JSON", id="infinity"),
        pytest.param("", "not valid JSON", id="empty"),
        pytest.param('\ufeff{"name": "Li Na"}', "not valid JSON", id="byte-order-mark"),
        pytest.param(nested(MAX_JSON_DEPTH), "nested deeper", id="valid-json-too-deep"),
        pytest.param(nested(500), "nested deeper", id="valid-json-500-deep"),
    ],
)
def test_every_malformed_body_is_400_naming_the_problem(api, customer, data, problem):
    response = api.request("POST", "/v1/customers", data=data.encode("utf-8"), content_type="application/json")
    assert response.status_code == 400, body(response)
    error = body(response)["error"]
    assert error["code"] == "malformed_json" and problem in error["message"] and "_body" in error["fields"]
    customer.register.assert_not_called()


def test_100k_open_brackets_are_400_even_under_a_raised_limit(api, customer, monkeypatch):
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", str(1024 * 1024))
    response = api.request("POST", "/v1/customers", data="[" * 100_000, content_type="application/json")
    assert response.status_code == 400 and "nested deeper" in body(response)["error"]["message"]


@pytest.mark.parametrize("data", [b'{"name": "Li \xed\xa0\x80Na"}', b'{"name": "Li \xff"}',
                                  '{"name": "Li Na"}'.encode("utf-16")])
def test_a_body_that_is_not_utf8_is_400(api, customer, data):
    response = api.request("POST", "/v1/customers", data=data, content_type="application/json")
    assert response.status_code == 400 and "UTF-8" in body(response)["error"]["message"]
    customer.register.assert_not_called()


def test_nesting_up_to_the_limit_is_judged_by_the_contract(api, customer):
    response = api.request("POST", "/v1/customers", data=nested(MAX_JSON_DEPTH - 2), content_type="application/json")
    assert response.status_code == 422 and "x" in body(response)["error"]["fields"]


def test_a_body_over_the_limit_is_413(api, customer):
    payload = json.dumps({"name": "x" * DEFAULT_MAX_BODY_BYTES, "email": "li.na@example.com"})
    response = api.request("POST", "/v1/customers", data=payload, content_type="application/json")
    assert (response.status_code, body(response)["error"]["code"]) == (413, "body_too_large")
    customer.register.assert_not_called()


def test_the_limit_is_a_setting(api, customer, monkeypatch):
    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "64")
    payload = json.dumps({"name": "Li Na", "email": "li.na@example.com", "company": "Acme Trading Ltd"})
    assert api.request("POST", "/v1/customers", data=payload, content_type="application/json").status_code == 413


class CountingStream(io.BytesIO):
    """A request body stream that counts what was read from it."""

    consumed = 0

    def read(self, size: int | None = -1) -> bytes:
        part = super().read(size)
        self.consumed += len(part)
        return part


def chunked_request(stream: io.BytesIO) -> Request:
    """A request whose body has no Content-Length (Transfer-Encoding: chunked, as the server decoded it)."""
    environ = EnvironBuilder(path="/v1/customers", method="POST", headers=[("Transfer-Encoding", "chunked")],
                             content_type="application/json").get_environ()
    environ.pop("CONTENT_LENGTH", None)
    environ["wsgi.input"] = stream
    return Request(environ)


def test_a_chunked_body_is_read_whole_when_small():
    assert read_body(chunked_request(io.BytesIO(b'{"name": "Li Na"}'))) == b'{"name": "Li Na"}'


def test_a_chunked_body_is_cut_off_as_soon_as_it_passes_the_limit(monkeypatch):
    from crm_gateway.errors import ApiError

    monkeypatch.setenv("GATEWAY_MAX_BODY_BYTES", "1000")
    stream = CountingStream(b"x" * 1_000_000)
    with pytest.raises(ApiError) as refused:
        read_body(chunked_request(stream))
    assert refused.value.status == 413 and stream.consumed == 1001


def test_content_length_over_the_limit_is_refused_before_reading(monkeypatch):
    from crm_gateway.errors import ApiError

    stream = CountingStream(b"x" * 10)
    environ = EnvironBuilder(path="/v1/customers", method="POST", content_type="application/json").get_environ()
    environ.update({"CONTENT_LENGTH": str(10 * DEFAULT_MAX_BODY_BYTES), "wsgi.input": stream})
    with pytest.raises(ApiError) as refused:
        read_body(Request(environ))
    assert refused.value.status == 413 and stream.consumed == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"name": "Li\x00Na", "email": "li.na@example.com"}, "name"),
        ({"name": "Li\ud800Na", "email": "li.na@example.com"}, "name"),
        ({"name": "Li\nNa", "email": "li.na@example.com"}, "name"),
        ({"name": "Li Na", "email": "li.na@example.com", "company": "Acme\u2028Group"}, "company"),
        ({"name": "Li Na", "email": "li.na@example.com", "bad\x00key": 1}, "_schema"),
    ],
)
def test_text_a_store_cannot_hold_is_422_naming_the_field(api, customer, payload, field):
    # json.dumps escapes NUL and lone surrogates as \u0000 / \ud800, as a hostile client would send them.
    response = api.request("POST", "/v1/customers", data=json.dumps(payload), content_type="application/json")
    assert response.status_code == 422 and field in body(response)["error"]["fields"], body(response)
    customer.register.assert_not_called()


@pytest.mark.parametrize("query", ["q=%00", "q=li%00na", "q=%ED%A0%80", "q=%C0%AF", "q=%FF", "q=a%0Ab", "q=%C2%85"])
def test_a_query_with_nul_bad_utf8_or_control_characters_is_422_naming_it(api, customer360, query):
    response = api.get(f"/v1/customers?{query}")
    assert response.status_code == 422 and "q" in body(response)["error"]["fields"], body(response)
    customer360.search.assert_not_called()


def test_a_query_with_a_bad_parameter_name_is_422(api, customer360):
    response = api.get("/v1/customers?q%00=li")
    assert response.status_code == 422
    customer360.search.assert_not_called()


def test_unicode_in_a_query_is_decoded_as_utf8(api, customer360):
    customer360.search.return_value = {"items": [], "page": 1, "page_size": 20, "total": 0}
    assert api.get("/v1/customers?q=%E6%9D%8E%E5%A8%9C").status_code == 200
    customer360.search.assert_called_once_with("李娜", 1, 20)


@pytest.mark.parametrize("if_match", ["", " ", "\u0663", '"\u0663"', "1 2", "*1"])
def test_an_if_match_that_is_blank_or_not_ascii_digits_is_400(api, customer, if_match):
    response = api.put(f"{CUSTOMER}/grade", {"value": 5, "structure": 3, "loyalty": 4}, headers={"If-Match": if_match})
    assert response.status_code == 400 and "If-Match" in body(response)["error"]["fields"]
    assert not customer.method_calls
