"""Smoke test of the benchmark harness: the baselines in --quick mode write well-formed JSON.

Checks the shape of the results (every baseline present, positive rates), never their speed.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

BASELINES = [
    "psycopg2_insert_commit",
    "psycopg2_execute_values_100",
    "kombu_publish_confirm_each",
    "kombu_publish_confirm_batch",
    "nameko_rpc_roundtrip",
    "eventsourcing_save_1",
    "eventsourcing_save_50",
    "eventsourcing_select_notifications",
]


@pytest.mark.integration
def test_quick_baselines_write_results(tmp_path: Path) -> None:
    """`python -m bench --quick --only baselines` measures every baseline and writes latest.json."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "baselines", "--out", str(tmp_path),
         "--dbname", "crm_bench_smoke", "--vhost", "crm_bench_smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=240,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Baselines" in done.stdout

    latest = json.loads((tmp_path / "latest.json").read_text())
    stamped = [p for p in tmp_path.glob("*.json") if p.name != "latest.json"]
    assert len(stamped) == 1
    assert json.loads(stamped[0].read_text()) == latest

    assert latest["settings"]["quick"] is True
    assert "platform" not in latest
    for key in ("started_at", "finished_at", "host", "notes", "baselines"):
        assert key in latest
    baselines = latest["baselines"]
    for name in BASELINES:
        entry = baselines[name]
        assert entry["rate"] > 0, name
        assert entry["unit"] and entry["what"], name
        assert len(entry["runs"]) == latest["settings"]["runs"]
        assert all(rate > 0 for rate in entry["runs"]), name
    assert baselines["nameko_rpc_roundtrip"]["round_trip_ms"] > 0


def journey_results(rss_mib: float, error: str | None = None) -> dict[str, object]:
    """Results as `python -m bench` writes them, with only the journey phase and one baseline."""
    journeys: dict[str, object] = {
        "journeys": 100, "clients": 8, "completed": 100, "failed": 0, "per_second": 4.2,
        "commands_per_journey": 14.0, "poll_interval_ms": 20.0,
        "converted_to_points": {"p50_ms": 900.0, "p99_ms": 2100.0},
        "handoffs": {name: {"p50_ms": 80.0, "p99_ms": 300.0}
                     for name in ("converted_to_opportunity", "won_to_order", "paid_to_points")},
        "memory_after": {"processes": 8, "total_mib": rss_mib},
    }
    if error:
        journeys["error"] = error
    return {"settings": {"quick": False, "runs": 3}, "notes": [],
            "baselines": {"eventsourcing_save_1": {"what": "eventsourcing save", "rate": 1400.0, "unit": "/s",
                                                   "runs": [1400.0]}},
            "platform": {"journeys": journeys}}


def test_report_shows_the_journey_figures_and_their_targets() -> None:
    """The journey's figures are rows of the table and the JSON summary; RSS is judged against 1 GiB."""
    from bench import report

    rows = {row["figure"]: row for row in report.summary(journey_results(700.0))}
    throughput = next(row for figure, row in rows.items() if figure.startswith("journeys/s"))
    assert throughput["value"] == 4.2 and throughput["baseline_value"] == 100.0
    assert rows["lead converted -> points earned p50"]["value"] == 900.0
    assert rows["lead converted -> points earned p99"]["value"] == 2100.0
    for handoff in ("converted -> opportunity", "won -> order", "paid -> points"):
        assert rows[f"  policy hand-off {handoff} p99"]["value"] == 300.0
    memory = rows["resident memory, all 8 platform processes (after journeys)"]
    assert memory["target"] == "≤ 1,024" and memory["met"] is True
    over = report.summary(journey_results(1100.0))
    assert next(row for row in over if row["figure"].startswith("resident memory, all 8"))["met"] is False


def test_report_says_loudly_when_a_journey_went_wrong() -> None:
    from bench import report

    text = report.render(journey_results(700.0, error="journey correctness: 1 of 100 journeys failed"))
    assert "platform phase journeys FAILED: journey correctness" in text


def test_the_readme_benchmark_table_is_the_one_of_the_published_run() -> None:
    """README.md's table is generated from bench/published.json (`python -m bench.publish`), never typed."""
    done = subprocess.run([sys.executable, "-m", "bench.publish", "--check"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr


@pytest.mark.integration
def test_quick_costs_measure_the_analytics_and_the_encryption(tmp_path: Path) -> None:
    """`python -m bench --quick --only costs`: the analytics refresh and reads of a generated base, and
    registrations sealed and plain, each printed beside its same-run baseline and written to the JSON."""
    done = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--only", "costs", "--out", str(tmp_path),
         "--dbname", "crm_bench_smoke", "--vhost", "crm_bench_smoke"],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "Costs (each figure beside the same work without the feature" in done.stdout
    latest = json.loads((tmp_path / "latest.json").read_text())
    assert "baselines" not in latest and "platform" not in latest

    analytics = latest["costs"]["analytics"]
    assert analytics["customers"] == latest["settings"]["analytics_customers"] == 300
    assert analytics["events"] > analytics["customers"] and analytics["refresh_seconds"] > 0
    for read in ("read_360_ms", "read_360_as_of_ms", "read_view_row_ms"):
        assert 0 < analytics[read]["p50"] <= analytics[read]["p99"], read
    erasure = latest["costs"]["erasure"]
    for mode in ("sealed", "plain"):
        for clients in (1, 8):
            entry = erasure[f"register_{mode}_{clients}"]
            assert entry["rate"] > 0 and len(entry["runs"]) == latest["settings"]["runs"], (mode, clients)
    assert erasure["register_sealed_8"]["ratio_to_plain"] > 0
    assert erasure["erase_latency"]["p50_ms"] > 0

    rows = {row["figure"].strip(): row for row in latest["costs_summary"]}
    sealed = rows["registrations/s, personal data sealed (8 clients)"]
    assert (sealed["value"], sealed["baseline_value"]) == (erasure["register_sealed_8"]["rate"],
                                                           erasure["register_plain_8"]["rate"])
    assert sealed["ratio"] == round(sealed["value"] / sealed["baseline_value"], 2)
    p99 = rows["read of a 360 view with analytics p99"]
    assert (p99["value"], p99["baseline_value"]) == (analytics["read_360_ms"]["p99"],
                                                     analytics["read_view_row_ms"]["p99"])


def test_report_shows_the_costs_beside_their_baselines() -> None:
    """The analytics refresh is judged against writing one row per customer at the run's own psycopg2 rate;
    sealed registrations against plain ones; erasure against one eventsourcing save."""
    from bench import report

    results = {
        "settings": {"quick": False, "runs": 3}, "notes": [],
        "baselines": {"psycopg2_execute_values_100": {"what": "insert", "rate": 20000.0, "unit": "/s", "runs": []},
                      "eventsourcing_save_1": {"what": "save", "rate": 400.0, "unit": "/s", "runs": []}},
        "costs": {
            "analytics": {"customers": 10000, "events": 320000, "refresh_seconds": 4.0, "reads": 300,
                          "read_360_ms": {"p50": 0.6, "p99": 1.2}, "read_360_as_of_ms": {"p50": 1.0, "p99": 2.5},
                          "read_view_row_ms": {"p50": 0.2, "p99": 0.4}},
            "erasure": {"register_sealed_1": {"rate": 300.0}, "register_plain_1": {"rate": 400.0},
                        "register_sealed_8": {"rate": 900.0}, "register_plain_8": {"rate": 1000.0},
                        "erase_latency": {"p50_ms": 5.0}},
        },
    }
    rows = {row["figure"].strip(): row for row in report.cost_rows(results)}
    refresh = rows["analytics refresh, 10,000 customers (320,000 events)"]
    assert (refresh["value"], refresh["baseline_value"], refresh["ratio"]) == (4.0, 0.5, 8.0)
    assert rows["read of a 360 view with analytics p99"]["ratio"] == 3.0
    assert rows["read of a 360 view as of a past instant p99"]["baseline_value"] == 0.4
    assert rows["registrations/s, personal data sealed (1 client)"]["ratio"] == 0.75
    assert rows["registrations/s, personal data sealed (8 clients)"]["ratio"] == 0.9
    assert rows["erasure of a customer p50 (ledger, event, key shredded)"]["baseline_value"] == 2.5
    text = report.render(results)
    assert "Costs (each figure beside" in text and "registrations/s, personal data sealed (8 clients)" in text
    failed = report.render({**results, "costs": {"analytics": {"error": "boom"}}})
    assert "!! cost phase analytics FAILED: boom" in failed
