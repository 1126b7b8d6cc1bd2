"""The relay thread outlives any fault of its dependencies, and notices a half-open broker connection."""

from __future__ import annotations

import socket
import threading
from urllib.parse import urlsplit, urlunsplit

import pytest
from eventsourcing.persistence import OperationalError

from crm_runtime.relay import OutboxRelay
from tests.integration.test_outbox_relay import register
from tests.support.polling import eventually

pytestmark = pytest.mark.integration


class FlakyRead:
    """The feed's read, failing its first `failures` calls with `error` (a database outage, a bug)."""

    def __init__(self, read, error: Exception, failures: int) -> None:
        self.read, self.error, self.failures = read, error, failures

    def __call__(self, *args, **kwargs):
        if self.failures > 0:
            self.failures -= 1
            raise self.error
        return self.read(*args, **kwargs)


@pytest.mark.parametrize("error", [
    OperationalError("server closed the connection unexpectedly"),  # the event store, via eventsourcing
    KeyError("a bug in a mapper or translation"),
], ids=["event-store-outage", "bug"])
def test_the_relay_thread_survives_any_error_backs_off_and_recovers(customers, relay, probe, error):
    relay.max_backoff = 0.4
    relay.feed.read = FlakyRead(relay.feed.read, error, failures=4)
    stopping = threading.Event()
    thread = threading.Thread(target=relay.run, args=(stopping,), daemon=True)
    thread.start()
    try:
        register(customers, 3)
        eventually(lambda: relay.stats.published == 3, timeout=15)
        assert thread.is_alive()
        assert relay.stats.errors == 4 and type(error).__name__ in relay.stats.last_error
        assert len(probe.drain()) == 3
    finally:
        stopping.set()
        thread.join(10)
    assert not thread.is_alive()


def test_the_back_off_grows_and_is_capped(relay):
    delays = [relay._backoff(n) for n in range(1, 12)]
    assert delays == sorted(delays) and delays[0] < 0.5 and delays[-1] == relay.max_backoff <= 5


class FreezingProxy:
    """Forwards to the broker; `freeze()` silently stops forwarding on the open connections (a half-open
    connection: no FIN, no RST, nothing), while new connections work.

    Under eventlet a socket must be closed by the green thread that reads it, so `close()` only shuts
    sockets down and wakes the accepting thread; each thread closes its own.
    """

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.frozen: set[socket.socket] = set()
        self.open: set[socket.socket] = set()
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            if self.closed:
                client.close()
                self.listener.close()
                return
            upstream = socket.create_connection(self.target)
            self.open.update((client, upstream))
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(source, sink), daemon=True).start()

    def _pipe(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while chunk := source.recv(65536):
                if source not in self.frozen:
                    sink.sendall(chunk)
        except (OSError, EOFError):
            pass
        finally:
            source.close()

    def freeze(self) -> None:
        self.frozen |= self.open

    def close(self) -> None:
        self.closed = True
        socket.create_connection(("127.0.0.1", self.port)).close()  # wakes the accepting thread
        for sock in self.open:
            try:
                sock.shutdown(socket.SHUT_RDWR)  # wakes its reading thread, which closes it
            except OSError:
                pass


def test_a_half_open_broker_connection_is_noticed_by_heartbeats(
    customers, relay, probe, running, amqp_vhost, monkeypatch
):
    parts = urlsplit(amqp_vhost)
    proxy = FreezingProxy(parts.hostname, parts.port or 5672)
    monkeypatch.setenv("AMQP_HEARTBEAT", "1")
    through_proxy = urlunsplit(parts._replace(netloc=f"{parts.username}:{parts.password}@127.0.0.1:{proxy.port}"))
    relay = OutboxRelay(relay.feed, relay.dsn, relay.schema, through_proxy, poll_interval=0.2)
    try:
        running(relay)
        register(customers, 1)
        eventually(lambda: relay.stats.published == 1, timeout=10)
        assert relay.publisher.connection.connection.heartbeat == 1  # negotiated with the broker
        first = relay.publisher.connection
        proxy.freeze()
        eventually(lambda: relay.publisher.connection is not first, timeout=6)  # noticed while idle
        register(customers, 1, prefix="after")
        eventually(lambda: relay.stats.published == 2, timeout=10)
        assert len(probe.drain()) == 2
    finally:
        proxy.close()
