"""What the long-running commands write to a log file: plain text, never a terminal escape
(`redistimers serve` once wrote werkzeug's ANSI colours into them), and what a command does
when the reader of its output goes away. Real processes, a real redis-server."""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from redistimers import TimerScheduler, TimerSpec

from .helpers import cli_command, cli_environment, wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 30.0
TOKEN = "cli-logs-token"
#: What starts every ANSI escape sequence (ESC), and the 8-bit CSI.
ESCAPES = ("\x1b", "\x9b")


_command = cli_command


def _environment(**extra: str) -> dict[str, str]:
    """Whatever a library might take as leave to colour, the log is still a file."""
    env = cli_environment(FORCE_COLOR="1", CLICOLOR_FORCE="1", TERM="xterm-256color")
    env.pop("NO_COLOR", None)
    env.update(extra)
    return env


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextlib.contextmanager
def _process(argv: list[str], log: Path, **env: str) -> Iterator[subprocess.Popen[bytes]]:
    """`argv` with stdout and stderr to the file `log` (not a terminal); killed after."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=out, stderr=out, cwd=REPO,
            env=_environment(**env),
        )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


def _raw_request(port: int, data: bytes) -> bytes:
    """Send bytes as they are (http.client refuses control characters) and read the
    status line."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(data)
        return conn.recv(4096).split(b"\r\n", 1)[0]


def _request(port: int, method: str, path: str, token: str | None = TOKEN) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, headers={"Authorization": f"Bearer {token}"} if token else {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def _assert_plain(text: str) -> None:
    for escape in ESCAPES:
        assert escape not in text, f"an escape sequence in the log: {text!r}"


def test_serve_logs_plain_lines_to_a_file_whatever_the_requests(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    argv = [*_command(), "serve", "--redis-url", redis_url, "--port", str(port)]
    with _process(argv, log, REDISTIMERS_API_TOKEN=TOKEN) as process:
        wait_for(lambda: "listening on" in log.read_text(errors="replace"), DEADLINE)
        assert _request(port, "GET", "/topics") == 200
        assert _request(port, "GET", "/topics", token=None) == 401
        assert _request(port, "GET", "/topics", token="wrong") == 401
        assert _request(port, "GET", "/no/such/path") == 404
        assert _request(port, "DELETE", "/topics") == 405
        assert _request(port, "GET", "/topics/t/timers/%1B%5B31mred") in (400, 404)
        auth = f"Authorization: Bearer {TOKEN}\r\n".encode()
        assert _raw_request(port, b"GET /\x1b[31mred\x1b[0m HTTP/1.1\r\nHost: x\r\n" + auth +
                            b"\r\n").startswith(b"HTTP/1.1 404")
        assert _raw_request(port, b"GET /\x1b[2J HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.1 401"
        )
        assert _raw_request(port, b"G\x1bET / HTTP/1.1\r\nHost: x\r\n\r\n").startswith(
            b"HTTP/1.0 400"
        )
        wait_for(lambda: log.read_text(errors="replace").count('" 40') >= 6, DEADLINE)
        process.send_signal(signal.SIGTERM)
        assert process.wait(DEADLINE) == 0
    text = log.read_text(errors="replace")
    _assert_plain(text)
    assert "\\x1b" not in text  # nor one the CLI's log formatter defused: nothing colours
    for status in ("200", "401", "404", "405"):
        assert f"{status} " in text, text
    assert '"GET /%1B%5B31mred%1B%5B0m" 404' in text  # the path as it came, made printable
    assert "Traceback" not in text


ESCAPING_APP = '''
import logging

from redistimers import Router

router = Router()


@router.handler("paint")
def paint(payload: str) -> None:
    logging.getLogger("cli_paint_app").warning("painted %s", payload)
'''


def test_worker_logs_show_a_handlers_control_characters_as_escapes(
    redis_url: str, redis_client: redis.Redis, tmp_path: Path
) -> None:
    (tmp_path / "cli_paint_app.py").write_text(ESCAPING_APP)
    TimerScheduler.from_url(redis_url).set_timer(
        "paint", "\x1b[31mred\x1b[0m\r\x9b2Jdone", activate_in=0
    )
    log = tmp_path / "worker.log"
    argv = [*_command(), "worker", "cli_paint_app:router", "--redis-url", redis_url]
    with _process(argv, log, PYTHONPATH=f"{tmp_path}{os.pathsep}{REPO}") as process:
        wait_for(lambda: "painted" in log.read_text(errors="replace"), DEADLINE)
        process.send_signal(signal.SIGTERM)
        assert process.wait(DEADLINE) == 0
    text = log.read_text(errors="replace")
    _assert_plain(text)
    assert "painted \\x1b[31mred\\x1b[0m\\x0d\\x9b2Jdone" in text


def test_output_cut_short_by_a_closed_pipe_ends_quietly(
    redis_url: str, redis_client: redis.Redis
) -> None:
    scheduler = TimerScheduler.from_url(redis_url)
    scheduler.set_timers(
        TimerSpec("t", {"n": i, "text": "x" * 100}, activate_in=3600) for i in range(1000)
    )
    process = subprocess.Popen(
        [*_command(), "--redis-url", redis_url, "list", "t", "--limit", "1000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_environment(), cwd=REPO,
    )
    assert process.stdout is not None
    assert process.stdout.readline().split() == [
        b"ID", b"DUE", b"AT", b"IN", b"STATE", b"ATTEMPTS", b"PAYLOAD",
    ]
    process.stdout.close()  # as `| head -1` does: the rest (over 64 KiB) cannot be written
    started = time.monotonic()
    _, err = process.communicate(timeout=DEADLINE)
    assert time.monotonic() - started < DEADLINE
    assert (process.returncode, err) == (141, b"")
