"""The results as a table (platform figures against baselines and the issue's targets) and as JSON."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

#: The figures STACK.md recorded on this machine, shown beside today's for context.
STACK_MD = {
    "psycopg2_insert_commit": 1820,
    "psycopg2_execute_values_100": 20921,
    "kombu_publish_confirm_each": 598,
    "kombu_publish_confirm_batch": 6500,
    "nameko_rpc_roundtrip": 175,
    "eventsourcing_save_1": 329,  # the locking insert, which crm_runtime uses
    "eventsourcing_save_1_db_functions": 487,  # POSTGRES_ENABLE_DB_FUNCTIONS: no table lock, not used
    "eventsourcing_save_50": 4600,
    "eventsourcing_select_notifications": 79022,
}

#: The targets (issue 8, throughput, unless said otherwise): reported, never asserted.
TARGETS = {
    "registrations_per_second": (">=", 600.0),
    "registration_p99_ms": ("<=", 100.0),
    "profile_changes_per_second": (">=", 600.0),
    "profile_change_p99_ms": ("<=", 100.0),
    "lag_p99_ms": ("<=", 100.0),
    "relay_per_second": (">=", 8000.0),
    "rebuild_events_per_second": (">=", 25000.0),
    "rss_total_mib": ("<=", 1024.0),
    # issue 7: the resident memory of all eight processes together, with the journey.
    "journey_rss_total_mib": ("<=", 1024.0),
    # issue 8, reads (bench.reads): 16 clients through the gateway, search over 100k customers.
    "read_360_per_second": (">=", 1000.0),
    "read_360_p99_ms": ("<=", 25.0),
    "search_per_second": (">=", 500.0),
    "search_p99_ms": ("<=", 50.0),
    "apply_per_second": (">=", 10000.0),
}

NOTE_LOAD = ("The load generator (this process: plain threads, keep-alive http.client) runs on the same 2 cores "
             "as the platform, RabbitMQ and PostgreSQL, and takes CPU from them: platform figures are lower "
             "bounds of what the platform does on a machine of its own.")


NOTE_COSTS = ("Costs: the analytics phase generates the seeded history of tests/support/history.py, folds it with the "
              "view's own fold into a schema of its own and times analytics_store.refresh over the whole base; its "
              "baseline is the time psycopg2 takes to write one row per customer at this run's 100-rows-per-"
              "transaction rate. Reads of the 360 view (its analytics and newest timeline page, readmodel."
              "customer_360, straight from the read model: no gateway, no RPC) are timed beside reads of the same "
              "customers' bare view rows. The erasure phase registers customers through the customer application "
              "with personal fields sealed under a per-customer key and with no personal fields declared, "
              "on PostgreSQL, 1 and 8 clients (median of the baseline runs).")


def target_status(key: str, value: float | None) -> dict[str, Any]:
    """{"target": "≥ 300", "met": True/False/None} for one figure."""
    op, limit = TARGETS[key]
    met = None if value is None else (value >= limit if op == ">=" else value <= limit)
    return {"target": f"{'≥' if op == '>=' else '≤'} {limit:,.0f}", "met": met}


def _rate(baselines: dict[str, Any], key: str) -> float | None:
    entry = baselines.get(key) or {}
    return entry.get("rate")


def _fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "n/a"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.1f}"
    return f"{text} {unit}".strip()


def _ratio(value: float | None, base: float | None) -> float | None:
    if value is None or not base:
        return None
    return round(value / base, 2)


def summary(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The platform rows: figure, value, baseline, ratio, target and whether it is met."""
    base = results.get("baselines") or {}
    plat = results.get("platform") or {}
    reg = plat.get("registrations") or {}
    lag = plat.get("lag") or {}
    pipe = plat.get("pipeline") or {}
    reb = plat.get("rebuild") or {}
    jour = plat.get("journeys") or {}
    mem = plat.get("memory") or {}
    rtt = (base.get("nameko_rpc_roundtrip") or {}).get("round_trip_ms")
    save_1 = _rate(base, "eventsourcing_save_1")
    values_100 = _rate(base, "psycopg2_execute_values_100")
    batch = _rate(base, "kombu_publish_confirm_batch")
    rows: list[dict[str, Any]] = []

    def row(figure: str, value: float | None, unit: str, baseline: str, base_value: float | None,
            target: str | None = None) -> None:
        entry: dict[str, Any] = {"figure": figure, "value": value, "unit": unit, "baseline": baseline,
                                 "baseline_value": base_value, "ratio": _ratio(value, base_value)}
        if target:
            entry.update(target_status(target, value))
        rows.append(entry)

    clients = f"{reg['clients']} clients, {reg.get('accepted', 0):,} accepted" if "clients" in reg else "not run"
    row(f"registrations/s via gateway ({clients})",
        reg.get("per_second"), "/s", "eventsourcing save, 1 aggregate per save", save_1, "registrations_per_second")
    row("registration latency p50", reg.get("p50_ms"), "ms", "one nameko RPC round trip", rtt)
    row("registration latency p99", reg.get("p99_ms"), "ms", "one nameko RPC round trip", rtt, "registration_p99_ms")
    keyed = plat.get("registrations_keyed") or {}
    if "per_second" in keyed:
        row(f"  the same with an Idempotency-Key ({keyed['clients']} clients, {keyed.get('accepted', 0):,} accepted)",
            keyed.get("per_second"), "/s", "eventsourcing save, 1 aggregate per save", save_1,
            "registrations_per_second")
        row("  its latency p99", keyed.get("p99_ms"), "ms", "one nameko RPC round trip", rtt, "registration_p99_ms")
    changes = plat.get("profile_changes") or {}
    if "per_second" in changes:
        row(f"profile changes/s with If-Match ({changes['clients']} clients, {changes.get('accepted', 0):,} accepted)",
            changes.get("per_second"), "/s", "eventsourcing save, 1 aggregate per save", save_1,
            "profile_changes_per_second")
        row("profile change latency p99", changes.get("p99_ms"), "ms", "one nameko RPC round trip", rtt,
            "profile_change_p99_ms")
    rate = lag.get("achieved_rate")
    paced = f"paced {_fmt(rate)}/s, {lag.get('sampled', 0)} sampled" if rate is not None else "not run"
    row(f"projection lag p50 ({paced})", lag.get("lag_p50_ms"), "ms",
        "one nameko RPC round trip", rtt)
    row("projection lag p99", lag.get("lag_p99_ms"), "ms", "one nameko RPC round trip", rtt, "lag_p99_ms")
    if "completed" in jour:
        per_journey = jour.get("commands_per_journey")
        journey_base = round(save_1 / per_journey, 1) if save_1 and per_journey else None
        row(f"journeys/s ({jour['clients']} clients, {jour['completed']}/{jour['journeys']} completed)",
            jour.get("per_second"), "/s", f"eventsourcing save / {per_journey or '?'} commands per journey",
            journey_base)
        handoffs = jour.get("handoffs") or {}
        for label, key in (("p50", "p50_ms"), ("p99", "p99_ms")):
            row(f"lead converted -> points earned {label}", (jour.get("converted_to_points") or {}).get(key), "ms",
                "one nameko RPC round trip", rtt)
        for label, key in (("converted -> opportunity", "converted_to_opportunity"),
                           ("won -> order", "won_to_order"), ("paid -> points", "paid_to_points")):
            figures = handoffs.get(key) or {}
            row(f"  policy hand-off {label} p50", figures.get("p50_ms"), "ms", "one nameko RPC round trip", rtt)
            row(f"  policy hand-off {label} p99", figures.get("p99_ms"), "ms", "one nameko RPC round trip", rtt)
        after = jour.get("memory_after") or {}
        row(f"resident memory, all {after.get('processes', '?')} platform processes (after journeys)",
            after.get("total_mib"), "MiB", "", None, "journey_rss_total_mib")
    row("relay publish events/s (live, while seeding)", pipe.get("relay_per_second"), "/s",
        "py-amqp publish, batch confirms", batch, "relay_per_second")
    row("360 view live apply events/s (while seeding)", pipe.get("view_per_second"), "/s",
        "psycopg2 100 rows/txn", values_100)
    row(f"rebuild events/s over {reb.get('events', 0):,} events", reb.get("events_per_second"), "/s",
        "psycopg2 100 rows/txn", values_100, "rebuild_events_per_second")
    if plat.get("reads") and "error" not in plat["reads"]:
        from bench.reads import summary_rows

        summary_rows(plat["reads"], row)
    row("resident memory, all platform processes (peak)", mem.get("peak_total_mib"), "MiB", "", None,
        "rss_total_mib")
    for name, mib in (mem.get("peak_mib") or {}).items():
        row(f"  resident memory {name} (peak)", mib, "MiB", "", None)
    return rows


def cost_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """The costs' rows (bench.analytics, bench.erasure), each figure beside the same work without the feature."""
    costs = results.get("costs") or {}
    base = results.get("baselines") or {}
    rows: list[dict[str, Any]] = []

    def row(figure: str, value: float | None, unit: str, baseline: str, base_value: float | None) -> None:
        rows.append({"figure": figure, "value": value, "unit": unit, "baseline": baseline,
                     "baseline_value": base_value, "ratio": _ratio(value, base_value)})

    ana = costs.get("analytics") or {}
    if "refresh_seconds" in ana:
        values_100 = _rate(base, "psycopg2_execute_values_100")
        write_all = round(ana["customers"] / values_100, 2) if values_100 else None
        row(f"analytics refresh, {ana['customers']:,} customers ({ana['events']:,} events)", ana["refresh_seconds"],
            "s", "psycopg2 writing one row per customer, 100 rows/txn", write_all)
        for label, key in (("p50", "p50"), ("p99", "p99")):
            row(f"  read of a 360 view with analytics {label}", ana["read_360_ms"][key], "ms",
                "the bare view row by key", ana["read_view_row_ms"][key])
        row("  read of a 360 view as of a past instant p99", ana["read_360_as_of_ms"]["p99"], "ms",
            "the bare view row by key", ana["read_view_row_ms"]["p99"])
    era = costs.get("erasure") or {}
    measured = sorted(int(key.rsplit("_", 1)[1]) for key in era if key.startswith("register_sealed_"))
    for clients in measured:
        sealed, plain = era.get(f"register_sealed_{clients}") or {}, era.get(f"register_plain_{clients}") or {}
        if "rate" in sealed:
            row(f"registrations/s, personal data sealed ({clients} client{'s' if clients > 1 else ''})",
                sealed["rate"], "/s", "the same, no encryption", plain.get("rate"))
    if "erase_latency" in era:
        save_1 = _rate(base, "eventsourcing_save_1")
        row("  erasure of a customer p50 (ledger, event, key shredded)", era["erase_latency"]["p50_ms"], "ms",
            "one eventsourcing save", round(1000 / save_1, 2) if save_1 else None)
    return rows


def cpu_per_command(results: dict[str, Any], phase: str = "registrations") -> dict[str, float]:
    """Milliseconds of CPU (of one core) each process spent per accepted command of `phase`: a figure
    that holds better than throughput when the machine is shared, since it does not count waiting."""
    entry = (results.get("platform") or {}).get(phase) or {}
    rate, used = entry.get("per_second"), entry.get("cpu_cores_used") or {}
    if not rate:
        return {}
    skip = {"whole machine", "everything else", "bench (load generator)"}
    return {name: round(1000 * cores / rate, 2) for name, cores in used.items() if name not in skip and cores}


def _table(title: str, rows: list[dict[str, Any]]) -> list[str]:
    """Rows as text: figure, value, its baseline, the ratio, the target and whether it is met."""
    lines = [title, f"{'figure':<62} {'value':>12} {'baseline':>12} {'ratio':>7}  {'target':>9} {'met':>7}  "
                    "baseline is"]
    for r in rows:
        met = {True: "met", False: "NOT met", None: ""}[r.get("met")] if "target" in r else ""
        if "target" in r and r.get("value") is None:
            met = "n/a"
        base_value = r["baseline_value"]
        base_text = _fmt(base_value, r["unit"]) if base_value is not None else ""
        ratio = f"{r['ratio']:.2f}x" if r["ratio"] is not None else ""
        lines.append(f"{r['figure']:<62} {_fmt(r['value'], r['unit']):>12} {base_text:>12} {ratio:>7}  "
                     f"{r.get('target', ''):>9} {met:>7}  {r['baseline']}")
    return lines


def render(results: dict[str, Any]) -> str:
    """The whole report as text: platform table, costs table, baselines table, notes."""
    lines: list[str] = []
    rows = summary(results) if results.get("platform") else []
    if rows:
        lines += _table("Platform (one run, same machine and moment as the baselines)", rows)
        failed = {name: entry["error"] for name, entry in (results.get("platform") or {}).items()
                  if isinstance(entry, dict) and "error" in entry}
        for name, error in failed.items():
            lines.append(f"!! platform phase {name} FAILED: {error}")
        lines.append("")
        cpus = (results.get("host") or {}).get("cpus")
        phases = {name: entry["cpu_cores_used"] for name, entry in (results.get("platform") or {}).items()
                  if isinstance(entry, dict) and "cpu_cores_used" in entry}
        if phases:
            lines.append(f"CPU used during each phase, in cores (of {cpus}); PostgreSQL and RabbitMQ count every "
                         "session (shared), 'everything else' is other work on this machine")
            for name, used in phases.items():
                lines.append(f"  {name:<14} " + ", ".join(f"{who} {cores:.2f}" for who, cores in used.items()))
            lines.append("")
    costs = results.get("costs") or {}
    if costs:
        lines += _table("Costs (each figure beside the same work without the feature, same run)", cost_rows(results))
        for name, entry in costs.items():
            if "error" in entry:
                lines.append(f"!! cost phase {name} FAILED: {entry['error']}")
        lines.append("")
    base = results.get("baselines") or {}
    if base:
        lines.append(f"Baselines (median of {results.get('settings', {}).get('runs', 3)} short runs)")
        lines.append(f"{'what':<84} {'today':>18} {'STACK.md':>10}  runs")
        for key, entry in base.items():
            if "error" in entry:
                lines.append(f"{key:<84} {'FAILED':>18}  {entry['error']}")
                continue
            reference = STACK_MD.get(key)
            lines.append(f"{entry['what']:<84} {_fmt(entry['rate'], entry['unit']):>18} "
                         f"{_fmt(reference) if reference else '':>10}  {', '.join(f'{r:,.0f}' for r in entry['runs'])}")
        lines.append("")
    for note in results.get("notes", []):
        lines.append(f"* {note}")
    return "\n".join(lines)


def write(results: dict[str, Any], out_dir: Path) -> Path:
    """Write the results as <UTC timestamp>.json and latest.json in `out_dir`; the timestamped path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    results = {**results, "summary": summary(results) if results.get("platform") else [],
               "costs_summary": cost_rows(results)}
    text = json.dumps(results, indent=2, default=str)
    path = out_dir / f"{stamp}.json"
    path.write_text(text)
    (out_dir / "latest.json").write_text(text)
    return path
