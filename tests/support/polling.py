"""`eventually`: read models lag behind commands, so end-to-end checks poll until they hold."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


def eventually(check: Callable[[], T], timeout: float = 20.0, interval: float = 0.1) -> T:
    """Call `check` until it returns a truthy value without raising AssertionError; return that value.

    After `timeout` seconds the last AssertionError (or a falsy result) fails the test.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            result = check()
            if result:
                return result
            failure: Exception = AssertionError(f"{getattr(check, '__name__', 'check')} stayed falsy: {result!r}")
        except AssertionError as exc:
            failure = exc
        if time.monotonic() > deadline:
            raise failure
        time.sleep(interval)
