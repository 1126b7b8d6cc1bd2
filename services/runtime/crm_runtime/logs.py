"""Structured (JSON-lines) logs that carry the correlation id of the command being handled."""

from __future__ import annotations

import json
import logging
import os
import time

from crm_runtime.eventstore import current_metadata


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, correlation_id, error."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
            "correlation_id": current_metadata().correlation_id,
        }
        for key in ("origin", "position", "event_id", "count", "reason", "method", "path", "status", "duration_ms"):
            if hasattr(record, key):
                entry[key] = getattr(record, key)
        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(service: str) -> None:
    """JSON logs on stderr at LOG_LEVEL (default INFO)."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(os.environ.get("LOG_LEVEL", "INFO").upper())
    for noisy in ("kombu", "eventsourcing", "werkzeug"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # nameko logs each expected error (a 404, a 409) as a warning with a traceback; crashes stay errors.
    logging.getLogger("nameko").setLevel(logging.ERROR)
    # py-amqp warns about each basic.return that arrives while an RPC client closes its channel.
    logging.getLogger("amqp").setLevel(logging.ERROR)
