"""Structural checks of docker-compose.yml, deploy/k8s/, the RabbitMQ and PostgreSQL set-up and the
Dockerfile. No Docker engine runs here, so these files are kept correct by reading: these tests read
them the way the tools would and check what would break a real start (a probe on a port nobody
declares, a setting the code reads that nobody sets, a schema nobody migrates, a password that does
not match its role, a broker permission that forbids a queue the code declares...).
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import shlex
import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import pytest
import yaml

from crm_contracts.envelope import DEAD_LETTER_EXCHANGE, EXCHANGE

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
DEFINITIONS = DEPLOY / "rabbitmq" / "definitions.json"
RABBITMQ_CONF = DEPLOY / "rabbitmq" / "rabbitmq.conf"
INIT_SQL = DEPLOY / "postgres" / "init.sql"

#: Settings that every service process reads (crm_runtime.serve and the inbox), besides config.py's.
PLATFORM_SETTINGS = {"WEB_SERVER_ADDRESS", "MAX_WORKERS", "LOG_LEVEL", "QUEUE_TYPE", "CREATE_TABLE"}

#: The six bounded contexts (ARCHITECTURE.md). Each is deployed alike: its own image, compose service,
#: PostgreSQL role owning the schema named after it, RabbitMQ user, Deployment, Service, budget.
SERVICES = ("customer", "marketing", "sales", "order", "service", "loyalty")

#: Every long-running process deployed: the six services, the read side and the HTTP API. Every test
#: below that is about one process runs once for each of these, whatever the deploy files contain.
PROCESSES = (*SERVICES, "customer360", "gateway")

#: What each process does on the broker besides RPC, as deployed (ARCHITECTURE.md, guarantees 2 and 4;
#: issue 7): who publishes to crm.events through an outbox relay, and who consumes its own durable
#: queue `<name>.events` (policies, projections), with a dead-letter queue on crm.dead-letter. The
#: broker permissions are checked against this table and against what the code shows, whichever asks more.
PUBLISHERS = frozenset(SERVICES)
CONSUMERS = frozenset({*SERVICES, "customer360"})


# --- what the code reads --------------------------------------------------------------------------


def _source(paths: list[Path]) -> str:
    return "\n".join(p.read_text() for p in paths)


def _code_files(*dirs: str) -> list[Path]:
    files = []
    for d in dirs:
        files += [p for p in (ROOT / d).rglob("*.py") if "tests" not in p.relative_to(ROOT).parts]
    return files


_READ = re.compile(r"""(?:setting|environ\.get|getenv|environ\.setdefault)\(\s*["']([A-Z][A-Z0-9_]*)["']""")


def names_read(paths: list[Path]) -> set[str]:
    return set(_READ.findall(_source(paths)))


@cache
def config_settings() -> frozenset[str]:
    """The connection settings of crm_runtime.config (AMQP_URI, POSTGRES_*)."""
    return frozenset(names_read([ROOT / "services/runtime/crm_runtime/config.py"]))


@cache
def gateway_secrets() -> frozenset[str]:
    """Settings the gateway reads straight from os.environ (no default worth running with)."""
    return frozenset(
        re.findall(
            r"""os\.environ\.get\(\s*["']([A-Z][A-Z0-9_]*)["']\s*\)""", _source(_code_files("gateway/crm_gateway"))
        )
    )


@cache
def known_names() -> frozenset[str]:
    """Every environment name the code could read: anything set in a deploy file must be one (typos)."""
    code = _source(_code_files("contracts", "services", "gateway"))
    upper_literals = re.findall(r"""["']([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+)["']""", code)
    # Each service's addresses (crm_runtime.nameko.client.service_urls): a name built per service.
    addresses = {f"CRM_{name.upper()}_URLS" for name in PROCESSES} if "CRM_{service.upper()}_URLS" in code else set()
    return frozenset(names_read(_code_files("contracts", "services", "gateway")) | set(upper_literals) | addresses)


def required_settings(service: str) -> set[str]:
    needed = set(config_settings()) | PLATFORM_SETTINGS
    if service == "gateway":
        needed |= set(gateway_secrets())
    return needed


def test_the_code_is_read_as_expected() -> None:
    # If these fail, the regexes above no longer see the code, and the checks below would pass vacuously.
    assert {
        "AMQP_URI",
        "POSTGRES_HOST",
        "POSTGRES_PORT",
        "POSTGRES_DBNAME",
        "POSTGRES_USER",
        "POSTGRES_PASSWORD",
    } <= config_settings()
    assert "CRM_JWT_SECRET" in gateway_secrets()
    assert PLATFORM_SETTINGS <= known_names()


# --- packages, entry points, served classes ---------------------------------------------------------


def pyproject(package_dir: str) -> dict[str, Any]:
    import tomllib

    return tomllib.loads((ROOT / package_dir / "pyproject.toml").read_text())


def package_dir_of_module(module: str) -> str:
    top = module.split(".")[0]
    found = [p.parent for p in ROOT.glob("**/pyproject.toml") if (p.parent / top).is_dir() and ".venv" not in p.parts]
    assert len(found) == 1, f"no single package holds {top}: {found}"
    return found[0].relative_to(ROOT).as_posix()


def served_class_file(target: str) -> Path:
    """`module:Class` given to crm-serve -> the module's file, after checking the class is in it."""
    module, _, cls = target.partition(":")
    assert cls, f"crm-serve needs module:Class, not {target!r}"
    path = ROOT / package_dir_of_module(module) / (module.replace(".", "/") + ".py")
    assert path.is_file(), f"{target}: no {path}"
    assert re.search(rf"^class {re.escape(cls)}\b", path.read_text(), re.M), f"{target}: no class {cls} in {path}"
    return path


def service_name_of(target: str) -> str:
    """The nameko service name (`name = "..."`) of the class crm-serve runs."""
    text = served_class_file(target).read_text()
    cls = target.partition(":")[2]
    body = text[text.index(f"class {cls}") :]
    match = re.search(r"""^\s+name\s*=\s*["']([\w-]+)["']""", body, re.M)
    assert match, f"{target}: no nameko `name`"
    return match.group(1)


def entry_points_of(package_dir: str, group: str) -> dict[str, str]:
    return dict(pyproject(package_dir).get("project", {}).get("entry-points", {}).get(group, {}))


def migrations_of(package_dir: str) -> set[str]:
    return set(entry_points_of(package_dir, "crm.migrations"))


def package_dirs() -> list[str]:
    """Every local package (a directory with a pyproject.toml), outside the virtualenv."""
    return sorted(
        p.parent.relative_to(ROOT).as_posix()
        for pattern in ("*/pyproject.toml", "services/*/pyproject.toml")
        for p in ROOT.glob(pattern)
    )


@cache
def registered_services() -> dict[str, str]:
    """The `crm.services` entry points of every package (what `make run` starts): name -> module:Class."""
    found: dict[str, str] = {}
    for package in package_dirs():
        for name, target in entry_points_of(package, "crm.services").items():
            assert name not in found, f"crm.services {name} registered twice"
            found[name] = target
    return found


def require_written(name: str, target: str) -> None:
    """Skip a check that reads a service's code while that service is still being written.

    A service counts as written once its package registers it under `crm.services`; from then on its
    module must hold the class the deploy files run, or the checks fail. Until then (issue 7: the five
    domain libraries are becoming nameko services) the deploy files are checked against the tables
    above only.
    """
    if name not in registered_services():
        module = target.partition(":")[0]
        pytest.skip(f"{name}: {module} is not registered under crm.services yet (being written)")


def local_deps(package_dir: str) -> set[str]:
    """The crm-* distributions a package depends on (extras stripped)."""
    deps = pyproject(package_dir)["project"].get("dependencies", [])
    return {re.split(r"[\[<>=!~ ;]", d, maxsplit=1)[0] for d in deps if d.startswith("crm-")}


def dist_name(package_dir: str) -> str:
    return pyproject(package_dir)["project"]["name"]


# --- compose -----------------------------------------------------------------------------------------


@cache
def compose() -> dict[str, Any]:
    docs = list(yaml.safe_load_all(COMPOSE.read_text()))
    assert len(docs) == 1
    return docs[0]


def compose_services() -> dict[str, Any]:
    return compose()["services"]


def compose_apps() -> dict[str, Any]:
    """The platform's own long-running processes: those that run `crm-serve`."""
    return {name: svc for name, svc in compose_services().items() if (svc.get("command") or [None])[0] == "crm-serve"}


def compose_app(name: str) -> dict[str, Any]:
    apps = compose_apps()
    assert name in apps, f"docker-compose.yml runs no `crm-serve` service {name}"
    return apps[name]


def test_compose_runs_the_platform() -> None:
    services = compose_services()
    assert {"rabbitmq", "postgres", "migrate"} <= set(services)
    assert sorted(compose_apps()) == sorted(PROCESSES)
    assert services["rabbitmq"]["image"].startswith("rabbitmq:3.10-management")
    assert services["postgres"]["image"].split(":")[1].startswith("15")


def test_every_compose_service_is_healthchecked_and_restarts() -> None:
    for name, svc in compose_services().items():
        if name == "migrate":
            assert svc.get("restart", "no") == "no", "a one-shot must not restart forever"
            continue
        check = svc.get("healthcheck")
        assert check and check.get("test") and not check.get("disable"), f"{name}: no healthcheck"
        assert svc.get("restart") in {"always", "unless-stopped", "on-failure"}, f"{name}: no restart policy"


def test_depends_on_conditions_can_be_met() -> None:
    services = compose_services()
    for name, svc in services.items():
        for target, cond in (svc.get("depends_on") or {}).items():
            assert target in services, f"{name} depends on unknown {target}"
            condition = cond["condition"]
            if condition == "service_healthy":
                assert services[target].get("healthcheck"), f"{name} waits for {target} to be healthy: no check"
            elif condition == "service_completed_successfully":
                assert target == "migrate", f"{name}: only the one-shot migrate completes"
            else:
                pytest.fail(f"{name} -> {target}: use service_healthy or service_completed_successfully")


def test_every_registered_service_is_deployed_as_it_is_registered() -> None:
    # `make run` starts what crm.services registers; compose and Kubernetes must run the same classes.
    registered = registered_services()
    assert set(registered) <= set(PROCESSES), f"registered but never deployed: {set(registered) - set(PROCESSES)}"
    for name, target in registered.items():
        assert compose_app(name)["command"] == ["crm-serve", target], f"{name}: compose runs another class"


@pytest.mark.parametrize("name", PROCESSES)
def test_every_app_starts_after_migrate_broker_and_database(name: str) -> None:
    deps = compose_app(name)["depends_on"]
    assert deps["migrate"]["condition"] == "service_completed_successfully"
    assert deps["rabbitmq"]["condition"] == "service_healthy"
    assert deps["postgres"]["condition"] == "service_healthy"


def web_port(env: dict[str, Any]) -> int:
    return int(str(env["WEB_SERVER_ADDRESS"]).rpartition(":")[2])


@pytest.mark.parametrize("name", PROCESSES)
def test_app_healthcheck_asks_readiness_on_its_own_port(name: str) -> None:
    svc = compose_app(name)
    test = svc["healthcheck"]["test"]
    assert test[0] in {"CMD", "CMD-SHELL"}
    text = " ".join(test[1:])
    assert "curl" not in text and "wget" not in text, "python:3.11-slim has neither"
    assert text.split()[0] == "python"
    assert f"127.0.0.1:{web_port(svc['environment'])}/health/ready" in text


@pytest.mark.parametrize("name", PROCESSES)
def test_app_environment_is_complete(name: str) -> None:
    env = compose_app(name)["environment"]
    assert isinstance(env, dict), "environment as a mapping (the shared anchor is merged into it)"
    missing = required_settings(name) - set(env)
    assert not missing, f"{name}: the code reads {sorted(missing)}, compose does not set them"
    unknown = set(env) - known_names()
    assert not unknown, f"{name}: {sorted(unknown)} are read by no code (typo?)"
    assert str(env["CREATE_TABLE"]).lower() == "false"
    assert env["POSTGRES_HOST"] == "postgres"
    assert urlsplit(env["AMQP_URI"]).hostname == "rabbitmq"


@pytest.mark.parametrize("name", PROCESSES)
def test_app_image_holds_what_it_runs(name: str) -> None:
    svc = compose_app(name)
    target = svc["command"][1]
    args = svc["build"]["args"]
    packages = args["PACKAGES"].split()
    assert package_dir_of_module(target.split(":")[0]) in packages
    assert args.get("SERVICE") == target
    assert svc["image"].split(":")[0] == f"crm/{name}"
    check_package_closure(packages)
    require_written(name, target)
    assert service_name_of(target) == name, "compose service named after the nameko service"


def check_package_closure(packages: list[str]) -> None:
    for p in packages:
        assert (ROOT / p / "pyproject.toml").is_file(), f"PACKAGES: {p} is not a package"
    present = {dist_name(p) for p in packages}
    for p in packages:
        missing = local_deps(p) - present
        assert not missing, f"{p} needs {sorted(missing)}, not in PACKAGES {packages}"


def test_compose_builds_from_the_repository_root() -> None:
    for svc in compose_services().values():
        if "build" in svc:
            assert svc["build"]["context"] == "."
            assert (ROOT / svc["build"]["dockerfile"]) == DOCKERFILE
            check_package_closure(svc["build"]["args"]["PACKAGES"].split())
    published = compose_app("gateway")["ports"]
    assert any(str(p).endswith(":8000") for p in published)


def schemas_by_service() -> dict[str, set[str]]:
    """The schemas each deployed process owns: the one named after it, the only one its package may
    register for crm-migrate (test_each_package_migrates_its_own_schema_only)."""
    return {name: {name} for name in PROCESSES}


def package_of(name: str) -> str:
    return package_dir_of_module(compose_app(name)["command"][1].split(":")[0])


@pytest.mark.parametrize("name", PROCESSES)
def test_each_package_migrates_its_own_schema_only(name: str) -> None:
    registered = migrations_of(package_of(name))
    assert registered <= schemas_by_service()[name], f"{name} registers {sorted(registered)}: one role, one schema"
    if name in registered_services():
        assert registered == schemas_by_service()[name], f"{name} runs but registers no migration"


def test_compose_migrate_creates_every_schema_as_its_owner() -> None:
    migrate = compose_services()["migrate"]
    packages = migrate["build"]["args"]["PACKAGES"].split()
    registered = set().union(*(migrations_of(p) for p in packages))
    script = " ".join(migrate.get("entrypoint") or []) + "\n" + "\n".join(migrate["command"])
    runs = {}
    for line in script.splitlines():
        words = shlex.split(line) if "crm-migrate" in line else []
        if words:
            env = dict(w.split("=", 1) for w in words if "=" in w and not w.startswith("-"))
            schemas = words[words.index("crm-migrate") + 1 :]
            assert schemas, "crm-migrate with no schema migrates everything as one role"
            for schema in schemas:
                runs[schema] = env
    for name, owned in schemas_by_service().items():
        app_env = compose_app(name)["environment"]
        assert package_of(name) in packages, f"migrate's image lacks {package_of(name)}"
        for schema in owned:
            if migrations_of(package_of(name)):  # a service still being written registers none yet
                assert schema in registered, f"migrate's image lacks the package that registers {schema}"
            assert schema in runs, f"schema {schema} of {name} is never migrated"
            assert runs[schema].get("POSTGRES_USER") == app_env["POSTGRES_USER"], f"{schema}: wrong role"
            assert runs[schema].get("POSTGRES_PASSWORD") == app_env["POSTGRES_PASSWORD"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    for key in ("POSTGRES_HOST", "POSTGRES_PORT", "POSTGRES_DBNAME"):
        assert migrate["environment"][key] == compose_app("customer")["environment"][key]


# --- PostgreSQL and RabbitMQ set-up --------------------------------------------------------------------


#: PostgreSQL's reserved key words, and those that may name a function or type only: as a role or
#: schema name they must be quoted (`order` is one). From the SQL Key Words appendix of the manual.
PG_RESERVED = frozenset(
    """all analyse analyze and any array as asc asymmetric both case cast check collate column constraint
    create current_catalog current_date current_role current_time current_timestamp current_user default
    deferrable desc distinct do else end except false fetch for foreign from grant group having in initially
    intersect into lateral leading limit localtime localtimestamp not null offset on only or order placing
    primary references returning select session_user some symmetric system_user table then to trailing true
    union unique user using variadic when where window with authorization binary collation concurrently
    cross current_schema freeze full ilike inner is isnull join left like natural notnull outer overlaps
    right similar tablesample verbose""".split()
)


def sql_ident(name: str) -> str:
    """`name` as init.sql must write it: quoted when it is a reserved word."""
    return f'"{name}"' if name in PG_RESERVED else name


def init_sql_statements() -> list[str]:
    """init.sql's statements, comments and the DO $$ ... $$ guard removed, whitespace collapsed."""
    text = re.sub(r"--[^\n]*", "", INIT_SQL.read_text())
    text = re.sub(r"DO \$\$.*?\$\$;", "", text, flags=re.S)
    return [" ".join(s.split()) for s in text.split(";") if s.strip()]


def test_postgres_runs_init_sql_before_it_is_healthy() -> None:
    postgres = compose_services()["postgres"]
    assert any(v.startswith("./deploy/postgres/init.sql:/docker-entrypoint-initdb.d/") for v in postgres["volumes"])
    assert "pg_isready" in postgres["healthcheck"]["test"] and "-h" in postgres["healthcheck"]["test"], (
        "pg_isready over TCP, or it turns healthy while init.sql still runs"
    )


def test_the_reserved_words_are_known() -> None:
    assert {"order", "user", "group", "table"} <= PG_RESERVED
    assert not {"customer", "marketing", "sales", "service", "loyalty", "customer360", "gateway"} & PG_RESERVED


@pytest.mark.parametrize("name", PROCESSES)
def test_postgres_init_creates_a_role_owning_each_schema(name: str) -> None:
    statements = init_sql_statements()
    postgres = compose_services()["postgres"]
    env = compose_app(name)["environment"]
    assert env["POSTGRES_DBNAME"] == postgres["environment"]["POSTGRES_DB"]
    user, password = env["POSTGRES_USER"], env["POSTGRES_PASSWORD"]
    assert user == name, "one PostgreSQL role per service, named after it"
    # LOGIN and a password, nothing more: no SUPERUSER, CREATEDB, CREATEROLE, BYPASSRLS, membership.
    assert f"CREATE ROLE {sql_ident(user)} LOGIN PASSWORD '{password}'" in statements, f"no role {user}"
    for schema in schemas_by_service()[name]:
        assert f"CREATE SCHEMA {sql_ident(schema)} AUTHORIZATION {sql_ident(user)}" in statements, (
            f"{schema} not owned by {user}"
        )
    grants = [s for s in statements if s.startswith("GRANT CONNECT, CREATE ON DATABASE ")]
    assert len(grants) == 1
    database, _, roles = grants[0].removeprefix("GRANT CONNECT, CREATE ON DATABASE ").partition(" TO ")
    assert database == env["POSTGRES_DBNAME"]
    assert sql_ident(user) in [r.strip() for r in roles.split(",")]


def test_postgres_roles_reach_their_own_schema_only() -> None:
    # Guarantee 1: no role gets rights on another's schema or tables, or another role's rights. What
    # init.sql may do is exactly: lock the database, create roles and owned schemas, let them connect.
    roles, owners = set(), {}
    for statement in init_sql_statements():
        if m := re.fullmatch(r"CREATE ROLE (\S+) LOGIN PASSWORD '[^']*'", statement):
            roles.add(m.group(1))
        elif m := re.fullmatch(r"CREATE SCHEMA (\S+) AUTHORIZATION (\S+)", statement):
            owners[m.group(1)] = m.group(2)
        elif statement == "REVOKE ALL ON DATABASE crm FROM PUBLIC":
            pass
        elif m := re.fullmatch(r"GRANT CONNECT, CREATE ON DATABASE crm TO (.+)", statement):
            assert {r.strip() for r in m.group(1).split(",")} <= roles, "GRANT to a role init.sql does not create"
        else:
            pytest.fail(f"init.sql: unexpected statement {statement!r}")
    assert roles == {sql_ident(n) for n in PROCESSES}
    assert owners == {sql_ident(s): sql_ident(n) for n, schemas in schemas_by_service().items() for s in schemas}


@cache
def definitions() -> dict[str, Any]:
    return json.loads(DEFINITIONS.read_text())


def rabbit_password_ok(user: dict[str, Any], password: str) -> bool:
    """RabbitMQ's rabbit_password_hashing_sha256: base64(salt(4 bytes) + sha256(salt + password))."""
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    raw = base64.b64decode(user["password_hash"])
    salt, digest = raw[:4], raw[4:]
    return hashlib.sha256(salt + password.encode()).digest() == digest


def test_rabbitmq_loads_the_definitions() -> None:
    rabbit = compose_services()["rabbitmq"]
    conf = dict(
        line.split("=", 1)
        for line in RABBITMQ_CONF.read_text().splitlines()
        if line.strip() and not line.startswith("#")
    )
    conf = {k.strip(): v.strip() for k, v in conf.items()}
    mounts = {v.split(":")[1]: v.split(":")[0] for v in rabbit["volumes"] if v.startswith("./")}
    assert mounts[conf["load_definitions"]] == "./deploy/rabbitmq/definitions.json"
    assert any(
        target.startswith("/etc/rabbitmq/conf.d/")
        for target, src in mounts.items()
        if src == "./deploy/rabbitmq/rabbitmq.conf"
    )
    assert rabbit.get("hostname"), "a fixed hostname keeps the node name, and its data, across re-creation"


def test_rabbitmq_declares_the_platform_exchanges_durable() -> None:
    vhosts = {v["name"] for v in definitions()["vhosts"]}
    for svc in compose_apps().values():
        assert unquote(urlsplit(svc["environment"]["AMQP_URI"]).path.lstrip("/")) in vhosts
    exchanges = {(e["vhost"], e["name"]): e for e in definitions()["exchanges"]}
    for vhost in vhosts:
        for name in (EXCHANGE, DEAD_LETTER_EXCHANGE):
            e = exchanges[(vhost, name)]
            # The code declares them topic, durable, not auto-deleted: anything else is PRECONDITION_FAILED.
            assert (e["type"], e["durable"], e["auto_delete"], e["internal"], e["arguments"]) == (
                "topic",
                True,
                False,
                False,
                {},
            )


@pytest.mark.parametrize("name", PROCESSES)
def test_each_service_logs_in_to_rabbitmq_as_itself(name: str) -> None:
    uri = urlsplit(compose_app(name)["environment"]["AMQP_URI"])
    users = {u["name"]: u for u in definitions()["users"]}
    assert uri.username == name, "one broker user per service"
    assert rabbit_password_ok(users[uri.username], unquote(uri.password or ""))
    assert users[uri.username]["tags"] in ([], ""), "a service user is not a management user"


#: How a service names the queue it consumes (InboxConsumer(queue="customer360.events", ...) and alike).
_QUEUE_ARG = re.compile(r"""\bqueue\s*=\s*["']([^"']+)["']""")


def served_code(name: str) -> str:
    """The source of the class process `name` runs; empty while the service is still being written."""
    if name not in registered_services():
        return ""
    return served_class_file(compose_app(name)["command"][1]).read_text()


def publishes(name: str) -> bool:
    """Whether `name` runs an outbox relay to crm.events: as deployed (PUBLISHERS) or as its code shows."""
    return name in PUBLISHERS or "EventSourcedApplication(" in served_code(name)


def consumed_queues(name: str) -> set[str]:
    """The queues `name` consumes from crm.events: as deployed (CONSUMERS) and as its code shows."""
    return set(_QUEUE_ARG.findall(served_code(name))) | ({f"{name}.events"} if name in CONSUMERS else set())


def broker_needs(name: str) -> dict[str, set[str]]:
    """The broker resources service `name` declares (configure), binds or publishes to (write), and
    binds from or consumes (read), as nameko 2.14 and crm_runtime do it."""
    text = served_code(name)
    reply = f"rpc.reply-{name}-0f0e5c1e-0000-4000-8000-000000000000"
    needs = {
        "configure": {"nameko-rpc", f"rpc-{name}", reply},
        "write": {"nameko-rpc", f"rpc-{name}", reply},
        "read": {"nameko-rpc", f"rpc-{name}", reply},
    }
    if publishes(name):  # the outbox relay declares crm.events and publishes to it
        needs["configure"].add(EXCHANGE)
        needs["write"].add(EXCHANGE)
    queues = consumed_queues(name)
    if queues or "ClusterRpcProxy" in text:  # standalone proxies: gap repair, rebuild
        standalone = "rpc.reply-standalone_rpc_proxy-0f0e5c1e-0000-4000-8000-000000000000"
        for perm in needs.values():
            perm.add(standalone)
    for queue in queues:
        for perm in needs.values():
            perm |= {queue, f"{queue}.dead-letter", DEAD_LETTER_EXCHANGE}
        needs["configure"].add(EXCHANGE)  # declared by the consumer too
        needs["read"].add(EXCHANGE)  # queue.bind needs read on the exchange
    return needs


def test_the_code_shows_its_broker_roles() -> None:
    # If this fails, the detection above no longer sees the code, and the tables alone would be checked.
    assert "EventSourcedApplication(" in served_code("customer")
    assert _QUEUE_ARG.findall(served_code("customer360")) == ["customer360.events"]


@pytest.mark.parametrize("name", PROCESSES)
def test_consumers_name_their_queues_after_themselves(name: str) -> None:
    for queue in consumed_queues(name):
        assert queue.startswith(f"{name}."), f"{name} consumes {queue}: its user owns only `{name}.*`"


def permission_of(user: str) -> dict[str, str]:
    found = [p for p in definitions()["permissions"] if p["user"] == user]
    assert len(found) == 1, f"{user}: {len(found)} permission entries"
    return found[0]


@pytest.mark.parametrize("name", PROCESSES)
def test_broker_permissions_allow_what_the_service_does(name: str) -> None:
    perm = permission_of(name)
    assert perm["vhost"] == unquote(urlsplit(compose_app(name)["environment"]["AMQP_URI"]).path.lstrip("/"))
    for kind, resources in broker_needs(name).items():
        for resource in resources:
            # RabbitMQ matches permission regexes unanchored (re:run), as re.search does.
            assert re.search(perm[kind], resource), f"{name} may not {kind} {resource}: {perm[kind]}"


@pytest.mark.parametrize("name", PROCESSES)
def test_broker_permissions_keep_services_apart(name: str) -> None:
    perm = permission_of(name)
    mine = broker_needs(name)
    for other in PROCESSES:
        if other == name:
            continue
        theirs = broker_needs(other)
        private = {r for r in theirs["read"] if r.startswith(("rpc-", "rpc.reply-", f"{other}."))} - mine["read"]
        for resource in private:
            assert not re.search(perm["read"], resource), f"{name} may consume {other}'s {resource}"
            assert not re.search(perm["configure"], resource), f"{name} may delete {other}'s {resource}"
            assert not re.search(perm["write"], resource), f"{name} may bind to {other}'s {resource}"
    if not publishes(name):
        assert not re.search(perm["write"], EXCHANGE), f"only publishing services write to {EXCHANGE}"


def routing_keys_by_origin() -> dict[str, set[str]]:
    """Every published event's routing key on crm.events, by origin (the contracts catalog)."""
    from crm_contracts.catalog import load_all
    from crm_contracts.envelope import routing_key

    keys: dict[str, set[str]] = {}
    for contract in load_all():
        keys.setdefault(contract.origin, set()).add(routing_key(contract.origin, contract.type))
    return keys


def test_every_origin_of_the_catalog_is_a_deployed_publisher() -> None:
    assert set(routing_keys_by_origin()) <= {n for n in PROCESSES if publishes(n)}


@pytest.mark.parametrize("name", PROCESSES)
def test_a_publisher_may_publish_only_its_own_events(name: str) -> None:
    # An event published under another origin's name would move that origin's positions in every
    # inbox: the topic permission on crm.events lets each user publish only `<its name>.*` keys.
    topic = [t for t in definitions()["topic_permissions"] if t["user"] == name and t["exchange"] == EXCHANGE]
    if not publishes(name):
        assert not topic, f"{name} publishes nothing to {EXCHANGE}"
        return
    assert len(topic) == 1, f"{name}: no single topic permission on {EXCHANGE}"
    assert topic[0]["vhost"] == permission_of(name)["vhost"]
    assert re.search(topic[0]["read"], "anything.#"), "bindings are governed by the queue permissions"
    for origin, keys in routing_keys_by_origin().items():
        for key in keys:
            allowed = bool(re.search(topic[0]["write"], key))
            assert allowed == (origin == name), f"{name} {'may not' if origin == name else 'may'} publish {key}"
    assert re.search(topic[0]["write"], f"{name}.an_event_added_later")


# --- Kubernetes ------------------------------------------------------------------------------------------

API_VERSIONS = {
    "Namespace": "v1",
    "ConfigMap": "v1",
    "Secret": "v1",
    "Service": "v1",
    "Deployment": "apps/v1",
    "Job": "batch/v1",
    "PodDisruptionBudget": "policy/v1",
    "HorizontalPodAutoscaler": "autoscaling/v2",
    "NetworkPolicy": "networking.k8s.io/v1",
}


def manifest_files() -> list[Path]:
    return sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")


@cache
def manifests() -> tuple[dict[str, Any], ...]:
    docs: list[dict[str, Any]] = []
    for path in manifest_files():
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return tuple(docs)


def of_kind(kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in manifests() if d["kind"] == kind}


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert kustomization["kind"] == "Kustomization"
    assert sorted(kustomization["resources"]) == sorted(p.name for p in manifest_files())
    assert len(set(kustomization["resources"])) == len(kustomization["resources"])
    assert kustomization["namespace"] in of_kind("Namespace")
    images = {i["name"] for i in kustomization.get("images", [])}
    used = {
        c["image"].split(":")[0]
        for d in of_kind("Deployment").values()
        for c in d["spec"]["template"]["spec"]["containers"]
    }
    assert used <= images, "every image can be retagged in one place"


def test_every_manifest_is_well_formed() -> None:
    seen = set()
    for doc in manifests():
        assert API_VERSIONS.get(doc["kind"]) == doc["apiVersion"], f"{doc['kind']}: {doc['apiVersion']}"
        meta = doc["metadata"]
        assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", meta["name"]), meta["name"]
        assert "namespace" not in meta or meta["namespace"] == "crm"
        key = (doc["kind"], meta["name"])
        assert key not in seen, f"{key} twice"
        seen.add(key)
    for path in manifest_files():
        assert "&" not in re.sub(r"#.*", "", path.read_text()), f"{path.name}: no YAML anchors (older kustomize)"


def k8s_env_keys(pod_spec: dict[str, Any], container: dict[str, Any]) -> dict[str, str]:
    """Every environment name a container gets, with its value (from the ConfigMaps and Secrets)."""
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        if "configMapRef" in source:
            ref = source["configMapRef"]["name"]
            assert ref in of_kind("ConfigMap"), f"no ConfigMap {ref}"
            env.update(of_kind("ConfigMap")[ref]["data"])
        else:
            ref = source["secretRef"]["name"]
            assert ref in of_kind("Secret"), f"no Secret {ref}"
            secret = of_kind("Secret")[ref]
            assert "data" not in secret, "placeholders as stringData"
            env.update(secret["stringData"])
    for item in container.get("env", []):
        env[item["name"]] = item.get("value", "")
    return env


def deployments() -> dict[str, dict[str, Any]]:
    return of_kind("Deployment")


def the_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def declared_ports(container: dict[str, Any]) -> dict[Any, int]:
    ports: dict[Any, int] = {}
    for p in container["ports"]:
        ports[p["containerPort"]] = p["containerPort"]
        if "name" in p:
            ports[p["name"]] = p["containerPort"]
    return ports


def test_kubernetes_runs_the_same_services_as_compose() -> None:
    assert sorted(deployments()) == sorted(PROCESSES)
    assert set(deployments()) == set(compose_apps())
    for name, dep in deployments().items():
        assert the_container(dep)["command"] == compose_app(name)["command"]


@pytest.mark.parametrize("name", PROCESSES)
def test_deployment_is_probed_on_the_port_it_serves(name: str) -> None:
    dep = deployments()[name]
    spec = dep["spec"]
    assert spec["replicas"] >= 2, "two replicas show the service scales (the relay elects one leader)"
    labels = spec["template"]["metadata"]["labels"]
    assert spec["selector"]["matchLabels"].items() <= labels.items()
    container = the_container(dep)
    ports = declared_ports(container)
    env = k8s_env_keys(spec["template"]["spec"], container)
    assert web_port(env) in ports.values(), "the process listens on WEB_SERVER_ADDRESS: declare that port"
    for probe, path in (
        ("livenessProbe", "/health/live"),
        ("readinessProbe", "/health/ready"),
        ("startupProbe", "/health/live"),
    ):
        get = container[probe]["httpGet"]
        assert get["path"] == path, f"{name} {probe}"
        assert get["port"] in ports, f"{name} {probe} on port {get['port']}, declared {list(ports)}"
        assert ports[get["port"]] == web_port(env)
    assert container["command"][0] == "crm-serve"
    assert container["image"].split(":")[0] == f"crm/{name}"
    require_written(name, container["command"][1])
    served_class_file(container["command"][1])


@pytest.mark.parametrize("name", PROCESSES)
def test_deployment_environment_is_complete(name: str) -> None:
    dep = deployments()[name]
    container = the_container(dep)
    env = k8s_env_keys(dep["spec"]["template"]["spec"], container)
    missing = required_settings(name) - set(env)
    assert not missing, f"{name}: the code reads {sorted(missing)}, the ConfigMap/Secret do not set them"
    unknown = set(env) - known_names()
    assert not unknown, f"{name}: {sorted(unknown)} are read by no code (typo?)"
    assert env["CREATE_TABLE"] == "false"
    assert env["QUEUE_TYPE"] == "quorum", "RabbitMQ runs clustered on Kubernetes"
    assert env["POSTGRES_USER"] == name, "one PostgreSQL role per service"
    assert urlsplit(env["AMQP_URI"]).username == name, "one RabbitMQ user per service"


def test_secrets_hold_placeholders_only() -> None:
    for name, secret in of_kind("Secret").items():
        for key, value in secret["stringData"].items():
            if "PASSWORD" in key or "SECRET" in key:
                assert value == "CHANGE_ME", f"{name}.{key}: placeholders only"
            if key == "AMQP_URI":
                assert urlsplit(value).password == "CHANGE_ME", f"{name}.{key}: placeholders only"


def cpu_millis(value: Any) -> float:
    text = str(value)
    return float(text[:-1]) if text.endswith("m") else float(text) * 1000


def mebibytes(value: str) -> float:
    units = {"Mi": 1, "Gi": 1024, "Ki": 1 / 1024}
    return float(value[:-2]) * units[value[-2:]]


def all_containers(pod_spec: dict[str, Any]) -> list[dict[str, Any]]:
    return pod_spec.get("initContainers", []) + pod_spec["containers"]


def test_resources_fit_a_two_core_node() -> None:
    total_cpu = total_memory = 0.0
    for name, dep in deployments().items():
        for c in all_containers(dep["spec"]["template"]["spec"]):
            req, lim = c["resources"]["requests"], c["resources"]["limits"]
            assert cpu_millis(req["cpu"]) <= cpu_millis(lim["cpu"]) <= 2000, name
            assert mebibytes(req["memory"]) <= mebibytes(lim["memory"]), name
            total_cpu += dep["spec"]["replicas"] * cpu_millis(req["cpu"])
            total_memory += dep["spec"]["replicas"] * mebibytes(req["memory"])
    for job in of_kind("Job").values():
        for c in all_containers(job["spec"]["template"]["spec"]):
            assert {"requests", "limits"} <= set(c["resources"]), f"{job['metadata']['name']}/{c['name']}"
    # Leave a quarter of the node for the kubelet, system pods and a rolling update's extra pod.
    assert total_cpu <= 1500, f"{total_cpu}m of CPU requested"
    assert total_memory <= 3 * 1024, f"{total_memory}Mi of memory requested"


def test_pods_run_unprivileged() -> None:
    pods = [d["spec"]["template"]["spec"] for d in list(deployments().values()) + list(of_kind("Job").values())]
    for pod in pods:
        assert pod["automountServiceAccountToken"] is False, "no process talks to the Kubernetes API"
        # Services named gateway, order, service... would inject GATEWAY_PORT, SERVICE_PORT... into every
        # pod of the namespace, beside the settings the code reads (crm-platform reads GATEWAY_PORT).
        assert pod["enableServiceLinks"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        mounts_tmp = {v["name"] for v in pod.get("volumes", []) if "emptyDir" in v}
        for c in all_containers(pod):
            sc = c["securityContext"]
            assert sc["allowPrivilegeEscalation"] is False
            if sc.get("readOnlyRootFilesystem"):
                assert any(m["mountPath"] == "/tmp" and m["name"] in mounts_tmp for m in c.get("volumeMounts", [])), (
                    f"{c['name']}: a read-only root needs a writable /tmp"
                )


@pytest.mark.parametrize("name", PROCESSES)
def test_service_and_disruption_budget_select_the_deployment(name: str) -> None:
    dep = deployments()[name]
    labels = dep["spec"]["template"]["metadata"]["labels"]
    service = of_kind("Service")[name]
    assert service["spec"]["selector"].items() <= labels.items()
    ports = declared_ports(the_container(dep))
    for port in service["spec"]["ports"]:
        assert port["targetPort"] in ports, f"Service {name} targets undeclared port {port['targetPort']}"
    budgets = [
        p
        for p in of_kind("PodDisruptionBudget").values()
        if p["spec"]["selector"]["matchLabels"].items() <= labels.items()
    ]
    assert len(budgets) == 1, f"{name}: {len(budgets)} PodDisruptionBudgets"
    budget = budgets[0]["spec"]
    if "minAvailable" in budget:
        assert 0 < budget["minAvailable"] < dep["spec"]["replicas"], "a drain must be able to evict one pod"
    else:
        assert budget["maxUnavailable"] >= 1


def test_migrate_job_creates_every_schema_as_its_owner() -> None:
    jobs = of_kind("Job")
    assert list(jobs) == ["crm-migrate"]
    pod = jobs["crm-migrate"]["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    migrated: dict[str, dict[str, Any]] = {}
    for c in all_containers(pod):
        if c["command"][0] == "crm-migrate":
            assert len(c["command"]) >= 2, "crm-migrate with no schema migrates everything as one role"
            for schema in c["command"][1:]:
                migrated[schema] = c
    for name, schemas in schemas_by_service().items():
        dep_container = the_container(deployments()[name])
        for schema in schemas:
            assert schema in migrated, f"the Job never migrates schema {schema} of {name}"
            c = migrated[schema]
            assert c["image"] == dep_container["image"], f"{schema}: migrate with the service's own image"
            assert c["envFrom"] == dep_container["envFrom"], f"{schema}: migrate as the service's own role"


# --- the image ---------------------------------------------------------------------------------------------


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in text.splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]


def test_dockerfile_installs_from_the_pins_as_non_root() -> None:
    instructions = dockerfile_instructions()
    froms = [args for op, args in instructions if op == "FROM"]
    args = {a.split("=", 1)[0]: a.split("=", 1)[1].strip('"') for op, a in instructions if op == "ARG" and "=" in a}
    assert len(froms) >= 2, "multi-stage"
    assert all(f.split()[0] in {"${PYTHON_IMAGE}", "python:3.11-slim"} for f in froms)
    assert args["PYTHON_IMAGE"] == "python:3.11-slim"
    assert "PACKAGES" in args or any(a == "PACKAGES" for op, a in instructions if op == "ARG")
    installs = [a for op, a in instructions if op == "RUN" and "pip install" in a]
    assert installs and all("-c requirements/pins.txt" in a for a in installs)
    assert not any(re.search(r"\s(-e|--editable)\s", a) for a in installs), "non-editable installs"
    users = [a for op, a in instructions if op == "USER"]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    copies = [a.split()[0] for op, a in instructions if op == "COPY" and not a.startswith("--from")]
    assert "requirements/pins.txt" in copies
    for source in copies:
        assert (ROOT / source).exists(), f"COPY {source}: not in the repository root (the build context)"
    assert args["SETUPTOOLS_VERSION"].split(".")[0].isdigit() and int(args["SETUPTOOLS_VERSION"].split(".")[0]) < 81


def test_dockerignore_keeps_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip() for line in DOCKERIGNORE.read_text().splitlines() if line.strip() and not line.startswith("#")
    ]
    copies = [a.split()[0] for op, a in dockerfile_instructions() if op == "COPY" and not a.startswith("--from")]
    kept = {p[1:].rstrip("/") for p in patterns if p.startswith("!")}
    for source in copies:
        assert source.rstrip("/") in kept, f"COPY {source} is excluded by {DOCKERIGNORE.name}"


# --- proven by tools: Kubernetes schemas, operators' CRD schemas, the compose specification ---------------

#: The custom resources of deploy/k8s/data, each checked against the schema committed for its CRD.
CRD_SCHEMAS = {
    ("rabbitmq.com/v1beta1", "RabbitmqCluster"): K8S / "crds" / "rabbitmqclusters.rabbitmq.com.json",
    ("postgresql.cnpg.io/v1", "Cluster"): K8S / "crds" / "clusters.postgresql.cnpg.io.json",
}


@cache
def every_k8s_document() -> tuple[tuple[str, dict[str, Any]], ...]:
    """(file, document) of every manifest under deploy/k8s, overlays included (not the kustomizations)."""
    found = []
    for path in sorted(K8S.rglob("*.yaml")):
        if path.name != "kustomization.yaml":
            found += [(str(path.relative_to(K8S)), d) for d in yaml.safe_load_all(path.read_text()) if d is not None]
    return tuple(found)


def kubernetes_version() -> str:
    """The newest Kubernetes version whose schemas the pinned kubernetes-validate ships (offline)."""
    import kubernetes_validate

    return str(kubernetes_validate.latest_version())


def test_every_kubernetes_resource_is_valid_for_a_current_kubernetes() -> None:
    import kubernetes_validate

    version = kubernetes_version()
    checked = 0
    for path, doc in every_k8s_document():
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            continue
        try:
            kubernetes_validate.validate(doc, version, strict=True)  # strict: an unknown field is an error
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{path}: {doc['kind']} {doc['metadata']['name']} is not valid for Kubernetes {version}: "
                        f"{exc.message}")
        checked += 1
    assert checked >= len(manifests())
    with pytest.raises(kubernetes_validate.ValidationError):  # the check can fail: a misspelt field
        broken = json.loads(json.dumps(deployments()["customer"]))
        broken["spec"]["replica"] = 2
        kubernetes_validate.validate(broken, version, strict=True)


def test_operator_resources_are_valid_for_their_crds() -> None:
    import jsonschema

    found = {key: [] for key in CRD_SCHEMAS}  # type: dict[tuple[str, str], list[dict[str, Any]]]
    for _, doc in every_k8s_document():
        if (doc["apiVersion"], doc["kind"]) in CRD_SCHEMAS:
            found[(doc["apiVersion"], doc["kind"])].append(doc)
    for key, docs in found.items():
        assert docs, f"no {key[1]} resource"
        schema = json.loads(CRD_SCHEMAS[key].read_text())
        jsonschema.Draft7Validator.check_schema(schema)
        for doc in docs:
            jsonschema.validate(doc, schema)
        typo = json.loads(json.dumps(docs[0]))
        typo["spec"]["replicaz"] = 3
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(typo, schema)


#: CloudNativePG's own validators of its resources (an npm package generated from its CRDs), pinned.
CNPG_MODELS = K8S / "crds" / "cloudnative-pg"


def test_the_postgres_cluster_is_valid_for_cloudnative_pg_s_own_crd(tmp_path: Path) -> None:
    """The Cluster against the validators generated from CloudNativePG's CRDs, run by Node.js (the npm
    package is installed from its committed lock file into a temporary directory)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.skip("Node.js and npm are needed to run CloudNativePG's own validators")
    for name in ("package.json", "package-lock.json", "validate.mjs"):
        shutil.copy(CNPG_MODELS / name, tmp_path / name)
    installed = subprocess.run([npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"],
                               cwd=tmp_path, capture_output=True, text=True, timeout=180)
    assert installed.returncode == 0, installed.stderr
    clusters = [d for _, d in every_k8s_document()
                if (d["apiVersion"], d["kind"]) == ("postgresql.cnpg.io/v1", "Cluster")]
    assert clusters, "no CloudNativePG Cluster in deploy/k8s"
    broken = json.loads(json.dumps(clusters[0]))
    broken["metadata"]["name"] = "broken"
    broken["spec"]["instances"] = "three"  # the check can fail: the CRD says integer
    checked = subprocess.run([node, "validate.mjs"], cwd=tmp_path, input=json.dumps([*clusters, broken]),
                             capture_output=True, text=True, timeout=60)
    results = {r["name"]: r for r in map(json.loads, checked.stdout.splitlines())}
    for cluster in clusters:
        assert results[cluster["metadata"]["name"]]["valid"], results[cluster["metadata"]["name"]]
    assert not results["broken"]["valid"] and "instances" in results["broken"]["error"]


#: The compose specification's own JSON Schema (deploy/compose-spec/README.md says where it came from).
COMPOSE_SCHEMA = ROOT / "deploy" / "compose-spec" / "compose-spec.json"


def test_compose_is_valid_for_the_compose_specification_schema() -> None:
    import jsonschema

    schema = json.loads(COMPOSE_SCHEMA.read_text())
    assert schema["title"] == "Compose Specification"
    jsonschema.Draft201909Validator.check_schema(schema)  # the draft it declares
    validator = jsonschema.Draft201909Validator(schema, format_checker=jsonschema.Draft201909Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(compose())]
    assert not errors, "docker-compose.yml is not valid for the compose specification:\n" + "\n".join(errors)
    for path, value in ((("services", "gateway", "healthcheck", "intervall"), "5s"),  # a misspelt key
                        (("services", "gateway", "depends_on"), "migrate"),  # a string, not a list or map
                        (("volumes", "postgres-data"), {"driver": 3})):
        broken = json.loads(json.dumps(compose()))
        *parents, key = path
        node = broken
        for parent in parents:
            node = node[parent]
        node[key] = value
        assert not validator.is_valid(broken), f"the schema accepts {'/'.join(path)} = {value!r}"


def test_compose_follows_the_compose_specification() -> None:
    from compose_spec import PyCompose

    # The compose spec's parser takes the document as YAML resolves it (merge keys `<<` applied).
    parsed = PyCompose.from_json(json.dumps(compose()))
    assert sorted(parsed.service_names()) == sorted(compose_services())
    broken = json.loads(json.dumps(compose()))
    broken["services"]["gateway"]["restart"] = "sometimes"
    with pytest.raises(ValueError):
        PyCompose.from_json(json.dumps(broken))


# --- Kubernetes: autoscaling, resources from the measured memory, network policies, data services ---------


def test_every_process_scales_with_a_horizontal_pod_autoscaler() -> None:
    autoscalers = of_kind("HorizontalPodAutoscaler")
    for name, dep in deployments().items():
        targeting = [h for h in autoscalers.values() if h["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1", "kind": "Deployment", "name": name}]
        assert len(targeting) == 1, f"{name}: {len(targeting)} autoscalers"
        spec = targeting[0]["spec"]
        assert spec["minReplicas"] == dep["spec"]["replicas"] >= 2, "two of everything (guarantee 10)"
        assert spec["maxReplicas"] > spec["minReplicas"]
        (metric,) = spec["metrics"]
        assert metric["resource"]["name"] == "cpu", "CPU: every container requests it, so utilisation is defined"
        assert all("cpu" in c["resources"]["requests"] for c in dep["spec"]["template"]["spec"]["containers"])


def measured_mebibytes_per_process() -> float:
    """The published bench run's resident memory of the eight processes (after the journeys), divided by
    eight (bench/published.json: the run the README's table shows)."""
    published = json.loads((ROOT / "bench" / "published.json").read_text())
    total = published["platform"]["journeys"]["memory_after"]["total_mib"]
    return float(total) / len(PROCESSES)


def test_memory_requests_follow_the_measured_memory() -> None:
    measured = measured_mebibytes_per_process()
    for name, dep in deployments().items():
        resources = the_container(dep)["resources"]
        request, limit = mebibytes(resources["requests"]["memory"]), mebibytes(resources["limits"]["memory"])
        assert measured <= request <= 2 * measured, f"{name}: {request} Mi requested, {measured:.0f} Mi measured"
        assert limit >= 2 * request, f"{name}: room for bursts (a batch, a rebuild) above the request"


def code_peers() -> dict[str, set[str]]:
    """Process -> the processes it calls over HTTP, from the code: the services its ServiceClients name
    (the gateway), and the origins whose feeds its consumer pulls (crm_runtime.nameko.dependencies)."""
    from importlib.metadata import entry_points

    from crm_runtime.nameko.client import ServiceClient
    from crm_runtime.nameko.dependencies import InboxConsumer

    peers: dict[str, set[str]] = {}
    for entry in entry_points(group="crm.services"):
        service = entry.load()
        found = peers.setdefault(entry.name, set())
        for klass in service.__mro__:
            for value in vars(klass).values():
                if isinstance(value, ServiceClient):
                    found.add(value.service)
                elif isinstance(value, InboxConsumer):
                    found |= set(value.origins)
        found.discard(entry.name)
    return peers


def pod_selector_names(rules: list[dict[str, Any]], key: str) -> set[str]:
    return {peer["podSelector"]["matchLabels"]["app.kubernetes.io/name"]
            for rule in rules for peer in rule.get(key, [])
            if "podSelector" in peer and "namespaceSelector" not in peer}


def test_network_policies_allow_each_process_only_what_it_talks_to() -> None:
    policies = of_kind("NetworkPolicy")
    deny = policies["default-deny"]["spec"]
    assert deny["podSelector"] == {} and set(deny["policyTypes"]) == {"Ingress", "Egress"}
    assert "ingress" not in deny and "egress" not in deny
    peers = code_peers()
    assert set(peers) == set(deployments())
    callers = {name: {c for c, called in peers.items() if name in called} for name in peers}
    for name, dep in deployments().items():
        labels = dep["spec"]["template"]["metadata"]["labels"]
        selecting = [p["spec"] for p in policies.values()
                     if p["spec"]["podSelector"] and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert len(selecting) == 1, f"{name}: {len(selecting)} NetworkPolicies"
        policy = selecting[0]
        assert pod_selector_names(policy["egress"], "to") == peers[name], f"{name} calls {sorted(peers[name])}"
        data_ports = {p["port"] for rule in policy["egress"] for p in rule["ports"]
                      if any(peer.get("namespaceSelector") for peer in rule["to"])}
        assert {53, 5432, 5672} <= data_ports, f"{name}: DNS, PostgreSQL and RabbitMQ"
        (ingress,) = policy["ingress"]
        assert [p["port"] for p in ingress["ports"]] == ["http"]
        if name == "gateway":
            assert "from" not in ingress, "the public API takes traffic from anywhere"
        else:
            assert pod_selector_names([ingress], "from") == callers[name], f"{name} is called by {callers[name]}"


def test_data_services_are_operator_clusters_the_platform_points_at() -> None:
    data = {d["kind"]: d for _, d in every_k8s_document() if d["apiVersion"] in {k[0] for k in CRD_SCHEMAS}}
    rabbit, postgres = data["RabbitmqCluster"], data["Cluster"]
    assert rabbit["spec"]["replicas"] >= 3 and rabbit["spec"]["replicas"] % 2 == 1, "quorum queues need a majority"
    assert of_kind("ConfigMap")["crm-config"]["data"]["QUEUE_TYPE"] == "quorum"
    conf = rabbit["spec"]["rabbitmq"]["additionalConfig"]
    assert re.search(r"^default_queue_type = quorum$", conf, re.M)
    loaded = re.search(r"^load_definitions = (\S+)$", conf, re.M).group(1)  # type: ignore[union-attr]
    pod = rabbit["spec"]["override"]["statefulSet"]["spec"]["template"]["spec"]
    (mount,) = pod["containers"][0]["volumeMounts"]
    assert loaded == f"{mount['mountPath']}/definitions.json"
    for secret in of_kind("Secret").values():
        if "AMQP_URI" in secret["stringData"]:
            assert urlsplit(secret["stringData"]["AMQP_URI"]).hostname == f"{rabbit['metadata']['name']}.crm-data.svc"
    assert postgres["spec"]["instances"] >= 2, "a standby to fail over to"
    settings = of_kind("ConfigMap")["crm-config"]["data"]
    assert settings["POSTGRES_HOST"] == f"{postgres['metadata']['name']}-rw.crm-data.svc"
    assert postgres["spec"]["bootstrap"]["initdb"]["database"] == settings["POSTGRES_DBNAME"]
    policies = [d for _, d in every_k8s_document() if d["kind"] == "NetworkPolicy"]
    selectors = [peer["podSelector"]["matchLabels"] for p in policies for rule in p["spec"].get("egress", [])
                 for peer in rule["to"] if "namespaceSelector" in peer and "podSelector" in peer]
    assert {"cnpg.io/cluster": postgres["metadata"]["name"]} in selectors
    assert {"app.kubernetes.io/name": rabbit["metadata"]["name"]} in selectors


# --- monitoring: the scrape configuration, the alerts and the dashboard name what the code exports --------


def exported_metrics() -> set[str]:
    """Every series name the processes and the lag exporter serve (crm_runtime.metrics), plus Prometheus's
    own `up` and the default process collector's."""
    from crm_runtime import metrics

    names = {"up", "process_resident_memory_bytes", "process_cpu_seconds_total"}
    for collector in (metrics.HTTP_REQUESTS, metrics.HTTP_DURATION, metrics.WORKER_DURATION, metrics.EVENTS_SAVED,
                      metrics.GROUP_COMMIT_BATCH, metrics.RELAY_CONFIRM):
        for family in collector.describe():
            suffixes = ("_total",) if family.type == "counter" else ("_bucket", "_count", "_sum")
            names |= {family.name + s for s in suffixes}
    names |= {name + "_total" if kind == "counter" else name for name, (kind, _) in metrics.SCRAPED.items()}
    return names


_METRIC = re.compile(r"\b(crm_[a-z_]+|process_[a-z_]+|up)\b(?=\s*[{\[)]|\s*$|\s*[<>=!])")


def test_alerts_and_dashboard_use_only_exported_metrics() -> None:
    alerts = yaml.safe_load((DEPLOY / "prometheus" / "alerts.yml").read_text())
    rules = [r for group in alerts["groups"] for r in group["rules"]]
    dashboard = json.loads((DEPLOY / "grafana" / "crm-platform.json").read_text())
    exprs = [r["expr"] for r in rules] + [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    known = exported_metrics()
    used = {name for expr in exprs for name in _METRIC.findall(expr)}
    assert used and used <= known, f"not exported: {sorted(used - known)}"
    readme = (ROOT / "README.md").read_text()
    for rule in rules:
        assert rule["for"] and rule["annotations"]["summary"]
        assert f"`{rule['alert']}`" in readme, f"README, Operating it: what {rule['alert']} means and what to do"
    for path in ("prometheus.yml", "prometheus-local.yml"):
        config = yaml.safe_load((DEPLOY / "prometheus" / path).read_text())
        assert config["rule_files"] == ["alerts.yml"]
        assert {j["job_name"] for j in config["scrape_configs"]} >= {"crm", "crm-lag-exporter"}


# --- RabbitMQ: the definitions, loaded into the real broker ------------------------------------------------


@pytest.mark.integration
def test_the_rabbitmq_definitions_load_into_a_real_broker_and_enforce_their_permissions(infra) -> None:
    import uuid

    import amqp
    import requests

    suffix = uuid.uuid4().hex[:8]
    vhost = f"crm_definitions_{suffix}"
    renamed = {u["name"]: f"{u['name']}-test-{suffix}" for u in definitions()["users"]}
    document = json.loads(json.dumps(definitions()))
    document["vhosts"] = [{**v, "name": vhost} for v in document["vhosts"]]
    document["users"] = [{**u, "name": renamed[u["name"]]} for u in document["users"]]
    for section in ("permissions", "topic_permissions"):
        document[section] = [{**p, "user": renamed[p["user"]], "vhost": vhost} for p in document[section]]
    for section in ("exchanges", "queues", "bindings", "policies", "parameters"):
        document[section] = [{**item, "vhost": vhost} for item in document[section]]
    # Nothing of the shared broker is touched: every vhost and user the document names is a new one.
    assert {item["vhost"] for section in ("permissions", "topic_permissions", "exchanges", "queues", "bindings",
                                          "policies", "parameters") for item in document[section]} <= {vhost}
    assert not {u["name"] for u in document["users"]} & {u["name"] for u in definitions()["users"]}
    assert document["global_parameters"] == [], "a global parameter would change the shared broker"
    scheme, rest = infra.rabbit_management_uri.rstrip("/").split("://", 1)
    credentials, host = rest.split("@", 1)
    auth = tuple(credentials.split(":", 1))
    api = f"{scheme}://{host}/api"
    try:
        requests.post(f"{api}/definitions", json=document, auth=auth, timeout=30).raise_for_status()
        exchange = requests.get(f"{api}/exchanges/{vhost}/{EXCHANGE}", auth=auth, timeout=10).json()
        assert (exchange["type"], exchange["durable"]) == ("topic", True)
        for user in definitions()["users"]:
            loaded = requests.get(f"{api}/users/{renamed[user['name']]}", auth=auth, timeout=10).json()
            assert loaded["password_hash"] == user["password_hash"]
        # A service's user, with its own password from compose: publishes its own events, not another's.
        amqp_host = urlsplit(infra.amqp_uri)
        password = unquote(urlsplit(compose_app("customer")["environment"]["AMQP_URI"]).password or "")
        connection = amqp.Connection(f"{amqp_host.hostname}:{amqp_host.port or 5672}", userid=renamed["customer"],
                                     password=password, virtual_host=vhost, confirm_publish=True)
        connection.connect()
        try:
            channel = connection.channel()
            channel.basic_publish(amqp.Message("{}"), exchange=EXCHANGE, routing_key="customer.customer_registered")
            with pytest.raises(amqp.exceptions.AccessRefused):
                channel.basic_publish(amqp.Message("{}"), exchange=EXCHANGE, routing_key="order.order_paid")
        finally:
            connection.collect()
    finally:
        for name in renamed.values():
            requests.delete(f"{api}/users/{name}", auth=auth, timeout=10)
        requests.delete(f"{api}/vhosts/{vhost}", auth=auth, timeout=10)
    assert requests.get(f"{api}/vhosts/{vhost}", auth=auth, timeout=10).status_code == 404
    for name in renamed.values():
        assert requests.get(f"{api}/users/{name}", auth=auth, timeout=10).status_code == 404


def test_every_kustomization_lists_the_manifests_of_its_folder() -> None:
    for path in sorted(K8S.rglob("kustomization.yaml")):
        kustomization = yaml.safe_load(path.read_text())
        files = sorted(p.name for p in path.parent.glob("*.yaml") if p.name != "kustomization.yaml")
        assert sorted(kustomization["resources"]) == files, f"{path.relative_to(K8S)}"
