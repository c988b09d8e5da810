"""`redistimers topics`, `stats`, `list`, `purge` and `dead`, and where commands connect
(--redis-url, --namespace, the environment, a scheduler given to main()): main() in this
process, and a real terminal for a confirmation, against the session's redis-server."""

from __future__ import annotations

import datetime as dt
import os
import pty
import re
import subprocess
import threading
import time

import pytest
import redis

from redistimers import Router

from ._cli_support import (
    ENVIRONMENT,
    PROCESS_DEADLINE,
    Cli,
    Result,
    assert_one_error_line,
    failing_router,
)
from .helpers import (
    REPO,
    UTC,
    InvoiceDue,
    Recorder,
    SchedulerFactory,
    cli_command,
    cli_environment,
    closed_port,
    running,
)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


# -- bad options: one line, exit 2, nothing written -------------------------------------------


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
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
def test_bad_options_exit_2_with_one_line_and_write_nothing(
    cli: Cli, redis_client: redis.Redis, argv: list[str], fragment: str
) -> None:
    result = cli(*argv)
    assert_one_error_line(result, 2, fragment)
    assert result.out == ""
    assert redis_client.keys("*") == []


# -- Redis unreachable, help ----------------------------------------------------------------


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
    port = closed_port()
    started = time.monotonic()
    result = cli("--redis-url", f"redis://127.0.0.1:{port}/0", *argv, url=False)
    assert time.monotonic() - started < 2
    assert_one_error_line(result, 2, f"cannot reach Redis at 127.0.0.1:{port}")
    assert result.out == ""


def test_unreachable_redis_from_a_shell_prints_exactly_one_line() -> None:
    """The library logs the outage too; the command keeps that out of the way (-v shows it)."""
    url = f"redis://127.0.0.1:{closed_port()}/0"
    done = subprocess.run(
        [*cli_command(), "--redis-url", url, "stats"], capture_output=True, text=True,
        env=cli_environment(), cwd=REPO, timeout=PROCESS_DEADLINE,
    )
    assert (done.returncode, done.stdout) == (2, "")
    assert done.stderr.count("\n") == 1, done.stderr
    assert done.stderr.startswith("redistimers: error: cannot reach Redis at 127.0.0.1:")


def test_an_invalid_redis_url_exits_2(cli: Cli) -> None:
    assert_one_error_line(cli("--redis-url", "http://x", "topics", url=False), 2, "http://x")


def test_help_and_version_exit_0(cli: Cli) -> None:
    helped = cli("--help")
    assert helped.code == 0
    assert "worker" in helped.out
    assert "reschedule" in helped.out
    assert cli("dead", "list", "--help").code == 0
    version = cli("--version")
    assert (version.code, version.out.split()[0]) == (0, "redistimers")


# -- topics and stats -------------------------------------------------------------------------


def test_topics_as_lines_and_json_and_an_empty_namespace(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    empty = cli("topics")
    assert (empty.code, empty.out, empty.err) == (0, "", "no topics in namespace 'redistimers'\n")
    assert cli("topics", "--json").json == {"topics": []}
    scheduler = make_scheduler()
    for topic in ("reminders", "invoices"):
        scheduler.set_timer(topic, 1, activate_in=60)
    assert cli("topics").out == "invoices\nreminders\n"
    assert cli("--json", "topics").json == {"topics": ["invoices", "reminders"]}


def test_stats_table_and_json_for_all_topics_and_one(
    cli: Cli, make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    failing = make_scheduler(failing_router("jobs"))
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
    assert list(everything) == ["topics"]
    assert sorted(everything["topics"]) == ["jobs", "mail"]
    jobs = everything["topics"]["jobs"]
    assert 120 <= jobs.pop("oldest_due_lag_s") < 130
    assert jobs == {"topic": "jobs", "pending": 2, "due": 1, "leased": 0, "dead": 1}
    assert cli("stats", "mail", "--json").json == {
        "topic": "mail", "pending": 1, "due": 0, "leased": 0, "dead": 0,
        "oldest_due_lag_s": None,
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
    assert [t["id"] for t in second["timers"]] == ["t2", "t3"]
    assert second["timers"][0]["payload"] == {"n": 2}
    assert dt.datetime.fromisoformat(second["timers"][0]["due_at"]) == base + dt.timedelta(
        minutes=2
    )
    last = cli("list", "t", "--limit", "2", "--cursor", second["next_cursor"], "--json").json
    assert last == {"timers": last["timers"], "next_cursor": None}
    assert [t["id"] for t in last["timers"]] == ["t4"]
    last_table = cli("list", "t", "--limit", "2", "--cursor", second["next_cursor"])
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
        leased_json = cli("reschedule", "jobs", "running", "--in", "1h", "--json")
    rows = {line.split()[0]: line.split() for line in result.out.splitlines()[1:]}
    assert rows["due"][2:5] == ["-", "due", "0"]
    assert rows["waiting"][3:5] == ["waiting", "0"]
    assert rows["running"][3:5] == ["running", "1"]
    assert rows["running"][5].endswith("…")
    assert len(rows["running"][5]) == 60
    assert_one_error_line(leased, 1, "is running", "not moved")
    assert leased_json.code == 1  # and the timer as it is: leased, not moved
    assert (leased_json.json["id"], leased_json.json["leased"]) == ("running", True)
    assert leased_json.json["attempts"] == 1


# -- purge ------------------------------------------------------------------------------------


def test_purge_with_yes_deletes_pending_timers_and_keeps_dead_letters(
    cli: Cli, make_scheduler: SchedulerFactory
) -> None:
    failing = make_scheduler(failing_router("t"))
    failing.set_timer("t", 1, activate_in=0, timer_id="dead")
    assert failing.run_pending() == 1
    scheduler = make_scheduler()
    for i in range(3):
        scheduler.set_timer("t", i, activate_in=60)
    refused = cli("purge", "t")  # no terminal to confirm on (pytest's stdin is not one)
    assert_one_error_line(refused, 2, "--yes")
    assert scheduler.stats("t").pending == 3
    purged = cli("purge", "t", "--yes")
    assert (purged.code, purged.out) == (0, "purged 3 pending timers of topic 't'\n")
    stats = scheduler.stats("t")
    assert (stats.pending, stats.dead) == (0, 1)
    assert cli("purge", "t", "-y", "--json").json == {"purged": 0}


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
            [*cli_command(), "--redis-url", redis_url, "purge", "t"], stdin=terminal,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=cli_environment(),
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
    failing = make_scheduler(failing_router("jobs"))
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
    page = cli("dead", "list", "jobs", "--json", "--offset", "2").json
    assert page["next_offset"] is None
    dead = page["dead"]
    assert [d["id"] for d in dead] == ["j3"]
    assert (dead[0]["error"], dead[0]["attempts"], dead[0]["reason"]) == (
        "ValueError: card declined for {'id': 'j3'}", 1, "failed",
    )
    assert dead[0]["payload"] == {"id": "j3"}
    assert "Traceback" in dead[0]["traceback"]
    assert dead[0]["died_at"].endswith("Z")
    assert cli("dead", "list", "jobs", "--json", "--limit", "2").json["next_offset"] == 2
    one = cli("dead", "requeue", "jobs", "j1")
    assert one.out == "requeued 1 dead timer of topic 'jobs': due now\n"
    timer = failing.get_timer("jobs", "j1")
    assert timer is not None
    assert timer.attempts == 0
    refused = cli("dead", "purge", "jobs")
    assert_one_error_line(refused, 2, "--yes")
    assert cli("dead", "purge", "jobs", "--yes").out == "purged 2 dead timers of topic 'jobs'\n"
    assert cli("dead", "requeue", "jobs", "--json").json == {"requeued": 0}
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
    nowhere = f"redis://127.0.0.1:{closed_port()}/0"

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
    assert_one_error_line(wrong, 2, "InvoiceDue")
    missing = run("get", "invoices", "nope")
    assert_one_error_line(missing, 1, "no pending timer 'nope' on topic 'invoices'")
    assert "namespace" not in missing.err
    assert make_scheduler().topics() == []  # nothing went to the default namespace
