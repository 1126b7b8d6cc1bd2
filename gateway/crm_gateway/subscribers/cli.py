"""`crm-subscribers` (also `python -m crm_gateway.subscribers`): provision ERP and SCM subscribers.

    crm-subscribers add erp --bind 'order.*' --bind 'customer.customer_registered' [--facts]
    crm-subscribers list
    crm-subscribers rotate erp
    crm-subscribers remove erp

`add` and `rotate` print the subscriber's secrets once (AMQP password and API token): nothing keeps them.
Reads the gateway's configuration: POSTGRES_* (the registry), CRM_JWT_SECRET (the tokens must verify at
the gateway), AMQP_URI (host, port and virtual host given to the subscriber), RABBITMQ_MANAGEMENT_*.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from typing import Any
from urllib.parse import quote, unquote, urlsplit

from crm_gateway.auth import EVENT_TYPES_PREFIX, EVENTS, FACTS, SUBSCRIBER_CLAIM, issue_token
from crm_gateway.routes.events import is_pattern
from crm_gateway.subscribers.broker import BrokerError, Management, Placement, UserExistsError, check_name
from crm_gateway.subscribers.registry import (
    Subscriber,
    SubscriberExistsError,
    SubscriberNotFoundError,
    SubscriberStore,
    store_from_environment,
)
from crm_runtime import config

DEFAULT_DAYS = 365


def token_for(subscriber: Subscriber, days: float) -> str:
    """The subscriber's API token: its event types (and facts, if granted), its current token id."""
    scopes = [EVENTS, *(EVENT_TYPES_PREFIX + pattern for pattern in subscriber.bindings)]
    if subscriber.facts:
        scopes.append(FACTS)
    return issue_token(f"subscriber:{subscriber.name}", scopes, int(days * 86400),
                       extra_claims={SUBSCRIBER_CLAIM: subscriber.name, "jti": subscriber.token_id})


def default_vhost() -> str:
    path = urlsplit(config.amqp_uri()).path
    return unquote(path[1:]) if len(path) > 1 else "/"


def amqp_url(user: str, password: str, vhost: str) -> str:
    """The URL the subscriber connects with: the platform's broker address, its own credentials."""
    broker = urlsplit(config.amqp_uri())
    return (f"{broker.scheme}://{quote(user, safe='')}:{quote(password, safe='')}@{broker.hostname}:"
            f"{broker.port or 5672}/{quote(vhost, safe='')}")


def details(subscriber: Subscriber, placement: Placement, token: str) -> dict[str, Any]:
    return {
        "name": subscriber.name,
        "amqp_url": amqp_url(placement.user, placement.password, placement.vhost),
        "user": placement.user,
        "vhost": placement.vhost,
        "queue": placement.queue,
        "dead_letter_queue": placement.dead_letter_queue,
        "exchange": "crm.events",
        "bindings": subscriber.bindings,
        "api_token": token,
        "facts": subscriber.facts,
    }


def show_secrets(found: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(found))
        return
    print(f"subscriber {found['name']}")
    print(f"  AMQP URL     {found['amqp_url']}")
    print(f"  queue        {found['queue']}  (dead letters: {found['dead_letter_queue']})")
    print(f"  bound to     {', '.join(found['bindings'])} on {found['exchange']}")
    print(f"  API token    {found['api_token']}")
    print(f"  scopes       replay feed GET /v1/events for those types{'; order facts' if found['facts'] else ''}")
    print("These secrets are shown once and kept nowhere: store them now (`rotate` issues new ones).")


def add(store: SubscriberStore, broker: Management, args: argparse.Namespace) -> int:
    check_name(args.name)
    bad = [pattern for pattern in args.bind if not is_pattern(pattern)]
    if bad:
        raise ValueError(f"not routing-key patterns (like order.* or customer.customer_registered): {bad}")
    subscriber = store.add(args.name, list(dict.fromkeys(args.bind)), args.facts, args.vhost or default_vhost())
    try:
        placement = broker.provision(subscriber.name, subscriber.bindings, subscriber.vhost)
    except UserExistsError:
        store.remove(subscriber.name)  # a user of that name that is not ours: left alone
        raise
    except Exception:
        store.remove(subscriber.name)  # nothing half-made stays behind
        with contextlib.suppress(BrokerError):
            broker.remove(subscriber.name, subscriber.vhost)
        raise
    show_secrets(details(subscriber, placement, token_for(subscriber, args.days)), args.json)
    return 0


def rotate(store: SubscriberStore, broker: Management, args: argparse.Namespace) -> int:
    subscriber = store.rotate(args.name)  # the old token is refused from now on
    password = broker.new_password(subscriber.name)
    placement = Placement(f"crm-subscriber-{subscriber.name}", password, subscriber.vhost,
                          f"subscriber.{subscriber.name}", f"subscriber.{subscriber.name}.dead-letter")
    show_secrets(details(subscriber, placement, token_for(subscriber, args.days)), args.json)
    return 0


def remove(store: SubscriberStore, broker: Management, args: argparse.Namespace) -> int:
    try:
        vhost = store.get(args.name).vhost
        store.remove(args.name)  # its token first: it stops working before anything else goes
    except SubscriberNotFoundError:
        vhost = args.vhost or default_vhost()  # a remove that failed half-way: finish it on the broker
        print(f"no subscriber {args.name} in the registry; removing its user and queues in {vhost} if any")
    broker.remove(check_name(args.name), vhost)
    print(f"removed subscriber {args.name}: its token, user and queues")
    return 0


def list_all(store: SubscriberStore, broker: Management, args: argparse.Namespace) -> int:
    rows: list[dict[str, Any]] = []
    for subscriber in store.all():
        depths = broker.queue_depths(subscriber.name, subscriber.vhost)
        rows.append({"name": subscriber.name, "bindings": subscriber.bindings, "facts": subscriber.facts,
                     "vhost": subscriber.vhost, "created_at": subscriber.created_at.isoformat(),
                     "rotated_at": subscriber.rotated_at.isoformat() if subscriber.rotated_at else None,
                     "waiting": depths})
    if args.json:
        print(json.dumps(rows))
    else:
        for row in rows:
            waiting = ", ".join(f"{queue}: {depth if depth is not None else 'missing'}"
                                for queue, depth in row["waiting"].items())
            print(f"{row['name']:<20} {', '.join(row['bindings']):<50} {waiting}")
        print(f"{len(rows)} subscriber(s)")
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="crm-subscribers", description=__doc__.split("\n\n")[0])
    commands = top.add_subparsers(dest="command", required=True)
    adding = commands.add_parser("add", help="provision a subscriber: user, queues, bindings, API token")
    adding.add_argument("name")
    adding.add_argument("--bind", action="append", required=True, metavar="PATTERN",
                        help="a routing key or pattern on crm.events, e.g. 'order.*' (repeatable)")
    adding.add_argument("--facts", action="store_true", help="the token may also send facts about orders")
    adding.add_argument("--vhost", help="the RabbitMQ virtual host (default: the one of AMQP_URI)")
    rotating = commands.add_parser("rotate", help="new password and token; the old ones stop working")
    rotating.add_argument("name")
    for command in (adding, rotating):
        command.add_argument("--days", type=float, default=DEFAULT_DAYS, help="the token's lifetime in days")
    removing = commands.add_parser("remove", help="revoke the token, delete the user and both queues")
    removing.add_argument("name")
    removing.add_argument("--vhost", help="where its queues are, if the registry no longer knows it")
    commands.add_parser("list", help="every subscriber, its bindings and what waits in its queues")
    for command in commands.choices.values():
        command.add_argument("--json", action="store_true", help="answer as JSON")
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    store = store_from_environment()
    broker = Management()
    run = {"add": add, "rotate": rotate, "remove": remove, "list": list_all}[args.command]
    try:
        return run(store, broker, args)
    except (ValueError, BrokerError) as exc:
        print(f"crm-subscribers: {exc}", file=sys.stderr)
        return 2
    except SubscriberExistsError as exc:
        print(f"crm-subscribers: a subscriber {exc} exists already", file=sys.stderr)
        return 1
    except SubscriberNotFoundError as exc:
        print(f"crm-subscribers: no subscriber {exc}", file=sys.stderr)
        return 1
    finally:
        store.close()


if __name__ == "__main__":
    sys.exit(main())
