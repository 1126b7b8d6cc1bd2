"""Chaos level: outages played by a TCP proxy in front of the shared RabbitMQ and PostgreSQL.

The proxy is this test's own; the servers behind it are never stopped. Reuses the integration
fixtures (a customer application, a relay, a probe queue)."""

from tests.integration.conftest import customers, probe, read_schema, relay, running  # noqa: F401
