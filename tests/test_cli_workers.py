"""`redistimers workers`: the live workers of real `redistimers worker` processes, as a table
and as JSON, agreeing with `scheduler.workers()`; a killed worker's record expires."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
import redis

from redistimers import TimerScheduler
from redistimers.jsonforms import workers_json

from ._cli_processes import CliProcesses, start_worker
from ._cli_support import PROCESS_DEADLINE, Cli
from .helpers import wait_for


def table_rows(out: str) -> dict[str, list[str]]:
    """The rows of the workers table by worker id: cells split on runs of two spaces."""
    lines = out.splitlines()
    assert lines[0].split() == [
        "ID", "HOST", "PID", "TOPICS", "RUNNING", "DELIVERED", "RETRIED", "DEAD", "FAILED",
        "HEALTHY", "STARTED", "LAST", "SEEN",
    ]
    rows = [[cell.strip() for cell in line.split("  ") if cell.strip()] for line in lines[1:]]
    return {row[0]: row for row in rows}


def test_no_live_workers_is_said_on_stderr_and_exits_0(cli: Cli) -> None:
    plain = cli("workers", "--namespace", "nobody")
    assert (plain.code, plain.out, plain.err) == (0, "", "no live workers in namespace 'nobody'\n")
    as_json = cli("workers", "--namespace", "nobody", "--json")
    assert (as_json.code, as_json.json, as_json.err) == (0, {"workers": []}, "")


@pytest.mark.slow
def test_the_table_and_json_agree_with_scheduler_workers(
    cli: Cli, redis_url: str, processes: CliProcesses, redis_client: redis.Redis
) -> None:
    first, first_id = start_worker(processes, redis_url, "--concurrency", "3")
    second, second_id = start_worker(processes, redis_url)
    scheduler = TimerScheduler.from_url(redis_url)
    scheduler.set_timer("cli-jobs", {"n": 1}, activate_in=0, timer_id="one")
    wait_for(lambda: sum(w.delivered for w in scheduler.workers()) == 1, PROCESS_DEADLINE)

    listed = cli("workers", "--json")
    assert listed.code == 0, listed
    known = {w.worker_id: w for w in scheduler.workers()}
    by_id: dict[str, Any] = {w["id"]: w for w in listed.json["workers"]}
    assert sorted(by_id) == sorted(known) == sorted([first_id, second_id])
    expected = workers_json(known.values())["workers"]
    for worker in expected:  # all but the heartbeat's time, which moves on between reads
        shown = by_id[worker["id"]]
        assert {**shown, "last_seen": None} == {**worker, "last_seen": None}
    assert by_id[first_id]["topics"] == {"cli-jobs": 3, "cli-other": 3}
    assert by_id[second_id]["topics"] == {"cli-jobs": 2, "cli-other": 4}
    assert by_id[first_id]["heartbeat_interval_s"] == 0.3
    assert json.loads(listed.out) == listed.json

    table = cli("workers")
    assert (table.code, table.err) == (0, ""), table
    rows = table_rows(table.out)
    assert sorted(rows) == sorted(known)
    for worker_id, row in rows.items():
        info = known[worker_id]
        assert row[1:4] == [info.host, str(info.pid), ", ".join(
            f"{topic} (max {count})" for topic, count in sorted(info.topics.items())
        )]
        assert row[5:10] == [str(info.delivered), str(info.retried), str(info.dead_lettered),
                             str(info.failed), "yes"]
        assert row[10] == info.started_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        assert re.fullmatch(r"\d+(\.\d)?m?s ago", row[11]), row
    assert sum(int(row[5]) for row in rows.values()) == 1

    for process in (first, second):
        assert processes.stop(process) == 0
    gone = cli("workers")
    assert (gone.code, gone.out) == (0, ""), gone  # a stopped worker removes its record


@pytest.mark.slow
def test_a_sigkilled_worker_vanishes_from_the_list_once_its_record_expires(
    cli: Cli, redis_url: str, processes: CliProcesses
) -> None:
    killed, killed_id = start_worker(processes, redis_url)
    alive, alive_id = start_worker(processes, redis_url)
    assert sorted(w["id"] for w in cli("workers", "--json").json["workers"]) == sorted(
        [killed_id, alive_id]
    )
    killed.kill()
    killed.wait(PROCESS_DEADLINE)

    def listed() -> list[str]:
        return [w["id"] for w in cli("workers", "--json").json["workers"]]

    wait_for(lambda: listed() == [alive_id], PROCESS_DEADLINE, interval=0.05)
    assert list(table_rows(cli("workers").out)) == [alive_id]
    assert processes.stop(alive) == 0
