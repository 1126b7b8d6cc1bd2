"""The HTTP baseline of a read, in its own process: a bare nameko `@http` endpoint answering a fixed JSON
document about the size of a 360 view, under the same client load as the platform's reads.

Run by bench.reads as `python -m bench.http_echo PORT SECONDS CLIENTS`; prints one JSON line (the
read_load figures) on stdout. Its own process because nameko needs eventlet's monkey patching, which the
load generator (plain threads) does without; the load runs in a child of this one for the same reason.
"""

from __future__ import annotations

import warnings

warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")

import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

#: A document about the size of a customer's 360 answer.
DOCUMENT = json.dumps(
    {
        "customer_id": "0" * 36,
        "profile": {"name": "Bench Customer", "email": "bench@example.com"},
        "timeline": [{"origin": "customer", "position": n, "summary": "x" * 40} for n in range(12)],
        "padding": "x" * 600,
    }
)


def serve(port: int) -> None:
    """Run the bare service until killed."""
    import eventlet

    eventlet.monkey_patch()
    from nameko.containers import ServiceContainer
    from nameko.web.handlers import http
    from werkzeug.wrappers import Response

    class BenchHttpEchoService:
        """Answers GET /echo/<anything> with DOCUMENT."""

        name = "bench_http_echo"

        @http("GET", "/echo/<key>")
        def echo(self, request: Any, key: str) -> Response:
            return Response(DOCUMENT, mimetype="application/json")

    container = ServiceContainer(BenchHttpEchoService, {"WEB_SERVER_ADDRESS": f"127.0.0.1:{port}"})
    container.start()
    print("ready", flush=True)
    container.wait()


def main() -> None:
    """Serve in a child process, load it from this one (plain threads), print the figures, stop the child."""
    port, seconds, clients = int(sys.argv[1]), float(sys.argv[2]), int(sys.argv[3])
    if len(sys.argv) > 4 and sys.argv[4] == "serve":
        serve(port)
        return
    from bench.reads import read_load

    child = subprocess.Popen(
        [sys.executable, "-m", "bench.http_echo", str(port), "0", "0", "serve"], stdout=subprocess.PIPE, text=True
    )
    try:
        if child.stdout is None or child.stdout.readline().strip() != "ready":
            raise SystemExit("the echo service did not start")
        outcome = read_load(("127.0.0.1", port), "bench", [f"/echo/{n}" for n in range(100)], clients, seconds)
    finally:
        child.terminate()
        child.wait(timeout=30)
    print(json.dumps(outcome), flush=True)


if __name__ == "__main__":
    main()
