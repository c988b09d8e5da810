"""The benchmark harness: `python -m benchmarks --quick` completes against the session's
redis-server and reports a number for every figure of redistimers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from redistimers.testing import RedisServer

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow


def test_quick_run_reports_every_figure(redis_server: RedisServer, tmp_path: Path) -> None:
    # The harness FLUSHes the server before every case, as the suite does between tests.
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--redis-url", redis_server.url,
         "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    report = json.loads((tmp_path / "quick.json").read_text())
    keys = [figure["key"] for figure in report["figures"]]
    assert len(keys) >= 40
    ours = report["cells"]["redistimers"]
    missing = {key: ours.get(key) for key in keys
               if key not in ours or ours[key]["value"] is None}
    assert not missing, f"figures without a value: {missing}\n{result.stderr[-3000:]}"
    assert report["libraries"]["redistimers"]["info"]["version"]

    markdown = (tmp_path / "quick.md").read_text()
    table = [line for line in markdown.splitlines() if line.startswith("| ")]
    assert len(table) == 1 + len(keys)  # the header, then one row per figure
    assert table[0].startswith("| figure | redistimers")
    for row in table[1:]:
        ours_cell = row.split(" | ")[1]
        assert ours_cell[:1].isdigit() or ours_cell.startswith("-"), row

    png = tmp_path / "quick-lateness.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| figure | redistimers" in result.stdout
