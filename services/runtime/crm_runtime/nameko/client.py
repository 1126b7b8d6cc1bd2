"""Calling another service: one client, two transports, chosen by configuration.

`ServiceClient("customer")` is a nameko DependencyProvider whose worker-side object turns
`client.register(payload, command_id)` into a call of the customer service's `@rpc` method:

- over HTTP (`POST <url>/rpc/register`, keep-alive connections) when `CRM_<SERVICE>_URLS` names the
  service's addresses (comma-separated; a Kubernetes Service gives one, `make run` gives one per
  replica). No broker on the command path: commands are accepted while RabbitMQ is down.
- over RabbitMQ (nameko RPC) otherwise.

Either way the call carries the caller's correlation and causation ids and, when tracing is on, the
`traceparent` of the caller's current span (crm_runtime.tracing); it ends within its deadline, an
expected error comes back as ServiceError, a service that cannot be reached is
ServiceUnavailableError (the gateway answers 503 with Retry-After) and a service that failed is
ServiceFailedError (502). A call is only tried on the next replica when it
cannot have reached the first one (the connection was refused); commands carry ids, so a caller's own
retry of an ambiguous call is safe too.
"""

from __future__ import annotations

import functools
import itertools
import json
import logging
import re
import socket
import threading
import urllib.parse
from collections.abc import Callable
from typing import Any

import amqp.exceptions
import eventlet
import eventlet.patcher
import kombu.exceptions
from nameko.exceptions import IncorrectSignature, MethodNotFound, RemoteError, UnknownService
from nameko.extensions import DependencyProvider
from nameko.rpc import RpcProxy

from crm_contracts.errors import ServiceError
from crm_runtime import config, tracing
from crm_runtime.nameko.rpc import BARE_RESULT_HEADER, RawJson

log = logging.getLogger(__name__)

#: The longest status or header line read from a service.
_MAX_LINE = 65536
#: A context value sent as a header only if it is one plain line (correlation ids are checked at the edge).
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{1,256}")
#: Under eventlet `select.select` is green and, with a zero timeout, may answer before polling the
#: socket; the original one is a plain non-blocking syscall.
_select = eventlet.patcher.original("select").select


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


class ServiceConnection:
    """One keep-alive HTTP/1.1 connection to a replica of one of our services.

    A deliberately small client: the request goes out in one write, the answer is read with a status
    line, header lines and a Content-Length (or chunked) body. urllib3 did the same job with about a
    third of the gateway's CPU per read (pool lookups, header dictionaries, the email-module header
    parser, a dropped-connection check through its own wait layer).
    """

    def __init__(self, host: str, port: int, connect_timeout: float) -> None:
        self.sock = socket.create_connection((host, port), timeout=connect_timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reader = self.sock.makefile("rb")

    def usable(self) -> bool:
        """Whether an idle connection can take a request: a server that closed it (a restart) left it
        readable (EOF). One non-blocking syscall."""
        try:
            readable, _, _ = _select([self.sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable

    def exchange(self, request: bytes, timeout: float) -> tuple[int, dict[str, str], bytes, bool]:
        """Send `request`, read the answer: (status, headers in lower case, body, whether to keep it)."""
        self.sock.settimeout(timeout)
        self.sock.sendall(request)
        status_line = self.reader.readline(_MAX_LINE)
        if not status_line:
            raise ConnectionResetError("the service closed the connection before answering")
        version, status, _ = status_line.split(b" ", 2)
        headers: dict[str, str] = {}
        while True:
            line = self.reader.readline(_MAX_LINE)
            if line in (b"\r\n", b"\n"):
                break
            if not line:
                raise ConnectionResetError("the service closed the connection in the middle of its answer")
            name, _, value = line.decode("latin-1").partition(":")
            headers[name.strip().lower()] = value.strip()
        keep = version == b"HTTP/1.1" and headers.get("connection", "").lower() != "close"
        if "content-length" in headers:
            body = self._read_exactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            body, keep = self.reader.read(), False  # the body ends with the connection
        return int(status), headers, body, keep

    def _read_exactly(self, size: int) -> bytes:
        body = self.reader.read(size)
        if len(body) != size:
            raise ConnectionResetError("the service closed the connection in the middle of its answer")
        return body

    def _read_chunked(self) -> bytes:
        parts = []
        while size := int(self.reader.readline(_MAX_LINE).split(b";", 1)[0], 16):
            parts.append(self._read_exactly(size))
            self.reader.readline(_MAX_LINE)
        while self.reader.readline(_MAX_LINE) not in (b"\r\n", b"\n", b""):
            pass  # trailers
        return b"".join(parts)

    def close(self) -> None:
        for closing in (self.reader, self.sock):
            try:
                closing.close()
            except OSError:
                pass


class HttpTransport:
    """Calls `POST <url>/rpc/<method>` on one of a service's replicas, round robin, keep-alive."""

    def __init__(self, service: str, urls: list[str], pool_size: int = 32, raw_json: bool = False) -> None:
        self.service = service
        self.urls = urls
        self.pool_size = pool_size
        #: Hand a result the service sent as JSON text (RawJson) back undecoded, for a caller that only
        #: passes it on (the gateway's reads).
        self.raw_json = raw_json
        self._next = itertools.cycle(range(len(urls)))
        self._lock = threading.Lock()
        self._idle: dict[str, list[ServiceConnection]] = {url: [] for url in urls}
        self._addresses = {url: _address(url) for url in urls}

    def call(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], context: dict[str, str],
             timeout: float) -> Any:
        body = json.dumps({"args": list(args), "kwargs": kwargs}, default=str).encode()
        extra = "".join(f"{name}: {value}\r\n" for name, value in (("X-Correlation-Id", context.get("correlation_id")),
                                                                   ("X-Causation-Id", context.get("causation_id")),
                                                                   ("traceparent", tracing.current_traceparent()))
                        if value and _HEADER_VALUE.fullmatch(value))
        with self._lock:
            start = next(self._next)
        refused = ""
        for offset in range(len(self.urls)):
            url = self.urls[(start + offset) % len(self.urls)]
            host, port = self._addresses[url]
            request = (f"POST /rpc/{method} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                       f"Content-Length: {len(body)}\r\n{extra}\r\n").encode() + body
            try:
                connection = self._checkout(url, min(timeout, 2.0))
            except OSError as exc:
                refused = str(exc)  # never reached that replica: the next one may take the call
                continue
            try:
                status, headers, answer, keep = connection.exchange(request, timeout)
            except (OSError, ValueError) as exc:  # reset, timeout, a malformed answer
                connection.close()
                raise ServiceUnavailableError(self.service, f"no answer from {url}: {exc}") from None
            except BaseException:  # the caller's deadline (eventlet.Timeout): the answer may still come
                connection.close()
                raise
            self._checkin(url, connection, keep)
            return self._answer(status, headers, answer)
        raise ServiceUnavailableError(self.service, f"no replica accepts connections ({refused})")

    def _checkout(self, url: str, connect_timeout: float) -> ServiceConnection:
        """An idle connection to `url` that the server has not closed, or a new one."""
        idle = self._idle[url]
        while idle:
            with self._lock:
                connection = idle.pop() if idle else None
            if connection is None:
                break
            if connection.usable():
                return connection
            connection.close()
        return ServiceConnection(*self._addresses[url], connect_timeout)

    def _checkin(self, url: str, connection: ServiceConnection, keep: bool) -> None:
        with self._lock:
            if keep and len(self._idle[url]) < self.pool_size:
                self._idle[url].append(connection)
                return
        connection.close()

    def _answer(self, status: int, headers: dict[str, str], data: bytes) -> Any:
        if status == 200 and headers.get(BARE_RESULT_HEADER.lower()) == "bare":
            text = data.decode()
            return RawJson(text) if self.raw_json else json.loads(text)
        try:
            body = json.loads(data)
        except ValueError:
            body = {}
        if status == 200 and isinstance(body, dict) and "result" in body:
            return body["result"]
        error = body.get("error") if isinstance(body, dict) else None
        if status in (409, 400) and isinstance(error, dict) and "code" in error:
            if status == 400:  # the call itself was malformed: a bug on the calling side
                raise ServiceFailedError(self.service, error.get("message", ""))
            raise ServiceError(error["code"], error.get("message", ""), error.get("details") or {})
        if status == 503:
            raise ServiceUnavailableError(self.service, "it is not ready")
        raise ServiceFailedError(self.service, f"HTTP {status}")

    def close(self) -> None:
        with self._lock:
            idle = [connection for connections in self._idle.values() for connection in connections]
            for connections in self._idle.values():
                connections.clear()
        for connection in idle:
            connection.close()


def _address(url: str) -> tuple[str, int]:
    """(host, port) of an http:// service address."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "http" or not parts.hostname:
        raise ValueError(f"a service address must be http://host[:port], not {url!r}")
    return parts.hostname, parts.port or 80


class ServiceCall:
    """The worker-side client of one service: `client.method(*args, **kwargs)`."""

    def __init__(self, service: str, timeout: float, context: dict[str, str], http: HttpTransport | None,
                 rpc_proxy: Any, worker_ctx: Any = None) -> None:
        self._service = service
        self._timeout = timeout
        self._context = context
        self._http = http
        self._rpc = rpc_proxy
        self._worker_ctx = worker_ctx

    def __getattr__(self, method: str) -> Callable[..., Any]:
        if method.startswith("_"):
            raise AttributeError(method)
        return functools.partial(self._call, method)

    def _call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        deadline = eventlet.Timeout(self._timeout)
        try:
            if self._http is not None:
                return self._http.call(method, args, kwargs, self._context, self._timeout)
            traceparent = tracing.current_traceparent()
            if traceparent is not None and self._worker_ctx is not None:
                # nameko sends the worker's context data as headers of the call, beside correlation_id.
                self._worker_ctx.data[tracing.TRACEPARENT] = traceparent
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

    def __init__(self, service: str, timeout_setting: str = "SERVICE_CALL_TIMEOUT", default_timeout: float = 10.0,
                 raw_json: bool = False) -> None:
        self.service = service
        self.raw_json = raw_json
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
            self._http = HttpTransport(self.service, urls, raw_json=self.raw_json)

    def stop(self) -> None:
        if self._http is not None:
            self._http.close()

    def get_dependency(self, worker_ctx: Any) -> ServiceCall:
        timeout = float(config.setting(self.timeout_setting, str(self.default_timeout)))
        proxy = self.rpc_proxy.get_dependency(worker_ctx) if self.rpc_proxy is not None else None
        context = {key: str(worker_ctx.data[key]) for key in ("correlation_id", "causation_id")
                   if worker_ctx.data.get(key)}
        return ServiceCall(self.service, timeout, context, self._http, proxy, worker_ctx)
