"""End-to-end level: the platform's real processes, started the way `make run` starts them (under
crm_runtime.platform's supervisor), driven only over HTTP through the gateway.

Real: every process, RabbitMQ, PostgreSQL. Isolated: each platform has a database, a RabbitMQ virtual
host, ports and a run directory of its own, so a running `make run` is never touched. The shared
platform runs with restarts off (CRM_RESTART=off), so a test that SIGKILLs a process decides when it
comes back; tests that want the supervisor's restarts or replicas start a platform of their own
(tests.support.platforms.platform_of_its_own). Tests may look into the database or broker to check an
effect, and may kill processes; they never call a service directly to cause one.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import rabbit_vhost
from tests.support.infrastructure import Infrastructure
from tests.support.platforms import RunningPlatform, platform_of_its_own

E2E_GATEWAY_PORT = int(os.environ.get("CRM_E2E_GATEWAY_PORT", "18000"))
E2E_SERVICE_BASE_PORT = int(os.environ.get("CRM_E2E_SERVICE_BASE_PORT", "18101"))
#: The services of the shared platform (CRM_SERVICES): those these tests drive. Every registered one
#: (CRM_E2E_SERVICES=all, as `make run`) holds ~40 PostgreSQL connections even when idle, and beside
#: the chaos platform that exhausts a server's 100 ("too many clients").
E2E_SERVICES = os.environ.get("CRM_E2E_SERVICES", "customer,customer360,gateway").replace("all", "")
#: Ports of the platforms some tests start for themselves (replicas, supervisor restarts).
E2E_OWN_PLATFORM_PORT = int(os.environ.get("CRM_E2E_OWN_PLATFORM_PORT", "18200"))


@pytest.fixture(scope="session")
def e2e_vhost(infra: Infrastructure) -> Iterator[str]:
    """The platform's own virtual host: what other tests publish never reaches its queues."""
    with rabbit_vhost(infra, "crm_e2e") as uri:
        yield uri


@pytest.fixture(scope="session")
def running_platform(infra: Infrastructure, e2e_vhost: str, tmp_path_factory: pytest.TempPathFactory
                     ) -> Iterator[RunningPlatform]:
    """One platform shared by the session's tests, one process per service, restarts off."""
    with platform_of_its_own(
        infra, Path(tmp_path_factory.mktemp("platform")), label="e2e", amqp_uri=e2e_vhost,
        gateway_port=E2E_GATEWAY_PORT, service_base_port=E2E_SERVICE_BASE_PORT,
        settings={"CRM_RESTART": "off", "CRM_SERVICES": E2E_SERVICES}, timeout=90,
    ) as running:
        yield running
