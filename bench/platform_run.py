"""The platform under test: started as `make run` starts it, but on its own database, RabbitMQ vhost,
ports and run directory, so a running `make run` is never disturbed; always stopped afterwards."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

import psutil

from bench.common import Settings, delete_vhost, ensure_vhost, log, recreate_database

ROOT = Path(__file__).resolve().parent.parent
RUN_DIR = ROOT / "run" / "bench"


#: Every registered service (all eight processes of `make run`), one replica each, whatever the
#: environment says (crm_runtime.platform reads CRM_SERVICES and CRM_REPLICAS; empty means all, once).
ALL_SERVICES_ONCE = {"CRM_SERVICES": "", "CRM_REPLICAS": ""}


def _port_free(port: int) -> bool:
    """Whether nothing listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) != 0


class BenchPlatform:
    """Starts every registered service (and the gateway), one process each, for the bench; stops them on
    exit, always."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.gateway_port = int(os.environ.get("BENCH_GATEWAY_PORT") or "8600")
        self.base_port = int(os.environ.get("BENCH_SERVICE_BASE_PORT") or "8601")
        self.platform: Any = None
        self.started_at = 0.0
        #: Why the gateway could not start (the other phases still run), or None.
        self.gateway_error: str | None = None

    @property
    def names(self) -> list[str]:
        return list(self.platform.processes) if self.platform else []

    @property
    def has_gateway(self) -> bool:
        """Whether a gateway is registered (it may still have failed to start: see gateway_error)."""
        return "gateway" in self.names

    @property
    def gateway_url(self) -> str:
        return f"http://127.0.0.1:{self.gateway_port}"

    def __enter__(self) -> BenchPlatform:
        self.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()

    def start(self) -> None:
        """A fresh database and vhost, migrations, then every process until ready."""
        env = {**self.settings.platform_env(), "GATEWAY_PORT": str(self.gateway_port),
               "SERVICE_BASE_PORT": str(self.base_port), "RUN_DIR": str(RUN_DIR), **ALL_SERVICES_ONCE}
        # Addresses of `make run`'s (or anyone's) services must not leak in: the supervisor derives each
        # CRM_<SERVICE>_URLS from the bench's own ports when it is unset or empty.
        env.update({key: "" for key in os.environ if key.startswith("CRM_") and key.endswith("_URLS")})
        # crm_runtime reads its settings from os.environ: this process (seeding, ports) uses the bench's.
        os.environ.update(env)
        from crm_runtime.platform import LocalPlatform

        self.platform = LocalPlatform(RUN_DIR, env)
        if not self.platform.processes:
            raise RuntimeError("no services registered under the entry-point group crm.services: run `make install`")
        self._clear_stale_pid_files()
        busy = [p.port for p in self.platform.processes.values() if not _port_free(p.port)]
        if busy:
            raise RuntimeError(f"ports {busy} are taken: set BENCH_GATEWAY_PORT / BENCH_SERVICE_BASE_PORT")
        log(f"fresh database {self.settings.dbname} and vhost {self.settings.vhost}")
        recreate_database(self.settings)
        ensure_vhost(self.settings, fresh=True)
        log("migrating")
        self._quiet(self.platform.migrate)
        self.started_at = time.monotonic()
        services = [name for name in self.names if name != "gateway"]
        log(f"starting {', '.join(services)} (logs in {RUN_DIR})")
        self.start_and_wait(services)
        if self.has_gateway:
            log("starting gateway")
            try:
                self.start_and_wait(["gateway"])
            except RuntimeError as exc:
                self.gateway_error = str(exc)
                self.platform.stop(["gateway"], timeout=10)

    def start_and_wait(self, names: list[str], timeout: float = 120.0) -> None:
        """Start `names` and wait until each answers /health/ready; fail fast when one exits."""
        for name in names:
            self.platform.start_one(name)
        deadline = time.monotonic() + timeout
        waiting = list(names)
        while waiting:
            waiting = [name for name in waiting if not self.platform.ready(name)]
            for name in waiting:
                if not self._alive(name):
                    raise RuntimeError(f"{name} exited during start: {self.log_tail(name)}")
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(waiting)} (see {RUN_DIR}/*.log)")
            time.sleep(0.2)

    def _alive(self, name: str) -> bool:
        """Whether the process is running (a child that exited stays a zombie until reaped)."""
        pid = self.platform.pid(name)
        if pid is None:
            return False
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.Error:
            return False

    def log_tail(self, name: str, lines: int = 3) -> str:
        """The last lines of a process's log, for an error message."""
        try:
            text = self.platform.log_file(name).read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(text[-lines:])

    def _clear_stale_pid_files(self) -> None:
        """Remove pid files of processes that are gone; refuse to run beside a live bench platform."""
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        for name in self.platform.processes:
            pid = self.platform.pid(name)
            if pid is None:
                self.platform.pid_file(name).unlink(missing_ok=True)
                continue
            try:
                cmdline = " ".join(psutil.Process(pid).cmdline())
            except psutil.Error:
                cmdline = ""
            if "crm_runtime.serve" in cmdline:
                raise RuntimeError(f"a bench platform process is still running ({name}, pid {pid}): "
                                   "is another `python -m bench` running?")
            self.platform.pid_file(name).unlink(missing_ok=True)  # a recycled pid, not ours

    @staticmethod
    def _quiet(action: Any) -> None:
        """Run a platform step with its stdout sent to stderr (stdout is for the table)."""
        saved = os.dup(1)
        try:
            os.dup2(2, 1)
            action()
        finally:
            sys.stdout.flush()
            os.dup2(saved, 1)
            os.close(saved)

    def stop(self) -> None:
        """Stop every process this bench started (even after a failure), then drop the vhost."""
        if self.platform is None:
            return
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not skip the stop
        try:
            log("stopping the bench platform")
            self.platform.stop(timeout=20)
            try:
                delete_vhost(self.settings)
            except (OSError, urllib.error.URLError) as exc:
                log(f"could not delete vhost {self.settings.vhost}: {exc}")
        finally:
            signal.signal(signal.SIGINT, previous)
            self.platform = None

    # ------------------------------------------------------------------------------------ observing

    def pids(self) -> dict[str, int]:
        """The pid of every running platform process."""
        found = {name: self.platform.pid(name) for name in self.names}
        return {name: pid for name, pid in found.items() if pid}

    def health(self, name: str) -> dict[str, Any]:
        """A service's readiness report (its JSON body, 200 or 503)."""
        url = self.platform.processes[name].health_url
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            return json.loads(exc.read() or b"{}")

    def token(self) -> str:
        """A development token (crm:read crm:write) signed with the gateway's secret (CRM_JWT_SECRET)."""
        try:
            from crm_gateway.auth import issue_token

            return str(issue_token(subject="bench"))
        except ImportError:
            pass  # no such function: what `make token` runs
        done = subprocess.run([sys.executable, "-m", "crm_gateway.auth"], capture_output=True, text=True,
                              timeout=60, env={**os.environ}, check=True)
        lines = [line.strip() for line in done.stdout.splitlines() if line.strip()]
        if not lines:
            raise RuntimeError("python -m crm_gateway.auth printed no token")
        return lines[-1].removeprefix("Bearer ").strip()


class MemorySampler:
    """Samples the resident memory of every platform process (and its children) once a second."""

    def __init__(self, platform: BenchPlatform, interval: float = 1.0) -> None:
        self.platform = platform
        self.interval = interval
        self.peak: dict[str, float] = {}
        self.peak_total = 0.0
        self.last: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
        self._procs: dict[int, psutil.Process] = {}

    def __enter__(self) -> MemorySampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def sample(self) -> dict[str, float]:
        """RSS in MiB per process now; updates the peaks."""
        now: dict[str, float] = {}
        for name, pid in self.platform.pids().items():
            try:
                proc = self._procs.setdefault(pid, psutil.Process(pid))
                rss = proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
            except psutil.Error:
                continue
            now[name] = rss / 2**20
        for name, mib in now.items():
            self.peak[name] = max(self.peak.get(name, 0.0), mib)
        self.peak_total = max(self.peak_total, sum(now.values()))
        self.last = now
        return now

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()


def infrastructure_rss() -> dict[str, float]:
    """RSS in MiB of the shared RabbitMQ (beam.smp) and PostgreSQL processes: context only (shared
    with every other user of this machine; PostgreSQL's shared buffers are counted once per process)."""
    totals = {"rabbitmq": 0.0, "postgresql": 0.0}
    for proc in psutil.process_iter(["name", "memory_info"]):
        name = proc.info.get("name") or ""
        memory = proc.info.get("memory_info")
        if memory is None:
            continue
        if name.startswith("beam.smp"):
            totals["rabbitmq"] += memory.rss / 2**20
        elif name.startswith("postgres"):
            totals["postgresql"] += memory.rss / 2**20
    return {k: round(v, 1) for k, v in totals.items()}
