"""The command path: `@rpc` methods answered over HTTP (no broker) and over RabbitMQ, through one client.

Real: a nameko container serving a small service on a free port, and (for the RPC transport) this
session's RabbitMQ virtual host. Replaced: the service is a stand-in with one command and one error.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
from nameko.containers import ServiceContainer

from crm_contracts.errors import NotFoundError, ServiceError
from crm_runtime.nameko.client import HttpTransport, ServiceCall, ServiceUnavailableError
from crm_runtime.nameko.rpc import rpc


class Echo:
    name = "echo"

    @rpc
    def shout(self, text: str, times: int = 1) -> dict[str, Any]:
        return {"text": text.upper() * times}

    @rpc
    def find(self, key: str) -> None:
        raise NotFoundError(f"no {key}", key=key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def echo_service(amqp_vhost: str) -> Any:
    port = free_port()
    container = ServiceContainer(Echo, {"AMQP_URI": amqp_vhost, "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}"})
    container.start()
    yield f"http://127.0.0.1:{port}"
    container.stop()


def call(transport: HttpTransport, method: str, *args: Any, **kwargs: Any) -> Any:
    return ServiceCall("echo", 5.0, {"correlation_id": "c-1"}, transport, None)._call(method, *args, **kwargs)


@pytest.mark.integration
def test_a_command_is_answered_over_http_with_its_result(echo_service: str) -> None:
    transport = HttpTransport("echo", [echo_service])
    assert call(transport, "shout", "hi", times=2) == {"text": "HIHI"}


@pytest.mark.integration
def test_an_expected_error_comes_back_as_the_service_error(echo_service: str) -> None:
    transport = HttpTransport("echo", [echo_service])
    with pytest.raises(ServiceError) as raised:
        call(transport, "find", "k1")
    assert (raised.value.code, raised.value.details) == ("not_found", {"key": "k1"})


@pytest.mark.integration
def test_a_refused_replica_is_skipped_and_a_dead_service_is_unavailable(echo_service: str) -> None:
    dead = f"http://127.0.0.1:{free_port()}"
    assert call(HttpTransport("echo", [dead, echo_service]), "shout", "a") == {"text": "A"}
    with pytest.raises(ServiceUnavailableError):
        call(HttpTransport("echo", [dead]), "shout", "a")


@pytest.mark.integration
def test_the_same_method_answers_over_rabbitmq(echo_service: str, amqp_vhost: str) -> None:
    from nameko.standalone.rpc import ClusterRpcProxy

    with ClusterRpcProxy({"AMQP_URI": amqp_vhost}, timeout=10) as cluster:
        assert cluster.echo.shout("x") == {"text": "X"}
        with pytest.raises(ServiceError):
            cluster.echo.find("k2")


@pytest.mark.integration
@pytest.mark.parametrize(
    "body", [b"[" * 100_000, b'{"args": [' + b"1," * 3_000_000 + b"1]}", b"not json", b'{"args": "x"}'],
    ids=["deeply nested", "over the size limit", "not JSON", "args not a list"],
)
def test_a_malformed_command_body_is_a_400_and_runs_nothing(echo_service: str, body: bytes) -> None:
    import urllib3

    response = urllib3.PoolManager().request("POST", f"{echo_service}/rpc/shout", body=body,
                                             headers={"Content-Type": "application/json"}, retries=False)
    assert response.status == 400
    assert json.loads(response.data)["error"]["code"] == "bad_request"
