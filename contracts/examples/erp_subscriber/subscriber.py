"""Receive the CRM's events on your own queue (AMQP), each applied exactly once, in order per origin.

    python subscriber.py --amqp-url 'amqp://crm-subscriber-erp:...@127.0.0.1:5672/%2F' --queue subscriber.erp \
        --gateway http://127.0.0.1:8000 --token "$TOKEN" --ledger erp.sqlite

`crm-subscribers add` printed the URL, the queue and the token. The queue is durable and yours alone:
while this program is stopped, events wait there. The broker delivers at least once and keeps no order
across origins, so each event goes through the ledger: a duplicate is dropped, and an event whose
`previous` is ahead of what was applied (a gap: e.g. your queue was created after those events) first
pulls the missing ones from the replay feed. A message that cannot be applied is rejected into your
dead-letter queue (`subscriber.<name>.dead-letter`) rather than blocking the queue. Needs `amqp` (py-amqp).
"""

from __future__ import annotations

import argparse
import json
import logging
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

import amqp
from ledger import Ledger
from replay_client import catch_up

log = logging.getLogger("erp_subscriber")


def connect(url: str) -> amqp.Connection:
    """A py-amqp connection from an amqp:// URL."""
    parts = urlsplit(url)
    connection = amqp.Connection(f"{parts.hostname}:{parts.port or 5672}", userid=unquote(parts.username or ""),
                                 password=unquote(parts.password or ""),
                                 virtual_host=unquote(parts.path[1:]) if len(parts.path) > 1 else "/",
                                 heartbeat=30)
    connection.connect()
    return connection


class Subscriber:
    """Applies the envelopes of one queue through a ledger, filling gaps from the replay feed."""

    def __init__(self, ledger: Ledger, gateway: str, token: str, types: str | None = None) -> None:
        self.ledger = ledger
        self.gateway = gateway
        self.token = token
        self.types = types

    def handle(self, envelope: dict[str, Any]) -> None:
        if self.ledger.is_gap(envelope):
            pulled = catch_up(self.ledger, self.gateway, self.token, self.types)
            log.info("gap before %s.%s: pulled %d events from the replay feed", envelope["origin"],
                     envelope["position"], pulled)
        self.ledger.apply(envelope)  # a duplicate (or one the catch-up already applied) is dropped here

    def run(self, amqp_url: str, queue: str, stop: threading.Event) -> None:
        """Consume until `stop` is set; acknowledge each message only after the ledger committed it."""
        connection = connect(amqp_url)
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_size=0, prefetch_count=100, a_global=False)

            def on_message(message: amqp.Message) -> None:
                try:
                    self.handle(json.loads(message.body))
                except (ValueError, KeyError, TypeError) as error:  # not an envelope: park it, go on
                    log.error("rejecting a message into the dead-letter queue: %r", error)
                    channel.basic_reject(message.delivery_tag, requeue=False)
                    return
                channel.basic_ack(message.delivery_tag)

            channel.basic_consume(queue=queue, callback=on_message, no_ack=False)
            while not stop.is_set():
                try:
                    connection.drain_events(timeout=0.5)
                except TimeoutError:
                    continue
        finally:
            connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--amqp-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--gateway", required=True, help="for gaps: the replay feed")
    parser.add_argument("--token", required=True)
    parser.add_argument("--ledger", default="erp.sqlite")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO)
    ledger = Ledger(args.ledger)
    try:
        Subscriber(ledger, args.gateway, args.token).run(args.amqp_url, args.queue, threading.Event())
    except KeyboardInterrupt:
        pass
    finally:
        ledger.close()


if __name__ == "__main__":
    main()
