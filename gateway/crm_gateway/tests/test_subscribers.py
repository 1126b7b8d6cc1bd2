"""`crm-subscribers` against the real broker and database: a subscriber gets its own user, durable queue
(bound to what it asked for) and dead-letter queue, and an API token whose id the registry holds; it
can read its own queues and nothing else — publishing to crm.events, declaring an exchange or a queue,
and reading another subscriber's queue are each refused by RabbitMQ; `rotate` and `remove` revoke.

Real: RabbitMQ (a virtual host of this module's own, deleted afterwards, with every user the tests
create), its management API, PostgreSQL (the gateway's schema in this session's database).
"""

from __future__ import annotations

import contextlib
import json
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import amqp
import amqp.exceptions
import pytest
import requests

from crm_contracts.envelope import EXCHANGE
from crm_gateway import auth
from crm_gateway.auth import SUBSCRIBER_CLAIM
from crm_gateway.subscribers import cli
from crm_gateway.subscribers.broker import Management, user_of
from crm_gateway.subscribers.registry import store_from_environment
from crm_gateway.tests.conftest import SECRET
from crm_runtime.migrate import migrate
from tests.support.infrastructure import rabbit_vhost
from tests.support.polling import eventually

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


@pytest.fixture(scope="module")
def vhost_uri(infra) -> Iterator[str]:
    with rabbit_vhost(infra, "crm_subscribers") as uri:
        yield uri


@pytest.fixture
def environment(test_database, vhost_uri, infra, monkeypatch) -> dict[str, str]:
    """The CLI's configuration: this session's database (gateway schema migrated), the test vhost."""
    for name, value in test_database.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AMQP_URI", vhost_uri)
    monkeypatch.setenv("RABBITMQ_MANAGEMENT_URL", infra.rabbit_management_uri)
    monkeypatch.setenv("CRM_JWT_SECRET", SECRET)
    migrate(["gateway"])
    return {"vhost": urlsplit(vhost_uri).path[1:]}


@pytest.fixture
def run(environment, capsys) -> Iterator[Any]:
    """Runs `crm-subscribers ...` in this process; answers (exit code, parsed JSON or text). Every user
    the test created is deleted afterwards, whatever happened."""
    created: list[str] = []

    def invoke(*argv: str) -> tuple[int, Any]:
        if argv[0] == "add":
            created.append(argv[1])
        code = cli.main(list(argv))
        out = capsys.readouterr().out
        try:
            return code, json.loads(out)
        except ValueError:
            return code, out

    yield invoke
    broker = Management()
    store = store_from_environment()
    for name in created:
        store.remove(name)
        with contextlib.suppress(ValueError):  # a name the CLI refused made nothing
            broker.remove(name, environment["vhost"])
    store.close()


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def connect(details: dict[str, Any], **options: Any) -> amqp.Connection:
    url = urlsplit(details["amqp_url"])
    connection = amqp.Connection(f"{url.hostname}:{url.port}", userid=details["user"],
                                 password=requests.utils.unquote(url.password), virtual_host=details["vhost"],
                                 **options)
    connection.connect()
    return connection


@pytest.fixture
def platform_channel(vhost_uri) -> Iterator[Any]:
    """The platform's side (guest): publishes to crm.events as a relay does."""
    url = urlsplit(vhost_uri)
    connection = amqp.Connection(f"{url.hostname}:{url.port or 5672}", userid=url.username, password=url.password,
                                 virtual_host=requests.utils.unquote(url.path[1:]))
    connection.connect()
    channel = connection.channel()
    channel.confirm_select()
    yield channel
    connection.close()


def publish(channel: Any, routing_key: str, body: dict[str, Any]) -> None:
    channel.basic_publish(amqp.Message(json.dumps(body), content_type="application/json", delivery_mode=2),
                          exchange=EXCHANGE, routing_key=routing_key)


def get(channel: Any, queue: str) -> Any:
    return channel.basic_get(queue=queue, no_ack=False)


def test_add_gives_a_queue_bound_to_what_was_asked_and_a_token_for_the_same(run, platform_channel):
    name = unique("erp")
    code, details = run("add", name, "--bind", "order.*", "--bind", "customer.customer_registered", "--json")
    assert code == 0
    assert details["queue"] == f"subscriber.{name}" and details["user"] == user_of(name)
    publish(platform_channel, "order.order_paid", {"n": 1})
    publish(platform_channel, "marketing.lead_captured", {"n": 2})
    publish(platform_channel, "customer.customer_registered", {"n": 3})
    publish(platform_channel, "customer.customer_graded", {"n": 4})

    connection = connect(details)
    try:
        channel = connection.channel()
        received = []
        while (message := get(channel, details["queue"])) is not None:
            received.append(json.loads(message.body)["n"])
            channel.basic_ack(message.delivery_tag)
        assert received == [1, 3]
    finally:
        connection.close()

    claims = auth._verified(details["api_token"], SECRET, auth.token_rules())
    assert claims.scopes == {"crm:events", "events:order.*", "events:customer.customer_registered"}
    assert claims.subscriber_token is not None
    assert store_from_environment().token_is_current(*claims.subscriber_token)


def test_a_rejected_message_goes_to_the_subscribers_own_dead_letter_queue(run, platform_channel):
    code, details = run("add", unique("scm"), "--bind", "order.order_shipped", "--json")
    publish(platform_channel, "order.order_shipped", {"n": 1})
    connection = connect(details)
    try:
        channel = connection.channel()
        message = get(channel, details["queue"])
        channel.basic_reject(message.delivery_tag, requeue=False)
        dead = eventually(lambda: get(channel, details["dead_letter_queue"]))  # dead-lettering is asynchronous
        assert json.loads(dead.body) == {"n": 1}
        assert dead.headers["x-death"][0]["queue"] == details["queue"]
    finally:
        connection.close()


@pytest.mark.parametrize(("attempt", "refusal"), [
    ("publish to crm.events", "access to exchange 'crm.events'"),
    ("declare an exchange", "access to exchange 'mine'"),
    ("declare a queue", "access to queue 'mine'"),
    ("read another subscriber's queue", "access to queue 'subscriber.wms-"),
    ("delete its own queue", "access to queue 'subscriber.erp-"),
])
def test_a_subscriber_can_do_nothing_but_read_its_own_queues(run, attempt, refusal):
    code, mine = run("add", unique("erp"), "--bind", "order.*", "--json")
    code, other = run("add", unique("wms"), "--bind", "order.*", "--json")
    connection = connect(mine, confirm_publish=True)  # a publish waits for the broker's answer
    try:
        channel = connection.channel()
        channel.queue_declare(mine["queue"], passive=True)  # what it may do: look at its own queue
        with pytest.raises(amqp.exceptions.AccessRefused) as refused:
            if attempt == "publish to crm.events":
                publish(channel, "order.order_paid", {"forged": True})
            elif attempt == "declare an exchange":
                channel.exchange_declare("mine", "topic", durable=True, auto_delete=False)
            elif attempt == "declare a queue":
                channel.queue_declare("mine", durable=True, auto_delete=False)
            elif attempt == "read another subscriber's queue":
                channel.basic_get(queue=other["queue"])
            else:
                channel.queue_delete(mine["queue"])
        assert refusal in str(refused.value)
    finally:
        connection.close()


def test_rotate_replaces_password_and_token_and_remove_revokes_everything(run, environment):
    name = unique("erp")
    code, first = run("add", name, "--bind", "order.*", "--json")
    old_token = auth._verified(first["api_token"], SECRET, auth.token_rules()).subscriber_token
    code, second = run("rotate", name, "--json")
    assert code == 0
    new_token = auth._verified(second["api_token"], SECRET, auth.token_rules()).subscriber_token
    store = store_from_environment()
    assert not store.token_is_current(*old_token) and store.token_is_current(*new_token)
    with pytest.raises(amqp.exceptions.AccessRefused):
        connect(first)
    connect(second).close()

    code, listed = run("list", "--json")
    assert [row["bindings"] for row in listed if row["name"] == name] == [["order.*"]]

    code, _ = run("remove", name)
    assert code == 0 and not store.token_is_current(*new_token)
    with pytest.raises(amqp.exceptions.AccessRefused):
        connect(second)
    depths = Management().queue_depths(name, environment["vhost"])
    assert depths == {f"subscriber.{name}": None, f"subscriber.{name}.dead-letter": None}


def test_names_and_patterns_are_checked_and_a_taken_name_is_refused(run):
    assert run("add", "Bad Name", "--bind", "order.*")[0] == 2
    assert run("add", unique("erp"), "--bind", "order..x")[0] == 2
    name = unique("erp")
    assert run("add", name, "--bind", "order.*", "--json")[0] == 0
    assert run("add", name, "--bind", "order.*")[0] == 1
    assert run("rotate", unique("nobody"))[0] == 1


def test_the_token_claims_name_the_subscriber(run):
    name = unique("erp")
    code, details = run("add", name, "--bind", "order.*", "--facts", "--json")
    import jwt

    claims = jwt.decode(details["api_token"], SECRET, algorithms=["HS256"])
    assert claims[SUBSCRIBER_CLAIM] == name and claims["jti"] and "crm:facts" in claims["scope"].split()


def test_remove_finishes_on_the_broker_what_the_registry_no_longer_knows(run, environment):
    name = unique("erp")
    code, details = run("add", name, "--bind", "order.*", "--json")
    store_from_environment().remove(name)  # as if a remove had stopped half-way
    assert run("add", name, "--bind", "order.*")[0] == 2  # the user is still there: not taken over
    code, _ = run("remove", name, "--vhost", environment["vhost"])
    assert code == 0
    with pytest.raises(amqp.exceptions.AccessRefused):
        connect(details)
    assert Management().queue_depths(name, environment["vhost"])[details["queue"]] is None
