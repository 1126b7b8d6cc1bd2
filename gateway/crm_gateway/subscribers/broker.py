"""A subscriber's place on the broker, made through RabbitMQ's management API: its own user, its durable
queue bound on `crm.events` to the routing keys it asked for, its dead-letter queue, and permissions that
let the user read those two queues and do nothing else (no configure, no write: it can neither publish,
nor declare or delete anything, nor read another subscriber's queue).

Configuration: RABBITMQ_MANAGEMENT_URL (default http://127.0.0.1:15672; credentials may be in the URL),
RABBITMQ_MANAGEMENT_USER / RABBITMQ_MANAGEMENT_PASSWORD (default guest/guest), QUEUE_TYPE (classic, or
quorum on a cluster).
"""

from __future__ import annotations

import json
import re
import secrets
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import urllib3

from crm_contracts.envelope import EXCHANGE
from crm_runtime import config

#: A subscriber's name: it names its user and queues, so it is kept to a safe alphabet.
NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
_NAME = re.compile(NAME_PATTERN)


class BrokerError(Exception):
    """The management API refused or failed a call."""


class UserExistsError(BrokerError):
    """The broker has a user of the subscriber's name already."""


def user_of(name: str) -> str:
    return f"crm-subscriber-{name}"


def queue_of(name: str) -> str:
    return f"subscriber.{name}"


def dead_letter_queue_of(name: str) -> str:
    return f"subscriber.{name}.dead-letter"


def read_permission(name: str) -> str:
    """The one thing a subscriber may do: read its queue and its dead-letter queue."""
    return f"^{re.escape(queue_of(name))}(\\.dead-letter)?$"


def check_name(name: str) -> str:
    if not _NAME.fullmatch(name):
        raise ValueError(f"a subscriber's name must match {NAME_PATTERN} (it names its user and queues): {name!r}")
    return name


@dataclass(frozen=True)
class Placement:
    """What a subscriber connects with (the password is shown once, then only RabbitMQ's hash remains)."""

    user: str
    password: str
    vhost: str
    queue: str
    dead_letter_queue: str


class Management:
    """The few management-API calls provisioning needs."""

    def __init__(self, url: str | None = None, user: str | None = None, password: str | None = None) -> None:
        raw = url or config.setting("RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")
        parts = urlsplit(raw)
        self.base = f"{parts.scheme}://{parts.hostname}:{parts.port or 15672}{parts.path.rstrip('/')}"
        if not self.base.endswith("/api"):
            self.base += "/api"
        self.user = user or (unquote(parts.username) if parts.username else None) or config.setting(
            "RABBITMQ_MANAGEMENT_USER", "guest")
        self.password = password or (unquote(parts.password) if parts.password else None) or config.setting(
            "RABBITMQ_MANAGEMENT_PASSWORD", "guest")
        self._http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=5, read=30))

    def call(self, method: str, path: str, body: Any = None, missing_ok: bool = False) -> Any:
        headers = urllib3.make_headers(basic_auth=f"{self.user}:{self.password}")
        headers["Content-Type"] = "application/json"
        try:
            response = self._http.request(method, self.base + path, headers=headers,
                                          body=None if body is None else json.dumps(body).encode())
        except urllib3.exceptions.HTTPError as exc:
            raise BrokerError(f"the RabbitMQ management API at {self.base} does not answer: {exc}") from None
        if response.status == 404 and missing_ok:
            return None
        if response.status >= 300:
            raise BrokerError(f"{method} {path}: {response.status} {response.data.decode(errors='replace')[:300]}")
        return json.loads(response.data) if response.data else None

    def provision(self, name: str, bindings: list[str], vhost: str) -> Placement:
        """Create the subscriber's user, queues, bindings and permissions; answer its credentials."""
        check_name(name)
        v = quote(vhost, safe="")
        if self.call("GET", f"/users/{quote(user_of(name), safe='')}", missing_ok=True) is not None:
            raise UserExistsError(f"the broker already has a user {user_of(name)}")
        queue_type = config.setting("QUEUE_TYPE", "classic")
        self.call("PUT", f"/exchanges/{v}/{quote(EXCHANGE, safe='')}",
                  {"type": "topic", "durable": True, "auto_delete": False, "internal": False, "arguments": {}})
        dead = dead_letter_queue_of(name)
        self.call("PUT", f"/queues/{v}/{quote(dead, safe='')}",
                  {"durable": True, "auto_delete": False, "arguments": {"x-queue-type": queue_type}})
        # A message the subscriber rejects (requeue=false) goes to its own dead-letter queue, by name,
        # through the default exchange: nothing about it reaches another subscriber.
        self.call("PUT", f"/queues/{v}/{quote(queue_of(name), safe='')}", {
            "durable": True, "auto_delete": False,
            "arguments": {"x-queue-type": queue_type, "x-dead-letter-exchange": "",
                          "x-dead-letter-routing-key": dead},
        })
        for pattern in bindings:
            self.call("POST", f"/bindings/{v}/e/{quote(EXCHANGE, safe='')}/q/{quote(queue_of(name), safe='')}",
                      {"routing_key": pattern, "arguments": {}})
        password = secrets.token_urlsafe(24)
        self.call("PUT", f"/users/{quote(user_of(name), safe='')}", {"password": password, "tags": ""})
        self.call("PUT", f"/permissions/{v}/{quote(user_of(name), safe='')}",
                  {"configure": "^$", "write": "^$", "read": read_permission(name)})
        return Placement(user_of(name), password, vhost, queue_of(name), dead)

    def new_password(self, name: str) -> str:
        """Replace the subscriber's password (its connections must log in again) and answer the new one."""
        user = quote(user_of(check_name(name)), safe="")
        if self.call("GET", f"/users/{user}", missing_ok=True) is None:
            raise BrokerError(f"the broker has no user {user_of(name)}")
        password = secrets.token_urlsafe(24)
        self.call("PUT", f"/users/{user}", {"password": password, "tags": ""})
        for connection in self.call("GET", "/connections?columns=name,user") or []:
            if connection.get("user") == user_of(name):  # its sessions were opened with the old password
                self.call("DELETE", f"/connections/{quote(connection['name'], safe='')}", missing_ok=True)
        return password

    def remove(self, name: str, vhost: str) -> None:
        """Delete the subscriber's user (closing its connections) and both of its queues."""
        v = quote(vhost, safe="")
        self.call("DELETE", f"/users/{quote(user_of(check_name(name)), safe='')}", missing_ok=True)
        for queue in (queue_of(name), dead_letter_queue_of(name)):
            self.call("DELETE", f"/queues/{v}/{quote(queue, safe='')}", missing_ok=True)

    def queue_depths(self, name: str, vhost: str) -> dict[str, int | None]:
        """Messages waiting in the subscriber's queue and dead-letter queue (None: no such queue)."""
        v = quote(vhost, safe="")
        depths: dict[str, int | None] = {}
        for queue in (queue_of(name), dead_letter_queue_of(name)):
            found = self.call("GET", f"/queues/{v}/{quote(queue, safe='')}", missing_ok=True)
            depths[queue] = None if found is None else int(found.get("messages", 0))
        return depths
