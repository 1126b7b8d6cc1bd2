"""`python -m bench.publish [RESULTS]`: keep a bench run as the published one and write the README's
benchmark table from it.

The run (default: bench/results/latest.json) is copied to bench/published.json, which is committed
(bench/results/ is not), and the table between the README's `<!-- bench:table -->` markers is
regenerated from it, so the figures the README shows are always those of a run anyone can open.
`python -m bench.publish --check` only says whether the README matches bench/published.json (a test
runs it).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path
from typing import Any

from bench import report

ROOT = Path(__file__).resolve().parent.parent
PUBLISHED = ROOT / "bench" / "published.json"
README = ROOT / "README.md"
BEGIN, END = "<!-- bench:table -->", "<!-- /bench:table -->"


def _cell(value: float | None, unit: str) -> str:
    return report._fmt(value, unit) if value is not None else "n/a"


def table(results: dict[str, Any]) -> str:
    """The platform rows of a run as a Markdown table, with the run's date, load and CPU per command."""
    host = results.get("host") or {}
    lines = [
        f"Run of {results.get('started_at', '?')} on {host.get('cpus', '?')} cores "
        f"(load average at start {', '.join(str(x) for x in host.get('load_average_at_start', []))})"
        f"{' — quick: not a measurement' if (results.get('settings') or {}).get('quick') else ''}.",
        "",
        "| figure | platform | baseline (same run) | ratio | target |",
        "|---|---|---|---|---|",
    ]
    for row in [*report.summary(results), *report.cost_rows(results)]:
        baseline = f"{row['baseline']} {_cell(row['baseline_value'], row['unit'])}" if row["baseline_value"] else ""
        ratio = f"{row['ratio']:.2f}×" if row["ratio"] is not None else ""
        target = ""
        if "target" in row:
            met = {True: "met", False: "not met", None: "n/a"}[row.get("met")]
            target = f"{row['target']} ({met})"
        value = _cell(row["value"], row["unit"])
        lines.append(f"| {row['figure'].strip()} | {value} | {baseline} | {ratio} | {target} |")
    per_command = report.cpu_per_command(results)
    if per_command:
        lines.append("")
        lines.append("CPU per registration (ms of one core, by process, from the registrations phase): "
                     + ", ".join(f"{name} {ms:.2f}" for name, ms in per_command.items()) + ".")
    return "\n".join(lines)


def readme_with(results: dict[str, Any], text: str) -> str:
    """The README text with its benchmark table replaced by the one of `results`."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {BEGIN} ... {END} markers")
    return text[: start + len(BEGIN)] + "\n" + table(results) + "\n" + text[end:]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.publish", description=__doc__)
    parser.add_argument("results", nargs="?", type=Path, default=ROOT / "bench" / "results" / "latest.json")
    parser.add_argument("--check", action="store_true", help="only check the README against bench/published.json")
    args = parser.parse_args(argv)
    if args.check:
        expected = readme_with(json.loads(PUBLISHED.read_text()), README.read_text())
        if expected != README.read_text():
            print("README.md's benchmark table is not the one of bench/published.json: run `python -m bench.publish "
                  "bench/published.json`", file=sys.stderr)
            return 1
        return 0
    results = json.loads(args.results.read_text())
    if args.results.resolve() != PUBLISHED:
        shutil.copyfile(args.results, PUBLISHED)
    README.write_text(readme_with(results, README.read_text()))
    print(f"published {args.results} as {PUBLISHED.relative_to(ROOT)} and rewrote README.md's benchmark table")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
