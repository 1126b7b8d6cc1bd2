"""ERP and SCM as subscribers: `crm-subscribers add|list|remove|rotate` (cli.py).

Each subscriber gets, and shares with no one: a RabbitMQ user that may only read its own durable queue
and dead-letter queue (broker.py, through the management API), the queue bound on `crm.events` to the
routing keys it asked for, and an API token scoped to the same event types (and, if asked, to sending
facts about orders) whose id the gateway checks on every request (registry.py), so `remove` and
`rotate` revoke it alone.
"""
