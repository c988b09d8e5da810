"""Helpers shared by the tests: polling with deadlines instead of sleeps, a recording
handler, and readers of what the scheduler left in Redis."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import redis

from redistimers import Delivery, RetryPolicy, Router, TimerScheduler
from redistimers.testing import RedisServer


def wait_for(
    predicate: Callable[[], object], timeout: float = 10.0, interval: float = 0.01
) -> None:
    """Poll `predicate` until it is true; fail the test after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout}s: {predicate}")
        time.sleep(interval)


UTC = dt.timezone.utc
SchedulerFactory = Callable[..., TimerScheduler]
#: `own_server(**options)` (conftest.py): a started redis-server of one test alone.
ServerFactory = Callable[..., RedisServer]

#: Retries fast enough for tests, without jitter so waits are predictable.
FAST_RETRY = RetryPolicy(max_attempts=5, initial=0.01, factor=2.0, maximum=0.05, jitter=False)


@attrs.frozen
class InvoiceDue:
    invoice_id: str
    amount_cents: int


@attrs.frozen
class Call:
    """One handler call, as the handler saw it."""

    payload: Any
    delivery: Delivery | None
    server_now: dt.datetime
    local_now: dt.datetime


#: What a Recorder does after recording a call: `behaviour(payload, delivery)`.
Behaviour = Callable[[Any, Delivery | None], None]


class Recorder:
    """A handler that records its calls; `behaviour(payload, delivery)` may raise or block."""

    def __init__(self, client: redis.Redis, behaviour: Behaviour | None = None) -> None:
        self.client = client
        self.behaviour = behaviour
        self.calls: list[Call] = []
        self.lock = threading.Lock()

    def __call__(self, payload: Any, delivery: Delivery | None = None) -> None:
        call = Call(payload, delivery, server_now(self.client), dt.datetime.now(UTC))
        with self.lock:
            self.calls.append(call)
        if self.behaviour is not None:
            self.behaviour(payload, delivery)

    @property
    def payloads(self) -> list[Any]:
        with self.lock:
            return [call.payload for call in self.calls]

    def wait_calls(self, count: int, timeout: float = 10.0) -> list[Call]:
        wait_for(lambda: len(self.calls) >= count, timeout)
        with self.lock:
            return list(self.calls)


#: `recording(topic, behaviour, handler={...}, **scheduler_options)` (conftest.py).
RecordingFactory = Callable[..., tuple[TimerScheduler, Recorder]]


def blocked_until(event: threading.Event, timeout: float = 10.0) -> Behaviour:
    """A behaviour whose handler blocks until `event` is set (at most `timeout` seconds):
    ``recording("ticks", blocked_until(release))``."""

    def block(payload: Any, delivery: Delivery | None) -> None:
        event.wait(timeout)

    return block


def server_now(client: redis.Redis) -> dt.datetime:
    """The Redis server's clock."""
    seconds, micros = client.time()
    return dt.datetime.fromtimestamp(int(seconds), UTC) + dt.timedelta(microseconds=int(micros))


def dead_letters(client: redis.Redis, topic: str) -> dict[str, dict[str, Any]]:
    """Dead-lettered timers of a topic: id -> record."""
    ids = [i.decode() for i in client.zrange(f"redistimers:{{{topic}}}:dead", 0, -1)]
    return {
        i: json.loads(client.hget(f"redistimers:{{{topic}}}:dead_body", i) or b"null")
        for i in ids
    }


def closed_port() -> int:
    """A local TCP port where nothing listens (bound a moment ago, then closed)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def offline_client() -> redis.Redis:
    """A client of a port where nothing listens: a call that reaches for Redis fails within
    half a second (RedisUnavailableError through a scheduler), so it shows."""
    return redis.Redis(port=closed_port(), socket_connect_timeout=0.5)


def redistimers_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("redistimers")}


def scheduler_factory(url: str, made: list[TimerScheduler]) -> SchedulerFactory:
    """make(*routers, **options): schedulers of the Redis at `url`, kept in `made`."""

    def make(*routers: Router, **options: Any) -> TimerScheduler:
        scheduler = TimerScheduler.from_url(url, routers=list(routers), **options)
        made.append(scheduler)
        return scheduler

    return make


def timer_gone(scheduler: TimerScheduler, topic: str, timer_id: str) -> Callable[[], bool]:
    return lambda: scheduler.get_timer(topic, timer_id) is None


@contextlib.contextmanager
def running(scheduler: TimerScheduler, release: threading.Event) -> Iterator[TimerScheduler]:
    """Run `scheduler`; on the way out, free blocked handlers first so a failing test
    does not wait out stop()'s timeout."""
    scheduler.start()
    try:
        yield scheduler
    finally:
        release.set()
        scheduler.stop(timeout=5)


REPO = Path(__file__).resolve().parent.parent


def cli_command() -> list[str]:
    """The installed `redistimers` console script, else `python -m redistimers.cli`."""
    script = Path(sys.executable).with_name("redistimers")
    if script.exists():
        return [str(script)]
    found = shutil.which("redistimers")
    return [found] if found else [sys.executable, "-m", "redistimers.cli"]


def cli_environment(**extra: str) -> dict[str, str]:
    """This environment for a command of this repository, without the settings a test
    did not mean to pass (REDIS_URL and the like), with `extra` on top."""
    env = {
        k: v for k, v in os.environ.items()
        if k not in ("REDIS_URL", "REDISTIMERS_NAMESPACE", "REDISTIMERS_API_TOKEN")
    }
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def redis_list(client: redis.Redis, key: str) -> list[str]:
    """The items of a Redis list, as text whatever the client decodes."""
    return [i.decode() if isinstance(i, bytes) else i for i in client.lrange(key, 0, -1)]


class WorkerProcesses:
    """Processes of a worker script of tests/ (run with this interpreter, from the
    repository, given the Redis URL and `--name`), each logging to `<folder>/<name>.log`.
    The scripts say they are ready by RPUSHing their name to `test:ready`."""

    def __init__(self, script: Path, url: str, folder: Path, deadline: float) -> None:
        self.script = script
        self.url = url
        self.folder = folder
        #: Seconds to wait for things that involve these processes.
        self.deadline = deadline
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    def spawn(self, name: str, *args: str) -> subprocess.Popen[bytes]:
        with (self.folder / f"{name}.log").open("wb") as log_file:
            process = subprocess.Popen(
                [sys.executable, str(self.script), self.url, "--name", name, *args],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=str(REPO),
                env=cli_environment(),
            )
        self.processes[name] = process
        return process

    def log(self, name: str) -> str:
        return (self.folder / f"{name}.log").read_text(errors="replace")

    def logs(self) -> str:
        return "\n".join(f"--- {name} ---\n{self.log(name)}" for name in self.processes)

    def wait_ready(self, client: redis.Redis, *names: str) -> None:
        """Wait until every one of `names` is ready; fail at once if one of them exits."""

        def ready() -> bool:
            for name in names:
                process = self.processes[name]
                if process.poll() is not None:
                    raise AssertionError(
                        f"worker {name} exited with {process.returncode}:\n{self.log(name)}"
                    )
            return set(names) <= set(redis_list(client, "test:ready"))

        wait_for(ready, self.deadline, interval=0.02)

    def end_all(self, grace: float = 0.0) -> None:
        """End every process still running: SIGTERM and up to `grace` seconds to exit
        when `grace` is given, then SIGKILL."""
        running = [p for p in self.processes.values() if p.poll() is None]
        if grace > 0:
            for process in running:
                process.send_signal(signal.SIGTERM)
            deadline = time.monotonic() + grace
            for process in running:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(max(0.1, deadline - time.monotonic()))
        for process in running:
            if process.poll() is None:
                process.kill()
            process.wait(5)
