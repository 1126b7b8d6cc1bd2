"""`crm-admin`, the operator's tool: status, dead letters, rebuild and replay, idempotency, migrate, and the
platform-wide lag exporter. Entry point: crm_runtime.admin.cli:main."""
