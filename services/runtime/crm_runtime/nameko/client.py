"""Calling another service: one client, two transports, chosen by configuration.

`ServiceClient("customer")` is a nameko DependencyProvider whose worker-side object turns
`client.register(payload, command_id)` into a call of the customer service's `@rpc` method:

- over HTTP (`POST <url>/rpc/register`, keep-alive connections) when `CRM_<SERVICE>_URLS` names the
  service's addresses (comma-separated; a Kubernetes Service gives one, `make run` gives one per
  replica). No broker on the command path: commands are accepted while RabbitMQ is down.
- over RabbitMQ (nameko RPC) otherwise.

Either way a call ends within its deadline, an expected error comes back as ServiceError, a service
that cannot be reached is ServiceUnavailableError (the gateway answers 503 with Retry-After) and a
service that failed is ServiceFailedError (502). A call is only tried on the next replica when it
cannot have reached the first one (the connection was refused); commands carry ids, so a caller's own
retry of an ambiguous call is safe too.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

import amqp.exceptions
import eventlet
import kombu.exceptions
import urllib3
from nameko.exceptions import IncorrectSignature, MethodNotFound, RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy

from crm_contracts.errors import ServiceError
from crm_runtime import config

log = logging.getLogger(__name__)


class ServiceUnavailableError(Exception):
    """A service did not answer: it is not running, unreachable, or did not reply in time."""

    def __init__(self, service: str, reason: str) -> None:
        super().__init__(f"the {service} service is unavailable: {reason}")
        self.service = service
        self.reason = reason


class ServiceFailedError(Exception):
    """A service answered with an unexpected error (a bug there, not bad input here).

    Its message never carries the service's internals (they are in that service's log, under the
    request's correlation id); `detail` is kept for this process's own log.
    """

    def __init__(self, service: str, detail: str = "") -> None:
        super().__init__(f"the {service} service failed to handle the request")
        self.service = service
        self.detail = detail


def service_urls(service: str) -> list[str]:
    """The HTTP addresses of `service` from CRM_<SERVICE>_URLS (empty: call it over RabbitMQ)."""
    raw = config.setting(f"CRM_{service.upper()}_URLS", "")
    return [url.strip().rstrip("/") for url in raw.split(",") if url.strip()]


class HttpTransport:
    """Calls `POST <url>/rpc/<method>` on one of a service's replicas, round robin, keep-alive."""

    def __init__(self, service: str, urls: list[str], pool_size: int = 32) -> None:
        self.service = service
        self.urls = urls
        self._next = itertools.cycle(range(len(urls)))
        self._lock = threading.Lock()
        self._pool = urllib3.PoolManager(num_pools=max(4, len(urls)), maxsize=pool_size, block=False, retries=False)

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], context: dict[str, str],
             timeout: float) -> Any:
        body = json.dumps({"args": list(args), "kwargs": kwargs}, default=str).encode()
        headers = {"Content-Type": "application/json"}
        headers.update({name: value for name, value in (("X-Correlation-Id", context.get("correlation_id")),
                                                        ("X-Causation-Id", context.get("causation_id"))) if value})
        with self._lock:
            start = next(self._next)
        refused = ""
        for offset in range(len(self.urls)):
            url = self.urls[(start + offset) % len(self.urls)]
            try:
                response = self._pool.request("POST", f"{url}/rpc/{method}", body=body, headers=headers,
                                              timeout=urllib3.Timeout(connect=min(timeout, 2.0), read=timeout))
            except urllib3.exceptions.NewConnectionError as exc:
                refused = str(exc)  # never reached that replica: the next one may take the call
                continue
            except urllib3.exceptions.HTTPError as exc:
                raise ServiceUnavailableError(self.service, f"no answer from {url}: {exc}") from None
            return self._answer(response)
        raise ServiceUnavailableError(self.service, f"no replica accepts connections ({refused})")

    def _answer(self, response: Any) -> Any:
        try:
            body = json.loads(response.data)
        except ValueError:
            body = {}
        if response.status == 200 and "result" in body:
            return body["result"]
        error = body.get("error") if isinstance(body, dict) else None
        if response.status in (409, 400) and isinstance(error, dict) and "code" in error:
            if response.status == 400:  # the call itself was malformed: a bug on the calling side
                raise ServiceFailedError(self.service, error.get("message", ""))
            raise ServiceError(error["code"], error.get("message", ""), error.get("details") or {})
        if response.status == 503:
            raise ServiceUnavailableError(self.service, "it is not ready")
        raise ServiceFailedError(self.service, f"HTTP {response.status}")

    def close(self) -> None:
        self._pool.clear()


class ServiceCall:
    """The worker-side client of one service: `client.method(*args, **kwargs)`."""

    def __init__(self, service: str, timeout: float, context: dict[str, str], http: HttpTransport | None,
                 rpc_proxy: Any) -> None:
        self._service = service
        self._timeout = timeout
        self._context = context
        self._http = http
        self._rpc = rpc_proxy

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(self._call, method)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        deadline = eventlet.Timeout(self._timeout)
        try:
            if self._http is not None:
                return self._http.call(method, args, kwargs, self._context, self._timeout)
            return getattr(self._rpc, method)(*args, **kwargs)  # the call never reached the service on a
            # broker error below: RabbitMQ is down or unreachable (kombu, py-amqp, socket)
        except eventlet.Timeout as exc:
            if exc is not deadline:
                raise
            raise ServiceUnavailableError(self._service, f"no answer within {self._timeout:g} s") from None
        except UnknownService:
            raise ServiceUnavailableError(self._service, "it is not running") from None
        except (kombu.exceptions.OperationalError, amqp.exceptions.ConnectionError, ConnectionError, OSError) as exc:
            raise ServiceUnavailableError(
                self._service, f"the message broker (RabbitMQ) cannot be reached ({type(exc).__name__})"
            ) from None
        except (RemoteError, MethodNotFound, IncorrectSignature) as exc:
            log.error("the %s service failed on %s: %s", self._service, method, exc)
            raise ServiceFailedError(self._service, str(exc)) from None
        finally:
            deadline.cancel()


class ServiceClient(DependencyProvider):
    """Injects a client of `service` whose calls end after a deadline (seconds from `timeout_setting`).

    The transport is chosen when the service container is built: with CRM_<SERVICE>_URLS the client
    never touches RabbitMQ (no RPC reply queue is even declared); without, it is nameko's RpcProxy.
    """

    def __init__(self, service: str, timeout_setting: str = "SERVICE_CALL_TIMEOUT", default_timeout: float = 10.0
                 ) -> None:
        self.service = service
        self.timeout_setting = timeout_setting
        self.default_timeout = default_timeout
        self.rpc_proxy: RpcProxy | None = None
        self._http: HttpTransport | None = None

    def bind(self, container: Any, attr_name: str) -> Any:
        bound = super().bind(container, attr_name)
        if not service_urls(self.service):
            # A sub-extension: the container sets it (and its reply listener) up and stops it.
            bound.rpc_proxy = RpcProxy(self.service).bind(container, attr_name)
        return bound

    def setup(self) -> None:
        urls = service_urls(self.service)
        if urls:
            self._http = HttpTransport(self.service, urls)

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()

    def get_dependency(self, worker_ctx: Any) -> ServiceCall:
        timeout = float(config.setting(self.timeout_setting, str(self.default_timeout)))
        proxy = self.rpc_proxy.get_dependency(worker_ctx) if self.rpc_proxy is not None else None
        context = {key: str(worker_ctx.data[key]) for key in ("correlation_id", "causation_id")
                   if worker_ctx.data.get(key)}
        return ServiceCall(self.service, timeout, context, self._http, proxy)
