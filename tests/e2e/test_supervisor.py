"""`make run` leaves a supervisor running: it restarts a crashed process with back-off, `make status`
counts the restarts, and `make stop` leaves nothing running. Driven through the `crm-platform` command,
as the Makefile drives it, on a platform of this test's own."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from conftest import rabbit_vhost
from crm_runtime.platform import LocalPlatform, process_alive, processes, replica_counts, restart_delay
from tests.e2e.conftest import E2E_OWN_PLATFORM_PORT
from tests.support.infrastructure import Infrastructure, drop_database
from tests.support.platforms import JWT_SECRET
from tests.support.polling import eventually

CRM_PLATFORM = str(Path(sys.executable).parent / "crm-platform")
#: The services this test runs: enough to see restarts, few enough for two cores.
SERVICES = "customer,customer360,gateway"


def test_the_restart_back_off_doubles_up_to_its_maximum() -> None:
    assert [restart_delay(n, 0.5, 30.0) for n in range(1, 10)] == [0.5, 1, 2, 4, 8, 16, 30, 30, 30]


def test_replicas_get_names_and_ports_of_their_own() -> None:
    found = processes({"CRM_REPLICAS": "customer=2, gateway=2", "GATEWAY_PORT": "9000", "SERVICE_BASE_PORT": "9100"})
    ports = {p.name: p.port for p in found}
    assert {"customer-1", "customer-2", "customer360", "gateway-1", "gateway-2"} <= set(ports)
    assert "customer" not in ports and "gateway" not in ports
    assert (ports["gateway-1"], ports["gateway-2"]) == (9000, 9001)
    assert ports["customer-2"] == ports["customer-1"] + 1
    assert len(set(ports.values())) == len(ports)
    assert all(p.service == p.name.rsplit("-", 1)[0] for p in found if p.name.endswith(("-1", "-2")))


def test_crm_services_runs_only_the_services_it_names() -> None:
    found = processes({"CRM_SERVICES": "gateway,customer", "CRM_REPLICAS": "customer=2", "SERVICE_BASE_PORT": "9100"})
    assert [(p.name, p.port) for p in found] == [("customer-1", 9100), ("customer-2", 9101), ("gateway", 8000)]
    with pytest.raises(ValueError, match="CRM_SERVICES"):
        processes({"CRM_SERVICES": "customer,nosuchservice"})


@pytest.mark.parametrize("spec", ["customer=0", "customer", "customer=two", "nosuchservice=2"])
def test_a_replica_count_that_makes_no_sense_is_refused(spec: str) -> None:
    with pytest.raises(ValueError, match="CRM_REPLICAS"):
        processes({"CRM_REPLICAS": spec})
    assert replica_counts("") == {}


def crm_platform(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([CRM_PLATFORM, *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def status(env: dict[str, str]) -> dict[str, Any]:
    return json.loads(crm_platform(env, "status", "--json"))


@pytest.mark.e2e
def test_the_supervisor_restarts_a_killed_process_and_stop_leaves_nothing_running(
    infra: Infrastructure, tmp_path: Path
) -> None:
    dbname = f"crm_e2e_supervisor_{os.getpid()}"
    with rabbit_vhost(infra, "crm_e2e_supervisor") as vhost:
        env = {
            **os.environ, **infra.env(dbname), "AMQP_URI": vhost, "RUN_DIR": str(tmp_path),
            "GATEWAY_PORT": str(E2E_OWN_PLATFORM_PORT + 50), "SERVICE_BASE_PORT": str(E2E_OWN_PLATFORM_PORT + 51),
            "CRM_JWT_SECRET": JWT_SECRET, "CRM_SUPERVISOR_OWNER_PID": str(os.getpid()), "CRM_RESTART": "on",
            "CRM_SERVICES": SERVICES,
        }
        env.pop("CRM_REPLICAS", None)
        platform = LocalPlatform(tmp_path, env)
        try:
            crm_platform(env, "start")  # migrates, starts the supervisor and every process, waits until ready
            supervisor = platform.supervisor_pid()

            def customer() -> dict[str, Any]:
                return status(env)["processes"]["customer"]

            assert supervisor is not None
            started = status(env)["processes"]
            assert all(p["state"] == "running" and p["ready"] for p in started.values())
            before = {name: p["restarts"] for name, p in started.items()}

            first = started["customer"]["pid"]
            platform.signal("customer", signal.SIGKILL)  # a crash
            restarted = eventually(lambda: (s := customer())["restarts"] == before["customer"] + 1 and s["ready"] and s,
                                   timeout=60, interval=0.5)
            assert restarted["pid"] != first and restarted["last_exit"] == -signal.SIGKILL
            assert restarted["state"] == "running"

            platform.signal("customer", signal.SIGKILL)  # crashes again soon after: it waits longer
            eventually(lambda: customer()["restarts"] == before["customer"] + 2, timeout=60, interval=0.5)
            delays = re.findall(r"customer exited with code -9 after [\d.]+s; restart \d+ in ([\d.]+)s",
                                platform.log_file("supervisor").read_text())
            assert delays == ["0.5", "1.0"]  # a process that crashes again soon waits longer
            after = {name: p["restarts"] for name, p in status(env)["processes"].items()}
            assert after == {**before, "customer": before["customer"] + 2}
            children = [p["pid"] for p in status(env)["processes"].values() if p["pid"]]
            assert len(children) == len(started)
        finally:
            crm_platform(env, "stop")
            drop_database(infra.postgres, dbname)

    assert not process_alive(supervisor)
    for pid in (first, *children):
        with pytest.raises(ProcessLookupError):
            os.killpg(pid, 0)  # neither the process nor anything it started is left
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{name}.log" for name in [*started, "supervisor"])
    assert status(env)["supervisor"] is None
