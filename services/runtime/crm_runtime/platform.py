"""`crm-platform start|stop|status`: run the whole platform on one machine under a supervisor.

What `make run` uses, and what the end-to-end tests start. Every nameko service registered under the
entry-point group `crm.services` runs as a separate `crm-serve` process with its own log and pid file
under RUN_DIR (default ./run).

`start` migrates, launches a long-lived supervisor process (detached; `supervisor.pid`,
`supervisor.log`, `supervisor.json` and the control socket `supervisor.sock` in RUN_DIR) and returns
once every process answers /health/ready. The supervisor starts the processes and, as an orchestrator
would, restarts one that exits with exponential back-off (CRM_RESTART_BACKOFF, default 0.5 s, doubling
up to CRM_RESTART_BACKOFF_MAX, default 30 s; back to the start once a process stayed up
CRM_RESTART_RESET_AFTER, default 10 s), counting restarts and the last exit code. CRM_RESTART=off
keeps a process that died dead (tests that SIGKILL one on purpose). `stop` ends the supervisor, which
stops its processes first (SIGTERM, SIGKILL after 15 s). `status` shows per process its state, pid,
readiness, port, restarts and last exit code.

Ports and replicas: the gateway listens on GATEWAY_PORT (default 8000), the other services on
SERVICE_BASE_PORT (default 8101) and up, one port per process in the order `status` lists them.
CRM_REPLICAS (or `crm-platform start --replicas`) runs N processes of a service, e.g.
`CRM_REPLICAS=customer=2,customer360=2,gateway=2`: they are named customer-1, customer-2, ... and
each has its own port (gateway-1 on GATEWAY_PORT, gateway-2 on GATEWAY_PORT + 1, ...). A service
with one replica keeps its plain name.

CRM_SERVICES (e.g. `customer,customer360,gateway`) runs and migrates only those services.

CRM_EXPORTER=on (`make run` sets it) also runs `crm-admin exporter`, the platform-wide relay and
consumer lag for Prometheus, as a supervised process named `exporter` on EXPORTER_PORT (default
9400); it is ready when its /metrics answers. Off by default, so platforms started by tests never
contend for its port.

Service addresses: every process is told where the others listen (CRM_<SERVICE>_URLS, one URL per
replica), so commands and feed pulls go over HTTP and need no broker (crm_runtime.nameko.client), as
Kubernetes Services would give them. CRM_COMMAND_TRANSPORT=amqp keeps them on RabbitMQ RPC instead.

CRM_SUPERVISOR_OWNER_PID (tests): the supervisor stops everything when that process is gone, so an
aborted test run leaves nothing behind.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import select
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
from typing import Any

from crm_runtime import config

log = logging.getLogger("crm_runtime.platform")

SUPERVISOR = "supervisor"
#: How long a stopping process gets between SIGTERM and SIGKILL.
STOP_TIMEOUT = 15.0


@dataclass(frozen=True)
class Process:
    """One process of the local platform: a replica of a service on its own port."""

    name: str
    target: str
    port: int
    service: str = ""
    #: What proves it is ready: a service's readiness, the exporter's /metrics.
    health_path: str = "/health/ready"

    @property
    def health_url(self) -> str:
        return f"http://127.0.0.1:{self.port}{self.health_path}"

    def command(self) -> list[str]:
        """How the supervisor starts it: `crm-serve` of its target, or the lag exporter."""
        if self.service == EXPORTER:
            return [sys.executable, "-m", "crm_runtime.admin.cli", "exporter", "--address", "127.0.0.1",
                    "--port", str(self.port)]
        return [sys.executable, "-m", "crm_runtime.serve", self.target]


#: The name of the lag exporter's process (crm-admin exporter) under the supervisor.
EXPORTER = "exporter"


def exporter_process(env: Mapping[str, str]) -> Process | None:
    """The lag exporter's process when CRM_EXPORTER is on (see the module docstring)."""
    if (env.get("CRM_EXPORTER") or "off").strip().lower() not in {"on", "true", "1", "yes"}:
        return None
    return Process(EXPORTER, "crm-admin exporter", int(env.get("EXPORTER_PORT") or 9400), EXPORTER, "/metrics")


def replica_counts(spec: str) -> dict[str, int]:
    """`customer=2,gateway=2` -> {"customer": 2, "gateway": 2}."""
    counts: dict[str, int] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, count = item.partition("=")
        if not count.strip().isdigit() or int(count) < 1:
            raise ValueError(f"CRM_REPLICAS: give each service as name=N with N >= 1, not {item!r}")
        counts[name.strip()] = int(count)
    return counts


def chosen_services(env: Mapping[str, str]) -> list[str] | None:
    """CRM_SERVICES (`customer,customer360,gateway`): run only these services; None: every one."""
    names = [n.strip() for n in (env.get("CRM_SERVICES") or "").split(",") if n.strip()]
    return names or None


def processes(env: Mapping[str, str]) -> list[Process]:
    """Every registered service's processes (or CRM_SERVICES'), gateway last, each with its port
    (GATEWAY_PORT, SERVICE_BASE_PORT) and as many replicas as CRM_REPLICAS asks for; then the lag
    exporter when CRM_EXPORTER is on."""
    found = sorted(entry_points(group="crm.services"), key=lambda e: (e.name == "gateway", e.name))
    only = chosen_services(env)
    replicas = replica_counts(env.get("CRM_REPLICAS") or "")
    for setting, names in (("CRM_SERVICES", only or []), ("CRM_REPLICAS", list(replicas))):
        unknown = set(names) - {e.name for e in found}
        if unknown:
            raise ValueError(f"{setting} names unknown services: {', '.join(sorted(unknown))}")
    found = [e for e in found if only is None or e.name in only]
    next_port = int(env.get("SERVICE_BASE_PORT") or 8101)
    gateway_port = int(env.get("GATEWAY_PORT") or 8000)
    result = []
    for entry in found:
        count = replicas.get(entry.name, 1)
        for replica in range(1, count + 1):
            name = entry.name if count == 1 else f"{entry.name}-{replica}"
            if entry.name == "gateway":
                port = gateway_port + replica - 1
            else:
                port, next_port = next_port, next_port + 1
            result.append(Process(name, entry.value, port, entry.name))
    exporter = exporter_process(env)
    return result if exporter is None else [*result, exporter]


def service_addresses(found: list[Process], env: Mapping[str, str]) -> dict[str, str]:
    """CRM_<SERVICE>_URLS of every service but the gateway, from its processes' ports (unless set already,
    or CRM_COMMAND_TRANSPORT=amqp)."""
    if (env.get("CRM_COMMAND_TRANSPORT") or "http").lower() == "amqp":
        return {}
    urls: dict[str, list[str]] = {}
    for process in found:
        if process.service not in ("gateway", EXPORTER):
            urls.setdefault(process.service, []).append(f"http://127.0.0.1:{process.port}")
    return {
        key: ",".join(addresses)
        for key, addresses in ((f"CRM_{service.upper()}_URLS", addresses) for service, addresses in urls.items())
        if not env.get(key)
    }


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def restart_delay(failures: int, initial: float, maximum: float) -> float:
    """Back-off before restarting a process that failed `failures` times in a row (1, 2, ...)."""
    return min(maximum, initial * 2 ** max(0, failures - 1))


def process_alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie, exited but not yet reaped by its parent, does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive, but not ours to judge
        return True
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True  # no /proc here: kill(0) is all we know


def read_pid(path: Path) -> int | None:
    """The pid in `path` if that process is alive, else None."""
    try:
        pid = int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None
    return pid if process_alive(pid) else None


def write_atomically(path: Path, text: str) -> None:
    temporary = path.with_suffix(path.suffix + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


# --- the supervisor (its own long-lived process) ---------------------------------------------------


@dataclass
class Child:
    """What the supervisor knows of one process."""

    process: Process
    popen: subprocess.Popen[bytes] | None = None
    state: str = "stopped"  # running | stopping | stopped | backoff | exited
    started_at: float = 0.0
    restarts: int = 0
    failures: int = 0  # consecutive short-lived runs: the back-off grows with them
    last_exit: int | None = None
    restart_at: float | None = None  # monotonic
    next_restart: float | None = None  # wall clock, for status
    kill_at: float | None = None  # monotonic: SIGKILL a stopping process after this

    def report(self) -> dict[str, Any]:
        return {
            "service": self.process.service, "target": self.process.target, "port": self.process.port,
            "health_path": self.process.health_path,
            "state": self.state, "pid": self.popen.pid if self.popen else None, "restarts": self.restarts,
            "last_exit": self.last_exit, "next_restart": self.next_restart,
        }


class Supervisor:
    """Starts the platform's processes, restarts those that exit (with back-off), obeys start/stop
    commands on a Unix socket, and stops everything on SIGTERM."""

    def __init__(self, run_dir: Path, env: Mapping[str, str]) -> None:
        self.run_dir = run_dir
        found = processes(env)
        self.env = {**env, **service_addresses(found, env)}
        self.children = {p.name: Child(p) for p in found}
        self.restart = (self.env.get("CRM_RESTART") or "on").lower() not in {"off", "false", "0", "no"}
        self.initial = float(self.env.get("CRM_RESTART_BACKOFF") or 0.5)
        self.maximum = float(self.env.get("CRM_RESTART_BACKOFF_MAX") or 30.0)
        self.reset_after = float(self.env.get("CRM_RESTART_RESET_AFTER") or 10.0)
        owner = self.env.get("CRM_SUPERVISOR_OWNER_PID")
        self.owner = int(owner) if owner else None
        self.stopping = False
        self._written = ""

    # files
    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / f"{SUPERVISOR}.sock"

    @property
    def state_file(self) -> Path:
        return self.run_dir / f"{SUPERVISOR}.json"

    def run(self, names: list[str]) -> None:
        """The supervisor's life: start `names`, then watch and obey until told to stop."""
        signal.signal(signal.SIGTERM, self._stop_signal)
        signal.signal(signal.SIGINT, self._stop_signal)
        self.socket_path.unlink(missing_ok=True)
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(str(self.socket_path))
        listener.listen(16)
        self.pid_file(SUPERVISOR).write_text(str(os.getpid()))
        log.info("supervisor %d: restarts %s, processes %s", os.getpid(), "on" if self.restart else "off",
                 ", ".join(f"{c.process.name}:{c.process.port}" for c in self.children.values()))
        try:
            for name in names:
                self.launch(self.children[name])
            while not self.stopping:
                self.tick()
                readable, _, _ = select.select([listener], [], [], 0.2)
                if readable:
                    self.serve_one(listener)
        finally:
            listener.close()
            self.stop_all()
            self.socket_path.unlink(missing_ok=True)
            self.state_file.unlink(missing_ok=True)
            self.pid_file(SUPERVISOR).unlink(missing_ok=True)
            log.info("supervisor %d stopped", os.getpid())

    def _stop_signal(self, signum: int, frame: Any) -> None:
        self.stopping = True

    def tick(self) -> None:
        """Reap what exited, restart what is due, kill what overstayed its stop, record the state."""
        self.reap()
        now = time.monotonic()
        for child in self.children.values():
            if child.state == "backoff" and child.restart_at is not None and now >= child.restart_at:
                child.restarts += 1
                self.launch(child)
            if child.state == "stopping" and child.popen is not None and child.kill_at and now > child.kill_at:
                self.signal(child, signal.SIGKILL)
        if self.owner is not None and not process_alive(self.owner):
            log.warning("owner process %d is gone: stopping the platform", self.owner)
            self.stopping = True
        self.write_state()

    def reap(self) -> None:
        """Take note of every process that exited."""
        for child in self.children.values():
            if child.popen is not None and child.popen.poll() is not None:
                self.reaped(child, time.monotonic())

    def launch(self, child: Child) -> None:
        process = child.process
        # PGAPPNAME names the process's connections in pg_stat_activity (who holds how many).
        env = {**self.env, "WEB_SERVER_ADDRESS": f"127.0.0.1:{process.port}", "PGAPPNAME": process.name}
        with open(self.run_dir / f"{process.name}.log", "ab") as output:
            child.popen = subprocess.Popen(
                process.command(),
                env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True,
            )
        self.pid_file(process.name).write_text(str(child.popen.pid))
        child.state, child.started_at, child.restart_at, child.next_restart = "running", time.monotonic(), None, None
        log.info("started %s (pid %d, port %d)", process.name, child.popen.pid, process.port)

    def reaped(self, child: Child, now: float) -> None:
        assert child.popen is not None
        code, uptime = child.popen.returncode, now - child.started_at
        child.popen, child.last_exit, child.kill_at = None, code, None
        self.pid_file(child.process.name).unlink(missing_ok=True)
        if child.state == "stopping" or self.stopping:
            child.state = "stopped"
            log.info("%s stopped (exit code %d)", child.process.name, code)
            return
        if not self.restart:
            child.state = "exited"
            log.warning("%s exited with code %d after %.1fs; restarts are off", child.process.name, code, uptime)
            return
        child.failures = 1 if uptime >= self.reset_after else child.failures + 1
        delay = restart_delay(child.failures, self.initial, self.maximum)
        child.state, child.restart_at, child.next_restart = "backoff", now + delay, time.time() + delay
        log.warning("%s exited with code %d after %.1fs; restart %d in %.1fs", child.process.name, code, uptime,
                    child.restarts + 1, delay)

    def signal(self, child: Child, signum: int) -> None:
        if child.popen is not None:
            try:
                os.killpg(child.popen.pid, signum)
            except ProcessLookupError:
                pass

    def stop_all(self) -> None:
        """SIGTERM every process, wait for them, SIGKILL what is left after STOP_TIMEOUT."""
        self.stopping = True
        running = [c for c in self.children.values() if c.popen is not None]
        for child in running:
            child.state = "stopping"
            self.signal(child, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while any(c.popen is not None for c in running):
            for child in running:
                if child.popen is not None and child.popen.poll() is not None:
                    self.reaped(child, time.monotonic())
                elif child.popen is not None and time.monotonic() > deadline:
                    self.signal(child, signal.SIGKILL)
            time.sleep(0.1)

    # commands
    def serve_one(self, listener: socket.socket) -> None:
        connection, _ = listener.accept()
        with connection:
            connection.settimeout(5)
            try:
                request = json.loads(connection.makefile("rb").readline())
                answer = self.command(request.get("op", ""), list(request.get("names") or []))
            except (OSError, ValueError) as exc:
                answer = {"ok": False, "error": f"bad request: {exc}"}
            self.write_state()
            try:
                connection.sendall(json.dumps(answer).encode() + b"\n")
            except OSError:
                pass

    def command(self, op: str, names: list[str]) -> dict[str, Any]:
        self.reap()  # one the client saw exit is not still "running" here
        unknown = [n for n in names if n not in self.children]
        if unknown:
            return {"ok": False, "error": f"unknown processes: {', '.join(unknown)}"}
        chosen = [self.children[n] for n in names or list(self.children)]
        if op == "start":
            taken = [f"{c.process.name} ({c.process.port})" for c in chosen
                     if c.popen is None and port_in_use(c.process.port)]
            if taken:
                return {"ok": False, "error": f"ports taken by another process: {', '.join(taken)}"}
            for child in chosen:
                if child.popen is None:
                    child.failures = 0
                    self.launch(child)
        elif op == "stop":
            for child in chosen:
                child.restart_at = child.next_restart = None
                if child.popen is None:
                    child.state = "stopped"
                elif child.state != "stopping":
                    child.state, child.kill_at = "stopping", time.monotonic() + STOP_TIMEOUT
                    self.signal(child, signal.SIGTERM)
        else:
            return {"ok": False, "error": f"unknown command {op!r}"}
        return {"ok": True}

    def write_state(self) -> None:
        state = {
            "pid": os.getpid(), "restart": self.restart,
            "processes": {name: child.report() for name, child in self.children.items()},
        }
        text = json.dumps(state, indent=2)
        if text != self._written:
            write_atomically(self.state_file, text)
            self._written = text


# --- the client: what `crm-platform` and the tests use ---------------------------------------------


class LocalPlatform:
    """Starts, watches and stops the platform's processes under one run directory, through its
    supervisor."""

    def __init__(self, run_dir: Path, env: dict[str, str] | None = None) -> None:
        self.run_dir = run_dir
        self.env = {**os.environ, **(env or {}), "CREATE_TABLE": "false"}
        self.processes = {p.name: p for p in processes(self.env)}
        self._supervisor: subprocess.Popen[bytes] | None = None
        recorded = self.supervisor_state().get("processes", {})
        if recorded and self.supervisor_pid():  # a running platform: its processes, whatever our environment
            self.processes = {
                name: Process(name, p["target"], p["port"], p["service"], p.get("health_path", "/health/ready"))
                for name, p in recorded.items()
            }

    def pid_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.pid"

    def log_file(self, name: str) -> Path:
        return self.run_dir / f"{name}.log"

    @property
    def socket_path(self) -> Path:
        return self.run_dir / f"{SUPERVISOR}.sock"

    def migrate(self) -> None:
        """Create the database and the schemas of every service (or of CRM_SERVICES' only)."""
        only = chosen_services(self.env) or []
        subprocess.run([sys.executable, "-m", "crm_runtime.migrate", *only], env=self.env, check=True)

    def services(self, service: str) -> list[str]:
        """The names of `service`'s processes (its replicas)."""
        return [name for name, p in self.processes.items() if p.service == service]

    # the supervisor
    def supervisor_pid(self) -> int | None:
        if self._supervisor is not None:  # our child: poll() reaps it, so a zombie does not count
            return self._supervisor.pid if self._supervisor.poll() is None else None
        return read_pid(self.pid_file(SUPERVISOR))

    def supervisor_state(self) -> dict[str, Any]:
        try:
            return json.loads((self.run_dir / f"{SUPERVISOR}.json").read_text())
        except (FileNotFoundError, ValueError):
            return {}

    def _launch_supervisor(self, names: list[str]) -> None:
        taken = [f"{n} ({self.processes[n].port})" for n in names if port_in_use(self.processes[n].port)]
        if taken:
            raise RuntimeError(
                f"ports taken by another process: {', '.join(taken)}: is a platform already running "
                f"(`make stop`), or set GATEWAY_PORT / SERVICE_BASE_PORT"
            )
        with open(self.log_file(SUPERVISOR), "ab") as output:
            self._supervisor = subprocess.Popen(
                [sys.executable, "-m", "crm_runtime.platform", "supervise", *names],
                env={**self.env, "RUN_DIR": str(self.run_dir)}, stdout=output, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while not (self.socket_path.exists() and self.supervisor_state()):
            if self.supervisor_pid() is None:
                raise RuntimeError(f"the supervisor exited at start: see {self.log_file(SUPERVISOR)}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"the supervisor did not come up: see {self.log_file(SUPERVISOR)}")
            time.sleep(0.05)

    def command(self, op: str, names: list[str] | None = None) -> None:
        """Send one command (start, stop) to the running supervisor."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
            connection.settimeout(30)
            connection.connect(str(self.socket_path))
            connection.sendall(json.dumps({"op": op, "names": names or []}).encode() + b"\n")
            answer = json.loads(connection.makefile("rb").readline() or b"{}")
        if not answer.get("ok"):
            raise RuntimeError(f"supervisor refused {op}: {answer.get('error', 'no answer')}")

    # processes
    def start(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        """Start `names` (default: every process), the supervisor first if it is not running, and wait
        until they are ready."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        chosen = names or list(self.processes)
        if self.supervisor_pid() is None:
            self._launch_supervisor(chosen)
        else:
            self.command("start", chosen)
        self.wait_ready(chosen, timeout)

    def start_one(self, name: str) -> int | None:
        """Start one process without waiting for it to be ready; its pid."""
        self.run_dir.mkdir(parents=True, exist_ok=True)
        if self.supervisor_pid() is None:
            self._launch_supervisor([name])
        else:
            self.command("start", [name])
        return self.pid(name)

    def pid(self, name: str) -> int | None:
        """The pid of a running process of ours, or None."""
        return read_pid(self.pid_file(name))

    def ready(self, name: str) -> bool:
        try:
            with urllib.request.urlopen(self.processes[name].health_url, timeout=2) as response:
                return response.status == 200
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, names: list[str] | None = None, timeout: float = 60.0) -> None:
        """Wait until `names` answer /health/ready; fail early when one exited for good."""
        deadline = time.monotonic() + timeout
        waiting = list(names or self.processes)
        while waiting:
            waiting = [n for n in waiting if not self.ready(n)]
            states = self.supervisor_state().get("processes", {})
            for name in waiting:
                if self.supervisor_pid() is None or states.get(name, {}).get("state") in ("exited", "stopped"):
                    raise RuntimeError(f"{name} exited during start: see {self.log_file(name)}")
            if waiting and time.monotonic() > deadline:
                raise RuntimeError(f"not ready after {timeout:.0f}s: {', '.join(waiting)} (see {self.run_dir}/*.log)")
            time.sleep(0.2)

    def signal(self, name: str, signum: int) -> None:
        """Send `signum` to a process (SIGKILL: a crash; the supervisor restarts it if restarts are on)."""
        pid = self.pid(name)
        if pid is not None:
            os.killpg(pid, signum)

    def restarts(self, name: str) -> int:
        return int(self.supervisor_state().get("processes", {}).get(name, {}).get("restarts", 0))

    def stop(self, names: list[str] | None = None, timeout: float = STOP_TIMEOUT) -> None:
        """Stop `names` (they stay down until started again), or, without names, the supervisor and
        everything it runs."""
        if names is not None and self.supervisor_pid() is not None:
            self.command("stop", names)
            deadline = time.monotonic() + timeout + 5
            while any(self.pid(n) for n in names) and time.monotonic() < deadline:
                time.sleep(0.1)
        elif names is None:
            self._stop_supervisor(timeout)
        # Whatever is left (no supervisor, or it died): stop it here.
        leftovers = [n for n in names or list(self.processes) if self.pid(n)]
        for name in leftovers:
            self.signal(name, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for name in leftovers:
            while self.pid(name) and time.monotonic() < deadline:
                time.sleep(0.1)
            if self.pid(name):
                self.signal(name, signal.SIGKILL)
        for name in names or list(self.processes):
            if not self.pid(name):
                self.pid_file(name).unlink(missing_ok=True)

    def _stop_supervisor(self, timeout: float) -> None:
        pid = self.supervisor_pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout + 5  # it gives its processes `timeout` before SIGKILL
        # Wait for the process itself, not its pid file: it removes the file before it has quite exited.
        while process_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        if process_alive(pid):
            os.kill(pid, signal.SIGKILL)
            while process_alive(pid):
                time.sleep(0.05)

    def status(self) -> dict[str, dict[str, object]]:
        """Per process: state, pid, ready, port, restarts, last exit code (signal n: -n), log."""
        recorded = self.supervisor_state().get("processes", {}) if self.supervisor_pid() else {}
        return {
            name: {
                "state": recorded.get(name, {}).get("state", "stopped"),
                "pid": self.pid(name),
                "ready": self.ready(name),
                "port": p.port,
                "restarts": recorded.get(name, {}).get("restarts", 0),
                "last_exit": recorded.get(name, {}).get("last_exit"),
                "log": str(self.log_file(name)),
            }
            for name, p in self.processes.items()
        }


def exit_text(code: object) -> str:
    if not isinstance(code, int):
        return "-"
    if code < 0:
        try:
            return f"{code} ({signal.Signals(-code).name})"
        except ValueError:
            return str(code)
    return str(code)


def print_status(platform: LocalPlatform) -> None:
    pid = platform.supervisor_pid()
    restart = platform.supervisor_state().get("restart")
    print(f"supervisor: {f'pid {pid}, restarts ' + ('on' if restart else 'off') if pid else 'not running'}"
          f"  (log {platform.log_file(SUPERVISOR)})")
    print(f"  {'process':<15} {'state':<9} {'pid':<8} {'ready':<6} {'port':<6} {'restarts':<9} last exit")
    for name, s in platform.status().items():
        print(f"  {name:<15} {s['state']!s:<9} {s['pid'] or '-'!s:<8} {'yes' if s['ready'] else 'no':<6} "
              f"{s['port']!s:<6} {s['restarts']!s:<9} {exit_text(s['last_exit'])}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="crm-platform", description="Run the CRM platform on this machine.")
    parser.add_argument("command", nargs="?", default="status", choices=["start", "stop", "status", "supervise"])
    parser.add_argument("names", nargs="*", help=argparse.SUPPRESS)
    parser.add_argument("--replicas", help="processes per service, e.g. customer=2,gateway=2 (CRM_REPLICAS)")
    parser.add_argument("--json", action="store_true", help="status as JSON")
    args = parser.parse_args(argv)
    if args.replicas:
        os.environ["CRM_REPLICAS"] = args.replicas
    run_dir = Path(config.setting("RUN_DIR", "run")).resolve()
    if args.command == "supervise":  # internal: what `start` launches
        from crm_runtime.logs import configure_logging

        configure_logging(SUPERVISOR)
        supervisor = Supervisor(run_dir, os.environ)
        supervisor.run(args.names or list(supervisor.children))
        return
    platform = LocalPlatform(run_dir)
    if args.command == "start":
        platform.migrate()
        platform.start()
        print_status(platform)
    elif args.command == "stop":
        platform.stop()
        print("stopped the supervisor and every platform process")
    elif args.json:
        print(json.dumps({"supervisor": platform.supervisor_pid(), "processes": platform.status()}, indent=2))
    else:
        print_status(platform)


if __name__ == "__main__":
    main()
