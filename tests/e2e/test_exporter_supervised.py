"""`make run` runs the platform-wide lag exporter (`crm-admin exporter`) as one of its supervised
processes: `make status` lists it, its /metrics serves the lag, and a crash of it is restarted like any
other process. Driven through the `crm-platform` command with CRM_EXPORTER=on, as the Makefile drives
it, on a platform of this test's own."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import requests

from conftest import rabbit_vhost
from crm_runtime.platform import LocalPlatform, processes, service_addresses
from tests.e2e.conftest import E2E_OWN_PLATFORM_PORT
from tests.support.infrastructure import Infrastructure, drop_database
from tests.support.polling import eventually

CRM_PLATFORM = str(Path(sys.executable).parent / "crm-platform")
PORT = E2E_OWN_PLATFORM_PORT + 90
EXPORTER_PORT = PORT + 9


def test_the_exporter_is_a_process_of_the_platform_only_when_asked_for() -> None:
    assert "exporter" not in {p.name for p in processes({})}
    found = {p.name: p for p in processes({"CRM_EXPORTER": "on", "EXPORTER_PORT": "9499", "CRM_SERVICES": "customer"})}
    exporter = found["exporter"]
    assert (exporter.port, exporter.health_url) == (9499, "http://127.0.0.1:9499/metrics")
    assert exporter.command()[-5:] == ["exporter", "--address", "127.0.0.1", "--port", "9499"]
    assert list(found) == ["customer", "exporter"]
    assert "CRM_EXPORTER_URLS" not in service_addresses(list(found.values()), {})  # nobody calls it


def crm_platform(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([CRM_PLATFORM, *args], env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


@pytest.mark.e2e
def test_make_run_supervises_the_lag_exporter_and_make_status_shows_it(infra: Infrastructure, tmp_path: Path) -> None:
    dbname = f"crm_e2e_exporter_{os.getpid()}"
    with rabbit_vhost(infra, "crm_e2e_exporter") as vhost:
        env = {
            **os.environ, **infra.env(dbname), "AMQP_URI": vhost, "RUN_DIR": str(tmp_path),
            "GATEWAY_PORT": str(PORT), "SERVICE_BASE_PORT": str(PORT + 1), "CRM_SUPERVISOR_OWNER_PID": str(os.getpid()),
            "CRM_RESTART": "on", "CRM_SERVICES": "customer,customer360", "CRM_EXPORTER": "on",
            "EXPORTER_PORT": str(EXPORTER_PORT),
        }
        env.pop("CRM_REPLICAS", None)
        platform = LocalPlatform(tmp_path, env)
        try:
            crm_platform(env, "start")
            shown = crm_platform({k: v for k, v in env.items() if k != "CRM_EXPORTER"}, "status")  # `make status`
            (row,) = [line.split() for line in shown.splitlines() if line.split()[:1] == ["exporter"]]
            assert row[1:3] == ["running", str(platform.pid("exporter"))] and row[3:5] == ["yes", str(EXPORTER_PORT)]

            def lag() -> str:
                page = requests.get(f"http://127.0.0.1:{EXPORTER_PORT}/metrics", timeout=5).text
                assert 'crm_platform_relay_lag_events{origin="customer"}' in page, page  # read from PostgreSQL
                return page

            eventually(lag, timeout=30)
            first = platform.pid("exporter")
            platform.signal("exporter", signal.SIGKILL)  # a crash: the supervisor starts it again
            eventually(lambda: platform.restarts("exporter") == 1 and platform.ready("exporter"), timeout=30,
                       interval=0.3)
            assert platform.pid("exporter") != first
            lag()
        finally:
            crm_platform(env, "stop")
            drop_database(infra.postgres, dbname)
