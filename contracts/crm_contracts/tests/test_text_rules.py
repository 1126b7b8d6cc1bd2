"""Text rules at the edge (guarantee 8): every request contract refuses what a store cannot hold or a
line-oriented reader breaks on, naming the field; published events keep loading as they were published."""

from __future__ import annotations

import inspect
import re

import pytest
from marshmallow import Schema, ValidationError, fields

from crm_contracts import customer, customer360, loyalty, marketing, order, sales, service
from crm_contracts.catalog import load_all
from crm_contracts.fields import (
    MULTI_LINE_PATTERN,
    SINGLE_LINE_PATTERN,
    Request,
    Text,
    strings_refused_everywhere,
)

MODULES = [customer, customer360, marketing, sales, order, service, loyalty]
REQUESTS = [cls for module in MODULES for _, cls in inspect.getmembers(module, inspect.isclass)
            if issubclass(cls, Request) and cls is not Request and cls.__module__ == module.__name__]

#: Every multi-line field, by request: the rest of the requests' text is single-line.
MULTI_LINE = {
    ("OpenCaseRequest", "body"), ("RespondToCaseRequest", "body"), ("ResolveCaseRequest", "resolution"),
    ("AssessComplaintRequest", "assessment"), ("SummariseComplaintRequest", "summary"),
    ("SummariseComplaintRequest", "root_cause"), ("CompleteSurveyRequest", "comment"),
    ("DraftFaqRequest", "answer"), ("ReviseFaqRequest", "answer"), ("GrantBenefitRequest", "description"),
    ("QualifyLeadRequest", "note"), ("SuggestFaqsRequest", "text"), ("AnswerSurveyRequest", "comment"),
}


def text_fields(schema: type[Schema]):
    """(name, field) of every text field of a request, list items included."""
    for name, field in schema._declared_fields.items():
        inner: fields.Field | None = field.inner if isinstance(field, fields.List) else field
        if isinstance(field, fields.Dict):
            inner = field.key_field
        yield name, inner


def test_every_request_string_is_a_text_field():
    for schema in REQUESTS:
        for name, field in text_fields(schema):
            if isinstance(field, fields.String):
                assert isinstance(field, Text), f"{schema.__name__}.{name} is a plain String"


def test_the_multi_line_fields_are_exactly_the_marked_ones():
    marked = {(schema.__name__, name) for schema in REQUESTS for name, field in text_fields(schema)
              if isinstance(field, Text) and field.multiline}
    assert marked == MULTI_LINE


@pytest.mark.parametrize("character", ["\x00", "\x01", "\x07", "\x1b", "\x7f", "\x85", "\x9f", "\u2028", "\u2029",
                                       "\t", "\n", "\r", "\ud800", "\udfff"])
def test_single_line_text_refuses_every_control_character(character):
    with pytest.raises(ValidationError) as refused:
        customer.RegisterCustomerRequest().load({"name": f"Li{character}Na", "email": "li.na@example.com"})
    assert list(refused.value.messages) == ["name"]


@pytest.mark.parametrize("character", ["\t", "\n", "\r"])
def test_multi_line_text_allows_tab_lf_and_cr(character):
    loaded = service.RespondToCaseRequest().load({"agent": "wang.wei", "body": f"Hello,{character}it left today."})
    assert character in loaded["body"]


@pytest.mark.parametrize("character", ["\x00", "\x0b", "\x0c", "\x1b", "\x7f", "\x85", "\u2028", "\ud83d"])
def test_multi_line_text_refuses_other_control_characters(character):
    with pytest.raises(ValidationError) as refused:
        service.RespondToCaseRequest().load({"agent": "wang.wei", "body": f"Hello{character}"})
    assert list(refused.value.messages) == ["body"]


def test_ordinary_unicode_text_is_accepted():
    loaded = customer.RegisterCustomerRequest().load({"name": "李娜 Zoë 🙂", "email": "li.na@example.com"})
    assert loaded["name"] == "李娜 Zoë 🙂"


@pytest.mark.parametrize(
    ("schema", "payload", "path"),
    [
        (customer.RegisterCustomerRequest, {"name": "Li Na", "email": "li.na@example.com", "shoe\x00": 1}, "_schema"),
        (customer.GradeCustomerRequest, {"value": 5, "structure": 3, "loyalty": 4, "reason": "a\x00"}, "reason"),
        (marketing.PlanCampaignRequest, {"segment": {"industries": ["retail", "re\ud800il"]}}, "segment.industries.1"),
        (marketing.PlanCampaignRequest, {"segment": {"indus\x00tries": ["retail"]}}, "segment"),
        (order.ShipOrderRequest, {"lines": {"SKU\x00": 1}}, "lines"),
        (sales.SendQuoteRequest, {"lines": [{"sku": "A", "description": "\udc00"}]}, "lines.0.description"),
        (customer360.SearchQuery, {"q": "\x00"}, "q"),
    ],
)
def test_nul_and_lone_surrogates_are_refused_anywhere_naming_where(schema, payload, path):
    with pytest.raises(ValidationError) as refused:
        schema().load(payload)
    assert path in refused.value.messages, refused.value.messages


def test_the_walk_survives_hostile_nesting():
    deep: object = "x\x00"
    for _ in range(5000):
        deep = [deep]
    assert list(strings_refused_everywhere(deep)) == [".".join(["0"] * 5000)]


def test_the_documented_patterns_match_the_rule():
    for character in ["\x00", "\x1f", "\x7f", "\x9f", "\u2028", "\u2029", "\n"]:
        assert not re.fullmatch(SINGLE_LINE_PATTERN[1:-1], f"a{character}b")
    assert re.fullmatch(MULTI_LINE_PATTERN[1:-1], "a\tb\r\nc") and not re.fullmatch(MULTI_LINE_PATTERN[1:-1], "a\x0bb")
    assert re.fullmatch(SINGLE_LINE_PATTERN[1:-1], "李娜 Zoë")


@pytest.mark.parametrize(
    ("schema", "payload", "field"),
    [
        (customer.GradeCustomerRequest, {"value": "5", "structure": 3, "loyalty": 4}, "value"),
        (customer.GradeCustomerRequest, {"value": 5.0, "structure": 3, "loyalty": 4}, "value"),
        (customer.RecordConsentRequest, {"granted": 1}, "granted"),
        (customer.RecordConsentRequest, {"granted": "yes"}, "granted"),
        (customer.SetCreditRatingRequest, {"rating": "A", "limit": 50000}, "limit"),
        (customer.SetCreditRatingRequest, {"rating": "A", "limit": "1.234"}, "limit"),
        (customer.SetCreditRatingRequest, {"rating": "A", "limit": "-0.00"}, "limit"),
        (customer.RegisterCustomerRequest, {"name": "Li Na", "email": "li.na@example"}, "email"),
        (customer360.SearchQuery, {"page": "1_000"}, "page"),
        (customer360.SearchQuery, {"page": "\u0663"}, "page"),
        (customer360.SearchQuery, {"page": " 7"}, "page"),
    ],
)
def test_request_values_are_exactly_their_documented_json_types(schema, payload, field):
    with pytest.raises(ValidationError) as refused:
        schema().load(payload)
    assert field in refused.value.messages


def test_published_events_still_load_text_the_edge_would_refuse():
    """Consumers ignore nothing they used to accept: event payload schemas have no text rules."""
    contract = next(c for c in load_all() if c.key == "case_responded.v1")
    sample = {**contract.sample, "body": "line one\x0bline two"}
    assert contract.schema().load(sample)["body"] == "line one\x0bline two"
