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
