"""Helpers shared by the tests: polling with deadlines instead of sleeps, a recording
handler, and readers of what the scheduler left in Redis."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import shutil
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import redis

from redistimers import Delivery, RetryPolicy, TimerScheduler


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
