"""Field types and base schemas shared by every contract module.

Text rules at the edge (ARCHITECTURE.md guarantee 8): text a downstream store cannot hold, or that breaks a
line-oriented reader, is refused when a request is loaded, with the field named.

- Nowhere, in no string of a request (values, dict keys, nested lists): NUL and lone surrogates
  (PostgreSQL refuses NUL in text and jsonb; a lone surrogate cannot be encoded as UTF-8). The `Request`
  base schema walks the raw input for these before any field is loaded.
- Single-line text (`Text()`, the default): no control character at all: Unicode category Cc
  (U+0000-U+001F, U+007F-U+009F), the line and paragraph separators U+2028/U+2029, surrogates (Cs).
- Multi-line text (`Text(multiline=True)`: a message body, a comment, an answer): the same, except TAB,
  LF and CR.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from typing import Any

from marshmallow import EXCLUDE, RAISE, Schema, ValidationError, fields, pre_load, validate

#: An email address as HTML forms accept one (WHATWG "valid email address"), with a dotted domain: one
#: rule that the code and the OpenAPI `pattern` state alike.
EMAIL_PATTERN = (
    r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+"
    r"@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$"
)
EMAIL = validate.Regexp(EMAIL_PATTERN, error="must be a valid email address")
PHONE = validate.Regexp(r"^\+?[0-9 ()\-]{5,30}$", error="must be a phone number: digits, spaces, + ( ) -")


#: Money: at most 25 digits before the point (with two places that is 27 significant digits, within the
#: 28 of Python's decimal context, so no amount the pattern allows is refused by the arithmetic).
MONEY_SCHEMA = {"type": "string", "format": "decimal", "pattern": r"^-?[0-9]{1,25}(\.[0-9]{1,2})?$"}
NON_NEGATIVE_MONEY_PATTERN = r"^[0-9]{1,25}(\.[0-9]{1,2})?$"

_SURROGATES = r"\uD800-\uDFFF"
#: Refused in every string of a request, keys included: NUL and lone surrogates.
_NEVER = r"\u0000" + _SURROGATES
#: Control characters (Cc) and the line/paragraph separators: refused in single-line text.
_SINGLE_LINE_CONTROLS = r"\u0000-\u001F\u007F-\u009F\u2028\u2029"
#: The same less TAB (U+0009), LF (U+000A) and CR (U+000D): refused in multi-line text.
_MULTI_LINE_CONTROLS = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F\u2028\u2029"

#: The JSON Schema `pattern` of each kind of text, as the OpenAPI document states it (ECMA-262 and Python
#: read these escapes alike). Lone surrogates, refused too, are left out: UTF-8 cannot carry them and
#: JSON Schema tools cannot draw or exclude them; the only way in, a `\\uD800` escape, is refused all the same.
SINGLE_LINE_PATTERN = f"^[^{_SINGLE_LINE_CONTROLS}]*$"
MULTI_LINE_PATTERN = f"^[^{_MULTI_LINE_CONTROLS}]*$"

_NEVER_RE = re.compile(f"[{_NEVER}]")
_SINGLE_LINE_RE = re.compile(f"[{_SINGLE_LINE_CONTROLS}{_SURROGATES}]")
_MULTI_LINE_RE = re.compile(f"[{_MULTI_LINE_CONTROLS}{_SURROGATES}]")


def _describe(found: re.Match[str]) -> str:
    character = found.group()
    kind = "NUL" if character == "\0" else "a lone surrogate" if "\ud800" <= character <= "\udfff" else None
    code = f"U+{ord(character):04X}"
    return f"{kind} ({code})" if kind else code


class Text(fields.String):
    """A request's text: single-line unless `multiline`; see the module's docstring for the rules.

    The OpenAPI document gets the rule as `pattern` unless a validator already says more (a Regexp or
    a closed list of values).
    """

    def __init__(self, *, multiline: bool = False, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.multiline = multiline
        self._forbidden = _MULTI_LINE_RE if multiline else _SINGLE_LINE_RE
        says_more = any(isinstance(v, validate.OneOf) or hasattr(v, "regex") for v in self.validators)
        if not says_more and "pattern" not in self.metadata:
            pattern = MULTI_LINE_PATTERN if multiline else SINGLE_LINE_PATTERN
            self.metadata = {**self.metadata, "pattern": pattern}

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> str:
        text = super()._deserialize(value, attr, data, **kwargs)
        found = self._forbidden.search(text)
        if found is not None:
            allowed = "; only TAB, LF and CR are allowed" if self.multiline else ""
            raise ValidationError(
                f"must not contain control characters: found {_describe(found)} at position {found.start()}{allowed}"
            )
        return text


def strings_refused_everywhere(data: Any) -> dict[str, list[str]]:
    """Each place in raw input (strings, dict keys, at any depth) holding NUL or a lone surrogate, by
    dotted path (a bad key is reported at its dict's path); empty when there is none.

    Iterative, so hostile nesting cannot exhaust the stack here."""
    found: dict[str, list[str]] = {}
    pending: list[tuple[str, Any]] = [("", data)]
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            bad = _NEVER_RE.search(value)
            if bad is not None:
                found.setdefault(path or "_schema", []).append(
                    f"must not contain {_describe(bad)} (found at position {bad.start()})"
                )
        elif isinstance(value, Mapping):
            for key, item in value.items():
                name = str(key)
                if isinstance(key, str) and _NEVER_RE.search(key):
                    found.setdefault(path or "_schema", []).append("a key must not contain NUL or a lone surrogate")
                    name = _NEVER_RE.sub("\ufffd", key)
                pending.append((f"{path}.{name}" if path else name, item))
        elif isinstance(value, list | tuple):
            pending.extend((f"{path}.{index}" if path else str(index), item) for index, item in enumerate(value))
    return found


def integer(**kwargs: Any) -> fields.Integer:
    """A request's whole number: a JSON integer, never a string of digits or a float ("5" and 5.0 are refused,
    as the documented `type: integer` says)."""
    return fields.Integer(strict=True, **kwargs)


class Boolean(fields.Boolean):
    """A request's true or false: a JSON boolean only (marshmallow alone also takes 0, 1, "yes", "on"...,
    which the documented `type: boolean` does not allow)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> bool:
        if not isinstance(value, bool):
            raise self.make_error("invalid")
        return value


class QueryInteger(fields.Integer):
    """A whole number in a query string: optional minus sign and ASCII digits only (Python's int() would
    also take "1_000", " 7" or non-ASCII digits, which the documented `type: integer` does not allow)."""

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> int:
        if isinstance(value, str) and re.fullmatch(r"-?[0-9]{1,18}", value) is None:
            raise self.make_error("invalid")
        return super()._deserialize(value, attr, data, **kwargs)  # type: ignore[no-any-return]


class Money(fields.Decimal):
    """An amount of money: a decimal string with at most two places ("12.50"), as its `pattern` documents.

    A JSON number is refused (no float ever touches money), and so is a string the pattern does not match
    ("1.234" is not silently rounded, "-0.00" is not a non-negative amount); Python callers may pass a Decimal.
    """

    def __init__(self, *, non_negative: bool = False, **kwargs: Any) -> None:
        pattern = NON_NEGATIVE_MONEY_PATTERN if non_negative else MONEY_SCHEMA["pattern"]
        metadata = {**MONEY_SCHEMA, "pattern": pattern, **kwargs.pop("metadata", {})}
        super().__init__(as_string=True, places=2, metadata=metadata, **kwargs)
        self._pattern = re.compile(pattern)
        self._rule = "digits with at most two decimal places" + ("" if non_negative else ", optionally negative")

    def _deserialize(self, value: Any, attr: str | None, data: Mapping[str, Any] | None, **kwargs: Any) -> Any:
        if isinstance(value, str) and self._pattern.fullmatch(value) is None:
            raise ValidationError(f"must be an amount like \"12.50\": {self._rule}")
        if not isinstance(value, str | Decimal):
            raise ValidationError("must be an amount as a string, like \"12.50\"")
        return super()._deserialize(value, attr, data, **kwargs)


def money(**kwargs: Any) -> Money:
    """A decimal amount, carried as a string so no float ever touches money (and so documented). With a
    `Range(min=0)` validator the documented pattern has no minus sign."""
    validators = kwargs.get("validate")
    validators = validators if isinstance(validators, list | tuple) else [validators] if validators else []
    non_negative = any(isinstance(v, validate.Range) and v.min is not None and v.min >= 0 for v in validators)
    return Money(non_negative=non_negative, **kwargs)


@cache
def schema_of(schema: type[Schema]) -> Schema:
    """One shared instance per schema class: building a Schema deep-copies its fields, so it is
    done once per class, not once per event or request (instances are safe to reuse)."""
    return schema()


class EventPayload(Schema):
    """Base of integration-event payloads: consumers ignore fields newer publishers add."""

    class Meta:
        unknown = EXCLUDE


class Request(Schema):
    """Base of HTTP/RPC request bodies: unknown fields are an error naming the field, and NUL or a lone
    surrogate anywhere in the input (any value, any key, any depth) is an error naming where."""

    class Meta:
        unknown = RAISE

    @pre_load
    def refuse_unstorable_strings(self, data: Any, **kwargs: object) -> Any:
        found = strings_refused_everywhere(data)
        if found:
            # Flat dotted paths: the gateway names each place as it names any other bad field.
            raise ValidationError(found)
        return data

