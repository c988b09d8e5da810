"""Benchmark adapter for redistimers itself (see PROTOCOL.md), through its public API only.

A timer is ``set_timer(topic, payload, activate_at=<due>, timer_id=<id>)`` (``--bulk``:
``set_timers`` of TimerSpec values); a worker is one TimerScheduler with a handler per
topic, started with ``start()`` and stopped with ``stop()`` on SIGTERM. Run it with the
project's own interpreter (it imports redistimers from the work tree).

The worker's Redis client counts its round trips client-side (the counting connection of
benchmarks/counting.py: one per command or pipeline sent, pub/sub included) and adds the
total to the out file as ``client_round_trips``, over the worker's whole life. With
BENCHMARKS_PROFILE_DIR set (``python -m benchmarks --profile DIR``), the worker also
profiles its threads into that folder (see benchmarks/counting.py).

Besides redis-py's URLs it takes ``redis+cluster://`` and ``redis+sentinel://`` ones (the
library's own, ``TimerScheduler.from_url``): ``python -m benchmarks --redis cluster`` and
``--redis sentinel`` run only this adapter. With BENCH_REDISTIMERS_MIN_REPLICAS=k in its
environment (the harness's ``.replicas`` figures), every scheduler it makes waits for k
replicas on every write (``min_replicas=k, replica_timeout=1.0``).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import sys
from itertools import islice
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(1, os.path.dirname(os.path.dirname(HERE)))  # the work tree: benchmarks.counting

import _common  # noqa: E402

import redistimers  # noqa: E402
from benchmarks.counting import (  # noqa: E402
    PROFILE_ENV,
    ROUND_TRIPS,
    ThreadProfiles,
    counting_client,
)
from redistimers import Delivery, Router, TimerScheduler, TimerSpec, defaults  # noqa: E402
from redistimers.connect import client_from_url, is_single_server  # noqa: E402

#: max_concurrent of the tuned profile. With a no-op handler the poller thread is the
#: bottleneck, and one poller turn (one pipelined round trip) claims at most the topic's
#: free slots. 100 handler threads let a turn settle and claim dozens of timers; far more
#: threads cost more to start than they save (1000 drained slower), and the library's own
#: default, 10, caps a turn at 10 timers: >= 0.1 round trips per timer.
TUNED_MAX_CONCURRENT = 100
#: Shortest lease of the tuned profile: it bounds how long a killed worker's timers wait
#: (the crash workload), and costs nothing while handlers are short (a running handler's
#: lease is renewed at a third of it).
TUNED_LEASE_TTL = 5.0
#: Timers per set_timers call in --bulk, so a plan of millions is not held twice in memory.
BULK_CALL = 50_000
#: Replicas every write waits for, when set (benchmarks.session.MIN_REPLICAS_ENV).
MIN_REPLICAS_ENV = "BENCH_REDISTIMERS_MIN_REPLICAS"
REPLICA_TIMEOUT = 1.0

TUNED: dict[str, Any] = {
    "max_concurrent": TUNED_MAX_CONCURRENT,  # per topic; --concurrency overrides it
    "lease_ttl": TUNED_LEASE_TTL,
    "max_poll_interval": defaults.MAX_POLL_INTERVAL,
}
DEFAULTS: dict[str, Any] = {
    "max_concurrent": defaults.MAX_CONCURRENT,
    "lease_ttl": defaults.LEASE_TTL,
    "max_poll_interval": defaults.MAX_POLL_INTERVAL,
}
NOTES = (
    "One TimerScheduler per worker process: one poller thread claims due timers in batches "
    "of the topic's free handler slots and settles finished ones in the same pipelined round "
    "trip; a handler thread pool runs them. Tuned: max_concurrent = --concurrency per topic "
    f"and a {TUNED_LEASE_TTL:g} s lease (crash recovery time); default: the library's "
    "defaults (max_concurrent 10, 30 s lease). Bulk: set_timers (pipelined chunks)."
)


def due_at(due_ms: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(due_ms / 1000, tz=dt.timezone.utc)


def replication() -> dict[str, Any]:
    """TimerScheduler's min_replicas and replica_timeout, when the environment asks."""
    replicas = int(os.environ.get(MIN_REPLICAS_ENV) or 0)
    return {"min_replicas": replicas, "replica_timeout": REPLICA_TIMEOUT} if replicas else {}


def schedule(args: Any) -> None:
    timers, payload = _common.load_plan(args.plan)
    scheduler = TimerScheduler.from_url(args.redis_url, **replication())

    def one(timer: _common.Timer) -> None:
        timer_id, topic, due = timer
        scheduler.set_timer(topic, payload, activate_at=due_at(due), timer_id=timer_id)

    def bulk() -> int:
        specs = (
            TimerSpec(topic, payload, activate_at=due_at(due), timer_id=timer_id)
            for timer_id, topic, due in timers
        )
        while chunk := list(islice(specs, BULK_CALL)):
            scheduler.set_timers(chunk)
        return len(timers)

    if args.bulk:
        _common.timed(bulk)
    else:
        _common.timed(lambda: _common.in_threads(timers, args.threads, one))


def worker(args: Any) -> None:
    progress = None if is_single_server(args.redis_url) else client_from_url(args.redis_url)
    recorder = _common.Recorder(args, client=progress)

    def fire(payload: Any, delivery: Delivery) -> None:
        recorder.record(delivery.timer_id, delivery.topic)

    router = Router()
    for topic in args.topics:
        if args.profile == "tuned":
            router.handler(topic, max_concurrent=args.concurrency, lease_ttl=TUNED_LEASE_TTL)(fire)
        else:
            router.handler(topic)(fire)
    scheduler = TimerScheduler(counting_client(args.redis_url), routers=[router],
                               **replication())
    stop = _common.on_sigterm(lambda: None)
    profile_dir = os.environ.get(PROFILE_ENV)
    profiles = ThreadProfiles() if profile_dir else None
    if profiles is not None:
        profiles.install()
    scheduler.start()
    recorder.ready()
    while not stop.wait(0.5):
        pass
    scheduler.stop(timeout=10)
    recorder.finish()
    if profiles is not None and profile_dir:
        profiles.save(Path(profile_dir), args.name)
    with open(args.out) as f:
        out = json.load(f)
    out["client_round_trips"] = sum(ROUND_TRIPS.snapshot().values())
    with open(args.out, "w") as f:
        json.dump(out, f)


def main() -> None:
    _common.run(
        {
            "library": "redistimers",
            "version": redistimers.__version__,
            "tuned": TUNED,
            "defaults": DEFAULTS,
            "multi_worker_safe": True,
            "bulk_schedule": True,
            "notes": NOTES,
        },
        schedule,
        worker,
    )

if __name__ == "__main__":
    main()
