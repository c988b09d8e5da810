"""`--in -5s` reaches set_timer's check as a value; where argparse cannot be told so (its
private pattern is gone), the usage error says to write `--in=-5s`, and that works."""

from __future__ import annotations

import argparse

import pytest

from redistimers.cli import build_parser, minus_values


def test_a_minus_and_a_digit_are_read_as_a_value() -> None:
    args = build_parser().parse_args(["schedule", "t", "--in", "-5s", "--id", "-1"])
    assert args.timer_id == "-1"


def test_without_argparse_s_private_pattern_the_error_says_how_to_write_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(minus_values, "_ATTRIBUTE", "_no_such_attribute")
    assert minus_values.read_minus_digit_as_value(argparse.ArgumentParser()) is False
    parser = build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["schedule", "t", "--id", "-1h30m", "--in", "1s"])
    assert exit_info.value.code == 2
    assert "for a value starting with '-', write --id=VALUE" in capsys.readouterr().err
    args = parser.parse_args(["schedule", "t", "--id=-1h30m", "--in", "1s"])
    assert args.timer_id == "-1h30m"
