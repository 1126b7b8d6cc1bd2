"""The nameko RPC baseline, in its own process: a tiny echo service in a ServiceContainer and sequential
round trips from a standalone ClusterRpcProxy.

Run by bench.baselines as `python -m bench.rpc_echo AMQP_URI SECONDS MAX_CALLS RUNS`; prints one JSON
line {"rates": [...]} on stdout. Its own process because nameko needs eventlet's monkey patching, which
the rest of the harness (plain threads) does without.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")

import eventlet  # noqa: E402

eventlet.monkey_patch()

import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from typing import Any  # noqa: E402

from nameko.containers import ServiceContainer  # noqa: E402
from nameko.rpc import rpc  # noqa: E402
from nameko.standalone.rpc import ClusterRpcProxy  # noqa: E402


class BenchEchoService:
    """Answers `echo(value)` with `value`."""

    name = "bench_echo"

    @rpc
    def echo(self, value: Any) -> Any:
        """Return the argument unchanged."""
        return value


def measure(proxy: Any, seconds: float, max_calls: int) -> float:
    """Sequential round trips for `seconds` or `max_calls`; calls/s."""
    calls = 0
    started = time.perf_counter()
    while calls < max_calls and time.perf_counter() - started < seconds:
        proxy.bench_echo.echo(calls)
        calls += 1
    return calls / (time.perf_counter() - started)


def main() -> None:
    """Start the echo service, measure, print the rates, stop."""
    uri, seconds, max_calls, runs = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    config = {"AMQP_URI": uri, "serializer": "json"}
    container = ServiceContainer(BenchEchoService, config)
    container.start()
    try:
        with ClusterRpcProxy(config, timeout=30) as proxy:
            for value in range(5):  # warm-up: queues declared, connections open
                proxy.bench_echo.echo(value)
            rates = [measure(proxy, seconds, max_calls) for _ in range(runs)]
    finally:
        container.stop()
    print(json.dumps({"rates": rates}), flush=True)


if __name__ == "__main__":
    main()
