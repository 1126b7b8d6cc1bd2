"""`crm-admin`: the operator's command line. Each subcommand's --help says what it does and how.

It talks to the platform's PostgreSQL with the operator's rights (POSTGRES_* settings; locally the
superuser, on Kubernetes the `crm-ops` role, deploy/README.md) and to the processes' HTTP ports.
Tables for people; `--json` (before the subcommand) for scripts. Exit status 0 on success, 1 when the
operation was refused or failed (the message says why), 2 on a usage error.
"""

from __future__ import annotations

import warnings

# eventlet (imported by the inbox) warns on import that it is in bugfix mode: said once in the README.
warnings.filterwarnings("ignore", message="(?s).*Eventlet is deprecated")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from importlib.metadata import entry_points  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

from crm_runtime import config  # noqa: E402
from crm_runtime.admin import deadletters  # noqa: E402
from crm_runtime.admin.positions import read_lag  # noqa: E402


class AdminError(Exception):
    """An operation refused or failed: printed without a traceback, exit status 1."""


# --- output -------------------------------------------------------------------------------------


def table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    """`rows` as an aligned text table of `columns` (long cells cut at 80 characters)."""
    if not rows:
        return "(none)"
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    lines = ["  ".join(c.upper().ljust(w) for c, w in zip(columns, widths)).rstrip()]
    lines += ["  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]
    return "\n".join(lines)


def _cell(value: Any) -> str:
    text = "-" if value is None else ("yes" if value is True else "no" if value is False else str(value))
    text = text.replace("\n", " ")
    return text if len(text) <= 80 else text[:77] + "..."


def emit(args: argparse.Namespace, data: Any, human: Callable[[Any], str]) -> None:
    print(json.dumps(data, indent=2, default=str) if args.json else human(data))


# --- status -------------------------------------------------------------------------------------


def process_addresses(run_dir: Path) -> dict[str, str]:
    """name -> base URL of every process: the local supervisor's (`make run`), else CRM_<SERVICE>_URLS."""
    from crm_runtime.platform import LocalPlatform

    local = LocalPlatform(run_dir)
    if local.supervisor_pid():
        return {name: f"http://127.0.0.1:{p.port}" for name, p in local.processes.items()}
    found = {}
    for entry in entry_points(group="crm.services"):
        for i, url in enumerate(u.strip() for u in config.setting(f"CRM_{entry.name.upper()}_URLS", "").split(",")):
            if url:
                found[f"{entry.name}-{i + 1}"] = url.rstrip("/")
    return found


def readiness(url: str) -> tuple[bool | None, str]:
    """(ready, why not) from a process's /health/ready; None when it does not answer."""
    try:
        with urllib.request.urlopen(f"{url}/health/ready", timeout=3):
            return True, ""
    except urllib.error.HTTPError as exc:
        report = json.loads(exc.read() or b"{}")
        failing = [name for name, check in report.get("checks", {}).items() if not check.get("ok")]
        return False, "not ready: " + ", ".join(failing)
    except (OSError, ValueError) as exc:
        return None, f"no answer: {exc}"


def status(args: argparse.Namespace) -> int:
    lag = read_lag()
    processes = []
    for name, url in sorted(process_addresses(Path(args.run_dir)).items()):
        ready, why = readiness(url)
        processes.append({"process": name, "url": url, "ready": ready, "detail": why})
    relays = [
        {
            "origin": o,
            "head": h,
            "scanned": s,
            "published": p,
            "lag": max(0, h - s),
            "parked": lag.parked.get(f"{o}.relay", 0),
        }
        for o, (h, s, p) in sorted(lag.origins.items())
    ]
    consumers = [
        {"consumer": c, "origin": o, "position": lag.consumers[c][o], "lag": behind}
        for c, o, behind in lag.consumer_lag()
    ]
    parked = {c: n for c, n in sorted(lag.parked.items()) if n}
    data = {"processes": processes, "relays": relays, "consumers": consumers, "parked": parked}

    def human(d: dict[str, Any]) -> str:
        return "\n\n".join(
            [
                "PROCESSES\n" + table(d["processes"], ["process", "url", "ready", "detail"]),
                "RELAYS (lag: notifications not yet scanned)\n"
                + table(d["relays"], ["origin", "head", "scanned", "published", "lag", "parked"]),
                "CONSUMERS (lag: events published by the origin and not applied yet)\n"
                + table(d["consumers"], ["consumer", "origin", "position", "lag"]),
                "DEAD LETTERS\n"
                + (
                    table([{"consumer": c, "parked": n} for c, n in d["parked"].items()], ["consumer", "parked"])
                    if d["parked"]
                    else "(none)"
                ),
            ]
        )

    emit(args, data, human)
    not_ready = [p for p in processes if not p["ready"]]
    return 1 if not_ready or parked else 0


# --- dead letters -------------------------------------------------------------------------------

LETTER_COLUMNS = ["consumer", "id", "kind", "type", "parked_at", "reason"]


def dead_letters(args: argparse.Namespace) -> int:
    try:
        if args.action == "list":
            rows = [d.row() for d in deadletters.list_dead_letters(args.consumer)]
            emit(args, rows, lambda r: table(r, LETTER_COLUMNS))
        elif args.action == "show":
            row = deadletters.find(args.consumer, args.id).row(with_envelope=True)
            emit(
                args,
                row,
                lambda r: (
                    "\n".join(f"{k:>10}: {v}" for k, v in r.items() if k != "envelope")
                    + "\n  envelope:\n"
                    + json.dumps(r["envelope"], indent=2, default=str)
                ),
            )
        elif args.action == "retry":
            row = deadletters.retry(args.consumer, args.id)
            emit(args, {"retried": row}, lambda r: f"applied {args.id} to {args.consumer} once and unparked it")
        else:
            row = deadletters.discard(args.consumer, args.id)
            emit(args, {"discarded": row}, lambda r: f"discarded {args.id} of {args.consumer}: it stays unapplied")
    except deadletters.DeadLetterError as exc:
        raise AdminError(str(exc)) from None
    return 0


# --- rebuild and replay -------------------------------------------------------------------------


class Progress:
    """Counts positions fetched per origin against the origins' heads; draws a bar with an ETA."""

    def __init__(self, totals: dict[str, int], quiet: bool) -> None:
        self.totals = totals
        self.done: dict[str, int] = {}
        self.quiet = quiet
        self.started = time.monotonic()
        self._drawn = 0.0

    def fetched(self, origin: str, envelopes: list[dict[str, Any]]) -> None:
        if envelopes:
            self.done[origin] = max(self.done.get(origin, 0), envelopes[-1]["position"])
        self.draw()

    def draw(self, final: bool = False) -> None:
        now = time.monotonic()
        if self.quiet or (not final and now - self._drawn < 0.5):
            return
        self._drawn = now
        total = max(1, sum(self.totals.values()))
        done = min(total, sum(min(self.done.get(o, 0), t) for o, t in self.totals.items()))
        elapsed = now - self.started
        rate = done / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if rate > 0 else float("inf")
        bar = "#" * int(30 * done / total)
        eta_text = "done" if final else ("?" if eta == float("inf") else f"{int(eta) // 60}:{int(eta) % 60:02d}")
        sys.stderr.write(
            f"\r[{bar:<30}] {100 * done / total:5.1f}%  {done}/{total} positions  {rate:,.0f}/s  ETA {eta_text}   "
        )
        if final:
            sys.stderr.write("\n")
        sys.stderr.flush()


def local_feeds() -> dict[str, Callable[[int, int], list[dict[str, Any]]]]:
    """origin -> events_since of its feed, read in this process through the service's own EventFeed
    (the translation the relay publishes with), so a rebuild needs no origin process running."""
    from crm_runtime.feed import EventFeed
    from crm_runtime.nameko.dependencies import EventSourcedApplication

    feeds: dict[str, Callable[[int, int], list[dict[str, Any]]]] = {}
    for entry in entry_points(group="crm.services"):
        service = entry.load()
        providers = [v for k in service.__mro__ for v in vars(k).values() if isinstance(v, EventSourcedApplication)]
        if providers and getattr(service, "translator", None) is not None:
            feed = EventFeed(providers[0].app_class(create_table=False), service.translator)
            feeds[entry.name] = feed.events_since
    return feeds


def rebuild(args: argparse.Namespace) -> int:
    if args.name != "customer360":
        raise AdminError(f"no rebuild named {args.name!r}: the rebuildable read model is customer360")
    from crm_customer360.rebuild import RebuildError, rebuild_report
    from crm_customer360.rebuild import rebuild as rebuild_360
    from crm_customer360.service import ORIGINS

    feeds = local_feeds()
    lag = read_lag()
    progress = Progress({o: lag.origins[o][2] for o in ORIGINS if o in lag.origins}, quiet=args.json)

    def fetch(origin: str, after: int, limit: int) -> list[dict[str, Any]]:
        if origin not in feeds:
            raise AdminError(f"the {origin} package is not installed here: its feed cannot be read")
        envelopes = feeds[origin](after, limit)
        progress.fetched(origin, envelopes)
        return envelopes

    try:
        report = rebuild_360(fetch, ORIGINS, page=args.page)
    except RebuildError as exc:
        raise AdminError(f"rebuild failed, the live view is untouched: {exc}") from None
    progress.draw(final=True)
    emit(
        args,
        rebuild_report(report),
        lambda r: f"rebuilt customer360 from {r['events']} events in {r['seconds']}s ({r['events_per_second']}/s)",
    )
    return 0


def replay(args: argparse.Namespace) -> int:
    """Reset a consumer's state and tracking together; never re-apply onto state that counted."""
    if args.consumer.endswith(".listing"):
        return replay_listing(args, args.consumer.removesuffix(".listing"))
    if args.consumer == "customer360":
        if args.from_position != 0:
            raise AdminError(
                "customer360's view folds every origin into one row per customer: it cannot be taken back to "
                "an earlier position, and replaying onto it would count events twice. Replay it from 0 "
                "(a rebuild into fresh tables, swapped in with their tracking)."
            )
        return rebuild(argparse.Namespace(**{**vars(args), "name": "customer360"}))
    raise AdminError(
        f"{args.consumer!r} cannot be replayed: a policy's reactions are commands (replaying them would act "
        "twice). Replayable: customer360 (from 0) and <service>.listing (from any position at or below its own)."
    )


def replay_listing(args: argparse.Namespace, schema: str) -> int:
    """A listing re-projects aggregates from their current state (an upsert per aggregate): moving its
    tracking back makes it project those again, with the same rows as a result."""
    from psycopg2 import sql

    from crm_runtime.admin.positions import connect

    conn = connect()
    try:
        with conn, conn.cursor() as cur:
            cur.execute(
                sql.SQL("SELECT name, position FROM {}.listing_tracking FOR UPDATE").format(sql.Identifier(schema))
            )
            rows = cur.fetchall()
            if not rows:
                raise AdminError(f"{schema} has no listing tracking (not projected yet?)")
            ahead = [(n, p) for n, p in rows if args.from_position > p]
            if ahead:
                raise AdminError(
                    f"{schema}.listing is at {ahead[0][1]}: moving it forward to {args.from_position} would skip events"
                )
            cur.execute(
                sql.SQL("UPDATE {}.listing_tracking SET position = %s, updated_at = now()").format(
                    sql.Identifier(schema)
                ),
                (args.from_position,),
            )
    finally:
        conn.close()
    emit(
        args,
        {"consumer": args.consumer, "from": args.from_position},
        lambda r: f"{args.consumer} re-projects from position {args.from_position} (its projector is running)",
    )
    return 0


# --- idempotency, migrate, exporter -------------------------------------------------------------


def idempotency_purge(args: argparse.Namespace) -> int:
    if args.older_than < 3600 and not args.force:
        raise AdminError(
            "purging keys younger than an hour turns a client's retry into a new command; "
            "add --force if that is what you want"
        )
    try:
        from crm_gateway.idempotency import IdempotencyStore
    except ImportError:
        raise AdminError("the gateway package is not installed here") from None
    store = IdempotencyStore(config.postgres_dsn("gateway"), max_connections=1, ttl_seconds=args.older_than)
    try:
        purged = store.purge()
    finally:
        store.close()
    emit(
        args,
        {"purged": purged, "older_than_seconds": args.older_than},
        lambda r: f"purged {r['purged']} idempotency keys older than {args.older_than:g}s",
    )
    return 0


def migrate(args: argparse.Namespace) -> int:
    from crm_runtime.migrate import migrate as run_migrations

    done = run_migrations(args.schemas or None)
    if args.json:
        print(json.dumps({"migrated": done}))
    return 0


def exporter(args: argparse.Namespace) -> int:
    """Serve the platform-wide lag (crm_runtime.metrics.PlatformLagCollector) until interrupted."""
    from prometheus_client import CollectorRegistry, start_http_server
    from prometheus_client.process_collector import ProcessCollector

    from crm_runtime.metrics import PlatformLagCollector

    registry = CollectorRegistry()
    registry.register(PlatformLagCollector(read_lag))
    ProcessCollector(registry=registry)
    server, thread = start_http_server(args.port, addr=args.address, registry=registry)
    print(f"crm-admin exporter: lag metrics on http://{args.address}:{args.port}/metrics", flush=True)
    try:
        thread.join()
    except KeyboardInterrupt:
        server.shutdown()
    return 0


# --- the parser ---------------------------------------------------------------------------------


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="crm-admin",
        description="Operate the CRM platform: see what flows and what is stuck, and repair it. "
        "Reads PostgreSQL with the POSTGRES_* settings (an operator's role) and the processes' "
        "HTTP ports.",
    )
    top.add_argument("--json", action="store_true", help="machine-readable output (JSON) instead of tables")
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser(
        "status",
        help="every process's readiness, relay and consumer lag, dead letters",
        description="Readiness of every process (the local supervisor's, or CRM_<SERVICE>_URLS), "
        "each relay's lag (log head minus cursor), each consumer's lag per origin "
        "(origin's last published position minus the consumer's tracked one) and "
        "the dead letters per consumer. Exit status 1 when a process is not ready "
        "or something is parked.",
    )
    p.add_argument("--run-dir", default=config.setting("RUN_DIR", "run"), help="the local supervisor's RUN_DIR")
    p.set_defaults(run=status)

    p = sub.add_parser(
        "dead-letters",
        help="events parked per consumer, with reasons: list, show, retry, discard",
        description=deadletters.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = actions.add_parser("list", help="every dead letter (or one consumer's), oldest first, with its reason")
    a.add_argument("consumer", nargs="?", help="e.g. customer360, loyalty, customer.relay")
    for name, text in (
        ("show", "one dead letter with its reason and whole envelope"),
        ("retry", "apply a read model's dead letter once (after fixing its cause) and unpark it"),
        ("discard", "forget a dead letter for good: it stays unapplied"),
    ):
        a = actions.add_parser(name, help=text, description=text)
        a.add_argument("consumer", help="the consumer that parked it (see `list`)")
        a.add_argument("id", help="ORIGIN:POSITION, as `list` shows it")
    p.set_defaults(run=dead_letters)

    p = sub.add_parser(
        "rebuild",
        help="rebuild a read model from every origin's history, with progress and ETA",
        description="Rebuild NAME (customer360) into fresh tables from every origin's feed, read in "
        "this process, and swap them in with their tracking; reads never see half a "
        "view. Progress and ETA on stderr.",
    )
    p.add_argument("name", help="customer360")
    p.add_argument("--page", type=int, default=5000, help="events per feed read (default 5000)")
    p.set_defaults(run=rebuild)

    p = sub.add_parser(
        "replay",
        help="reset a consumer's state and its tracking together, from a position",
        description="customer360 --from 0: a rebuild (fresh tables and tracking, swapped in). "
        "<service>.listing --from N: the listing re-projects every aggregate changed "
        "after N (rows are upserts of current state, so nothing is counted twice). "
        "A policy consumer cannot be replayed: its reactions are commands.",
    )
    p.add_argument("consumer", help="customer360 or <service>.listing")
    p.add_argument("--from", dest="from_position", type=int, required=True, metavar="POSITION")
    p.set_defaults(run=replay)

    p = sub.add_parser(
        "idempotency",
        help="gateway idempotency keys: purge the old ones",
        description="Delete gateway idempotency keys claimed longer ago than --older-than seconds "
        "(default 86400, the gateway's IDEMPOTENCY_TTL default). The gateway purges "
        "hourly by itself; this is for a backlog or a shorter retention.",
    )
    p.add_argument("action", choices=["purge"])
    p.add_argument(
        "--older-than", type=float, default=float(config.setting("IDEMPOTENCY_TTL", "86400")), metavar="SECONDS"
    )
    p.add_argument("--force", action="store_true", help="allow purging keys younger than an hour")
    p.set_defaults(run=idempotency_purge)

    p = sub.add_parser(
        "migrate",
        help="create the database, schemas and tables (crm-migrate)",
        description="Create the database if it is missing, then every registered schema and its tables, "
        "idempotently (the same as crm-migrate). Run it before a release that adds tables starts "
        "(deploy/README.md, upgrading services independently).",
    )
    p.add_argument("schemas", nargs="*", help="the schemas to migrate (default: every one registered)")
    p.set_defaults(run=migrate)

    p = sub.add_parser(
        "exporter",
        help="serve platform-wide consumer and relay lag to Prometheus",
        description="An HTTP /metrics endpoint with crm_consumer_lag_events{consumer,origin}, "
        "crm_platform_relay_lag_events{origin} and crm_platform_parked{consumer}, read "
        "from PostgreSQL at each scrape: lag stays visible while a consumer is down.",
    )
    p.add_argument("--port", type=int, default=int(config.setting("EXPORTER_PORT", "9400")))
    p.add_argument("--address", default=config.setting("EXPORTER_ADDRESS", "0.0.0.0"))
    p.set_defaults(run=exporter)
    return top


def main(argv: list[str] | None = None) -> None:
    args = parser().parse_args(argv)
    try:
        code = args.run(args)
    except AdminError as exc:
        print(f"crm-admin: {exc}", file=sys.stderr)
        code = 1
    sys.exit(code)


if __name__ == "__main__":
    main()
