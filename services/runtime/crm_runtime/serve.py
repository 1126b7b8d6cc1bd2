"""`crm-serve module:ServiceClass`: run one nameko service with configuration from the environment.

Environment: AMQP_URI, WEB_SERVER_ADDRESS (health and HTTP entrypoints, default 0.0.0.0:8000),
MAX_WORKERS (concurrent workers, default 50), LOG_LEVEL, and the PostgreSQL settings of crm_runtime.
"""

from __future__ import annotations

import warnings

# eventlet warns on import that it is in bugfix mode (STACK.md); said once in the README, not per process.
warnings.filterwarnings("ignore", message=".*Eventlet is deprecated.*")

import eventlet  # noqa: E402

eventlet.monkey_patch()  # before anything imports socket, threading or a driver

import importlib  # noqa: E402
import logging  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
from typing import Any  # noqa: E402

from nameko.runners import ServiceRunner  # noqa: E402

from crm_runtime import config  # noqa: E402
from crm_runtime.logs import configure_logging  # noqa: E402

log = logging.getLogger("crm_runtime.serve")


def nameko_config() -> dict[str, Any]:
    """The nameko configuration of a service process, from the environment."""
    max_workers = int(config.setting("MAX_WORKERS", "50"))
    return {
        "AMQP_URI": config.amqp_uri(),
        "WEB_SERVER_ADDRESS": config.setting("WEB_SERVER_ADDRESS", "0.0.0.0:8000"),
        "max_workers": max_workers,
        "parallelism": max_workers,
        "serializer": "json",
        "HEARTBEAT": int(config.setting("AMQP_HEARTBEAT", "60")),
    }


def load_service(target: str) -> Any:
    module_name, _, class_name = target.partition(":")
    if not class_name:
        raise SystemExit(f"crm-serve: give the service as module:Class, not {target!r}")
    return getattr(importlib.import_module(module_name), class_name)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        raise SystemExit("usage: crm-serve module:ServiceClass   (e.g. crm_customer.service:CustomerService)")
    service_class = load_service(args[0])
    configure_logging(service_class.name)
    cfg = nameko_config()
    runner = ServiceRunner(cfg)
    runner.add_service(service_class)

    def shutdown(signum: int, frame: Any) -> None:
        log.info("stopping %s (signal %d)", service_class.name, signum)
        eventlet.spawn_n(runner.stop)

    signal.signal(signal.SIGTERM, shutdown)
    signal.signal(signal.SIGINT, shutdown)
    runner.start()
    log.info("%s started; health on http://%s/health/ready", service_class.name, cfg["WEB_SERVER_ADDRESS"])
    runner.wait()


if __name__ == "__main__":
    main()
