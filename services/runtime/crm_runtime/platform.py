"""`crm-platform start|stop|status`: run the whole platform on one machine, one process per service.

What `make run` uses, and what the end-to-end tests start: every nameko service registered under the
entry-point group `crm.services` (the gateway on GATEWAY_PORT, default 8000; the others on
SERVICE_BASE_PORT + n, default 8101...), each a separate `crm-serve` process with its own log file
and pid file under RUN_DIR (default ./run). `start` migrates first and returns once every process
answers /health/ready.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path

from crm_runtime import config


@dataclass(frozen=True)
class Process:
    """One service process of the local platform."""

    name: str
    target: str
    port: int

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/health/ready"


def processes(env: Mapping[str, str]) -> list[Process]:
    """Every registered service, gateway last, each with its port (from GATEWAY_PORT, SERVICE_BASE_PORT)."""
    found = sorted(entry_points(group="crm.services"), key=lambda e: (e.name == "gateway", e.name))
    base = int(env.get("SERVICE_BASE_PORT") or 8101)
    gateway_port = int(env.get("GATEWAY_PORT") or 8000)
    return [
        Process(e.name, e.value, gateway_port if e.name == "gateway" else base + i) for i, e in enumerate(found)
    ]


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


class LocalPlatform:
    """Starts, watches and stops the platform's processes under one run directory."""

    def __init__(self, run_dir: Path, env: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.env = {**os.environ, **(env or {}), "CREATE_TABLE": "false"}
        self.processes = {p.name: p for p in processes(self.env)}
        self._children: dict[str, subprocess.Popen[bytes]] = {}

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    def migrate(self) -> None:
        subprocess.run([sys.executable, "-m", "crm_runtime.migrate"], env=self.env, check=True)

    def start(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        self.run_dir.mkdir(parents=True, exist_ok=True)
        for name in names or list(self.processes):
            self.start_one(name)
        self.wait_ready(names, timeout)

    def start_one(self, name: str) -> int:
        process = self.processes[name]
        if self.pid(name):
            return self.pid(name)  # type: ignore[return-value]
        if port_in_use(process.port):
            raise RuntimeError(
                f"port {process.port} for {name} is taken by another process: is a platform already running "
                f"(`make stop`), or set GATEWAY_PORT / SERVICE_BASE_PORT"
            )
        env = {**self.env, "WEB_SERVER_ADDRESS": f"127.0.0.1:{process.port}"}
        with open(self.log_file(name), "ab") as log:
            child = subprocess.Popen(
                [sys.executable, "-m", "crm_runtime.serve", process.target],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pid_file(name).write_text(str(child.pid))
        self._children[name] = child
        return child.pid

    def pid(self, name: str) -> int | None:
        """The pid of a running process of ours, or None."""
        child = self._children.get(name)
        if child is not None and child.poll() is not None:  # exited (and reaped: no zombie left)
            return None
        try:
            pid = int(self.pid_file(name).read_text())
            os.kill(pid, 0)
        except (FileNotFoundError, ValueError, ProcessLookupError):
            return None
        return pid

    def ready(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(self.processes[name].health_url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        waiting = list(names or self.processes)
        while waiting:
            waiting = [n for n in waiting if not self.ready(n)]
            for name in waiting:
                if self.pid(name) is None:
                    raise RuntimeError(f"{name} exited during start: see {self.log_file(name)}")
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(waiting)} (see {self.run_dir}/*.log)")
            time.sleep(0.2)

    def signal(self, name: str, signum: int) -> None:
        pid = self.pid(name)
        if pid is not None:
            os.killpg(pid, signum)

    def stop(self, names: list[str] | None = None, timeout: float = 15.0) -> None:
        for name in names or list(self.processes):
            self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in names or list(self.processes):
            while self.pid(name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid(name):
                self.signal(name, signal.SIGKILL)
            self.pid_file(name).unlink(missing_ok=True)

    def status(self) -> dict[str, dict[str, object]]:
        return {
            name: {"pid": self.pid(name), "ready": self.ready(name), "port": p.port, "log": str(self.log_file(name))}
            for name, p in self.processes.items()
        }


def main() -> None:
    command = sys.argv[1] if len(sys.argv) > 1 else "status"
    platform = LocalPlatform(Path(config.setting("RUN_DIR", "run")).resolve())
    if command == "start":
        platform.migrate()
        platform.start()
        for name, state in platform.status().items():
            print(f"  {name:<12} pid {state['pid']:<8} http://127.0.0.1:{state['port']}  log {state['log']}")
    elif command == "stop":
        platform.stop()
        print("stopped every platform process")
    elif command == "status":
        print(json.dumps(platform.status(), indent=2))
    else:
        raise SystemExit("usage: crm-platform start|stop|status")


if __name__ == "__main__":
    main()
