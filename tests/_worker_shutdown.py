"""A worker process for tests/test_shutdown.py: shutdown, signals, crashes and fork.

    python tests/_worker_shutdown.py URL --name NAME --topic TOPIC --mode slow|exit|fork
        [--prefix KEY_PREFIX] [--lease-ttl SECONDS] [--max-attempts N]
        [--max-concurrent N] [--handler-seconds SECONDS] [--shutdown-timeout SECONDS]

Modes "slow" and "exit" run `scheduler.run_forever()` (SIGTERM/SIGINT stop it) and report
through Redis lists outside the redistimers namespace, all starting with `--prefix`:

- `<prefix>:ready`     RPUSH NAME once the scheduler is running;
- `<prefix>:started`   RPUSH "NAME TIMER_ID ATTEMPT" when a handler starts;
- `<prefix>:finished`  mode "slow": RPUSH "NAME TIMER_ID ATTEMPT" when the handler returns,
                       `--handler-seconds` after it started;
- `<prefix>:exited`    RPUSH "NAME <json>" once run_forever() returned, saying whether the
                       SIGTERM and SIGINT handlers in place before it were put back.

Mode "exit": the handler RPUSHes `started`, then ends the process with os._exit(1).

Mode "fork": starts a scheduler, lets it deliver one timer, then os.fork()s. The parent
checks its scheduler still delivers, stops it, RPUSHes `<prefix>:parent-stopped`, waits
for the child and RPUSHes `<prefix>:parent` (a JSON report, with the child's exit status).
The child RPUSHes `<prefix>:child` (a JSON report): what the inherited scheduler says in
the child, then whether start() there delivers a timer with the child's own threads. Each
delivery RPUSHes "PID TIMER_ID" to `<prefix>:delivered`. The child reports only through
Redis and its exit status, and leaves with os._exit.

The process exits by itself when its parent dies, so a crashed test run leaves no worker.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any

# Import redistimers from this repository, whatever is installed elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from redistimers import Delivery, RetryPolicy, Router, TimerScheduler
from tests._process_helpers import announce_ready, exit_with_parent


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _wait_for_item(client: redis.Redis, key: str, item: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if item in {_text(v) for v in client.lrange(key, 0, -1)}:
            return True
        time.sleep(0.01)
    return False


def _library_threads() -> list[str]:
    return sorted(
        t.name for t in threading.enumerate() if t.name.startswith("redistimers") and t.is_alive()
    )


def run_worker(args: argparse.Namespace, client: redis.Redis) -> None:
    router = Router()
    prefix, name = args.prefix, args.name

    @router.handler(
        args.topic,
        lease_ttl=args.lease_ttl,
        max_concurrent=args.max_concurrent,
        retry=RetryPolicy(max_attempts=args.max_attempts, initial=0.01, jitter=False),
    )
    def handle(payload: object, delivery: Delivery) -> None:
        record = f"{name} {delivery.timer_id} {delivery.attempt}"
        client.rpush(f"{prefix}:started", record)
        if args.mode == "exit":
            os._exit(1)
        time.sleep(args.handler_seconds)
        client.rpush(f"{prefix}:finished", record)

    previous = {signum: signal.getsignal(signum) for signum in (signal.SIGTERM, signal.SIGINT)}
    scheduler = TimerScheduler.from_url(args.url, routers=[router], max_poll_interval=1.0)
    threading.Thread(
        target=announce_ready, args=(scheduler, client, f"{prefix}:ready", name), daemon=True
    ).start()
    scheduler.run_forever(shutdown_timeout=args.shutdown_timeout)
    restored = all(signal.getsignal(signum) is handler for signum, handler in previous.items())
    client.rpush(
        f"{prefix}:exited",
        f"{name} " + json.dumps({"restored": restored, "running": scheduler.running}),
    )


def run_fork(args: argparse.Namespace, client: redis.Redis) -> None:
    prefix, topic = args.prefix, args.topic
    delivered = f"{prefix}:delivered"
    router = Router()

    @router.handler(topic)
    def record(payload: object, delivery: Delivery) -> None:
        client.rpush(delivered, f"{os.getpid()} {delivery.timer_id}")

    scheduler = TimerScheduler.from_url(args.url, routers=[router], max_poll_interval=1.0)
    scheduler.start()
    parent_pid = os.getpid()
    scheduler.set_timer(topic, "x", activate_in=0, timer_id="before-fork")
    if not _wait_for_item(client, delivered, f"{parent_pid} before-fork", 20):
        raise SystemExit("the scheduler did not deliver before the fork")

    pid = os.fork()
    if pid == 0:
        code = 2
        try:
            threading.Thread(target=exit_with_parent, args=(parent_pid,), daemon=True).start()
            report = _fork_child(scheduler, client, prefix, topic, delivered)
            client.rpush(f"{prefix}:child", json.dumps(report))
            code = 0
        except BaseException:
            try:
                client.rpush(f"{prefix}:child", json.dumps({"error": traceback.format_exc()}))
            except BaseException:
                code = 4
        finally:
            os._exit(code)

    report: dict[str, Any] = {
        "pid": parent_pid,
        "child_pid": pid,
        "running_after_fork": scheduler.running,
        "healthy_after_fork": scheduler.healthy,
    }
    scheduler.set_timer(topic, "x", activate_in=0, timer_id="parent-after-fork")
    report["delivered_after_fork"] = _wait_for_item(
        client, delivered, f"{parent_pid} parent-after-fork", 20
    )
    report["stopped"] = scheduler.stop(5)
    client.rpush(f"{prefix}:parent-stopped", "1")
    _, status = os.waitpid(pid, 0)
    report["child_exit"] = os.waitstatus_to_exitcode(status)
    client.rpush(f"{prefix}:parent", json.dumps(report))


def _fork_child(
    scheduler: TimerScheduler, client: redis.Redis, prefix: str, topic: str, delivered: str
) -> dict[str, Any]:
    report: dict[str, Any] = {
        "pid": os.getpid(),
        "running_after_fork": scheduler.running,
        "healthy_after_fork": scheduler.healthy,
        "threads_after_fork": _library_threads(),
    }
    began = time.monotonic()
    report["stop_before_start"] = scheduler.stop(5)
    report["stop_before_start_seconds"] = time.monotonic() - began
    # The parent's scheduler must be stopped, so that only the child can deliver.
    report["parent_stopped"] = _wait_for_item(client, f"{prefix}:parent-stopped", "1", 20)
    scheduler.start()
    report["running_after_start"] = scheduler.running
    report["healthy_after_start"] = scheduler.healthy
    report["threads_after_start"] = _library_threads()
    scheduler.set_timer(topic, "x", activate_in=0, timer_id="child-timer")
    report["delivered_in_child"] = _wait_for_item(
        client, delivered, f"{os.getpid()} child-timer", 20
    )
    report["stopped"] = scheduler.stop(5)
    report["threads_after_stop"] = _library_threads()
    return report


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--name", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--mode", choices=["slow", "exit", "fork"], required=True)
    parser.add_argument("--prefix", default="test")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--max-attempts", type=int, default=5)
    parser.add_argument("--max-concurrent", type=int, default=10)
    parser.add_argument("--handler-seconds", type=float, default=1.0)
    parser.add_argument("--shutdown-timeout", type=float, default=10.0)
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(process)d %(threadName)s %(name)s %(levelname)s %(message)s",
    )
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    client = redis.Redis.from_url(args.url)
    if args.mode == "fork":
        run_fork(args, client)
    else:
        run_worker(args, client)


if __name__ == "__main__":
    main()
