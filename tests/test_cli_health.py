"""`redistimers health`, the probe: exit 0 for a live `redistimers worker` serving its topics
in time, 1 (one line saying why) without one or behind --max-lag, 2 when Redis does not
answer, and quickly even when Redis hangs."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import signal
import subprocess
import threading
import time

import pytest
import redis

from redistimers import Router, TimerScheduler
from redistimers.cli.context import PROBE_TIMEOUT
from redistimers.store import WorkerRegistry
from redistimers.store.keys import Keys

from ._cli_processes import CliProcesses, start_worker
from ._cli_support import PROCESS_DEADLINE, Cli, Result
from .helpers import REPO, SchedulerFactory, ServerFactory, cli_command, closed_port, wait_for

UTC = dt.timezone.utc


def assert_unhealthy(result: Result, why: str) -> None:
    """Exit code 1 and one line on stderr: `why`, where "N.Ns" stands for any lag in tenths
    of a second (it grows while the test runs)."""
    assert (result.code, result.out) == (1, ""), result
    pattern = re.escape(f"redistimers: unhealthy: {why}\n").replace(r"N\.Ns", r"\d+\.\ds")
    assert re.fullmatch(pattern, result.err), result.err


def overdue(scheduler: TimerScheduler, topic: str, seconds: float, timer_id: str) -> None:
    """A timer of `topic` due `seconds` ago."""
    due = dt.datetime.now(UTC) - dt.timedelta(seconds=seconds)
    scheduler.set_timer(topic, timer_id, activate_at=due, timer_id=timer_id)


@pytest.mark.slow
def test_a_live_worker_process_is_healthy_and_the_probe_process_exits_0(
    cli: Cli, redis_url: str, processes: CliProcesses
) -> None:
    worker, _ = start_worker(processes, redis_url)
    probe = subprocess.run(
        [*cli_command(), "--redis-url", redis_url, "health", "--topic", "cli-jobs", "--topic",
         "cli-other", "--max-lag", "30s"],
        capture_output=True, text=True, cwd=REPO, timeout=PROCESS_DEADLINE,
    )
    assert (probe.returncode, probe.stderr) == (0, ""), probe
    assert probe.stdout == "healthy: 1 live worker; cli-jobs 0.0s behind, cli-other 0.0s behind\n"

    assert cli("health").out == "healthy: 1 live worker\n"
    assert cli("health", "--topic", "cli-jobs").out == "healthy: 1 live worker; serving cli-jobs\n"
    assert cli("health", "--max-lag", "1m").out.startswith("healthy: 1 live worker")
    quiet = cli("health", "--topic", "cli-jobs", "--quiet")
    assert (quiet.code, quiet.out, quiet.err) == (0, "", "")
    assert_unhealthy(cli("health", "--topic", "invoices"),
                     "no live worker serves topic 'invoices' in namespace 'redistimers'")
    assert_unhealthy(cli("health", "--namespace", "elsewhere"),
                     "no live workers in namespace 'elsewhere'")

    assert processes.stop(worker) == 0
    assert_unhealthy(cli("health", "--topic", "cli-jobs"),
                     "no live workers in namespace 'redistimers'")


def test_no_worker_is_unhealthy(cli: Cli) -> None:
    assert_unhealthy(cli("health"), "no live workers in namespace 'redistimers'")
    assert_unhealthy(cli("health", "--topic", "invoices", "-q"),
                     "no live workers in namespace 'redistimers'")


def test_a_topic_behind_max_lag_is_unhealthy_and_every_reason_is_on_one_line(
    cli: Cli, make_scheduler: SchedulerFactory, release: threading.Event
) -> None:
    """One worker serves "slow" one at a time, blocked: a second timer due 45 s ago waits."""
    router = Router()
    router.handler("slow", max_concurrent=1)(lambda payload: release.wait(PROCESS_DEADLINE))
    worker = make_scheduler(router)
    worker.start()
    overdue(worker, "slow", 50, "first")
    wait_for(lambda: worker.stats("slow").leased == 1, PROCESS_DEADLINE)
    overdue(worker, "slow", 45, "second")
    overdue(worker, "orphan", 100, "nobody-serves-it")

    assert_unhealthy(cli("health", "--topic", "slow", "--max-lag", "30s"),
                     "topic 'slow' is N.Ns behind (limit 30s)")
    assert re.fullmatch(r"healthy: 1 live worker; slow 4[56]\.\ds behind\n",
                        cli("health", "--topic", "slow", "--max-lag", "1m").out)
    assert cli("health", "--topic", "slow").code == 0  # no --max-lag: lag is not checked
    assert_unhealthy(
        cli("health", "--max-lag", "1m"),  # every topic
        "topic 'orphan' is N.Ns behind (limit 60s)",
    )
    assert_unhealthy(
        cli("health", "--topic", "orphan", "--topic", "slow", "--max-lag", "30s"),
        "no live worker serves topic 'orphan' in namespace 'redistimers'; topic 'orphan' is "
        "N.Ns behind (limit 30s); topic 'slow' is N.Ns behind (limit 30s)",
    )
    release.set()
    wait_for(lambda: worker.stats("slow").pending == 0, PROCESS_DEADLINE)
    assert cli("health", "--topic", "slow", "--max-lag", "30s").out == (
        "healthy: 1 live worker; slow 0.0s behind\n"
    )


def test_a_worker_whose_threads_find_redis_failing_does_not_serve(
    cli: Cli, make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    """A worker's record saying healthy false (its poller finds Redis stalled or full)
    does not count as serving: a real worker's record, so marked, under another id."""
    router = Router()
    router.handler("invoices")(lambda payload: None)
    worker = make_scheduler(router)
    worker.start()
    registry = WorkerRegistry(redis_client, Keys("redistimers"))
    wait_for(lambda: [w for w in registry.live() if w.worker_id == worker.worker_id])
    stored = next(w for w in registry.live() if w.worker_id == worker.worker_id)
    worker.stop()
    record = json.loads(stored.record)
    assert record["healthy"] is True
    seconds, micros = redis_client.time()
    registry.beat("h:1:abc", json.dumps({**record, "healthy": False}),
                  seconds * 1000 + micros / 1000, 60_000)
    assert_unhealthy(
        cli("health", "--topic", "invoices"),
        "topic 'invoices' is served only by unhealthy workers (their threads find Redis "
        "unreachable, stalled or full): h:1:abc",
    )
    assert_unhealthy(
        cli("health"),
        "every live worker is unhealthy (its threads find Redis unreachable, stalled or "
        "full): h:1:abc",
    )


def test_redis_down_exits_2_with_one_line_at_once(cli: Cli) -> None:
    port = closed_port()
    started = time.monotonic()
    result = cli("--redis-url", f"redis://127.0.0.1:{port}/0", "health", url=False)
    assert time.monotonic() - started < 1.0
    assert (result.code, result.out) == (2, ""), result
    assert result.err.startswith(f"redistimers: error: cannot reach Redis at 127.0.0.1:{port}")
    assert result.err.count("\n") == 1


@pytest.mark.slow
def test_a_redis_that_hangs_fails_the_probe_within_its_timeout(
    cli: Cli, own_server: ServerFactory
) -> None:
    """A stopped (SIGSTOP) redis-server accepts connections and never answers: the probe
    gives up after PROBE_TIMEOUT, without retrying."""
    server = own_server()
    pid = int(server.client().info("server")["process_id"])
    os.kill(pid, signal.SIGSTOP)
    try:
        started = time.monotonic()
        result = cli("--redis-url", server.url, "health", url=False)
        took = time.monotonic() - started
    finally:
        os.kill(pid, signal.SIGCONT)
    assert (result.code, result.out) == (2, ""), result
    assert result.err.startswith("redistimers: error: ")
    assert result.err.count("\n") == 1
    assert PROBE_TIMEOUT * 0.9 < took < PROBE_TIMEOUT * 2, took
