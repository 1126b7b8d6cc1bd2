"""The HTTP side of a service: answers that are JSON text already (RawJson) pass through undecoded, a
kept-alive connection outlives a restart of the service, and unroutable requests are JSON errors.

Real: a nameko container on a free port (and, for the RPC transport, this session's RabbitMQ virtual
host). Replaced: the service is a stand-in answering one document.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import urllib3
from nameko.containers import ServiceContainer
from nameko.standalone.rpc import ClusterRpcProxy

from crm_runtime.nameko.client import HttpTransport
from crm_runtime.nameko.rpc import RawJson, rpc

pytestmark = pytest.mark.integration

DOCUMENT = '{"customer_id": "c-1", "timeline": [{"summary": "registered via web"}], "total": 1}'


class Documents:
    name = "documents"

    @rpc
    def document(self) -> RawJson:
        return RawJson(DOCUMENT)

    @rpc
    def plain(self) -> dict[str, Any]:
        return {"plain": True}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def start(amqp_vhost: str, port: int) -> ServiceContainer:
    container = ServiceContainer(Documents, {"AMQP_URI": amqp_vhost, "WEB_SERVER_ADDRESS": f"127.0.0.1:{port}"})
    container.start()
    return container


@pytest.fixture
def service(amqp_vhost: str) -> Any:
    port = free_port()
    containers = [start(amqp_vhost, port)]
    yield port, lambda: containers.append(start(amqp_vhost, port)), containers
    for container in containers:
        container.stop()


def test_json_text_passes_through_to_a_caller_that_asks_for_it_and_is_decoded_for_others(service, amqp_vhost):
    port, _, _ = service
    passing = HttpTransport("documents", [f"http://127.0.0.1:{port}"], raw_json=True)
    answer = passing.call("document", (), {}, {}, timeout=5.0)
    assert isinstance(answer, RawJson) and answer == DOCUMENT
    assert passing.call("plain", (), {}, {}, timeout=5.0) == {"plain": True}  # a plain result stays decoded
    decoding = HttpTransport("documents", [f"http://127.0.0.1:{port}"])
    assert decoding.call("document", (), {}, {}, timeout=5.0) == json.loads(DOCUMENT)
    assert not isinstance(decoding.call("document", (), {}, {}, timeout=5.0), RawJson)
    with ClusterRpcProxy({"AMQP_URI": amqp_vhost, "serializer": "json"}, timeout=10) as cluster:
        assert cluster.documents.document() == json.loads(DOCUMENT)  # over RabbitMQ: decoded


def test_a_kept_alive_connection_outlives_a_restart_of_the_service(service):
    port, restart, containers = service
    transport = HttpTransport("documents", [f"http://127.0.0.1:{port}"])
    assert transport.call("plain", (), {}, {}, timeout=5.0) == {"plain": True}
    containers.pop().stop()  # the idle connection is now closed by the server
    restart()
    assert transport.call("plain", (), {}, {}, timeout=5.0) == {"plain": True}


def test_an_unknown_path_or_method_is_a_json_error(service):
    port, _, _ = service
    http = urllib3.PoolManager(retries=False)
    missing = http.request("GET", f"http://127.0.0.1:{port}/nothing-here")
    assert missing.status == 404 and json.loads(missing.data)["error"]["code"] == "not_found"
    wrong = http.request("GET", f"http://127.0.0.1:{port}/rpc/plain")
    assert wrong.status == 405 and json.loads(wrong.data)["error"]["code"] == "method_not_allowed"
    assert "POST" in wrong.headers["Allow"]
    bad = http.request(
        "POST",
        f"http://127.0.0.1:{port}/rpc/plain",
        body=b'{"args": [1, 2, 3]}',
        headers={"Content-Type": "application/json"},
    )
    assert bad.status == 400  # arguments that do not fit the method: refused before it runs
