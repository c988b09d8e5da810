"""`serve()` and `redistimers serve`: they refuse to start without a token unless told
--insecure on a loopback address, and serve the HTTP admin API until SIGTERM or SIGINT.
Real processes, a real redis-server, a real HTTP client."""

from __future__ import annotations

import contextlib
import http.client
import json
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
import redis

from redistimers import ConfigurationError, TimerScheduler
from redistimers.contrib.http_api import is_loopback, serve

from .helpers import SchedulerFactory, cli_command, cli_environment, closed_port, wait_for

pytestmark = pytest.mark.slow

TOKEN = "serve-test-token"



def request(
    port: int, method: str, path: str, body: object = None, token: str | None = None
) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request(method, path, body=data, headers=headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


@contextlib.contextmanager
def server_process(argv: Sequence[str], port: int, **env: str) -> Iterator[subprocess.Popen[str]]:
    """Start `argv`, wait until `port` accepts connections; kill it if still running after."""
    process = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=cli_environment(**env),
    )

    def listening() -> bool:
        if process.poll() is not None:
            raise AssertionError(f"server exited {process.returncode}: "
                                 f"{process.communicate()[1]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return True
        return False

    try:
        wait_for(listening, 15, interval=0.05)
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate(timeout=10)


def stop(process: subprocess.Popen[str], signum: int) -> tuple[int, str]:
    process.send_signal(signum)
    _, stderr = process.communicate(timeout=10)
    return process.returncode, stderr


# -- refusing to start ----------------------------------------------------------------------


@pytest.fixture
def scheduler(make_scheduler: SchedulerFactory) -> TimerScheduler:
    return make_scheduler()


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.7"])
def test_serve_refuses_to_start_without_a_token_on_a_public_address(
    scheduler: TimerScheduler, host: str
) -> None:
    with pytest.raises(ConfigurationError, match="without a token"):
        serve(scheduler, host=host, port=closed_port())
    with pytest.raises(ConfigurationError, match="only on a loopback address"):
        serve(scheduler, host=host, port=closed_port(), insecure=True)


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_serve_refuses_to_start_without_a_token_on_localhost_unless_insecure(
    scheduler: TimerScheduler, host: str
) -> None:
    with pytest.raises(ConfigurationError, match="--insecure"):
        serve(scheduler, host=host, port=closed_port())


def test_serve_refuses_an_empty_token_a_bad_port_and_a_taken_port(
    scheduler: TimerScheduler,
) -> None:
    with pytest.raises(ConfigurationError, match="token"):
        serve(scheduler, token="", insecure=True)
    with pytest.raises(ConfigurationError, match="port"):
        serve(scheduler, port=70000, token=TOKEN)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(ConfigurationError, match="cannot listen"):
            serve(scheduler, port=taken.getsockname()[1], token=TOKEN)


def test_loopback_addresses_are_recognised() -> None:
    assert all(map(is_loopback, ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"]))
    assert not any(map(is_loopback, ["0.0.0.0", "::", "10.0.0.1", "example.invalid"]))


def test_redistimers_serve_refuses_without_a_token_and_exits_2(redis_url: str) -> None:
    port = closed_port()
    for extra in ([], ["--host", "0.0.0.0", "--insecure"]):
        done = subprocess.run(
            [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port),
             *extra],
            capture_output=True, text=True, timeout=20,
            env=cli_environment(),
        )
        assert done.returncode == 2, done.stderr
        assert "refusing to serve the HTTP admin API without a token" in done.stderr


# -- serving --------------------------------------------------------------------------------


def test_redistimers_serve_insecure_on_127_0_0_1_serves_without_a_token_until_sigterm(
    redis_url: str, redis_client: redis.Redis
) -> None:
    port = closed_port()
    argv = [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port),
            "--insecure"]
    with server_process(argv, port) as process:
        status, body = request(port, "POST", "/topics/invoices/timers",
                               {"payload": {"invoice_id": "INV-1"}, "in": "1h", "id": "INV-1"})
        assert status == 201, body
        assert redis_client.zscore("redistimers:{invoices}:due", "INV-1") is not None
        assert request(port, "GET", "/topics") == (200, b'{"topics":["invoices"]}')
        code, stderr = stop(process, signal.SIGTERM)
    assert code == 0, stderr
    assert "WITHOUT authentication" in stderr
    assert f"listening on http://127.0.0.1:{port}" in stderr


def test_redistimers_serve_takes_the_token_from_the_environment(
    redis_url: str, redis_client: redis.Redis
) -> None:
    port = closed_port()
    argv = [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port)]
    with server_process(argv, port, REDISTIMERS_API_TOKEN=TOKEN) as process:
        assert request(port, "GET", "/topics")[0] == 401
        assert request(port, "GET", "/topics", token="wrong")[0] == 401
        assert request(port, "GET", "/stats", token=TOKEN) == (200, b'{"topics":{}}')
        code, stderr = stop(process, signal.SIGINT)
    assert code == 0, stderr


def test_serve_called_from_python_serves_with_a_token_until_sigterm(redis_url: str) -> None:
    port = closed_port()
    program = (
        "import logging; logging.basicConfig(level=logging.INFO)\n"
        "from redistimers import TimerScheduler\n"
        "from redistimers.contrib.http_api import serve\n"
        f"serve(TimerScheduler.from_url({redis_url!r}), port={port}, token={TOKEN!r})\n"
        "print('returned', flush=True)\n"
    )
    with server_process([sys.executable, "-c", program], port) as process:
        assert request(port, "GET", "/topics")[0] == 401
        assert request(port, "GET", "/topics", token=TOKEN)[0] == 200
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=10)
    assert (process.returncode, stdout) == (0, "returned\n"), stderr


# -- hardening: connection limits, no Server header, no query strings in the logs -----------


def threads_of(pid: int) -> int:
    """The number of threads of process `pid` (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Threads:"):
            return int(line.split()[1])
    raise AssertionError(f"no thread count for process {pid}")


def closed_by_server(sock: socket.socket) -> bool:
    """True when the server closed `sock` (it reads end of file, or a reset)."""
    sock.setblocking(False)
    try:
        return sock.recv(1) == b""
    except BlockingIOError:
        return False
    except ConnectionResetError:
        return True


def test_serve_answers_promptly_with_bounded_threads_while_300_connections_sit_idle(
    redis_url: str,
) -> None:
    from redistimers.contrib.http_api import CONNECTION_LIMIT

    port = closed_port()
    argv = [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port)]
    with server_process(argv, port, REDISTIMERS_API_TOKEN=TOKEN) as process, \
            contextlib.ExitStack() as stack:
        idle = [stack.enter_context(socket.create_connection(("127.0.0.1", port), timeout=5))
                for _ in range(300)]  # half-open: connected, never a byte sent
        # request() gives up after 5 s: the answer comes while the 300 are still connected.
        assert request(port, "GET", "/stats", token=TOKEN) == (200, b'{"topics":{}}')
        assert threads_of(process.pid) <= 16  # a fixed pool, not a thread per connection
        still_open = [sock for sock in idle if not closed_by_server(sock)]
        assert len(still_open) < CONNECTION_LIMIT  # the idlest were closed to make room
        code, stderr = stop(process, signal.SIGTERM)
    assert code == 0, stderr


def test_serve_names_no_server_software_or_version(redis_url: str) -> None:
    port = closed_port()
    argv = [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port)]
    with server_process(argv, port, REDISTIMERS_API_TOKEN=TOKEN) as process:
        for token in (TOKEN, None):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request("GET", "/topics", headers={"Authorization": f"Bearer {token}"}
                         if token else {})
            response = conn.getresponse()
            assert response.status == (200 if token else 401)
            assert response.getheader("Server") is None, response.getheaders()
            assert response.getheader("Via") is None
            response.read()
            conn.close()
        with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # answered by the server, not the app
            answer = b""
            while chunk := raw.recv(4096):
                answer += chunk
        assert answer.split(b"\r\n")[0].endswith(b" 400 Bad Request"), answer
        for name in (b"server:", b"werkzeug", b"waitress", b"python"):
            assert name not in answer.lower(), answer
        code, stderr = stop(process, signal.SIGTERM)
    assert code == 0, stderr


def test_serve_logs_each_request_without_its_query_string_or_token(redis_url: str) -> None:
    port = closed_port()
    argv = [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port)]
    secret = "secret-sent-in-the-query"
    with server_process(argv, port, REDISTIMERS_API_TOKEN=TOKEN) as process:
        assert request(port, "GET", f"/topics?token={secret}")[0] == 401
        assert request(port, "GET", f"/topics?access_token={secret}", token=TOKEN)[0] == 400
        assert request(port, "GET", f"/nope?token={secret}")[0] == 401
        assert request(port, "GET", "/topics", token=TOKEN)[0] == 200
        code, stderr = stop(process, signal.SIGTERM)
    assert code == 0, stderr
    assert secret not in stderr
    assert TOKEN not in stderr
    lines = [line for line in stderr.splitlines() if "INFO redistimers.http: 127.0.0.1 " in line]
    assert [line.split("redistimers.http: ")[1].rsplit(" ", 1)[0] for line in lines] == [
        '127.0.0.1 "GET /topics" 401', '127.0.0.1 "GET /topics" 400',
        '127.0.0.1 "GET /nope" 401', '127.0.0.1 "GET /topics" 200',
    ], stderr
    assert all(re.fullmatch(r"\d+\.\dms", line.rsplit(" ", 1)[1]) for line in lines), lines


def test_sigterm_stops_listening_and_lets_a_request_in_progress_finish(
    redis_url: str, redis_client: redis.Redis
) -> None:
    port = closed_port()
    argv = [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port)]
    answers: list[tuple[int, bytes]] = []
    with server_process(argv, port, REDISTIMERS_API_TOKEN=TOKEN) as process:
        redis_client.execute_command("CLIENT", "PAUSE", "20000", "WRITE")  # writes wait
        try:
            writer = threading.Thread(target=lambda: answers.append(request(
                port, "POST", "/topics/invoices/timers", {"payload": 1, "in": "1h", "id": "A"},
                token=TOKEN)))
            writer.start()
            wait_for(lambda: any(c["cmd"] == "evalsha" and "b" in c["flags"]
                                 for c in redis_client.client_list()), 10)
            process.send_signal(signal.SIGTERM)

            def refused() -> bool:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                except ConnectionRefusedError:
                    return True
                return False

            wait_for(refused, 10)  # no new connections, while the request is still waiting
            assert process.poll() is None
        finally:
            redis_client.execute_command("CLIENT", "UNPAUSE")
        writer.join(10)
        _, stderr = process.communicate(timeout=10)
    assert process.returncode == 0, stderr
    assert [status for status, _ in answers] == [201], (answers, stderr)
