"""crm_runtime: the plumbing every CRM service runs on, written once.

Importing it first makes psycopg 3 (eventsourcing's driver) cooperate with eventlet: its default wait
function would block the whole process under nameko (STACK.md).
"""

import os

os.environ.setdefault("PSYCOPG_WAIT_FUNC", "wait_select")
