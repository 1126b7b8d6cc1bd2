"""A front end that retries the way the API asks it to: the same Idempotency-Key again after a 5xx, a
connection error or a 409 `in_progress`, over every gateway replica in turn."""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import requests


@dataclass
class Outcome:
    """The final answer to one command, after retries (None: no answer before the deadline)."""

    key: str
    status: int | None
    body: dict[str, Any]
    headers: dict[str, str]
    attempts: int

    @property
    def accepted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class RetryingClient:
    """Sends commands with an Idempotency-Key and retries them until a final answer or `deadline` s."""

    gateways: list[str]
    token: str
    deadline: float = 90.0
    request_timeout: float = 15.0
    retried: Counter[str] = field(default_factory=Counter)  # what caused retries: "503", "connection"...
    _local: threading.local = field(default_factory=threading.local)

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session

    def send(self, method: str, path: str, body: dict[str, Any], headers: dict[str, str] | None = None,
             key: str | None = None) -> Outcome:
        key = key or uuid.uuid4().hex
        all_headers = {"Authorization": f"Bearer {self.token}", "Idempotency-Key": key, **(headers or {})}
        give_up = time.monotonic() + self.deadline
        attempt, pause = 0, 0.05
        while True:
            gateway = self.gateways[(hash(key) + attempt) % len(self.gateways)]
            attempt += 1
            reason = ""
            try:
                response = self._session().request(method, gateway + path, json=body, headers=all_headers,
                                                   timeout=self.request_timeout)
            except requests.RequestException:
                self._local.session = requests.Session()  # its pooled connections may be dead
                reason = "connection"
            else:
                if response.status_code >= 500:
                    reason = str(response.status_code)
                elif response.status_code == 409 and _code(response) == "in_progress":
                    reason = "409 in_progress"
                else:
                    return Outcome(key, response.status_code, _json(response), dict(response.headers), attempt)
            self.retried[reason] += 1
            if time.monotonic() + pause > give_up:
                return Outcome(key, None, {"last_failure": reason}, {}, attempt)
            time.sleep(pause)
            pause = min(1.0, pause * 2)

    def register(self, **fields: Any) -> Outcome:
        body = {"name": "Li Na", "email": f"{uuid.uuid4().hex[:16]}@example.com", **fields}
        return self.send("POST", "/v1/customers", body)

    def change_profile(self, customer_id: str, version: int, changes: dict[str, Any]) -> Outcome:
        return self.send("PATCH", f"/v1/customers/{customer_id}", changes, {"If-Match": f'"{version}"'})


def _json(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _code(response: requests.Response) -> str:
    error = _json(response).get("error")
    return str(error.get("code", "")) if isinstance(error, dict) else ""
