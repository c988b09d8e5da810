"""The benchmark harness: `python -m benchmarks --quick` completes against the session's
redis-server and reports a number for every figure of redistimers; the drain alone runs
too, and --profile writes the workers' thread profiles; on a Redis Cluster it starts, the
drain spreads its topics over the masters and sums their counters."""

from __future__ import annotations

import json
import os
import pstats
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


def test_drain_alone_runs_and_profile_writes_each_workers_thread_profiles(
    redis_server: RedisServer, tmp_path: Path
) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--peers", "none", "--workloads",
         "drain", "--redis-url", redis_server.url, "--out", str(tmp_path / "out"),
         "--profile", str(tmp_path / "profiles")],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    ours = json.loads((tmp_path / "out" / "quick.json").read_text())["cells"]["redistimers"]
    assert ours["drain.rate"]["value"] > 0
    assert ours["drain.default_rate"]["value"] > 0
    # One worker drained with the tuned settings, another with the defaults.
    pollers = sorted((tmp_path / "profiles").glob("*.redistimers-poller.pstat"))
    assert len(pollers) == 2, sorted(p.name for p in (tmp_path / "profiles").iterdir())
    for path in pollers:
        functions = pstats.Stats(str(path)).get_stats_profile().func_profiles.values()
        assert any(f.file_name.endswith("poller.py") for f in functions)


def test_quick_drain_on_a_cluster_spreads_topics_and_sums_the_masters(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "benchmarks", "--quick", "--redis", "cluster", "--peers",
         "none", "--workloads", "drain", "--out", str(tmp_path)],
        cwd=ROOT, capture_output=True, text=True, timeout=110, check=False,
        env={**os.environ, "MPLBACKEND": "Agg"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["quick-cluster.json",
                                                         "quick-cluster.md"]
    report = json.loads((tmp_path / "quick-cluster.json").read_text())
    assert report["meta"]["redis"] == "cluster"
    assert report["meta"]["replicas"] >= 1
    masters = report["meta"]["masters"]
    assert len(masters) == 3

    keys = [figure["key"] for figure in report["figures"]]
    assert "drain.rate.replicas" in keys
    assert "drain.redis_cpu.replicas" in keys
    ours = report["cells"]["redistimers"]
    missing = {key: ours.get(key) for key in keys
               if key not in ours or ours[key]["value"] is None}
    assert not missing, f"figures without a value: {missing}\n{result.stderr[-3000:]}"

    drain = report["raw"]["redistimers"]["drain"]
    # Two topics on each master, one worker for all of them.
    assert sorted(drain["topics"].values()) == sorted(masters * 2)
    for run in ("tuned", "replicas"):
        by_master = drain[run]["redis_cpu_s_by_master"]
        assert sorted(by_master) == sorted(masters)
        assert all(cpu > 0 for cpu in by_master.values()), by_master
        assert drain[run]["redis_cpu_s"] == pytest.approx(sum(by_master.values()), abs=1e-3)

    markdown = (tmp_path / "quick-cluster.md").read_text()
    assert "Redis Cluster" in markdown
    assert all(master in markdown for master in masters)
    assert "| drain, min_replicas=1, timers/s ↑ |" in markdown


def test_plan_json_is_json() -> None:
    from benchmarks.session import plan_json

    timers = [("a-1", "t", 5), ("b.2", "t:x", 6)]
    assert json.loads(plan_json(timers))["timers"] == [list(t) for t in timers]
    odd = [('quote"d', "t", 1), ("back\\slash", "t\n", 2)]
    assert json.loads(plan_json(odd))["timers"] == [list(t) for t in odd]


def test_arguments() -> None:
    from benchmarks.__main__ import parse_args, stem_of
    from benchmarks.figures import WORKLOADS
    from benchmarks.peers import PEER_NAMES

    quick = parse_args(["--quick"])
    assert quick.peer_names == []
    assert quick.workload_names == WORKLOADS
    assert stem_of(quick) == "quick"
    full = parse_args([])
    assert full.peer_names == list(PEER_NAMES)
    assert stem_of(full) == "full"
    some = parse_args(["--peers", "rq,huey", "--workloads", "lateness,drain"])
    assert some.peer_names == ["huey", "rq"]  # in the report's order
    assert some.workload_names == ["drain", "idle-lateness"]
    assert stem_of(some) == "partial"
    assert parse_args(["--peers", "none"]).peer_names == []
    assert full.redis == "server"
    cluster = parse_args(["--redis", "cluster"])
    assert cluster.peer_names == []
    assert cluster.workload_names == ["schedule", "drain", "drain-4", "memory"]
    assert stem_of(cluster) == "cluster"
    assert stem_of(parse_args(["--redis", "sentinel", "--workloads", "drain"])) == (
        "partial-sentinel")
    assert stem_of(parse_args(["--redis", "cluster", "--quick"])) == "quick-cluster"
    assert stem_of(parse_args(["--redis", "cluster", "--topics", "3"])) == "cluster-3topics"
    assert parse_args(["--redis-url", "redis+sentinel://h:1/m"]).redis == "sentinel"
    with pytest.raises(SystemExit):  # the lateness cases run on one redis-server only
        parse_args(["--redis", "cluster", "--workloads", "idle-lateness"])
    with pytest.raises(SystemExit):
        parse_args(["--redis", "server", "--redis-url", "redis+cluster://h:1"])
    assert full.profile is None
    assert parse_args(["--profile", "some/dir"]).profile == Path("some/dir")
    with pytest.raises(SystemExit):
        parse_args(["--peers", "sidekiq"])


def test_budgets_share_what_is_left() -> None:
    from benchmarks.__main__ import budget_of
    from benchmarks.session import Sizes

    sizes = Sizes()
    names = ["redistimers", "faststream", "rq"]
    assert budget_of(sizes, names, 10_000) == sizes.ours_budget  # plenty: its own
    # 600 s for three: shared in proportion to their own budgets.
    share = 600 * sizes.ours_budget / (sizes.ours_budget + 2 * sizes.library_budget)
    assert budget_of(sizes, names, 600) == pytest.approx(share)
    assert budget_of(sizes, ["rq"], 10) == sizes.min_budget
