"""The fault-injection suite: `python -m benchmarks.faults --quick` runs two scenarios
against servers it starts itself, exits 0 and writes a row of integer counts for each."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow

COUNTS = ("scheduled", "fired", "lost", "duplicated", "early", "dead_lettered",
          "dead_without_running")


def test_quick_poison_and_worker_kill(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks.faults", "--quick", "--scenarios",
         "poison,worker-kill", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=90, check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((tmp_path / "faults-quick.json").read_text())
    rows = {row["scenario"]: row for row in report["rows"]}
    assert set(rows) == {"worker-kill", "poison"}
    for name, row in rows.items():
        assert row["error"] is None, (name, row["error"])
        for column in COUNTS:
            assert isinstance(row[column], int), (name, column, row[column])
        assert row["scheduled"] > 0
        assert 0 <= row["fired"] <= row["scheduled"]
    assert report["meta"]["redis_version"][:1].isdigit()

    markdown = (tmp_path / "faults-quick.md").read_text()
    assert "| scenario | scheduled | fired | lost |" in markdown
    assert "| worker-kill | " in result.stdout
    assert "| poison | " in result.stdout


def test_delegation_and_arguments() -> None:
    from benchmarks.__main__ import faults_argv
    from benchmarks.faults.__main__ import parse_args, stem_of

    assert faults_argv(["--workloads", "faults", "--quick", "--out", "x"]) == [
        "--quick", "--out", "x"]
    assert faults_argv(["--workloads", "drain", "--quick"]) is None
    assert faults_argv(["--quick"]) is None
    assert stem_of(parse_args(["--quick", "--scenarios", "poison"])) == "faults-quick"
    assert stem_of(parse_args([])) == "faults"
    assert stem_of(parse_args(["--scenarios", "poison"])) == "faults-partial"
    with pytest.raises(SystemExit):
        parse_args(["--scenarios", "meteor-strike"])
