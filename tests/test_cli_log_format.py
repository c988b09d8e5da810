"""What a worker logs with --log-format json (one JSON object per line: the delivery fields,
a handler's extra, the traceback) and at --log-level debug (a line per delivery, no other
library's DEBUG chatter); real worker processes, a real redis-server."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import re
import sys
from pathlib import Path
from typing import Any

import pytest
import redis

from redistimers import TimerScheduler
from redistimers.cli.logs import JsonFormatter

from ._cli_processes import CliProcesses
from ._cli_support import PROCESS_DEADLINE
from .helpers import REPO, wait_for

#: Lines of redis-py's DEBUG chatter that a worker at debug must not show.
REDIS_CHATTER = "Failed to enable maintenance notifications"

APP = '''
import logging

from redistimers import RetryPolicy, Router

router = Router()
log = logging.getLogger("cli_log_app")


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque 7>"


@router.handler("fine")
def fine(payload: int) -> None:
    log.info("order %s placed", payload, extra={"order": {"id": payload}, "blob": Opaque()})
    log.debug("chatter of the application's own module")


@router.handler("broken", retry=RetryPolicy(max_attempts=2, initial=0.01, jitter=False))
def broken(payload: int) -> None:
    raise ValueError(f"card {payload} declined")
'''

DELIVERY_FIELDS = {"topic", "timer_id", "attempt", "outcome", "lateness_ms", "duration_ms"}


@pytest.fixture
def app_path(tmp_path: Path) -> str:
    (tmp_path / "cli_log_app.py").write_text(APP)
    return f"{tmp_path}{os.pathsep}{REPO}"


def json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of `text` as a JSON object (fails on any line that is not one)."""
    lines = []
    for line in text.splitlines():
        try:
            value = json.loads(line)
        except ValueError:
            raise AssertionError(f"not a JSON line: {line!r}") from None
        assert isinstance(value, dict), line
        lines.append(value)
    return lines


def test_the_json_formatter_writes_one_line_with_extras_repr_and_traceback() -> None:
    try:
        raise KeyError("gone")
    except KeyError:
        exc_info = sys.exc_info()
    record = logging.LogRecord("redistimers.delivery", logging.WARNING, __file__, 1,
                               "timer %s\u2028failed\x1b[31m\x9b", ("t/1",), exc_info)
    record.__dict__.update({"topic": "t", "attempt": 2, "when": dt.date(2030, 1, 1),
                            "time": "an extra named time", "nan": float("nan")})
    line = JsonFormatter().format(record)
    assert len(line.splitlines()) == 1
    assert not re.search("[\x00-\x1f\x7f-\x9f\u2028\u2029]", line), line
    value = json.loads(line)
    assert value["message"] == "timer t/1\u2028failed\x1b[31m\x9b"
    assert (value["level"], value["logger"], value["process"]) == (
        "WARNING", "redistimers.delivery", os.getpid(),
    )
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", value["time"])
    written = dt.datetime.fromisoformat(value["time"].replace("Z", "+00:00"))
    assert abs(written.timestamp() - record.created) < 0.001
    assert (value["topic"], value["attempt"]) == ("t", 2)
    assert value["when"] == "datetime.date(2030, 1, 1)"
    assert value["nan"] == "nan"
    assert value["extra_time"] == "an extra named time"
    assert value["exception"].startswith("Traceback (most recent call last):")
    assert value["exception"].endswith("KeyError: 'gone'")


@pytest.mark.slow
def test_a_worker_logs_json_lines_with_the_delivery_fields_and_tracebacks(
    redis_url: str, redis_client: redis.Redis, processes: CliProcesses, app_path: str
) -> None:
    worker = processes.start(
        "worker", "cli_log_app:router", "--log-format", "json", REDIS_URL=redis_url,
        REDISTIMERS_LOG_LEVEL="debug", PYTHONPATH=app_path,
    )
    processes.wait_for_line(worker, "scheduler started")
    scheduler = TimerScheduler.from_url(redis_url)
    scheduler.set_timer("fine", 7, activate_in=0, timer_id="fine-7")
    scheduler.set_timer("broken", 8, activate_in=0, timer_id="broken-8")
    wait_for(lambda: scheduler.stats("broken").dead == 1, PROCESS_DEADLINE)
    processes.wait_for_line(worker, "fine-7")
    assert processes.stop(worker) == 0
    assert processes.out(worker) == ""
    lines = json_lines(processes.err(worker))

    for line in lines:
        assert {"time", "level", "logger", "message", "process", "thread"} <= set(line), line
        assert line["process"] == worker.pid
        assert line["logger"].startswith(("redistimers", "cli_log_app")), line
        assert REDIS_CHATTER not in line["message"]
    [banner] = [line for line in lines if line["logger"] == "redistimers.cli"
                and "delivering" in line["message"]]
    assert "Ctrl-C or SIGTERM stops it" in banner["message"]

    [delivered] = [line for line in lines if line["level"] == "DEBUG"
                   and line.get("timer_id") == "fine-7"]
    assert set(delivered) >= DELIVERY_FIELDS
    assert (delivered["topic"], delivered["attempt"], delivered["outcome"]) == (
        "fine", 1, "succeeded",
    )
    assert delivered["lateness_ms"] >= 0
    assert delivered["duration_ms"] > 0
    assert delivered["thread"].startswith("redistimers")

    [placed] = [line for line in lines if line["logger"] == "cli_log_app"]
    assert (placed["level"], placed["message"]) == ("INFO", "order 7 placed")
    assert (placed["order"], placed["blob"]) == ({"id": 7}, "<Opaque 7>")
    assert "chatter" not in json.dumps(lines)  # the application's DEBUG: root stays at INFO

    [retried] = [line for line in lines if line["level"] == "WARNING"
                 and line.get("timer_id") == "broken-8"]
    assert set(retried) >= DELIVERY_FIELDS
    assert (retried["attempt"], retried["outcome"]) == (1, "retried")
    assert "Traceback (most recent call last)" in retried["exception"]
    assert "ValueError: card 8 declined" in retried["exception"]
    [buried] = [line for line in lines if line["level"] == "ERROR"
                and line.get("timer_id") == "broken-8"]
    assert (buried["attempt"], buried["outcome"]) == (2, "dead_lettered")
    assert "ValueError: card 8 declined" in buried["exception"]

    [summary] = [line for line in lines if line["logger"] == "redistimers.summary"]
    assert {k: summary[k] for k in ("delivered", "succeeded", "retried", "dead_lettered",
                                    "failed")} == {
        "delivered": 3, "succeeded": 1, "retried": 1, "dead_lettered": 1, "failed": 2,
    }
    assert summary["late_p99_ms"] >= summary["late_p50_ms"] >= 0


@pytest.mark.slow
@pytest.mark.parametrize("how", [["--log-level", "debug"], ["-v"]], ids=["debug", "verbose"])
def test_debug_text_logs_show_a_line_per_delivery_and_no_redis_chatter(
    redis_url: str, processes: CliProcesses, app_path: str, how: list[str]
) -> None:
    worker = processes.start("worker", "cli_log_app:router", *how, REDIS_URL=redis_url,
                             PYTHONPATH=app_path)
    processes.wait_for_line(worker, "scheduler started")
    scheduler = TimerScheduler.from_url(redis_url)
    for n in range(3):
        scheduler.set_timer("fine", n, activate_in=0, timer_id=f"fine-{n}")
    for n in range(3):
        processes.wait_for_line(worker, f"timer fine/fine-{n} delivered (attempt 1): ")
    assert processes.stop(worker) == 0
    err = processes.err(worker)
    assert re.search(rf"^\S+ \S+ {worker.pid} DEBUG redistimers.delivery: timer fine/fine-0 "
                     r"delivered \(attempt 1\): [\d.]+ ms late, handler took [\d.]+ ms$",
                     err, re.MULTILINE), err
    assert REDIS_CHATTER not in err
    assert not [line for line in err.splitlines()
                if " DEBUG " in line and " DEBUG redistimers." not in line], err
    with pytest.raises(ValueError, match="Expecting value"):
        json.loads(err.splitlines()[0])  # text, the default


@pytest.mark.slow
def test_at_info_no_delivery_lines(
    redis_url: str, processes: CliProcesses, app_path: str
) -> None:
    worker = processes.start("worker", "cli_log_app:router", REDIS_URL=redis_url,
                             PYTHONPATH=app_path)
    processes.wait_for_line(worker, "scheduler started")
    TimerScheduler.from_url(redis_url).set_timer("fine", 1, activate_in=0, timer_id="fine-1")
    processes.wait_for_line(worker, "order 1 placed")
    assert processes.stop(worker) == 0
    assert " DEBUG " not in processes.err(worker)
