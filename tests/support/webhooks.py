"""Webhook test support: a receiver's HTTP server on loopback and a schema holding the gateway's tables."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg2

from crm_gateway.migration import create_tables
from tests.support.databases import dsn


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that logs nothing to stderr."""

    def log_message(self, *args: Any) -> None:
        pass


class LoopbackServer:
    """An HTTP server on a free loopback port, serving `handler` on a daemon thread; POST to `url`."""

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def migrated_gateway_dsn(test_database: dict[str, str], schema: str) -> str:
    """The DSN of `schema` after the gateway's own migration (crm_gateway.migration) created its tables there."""
    conn = psycopg2.connect(dsn(test_database, schema))
    with conn, conn.cursor() as cur:
        create_tables(cur)
    conn.close()
    return dsn(test_database, schema)
