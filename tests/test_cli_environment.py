"""The environment variables of `redistimers worker` and `serve` (cli/environment.py): every
one read with its flag's check, the flag winning, an empty one unset, a bad one refused
with one line naming it; and real worker and serve processes configured by them alone."""

from __future__ import annotations

import datetime as dt
import http.client
import re
import signal
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis

from redistimers import TimerScheduler
from redistimers.cli import build_parser
from redistimers.cli.environment import SETTINGS, Setting, applies, resolve
from redistimers.cli.output import CliError

from ._cli_processes import CliProcesses
from ._cli_support import PROCESS_DEADLINE, Cli, assert_one_error_line
from .helpers import closed_port, wait_for

ROUTER = "tests._cli_app:router"


@attrs.frozen
class Example:
    """A good value of a variable, and a flag that says otherwise."""

    text: str
    value: Any
    flag: list[str]
    flag_value: Any


EXAMPLES: dict[str, Example] = {
    "REDIS_URL": Example("redis://env:6380/1", "redis://env:6380/1",
                         ["--redis-url", "redis://flag:6381/2"], "redis://flag:6381/2"),
    "REDISTIMERS_NAMESPACE": Example("from-env", "from-env", ["--namespace", "flag"], "flag"),
    "REDISTIMERS_VERBOSE": Example("yes", True, ["-v"], True),
    "REDISTIMERS_LOG_LEVEL": Example("DEBUG", "debug", ["--log-level", "error"], "error"),
    "REDISTIMERS_LOG_FORMAT": Example("json", "json", ["--log-format", "text"], "text"),
    "REDISTIMERS_ROUTERS": Example(
        "tests._cli_app:router, tests._cli_app:other  tests._cli_app:routers",
        ["tests._cli_app:router", "tests._cli_app:other", "tests._cli_app:routers"],
        ["tests._cli_app:other"], ["tests._cli_app:other"],
    ),
    "REDISTIMERS_CONCURRENCY": Example("7", 7, ["--concurrency", "3"], 3),
    "REDISTIMERS_SHUTDOWN_TIMEOUT": Example("1m30s", dt.timedelta(seconds=90),
                                            ["--shutdown-timeout", "2s"], dt.timedelta(seconds=2)),
    "REDISTIMERS_HEARTBEAT_INTERVAL": Example("250ms", dt.timedelta(milliseconds=250),
                                              ["--heartbeat-interval", "1"],
                                              dt.timedelta(seconds=1)),
    "REDISTIMERS_METRICS_PORT": Example("9464", 9464, ["--metrics-port", "9000"], 9000),
    "REDISTIMERS_METRICS_HOST": Example("127.0.0.1", "127.0.0.1", ["--metrics-host", "::1"],
                                        "::1"),
    "REDISTIMERS_HOST": Example("0.0.0.0", "0.0.0.0", ["--host", "localhost"], "localhost"),
    "REDISTIMERS_PORT": Example("9090", 9090, ["--port", "8081"], 8081),
    "REDISTIMERS_API_TOKEN": Example("env-token", "env-token", ["--token", "flag-token"],
                                     "flag-token"),
    "REDISTIMERS_INSECURE": Example("on", True, ["--insecure"], True),
    "REDISTIMERS_READ_ONLY": Example("yes", True, ["--read-only"], True),
}

#: A bad value of each variable whose flag checks its value, and what is said of it.
BAD: dict[str, tuple[str, str]] = {
    "REDISTIMERS_NAMESPACE": ("a{b", "namespace 'a{b' must not contain '{' or '}'"),
    "REDISTIMERS_VERBOSE": ("maybe",
                            "'maybe' is not one of 1, true, yes, on, 0, false, no, off"),
    "REDISTIMERS_LOG_LEVEL": ("loud", "'loud' is not one of debug, info, warning, error"),
    "REDISTIMERS_LOG_FORMAT": ("xml", "'xml' is not one of text, json"),
    "REDISTIMERS_CONCURRENCY": ("0", "must be 1 or more, got 0"),
    "REDISTIMERS_SHUTDOWN_TIMEOUT": (
        "soon", "duration 'soon' is not like '90s', '15m', '2h', '7d' or '1h30m'"
    ),
    "REDISTIMERS_HEARTBEAT_INTERVAL": ("0s", "must be more than 0s, got '0s'"),
    "REDISTIMERS_METRICS_PORT": ("70000", "70000 is not a port number (0 to 65535)"),
    "REDISTIMERS_PORT": ("http", "'http' is not a port number"),
    "REDISTIMERS_INSECURE": ("2", "'2' is not one of 1, true, yes, on, 0, false, no, off"),
    "REDISTIMERS_READ_ONLY": ("x", "'x' is not one of 1, true, yes, on, 0, false, no, off"),
}
#: Variables any text is good for: a URL is checked when connecting, a module when
#: importing; a blank host (refused as a flag) is an unset variable.
UNCHECKED = {
    "REDIS_URL", "REDISTIMERS_API_TOKEN", "REDISTIMERS_ROUTERS", "REDISTIMERS_HOST",
    "REDISTIMERS_METRICS_HOST",
}
#: Arguments that end the command at once should a bad variable pass its check (rather
#: than run a worker or a server): a router that is not there, a host serve refuses.
QUICK_END = {"worker": ["tests._cli_app:missing"], "serve": ["--host", "203.0.113.1"]}


def command_of(setting: Setting) -> str:
    """A command `setting` belongs to (worker when it belongs to every command)."""
    return setting.commands[0] if setting.commands else "worker"


def argv_of(setting: Setting, *flag: str) -> list[str]:
    """Arguments of `command_of(setting)` with `flag`, and a router for a worker."""
    command = command_of(setting)
    routers = [ROUTER] if command == "worker" and setting.dest != "routers" else []
    return [command, *routers, *flag]


def parsed(argv: list[str], environ: dict[str, str]) -> Any:
    return resolve(build_parser().parse_args(argv), environ)


@pytest.fixture(autouse=True)
def _no_settings_of_the_runner(monkeypatch: pytest.MonkeyPatch) -> None:
    for setting in SETTINGS:
        monkeypatch.delenv(setting.variable, raising=False)


def test_every_variable_of_the_table_is_tried_here() -> None:
    variables = [setting.variable for setting in SETTINGS]
    assert len(set(variables)) == len(variables)
    assert set(EXAMPLES) == set(variables)
    assert set(BAD) | UNCHECKED == set(variables)
    assert not set(BAD) & UNCHECKED


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variable)
def test_a_variable_sets_its_option(setting: Setting) -> None:
    example = EXAMPLES[setting.variable]
    args = parsed(argv_of(setting), {setting.variable: example.text})
    assert getattr(args, setting.dest) == example.value


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variable)
def test_the_flag_wins_over_its_variable(setting: Setting) -> None:
    example = EXAMPLES[setting.variable]
    text = "off" if example.value is True else example.text  # a switch's flag turns it on
    args = parsed(argv_of(setting, *example.flag), {setting.variable: text})
    assert getattr(args, setting.dest) == example.flag_value


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variable)
@pytest.mark.parametrize("blank", [None, "", "  "], ids=["unset", "empty", "spaces"])
def test_without_flag_or_variable_the_default_holds(setting: Setting, blank: str | None) -> None:
    """An empty variable (or one of spaces) counts as unset."""
    environ = {} if blank is None else {setting.variable: blank}
    argv = argv_of(setting)
    if setting.required:
        with pytest.raises(CliError, match=rf"\(or \${setting.variable}\)"):
            parsed(argv, environ)
        return
    assert getattr(parsed(argv, environ), setting.dest) == setting.default


@pytest.mark.parametrize("setting", [s for s in SETTINGS if s.commands],
                         ids=lambda s: s.variable)
def test_a_variable_of_another_command_is_not_read(setting: Setting) -> None:
    """REDISTIMERS_PORT is serve's: `redistimers stats` does not fail on a bad one."""
    variable, (bad, _) = setting.variable, BAD.get(setting.variable, ("x", ""))
    args = parsed(["stats"], {variable: bad})
    if hasattr(args, setting.dest):
        assert getattr(args, setting.dest) == setting.default
    assert not applies(setting, "stats")


@pytest.mark.parametrize("variable", sorted(BAD))
def test_a_bad_value_of_a_variable_exits_2_naming_it(
    cli: Cli, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    bad, said = BAD[variable]
    setting = next(s for s in SETTINGS if s.variable == variable)
    monkeypatch.setenv(variable, bad)
    command = command_of(setting)
    result = cli(command, *QUICK_END[command])
    assert (result.code, result.out) == (2, ""), result
    assert result.err == f"redistimers: error: ${variable}: {said}\n"
    assert redis_client.keys("*") == []


def test_routers_from_neither_argument_nor_variable_is_a_usage_error(cli: Cli) -> None:
    result = cli("worker")
    assert_one_error_line(
        result, 2, "the following arguments are required: MODULE:ROUTER (or "
        "$REDISTIMERS_ROUTERS)", "see 'redistimers worker --help'",
    )


@pytest.mark.parametrize("setting", SETTINGS, ids=lambda s: s.variable)
def test_each_flags_help_names_its_variable(
    setting: Setting, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args([command_of(setting), "--help"])
    shown = " ".join(capsys.readouterr().out.split())
    assert f"(env: {setting.variable})" in shown


# -- real processes, configured by the environment alone ---------------------------------


@pytest.mark.slow
def test_a_worker_configured_only_by_the_environment_runs_as_told(
    cli: Cli, redis_url: str, redis_client: redis.Redis, processes: CliProcesses
) -> None:
    worker = processes.start(
        "worker", REDIS_URL=redis_url, REDISTIMERS_ROUTERS="tests._cli_app:router",
        REDISTIMERS_NAMESPACE="env-ns", REDISTIMERS_CONCURRENCY="3",
        REDISTIMERS_SHUTDOWN_TIMEOUT="4s", REDISTIMERS_HEARTBEAT_INTERVAL="0.4s",
        REDISTIMERS_LOG_LEVEL="debug", REDISTIMERS_LOG_FORMAT="text",
    )
    processes.wait_for_line(worker, "delivering")
    scheduler = TimerScheduler.from_url(redis_url, namespace="env-ns")
    wait_for(lambda: scheduler.workers(), PROCESS_DEADLINE)
    [live] = scheduler.workers()
    assert (live.pid, dict(live.topics)) == (worker.pid, {"cli-jobs": 3})
    assert live.heartbeat_interval == dt.timedelta(seconds=0.4)
    scheduler.set_timer("cli-jobs", {"n": 1}, activate_in=0, timer_id="by-env")
    wait_for(lambda: redis_client.llen("cli-test:delivered") == 1, PROCESS_DEADLINE)
    processes.wait_for_line(worker, "timer cli-jobs/by-env delivered (attempt 1)")  # debug
    assert processes.stop(worker) == 0
    err = processes.err(worker)
    assert (
        f"redistimers worker {worker.pid}: delivering cli-jobs (max 3) from {redis_url}, "
        "namespace 'env-ns'; Ctrl-C or SIGTERM stops it after running handlers finish (up "
        "to 4s); a second Ctrl-C stops at once"
    ) in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_a_worker_given_a_bad_variable_exits_2_with_one_line_naming_it(
    redis_url: str, processes: CliProcesses
) -> None:
    worker = processes.start("worker", REDIS_URL=redis_url, REDISTIMERS_ROUTERS=ROUTER,
                             REDISTIMERS_CONCURRENCY="many")
    assert worker.wait(PROCESS_DEADLINE) == 2
    assert processes.err(worker) == (
        "redistimers: error: $REDISTIMERS_CONCURRENCY: 'many' is not a whole number\n"
    )


@pytest.mark.slow
def test_serve_configured_only_by_the_environment_listens_where_told(
    redis_url: str, redis_client: redis.Redis, processes: CliProcesses
) -> None:
    port = closed_port()
    server = processes.start("serve", REDIS_URL=redis_url, REDISTIMERS_HOST="127.0.0.1",
                             REDISTIMERS_PORT=str(port), REDISTIMERS_INSECURE="true",
                             REDISTIMERS_NAMESPACE="served")
    TimerScheduler.from_url(redis_url, namespace="served").set_timer(
        "invoices", 1, activate_in=600
    )
    processes.wait_for_line(server, f"http://127.0.0.1:{port}")

    def get(path: str) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        try:
            connection.request("GET", path)  # no token: --insecure, by its variable
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    assert get("/topics") == (200, b'{"topics":["invoices"]}')
    server.send_signal(signal.SIGTERM)
    assert server.wait(PROCESS_DEADLINE) == 0


def test_the_readme_lists_every_variable_with_its_flag_and_no_other() -> None:
    """README.rst's table of environment variables is the CLI's table."""
    readme = (Path(__file__).resolve().parent.parent / "README.rst").read_text()
    start = readme.index("\nvariable                           flag")
    table = readme[start:readme.index("\nA worker configured by its environment alone", start)]
    rows = re.findall(r"^``([A-Z_]+)``\s+(``[^`]+``(?:/``[^`]+``)?)", table, re.M)
    listed = {variable: flag.replace("``", "") for variable, flag in rows}
    assert listed == {s.variable: s.flag for s in SETTINGS}
