"""crm-admin's pieces that need no database: its tables, dead-letter names, refusals, and --help."""

from __future__ import annotations

import argparse

import pytest

from crm_runtime.admin import cli, deadletters


def test_a_table_aligns_columns_and_cuts_long_cells() -> None:
    text = cli.table([{"consumer": "customer360", "reason": "x" * 100, "ready": True}, {"consumer": "sales"}],
                     ["consumer", "reason", "ready"])
    header, first, second = text.splitlines()
    assert header.split() == ["CONSUMER", "REASON", "READY"]
    assert first.startswith("customer360  ") and first.endswith("yes") and "..." in first
    assert second.split() == ["sales", "-", "-"]
    assert cli.table([], ["consumer"]) == "(none)"


@pytest.mark.parametrize("name, expected", [("customer:12", ("customer", 12)), ("a:b:3", ("a:b", 3))])
def test_a_dead_letter_is_named_origin_and_position(name: str, expected: tuple[str, int]) -> None:
    assert deadletters.parse_name(name) == expected


@pytest.mark.parametrize("name", ["customer", "customer:", ":12", "customer:x"])
def test_a_malformed_dead_letter_name_is_refused(name: str) -> None:
    with pytest.raises(deadletters.DeadLetterError):
        deadletters.parse_name(name)


def test_policies_cannot_be_replayed_and_the_360_view_only_from_zero() -> None:
    with pytest.raises(cli.AdminError, match="commands"):
        cli.replay(argparse.Namespace(consumer="loyalty", from_position=0, json=False))
    with pytest.raises(cli.AdminError, match="count events twice"):
        cli.replay(argparse.Namespace(consumer="customer360", from_position=3, json=False))


def test_idempotency_keys_younger_than_an_hour_are_purged_only_when_forced() -> None:
    with pytest.raises(cli.AdminError, match="--force"):
        cli.idempotency_purge(argparse.Namespace(older_than=60.0, force=False, json=False))


def test_every_subcommand_explains_itself(capsys: pytest.CaptureFixture[str]) -> None:
    for command in (["--help"], ["status", "--help"], ["dead-letters", "retry", "--help"], ["rebuild", "--help"],
                    ["replay", "--help"], ["idempotency", "--help"], ["migrate", "--help"], ["exporter", "--help"]):
        with pytest.raises(SystemExit) as exited:
            cli.parser().parse_args(command)
        assert exited.value.code == 0
        assert len(capsys.readouterr().out) > 200, command
