"""Shared by the Python adapters (standard library and redis-py only): arguments, plans,
the recorder of handler calls, and the progress reporter. See PROTOCOL.md."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import redis

Timer = tuple[str, str, float]  # id, topic, due ms


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info")
    schedule = commands.add_parser("schedule")
    schedule.add_argument("--redis-url", required=True)
    schedule.add_argument("--plan", required=True)
    schedule.add_argument("--threads", type=int, default=1)
    schedule.add_argument("--bulk", action="store_true")
    worker = commands.add_parser("worker")
    worker.add_argument("--redis-url", required=True)
    worker.add_argument("--name", required=True)
    worker.add_argument("--topics", required=True)
    worker.add_argument("--concurrency", type=int, default=1)
    worker.add_argument("--profile", choices=("tuned", "default"), default="tuned")
    worker.add_argument("--out", required=True)
    worker.add_argument("--durable", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "worker":
        args.topics = [t for t in args.topics.split(",") if t]
    return args


def load_plan(path: str) -> tuple[list[Timer], dict[str, Any]]:
    with open(path) as f:
        plan = json.load(f)
    return [(str(i), str(t), float(d)) for i, t, d in plan["timers"]], plan["payload"]


def run(
    info: dict[str, Any],
    schedule: Callable[[argparse.Namespace], None],
    worker: Callable[[argparse.Namespace], None],
) -> None:
    """An adapter's command line: `info` prints `info`; `schedule` and `worker` run."""
    args = parse_args()
    if args.command == "info":
        print_json(info)
    elif args.command == "schedule":
        schedule(args)
    else:
        worker(args)


def print_json(value: Any) -> None:
    print(json.dumps(value), flush=True)


def refuse(reason: str) -> None:
    """The library cannot do what was asked (exit 3, one line on stderr)."""
    print(reason, file=sys.stderr, flush=True)
    sys.exit(3)


def timed(fn: Callable[[], int]) -> None:
    """Run a scheduling function and print the protocol's result."""
    start = time.perf_counter()
    n = fn()
    print_json({"scheduled": n, "seconds": time.perf_counter() - start})


def in_threads(timers: list[Timer], threads: int, one: Callable[[Timer], None]) -> int:
    """Call `one` for every timer from `threads` threads (a contiguous share each)."""
    if threads <= 1:
        for timer in timers:
            one(timer)
        return len(timers)
    shares = [timers[i::threads] for i in range(threads)]
    workers = [threading.Thread(target=lambda s=s: [one(t) for t in s]) for s in shares]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return len(timers)


class Recorder:
    """Records handler calls; publishes progress to Redis; writes the records on stop."""

    def __init__(self, args: argparse.Namespace, client: Any = None) -> None:
        """`client`: where progress goes, when redis-py cannot read the URL itself (a
        redis+cluster:// or redis+sentinel:// one: redistimers' adapter makes it)."""
        self.name = args.name
        self.out = args.out
        self.records: list[list[Any]] = []
        self.lock = threading.Lock()
        self.client = client if client is not None else redis.Redis.from_url(args.redis_url)
        self.stopping = threading.Event()
        # Held open for the worker's life (closed in finish), so no `with` block.
        self.log = (
            open(args.out + ".log", "a", buffering=1)  # noqa: SIM115
            if args.durable
            else None
        )
        self._reporter = threading.Thread(target=self._report, daemon=True)

    def record(self, timer_id: str, topic: str) -> None:
        row = [timer_id, topic, time.time() * 1000]
        with self.lock:
            self.records.append(row)
            if self.log is not None:
                self.log.write(json.dumps(row) + "\n")

    def ready(self) -> None:
        """Say the worker can deliver now; start publishing progress."""
        self.client.set(f"bench:ready:{self.name}", 1)
        self._reporter.start()

    def _report(self) -> None:
        last = -1
        while not self.stopping.wait(0.05):
            count = len(self.records)
            if count != last:
                self.client.set(f"bench:progress:{self.name}", count)
                last = count

    def finish(self) -> None:
        """Write the records and the final count (call once the library has stopped)."""
        self.stopping.set()
        with self.lock:
            records = list(self.records)
            if self.log is not None:
                self.log.close()
                self.log = None
        with open(self.out, "w") as f:
            json.dump({"fired": records, "pid": os.getpid()}, f)
        self.client.set(f"bench:progress:{self.name}", len(records))


def on_sigterm(callback: Callable[[], None]) -> threading.Event:
    """Install SIGTERM/SIGINT handlers that set the returned event and call `callback`."""
    event = threading.Event()

    def handler(signum: int, frame: Any) -> None:
        event.set()
        callback()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)
    return event
