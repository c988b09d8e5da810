"""A real gunicorn (``--preload``, 2 sync workers) serving tests/_flask_app.py, real HTTP
requests, and the timers they schedule delivered exactly once: by a separate
``flask redistimers worker`` process, or (``REDISTIMERS_RUN_IN_WEB``) by schedulers each
gunicorn worker starts after the fork. Both boot, and serve, before Redis is up."""

from __future__ import annotations

import collections
import concurrent.futures
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from redistimers.testing import RedisServer
from tests._processes import Processes as SharedProcesses
from tests.helpers import wait_for

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parent.parent
APP = "tests._flask_app:app"
TOPIC = "pings"
REQUESTS = 50

#: Deadlines for things that involve other processes on a busy two-core machine.
DEADLINE = 30.0


def _gunicorn_options() -> list[str]:
    """gunicorn >= 24 opens a control socket at a fixed path; tests running at once
    would share it."""
    from gunicorn.config import Config

    return ["--no-control-socket"] if "control_socket_disable" in Config().settings else []


class Processes(SharedProcesses):
    """The Python processes of one test (`spawn` runs its args with this interpreter); at
    teardown each gets SIGTERM, then SIGKILL (its whole process group) if it lingers."""

    def spawn(  # type: ignore[override]
        self, name: str, args: list[str], env: dict[str, str]
    ) -> subprocess.Popen[bytes]:
        return super().spawn(name, [sys.executable, *args], env)

    def terminate(self, name: str, timeout: float = DEADLINE) -> int:
        """SIGTERM, and the exit code once it exited."""
        process = self.processes[name]
        if process.poll() is not None:
            return process.returncode
        return self.stop(name, signal.SIGTERM, timeout)


@pytest.fixture
def processes(tmp_path: Path) -> Iterator[Processes]:
    pool = Processes(tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def _env(redis_url: str, namespace: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")])),
        PYTHONUNBUFFERED="1",
        TEST_PARENT_PID=str(os.getpid()),
        TEST_PREFIX=namespace,
        # app.config.from_prefixed_env(): FLASK_X=... is app.config["X"]
        FLASK_REDISTIMERS_URL=redis_url,
        FLASK_REDISTIMERS_NAMESPACE=namespace,
        **extra,
    )
    return env


def _start_gunicorn(
    processes: Processes, env: dict[str, str], *options: str
) -> tuple[int, str]:
    """gunicorn --preload with 2 workers on a free port; its master pid and base URL once
    it answers."""
    master = processes.spawn(
        "gunicorn",
        ["-m", "gunicorn", "--preload", "-w", "2", "-b", "127.0.0.1:0", "--graceful-timeout",
         "20", *_gunicorn_options(), *options, APP],
        env,
    )
    port: list[int] = []

    def listening() -> bool:
        processes.check_alive()
        found = re.search(r"Listening at: http://127\.0\.0\.1:(\d+)", processes.log("gunicorn"))
        if found:
            port.append(int(found.group(1)))
        return bool(found)

    try:
        wait_for(listening, DEADLINE, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{processes.logs()}") from exc
    base = f"http://127.0.0.1:{port[0]}"

    def answers() -> bool:
        processes.check_alive()
        try:
            _request(base, "GET", "/health")
        except OSError:
            return False
        return True

    try:
        wait_for(answers, DEADLINE, interval=0.05)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{processes.logs()}") from exc
    return master.pid, base


def _request(base: str, method: str, path: str) -> dict[str, Any]:
    body = b"" if method == "POST" else None
    request = urllib.request.Request(base + path, method=method, data=body)
    with urllib.request.urlopen(request, timeout=DEADLINE) as response:
        answer: dict[str, Any] = json.loads(response.read())
        return answer


def _status(base: str, method: str, path: str) -> tuple[int, dict[str, Any], str | None]:
    """A request's status, JSON body and Retry-After header, error statuses included."""
    try:
        return 200, _request(base, method, path), None
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers.get("Retry-After")


def _schedule(base: str, count: int) -> list[dict[str, Any]]:
    """`count` POST /schedule requests, eight at a time, so both gunicorn workers serve."""
    with concurrent.futures.ThreadPoolExecutor(8) as pool:
        return list(pool.map(lambda _: _request(base, "POST", "/schedule"), range(count)))


def _deliveries(
    client: redis.Redis, processes: Processes, namespace: str, expected: int
) -> list[list[str]]:
    """"<pid> <timer id> <attempt> <app>" records once `expected` arrived and the topic is
    empty, after a further second in which a duplicate would have shown."""
    key = f"{namespace}:delivered"

    def all_delivered() -> bool:
        processes.check_alive()
        return client.llen(key) >= expected

    try:
        wait_for(all_delivered, DEADLINE, interval=0.05)
        wait_for(lambda: client.zcard(f"{namespace}:{{{TOPIC}}}:due") == 0, DEADLINE)
        time.sleep(1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{processes.logs()}") from exc
    return [item.decode().split() for item in client.lrange(key, 0, -1)]


def _assert_exactly_once(records: list[list[str]], timer_ids: set[str], logs: str) -> None:
    counts = collections.Counter(timer_id for _pid, timer_id, _attempt, _app in records)
    assert {t: n for t, n in counts.items() if n > 1} == {}, logs
    assert set(counts) == timer_ids, logs
    assert {attempt for _pid, _timer_id, attempt, _app in records} == {"1"}, logs
    # The handler read current_app: it ran inside the app context.
    assert {app for _pid, _timer_id, _attempt, app in records} == {"timers_test_app"}, logs


def test_web_app_schedules_and_a_separate_worker_delivers_each_timer_once(
    redis_client: redis.Redis, redis_url: str, processes: Processes
) -> None:
    namespace = "gunicorn-worker"
    env = _env(redis_url, namespace)
    worker = processes.spawn(
        "worker", ["-m", "flask", "--app", APP, "redistimers", "worker"], env
    )
    master_pid, base = _start_gunicorn(processes, env)

    answers = _schedule(base, REQUESTS)
    timer_ids = {answer["timer_id"] for answer in answers}
    assert len(timer_ids) == REQUESTS
    web_pids = {answer["pid"] for answer in answers}
    assert master_pid not in web_pids
    assert not any(answer["running"] for answer in answers)  # web processes only schedule

    records = _deliveries(redis_client, processes, namespace, REQUESTS)
    _assert_exactly_once(records, timer_ids, processes.logs())
    assert {int(pid) for pid, *_ in records} == {worker.pid}, processes.logs()

    assert processes.terminate("worker") == 0, processes.logs()
    assert "scheduler stopped" in processes.log("worker")


def test_gunicorn_and_the_worker_boot_before_redis_and_deliver_once_it_is_up(
    processes: Processes,
) -> None:
    namespace = "gunicorn-late-redis"
    server = RedisServer(port=_free_port())  # not started: nothing listens there yet
    try:
        env = _env(server.url, namespace)
        worker = processes.spawn(
            "worker", ["-m", "flask", "--app", APP, "redistimers", "worker"], env
        )
        _master_pid, base = _start_gunicorn(processes, env)  # boots, answers /health

        status, body, retry_after = _status(base, "POST", "/schedule")
        assert (status, retry_after) == (503, "1"), body
        assert f"cannot reach Redis at 127.0.0.1:{server.port}" in body["error"]

        def waiting() -> bool:
            processes.check_alive()  # the worker waits, it does not exit
            return "waiting for Redis" in processes.log("worker")

        wait_for(waiting, DEADLINE, interval=0.05)

        server.start()
        answers = _schedule(base, 10)  # the same web processes, nothing restarted
        timer_ids = {answer["timer_id"] for answer in answers}
        with server.client() as client:
            records = _deliveries(client, processes, namespace, len(answers))
        _assert_exactly_once(records, timer_ids, processes.logs())
        assert {int(pid) for pid, *_ in records} == {worker.pid}, processes.logs()

        assert processes.terminate("worker") == 0, processes.logs()
        log = processes.log("worker")
        assert log.count("waiting for Redis") == 1, log  # one line down, one line up
        assert log.count(f"Redis at 127.0.0.1:{server.port} answering") == 1, log
    finally:
        processes.close()
        server.close()


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("worker_class", ["sync", "gthread"])
def test_in_process_mode_each_gunicorn_worker_delivers_after_the_fork_each_timer_once(
    redis_client: redis.Redis, redis_url: str, processes: Processes, worker_class: str
) -> None:
    namespace = f"gunicorn-inproc-{worker_class}"
    env = _env(
        redis_url, namespace, FLASK_REDISTIMERS_RUN_IN_WEB="true", TEST_CONNECT_BEFORE_FORK="1"
    )
    # gthread: requests in several threads of each worker race to the first-request start.
    threads = ["--threads", "4"] if worker_class == "gthread" else []
    master_pid, base = _start_gunicorn(processes, env, "-k", worker_class, *threads)

    answers = _schedule(base, REQUESTS)
    deadline = time.monotonic() + DEADLINE
    while len({answer["pid"] for answer in answers}) < 2:  # until both workers served
        if time.monotonic() > deadline:
            raise AssertionError(f"one gunicorn worker served every request\n{processes.logs()}")
        answers += _schedule(base, 8)
    timer_ids = {answer["timer_id"] for answer in answers}
    assert len(timer_ids) == len(answers)
    web_pids = {answer["pid"] for answer in answers}
    assert len(web_pids) == 2
    assert master_pid not in web_pids
    assert all(answer["running"] for answer in answers)  # started before the first request

    records = _deliveries(redis_client, processes, namespace, len(answers))
    _assert_exactly_once(records, timer_ids, processes.logs())
    delivering = {int(pid) for pid, *_ in records}
    assert delivering <= web_pids, processes.logs()  # never the master

    # Each worker started its own scheduler once, after the fork, and stops it at exit.
    assert processes.terminate("gunicorn") == 0, processes.logs()
    log = processes.log("gunicorn")
    for pid in web_pids:
        assert log.count(f"{pid} INFO redistimers.flask: started the timer scheduler") == 1, log
        assert f"{pid} INFO redistimers.scheduler: scheduler stopped" in log, log
    assert f"{master_pid} INFO redistimers.flask: started" not in log, log


# -- the HTTP admin API under gunicorn --------------------------------------------------------

API_TOKEN = "gunicorn-api-token"


def _api_call(
    base: str, method: str, path: str, body: object = None, token: str | None = API_TOKEN
) -> tuple[int, Any]:
    """A request with the bearer token (unless None); its status and JSON body."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    data = None
    if body is not None:
        data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
    request = urllib.request.Request(base + path, method=method, data=data, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=DEADLINE) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_gunicorn_serves_the_http_api_built_from_the_environment(
    redis_client: redis.Redis, redis_url: str, processes: Processes
) -> None:
    namespace = "gunicorn-api"
    env = _env(redis_url, namespace, REDIS_URL=redis_url, REDISTIMERS_NAMESPACE=namespace,
               REDISTIMERS_API_TOKEN=API_TOKEN)
    processes.spawn(
        "gunicorn",
        ["-m", "gunicorn", "-w", "2", "-b", "127.0.0.1:0", *_gunicorn_options(),
         "redistimers.contrib.http_api:create_app()"],
        env,
    )
    found: list[str] = []

    def listening() -> bool:
        processes.check_alive()
        found.extend(re.findall(r"Listening at: (http://127\.0\.0\.1:\d+)",
                                processes.log("gunicorn")))
        return bool(found)

    wait_for(listening, DEADLINE, interval=0.05)
    base = found[0]

    def answers() -> bool:
        processes.check_alive()
        try:
            return _api_call(base, "GET", "/topics")[0] == 200
        except OSError:
            return False

    wait_for(answers, DEADLINE, interval=0.05)
    status, timer = _api_call(base, "POST", "/topics/invoices/timers",
                              {"payload": {"n": 1}, "in": "1h", "id": "INV-1"})
    assert (status, timer["id"]) == (201, "INV-1")
    assert redis_client.zscore(f"{namespace}:{{invoices}}:due", "INV-1") is not None
    assert _api_call(base, "GET", "/topics/invoices/timers/INV-1")[0] == 200
    assert _api_call(base, "GET", "/topics?token=in-the-query", token=None)[0] == 401
    assert _api_call(base, "GET", "/nope", token=None)[0] == 401
    assert _api_call(base, "GET", "/nope")[0] == 404

    assert processes.terminate("gunicorn") == 0, processes.logs()
    log = processes.log("gunicorn")
    assert 'INFO redistimers.http: 127.0.0.1 "POST /topics/invoices/timers" 201' in log, log
    assert 'INFO redistimers.http: 127.0.0.1 "GET /topics" 401' in log, log
    assert "in-the-query" not in log
    assert API_TOKEN not in log
