"""schemathesis hooks of test_schemathesis.py (loaded through SCHEMATHESIS_HOOKS).

Generated requests reuse a few Idempotency-Key values ("0", ...) across operations and bodies, which the
gateway rightly answers 422 (guarantee 7). A valid key is made unique per request, so each request is
judged on its own input; an invalid key (a negative case) is sent as generated.
"""

from __future__ import annotations

import re
import uuid
from typing import Any

import schemathesis

from crm_gateway.openapi import IDEMPOTENCY_KEY_PATTERN

_VALID_KEY = re.compile(IDEMPOTENCY_KEY_PATTERN[1:-1])


@schemathesis.hook
def before_call(context: Any, case: Any, kwargs: dict[str, Any]) -> None:
    """Every network call, whatever the phase: a valid Idempotency-Key becomes unique to this request."""
    key = (case.headers or {}).get("Idempotency-Key")
    if isinstance(key, str) and _VALID_KEY.fullmatch(key):
        case.headers["Idempotency-Key"] = f"{key[:200]}-{uuid.uuid4().hex}"
