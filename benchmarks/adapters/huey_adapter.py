"""Benchmark adapter for huey 3 with its Redis storage (see PROTOCOL.md).

A timer is `fire.schedule(args=(payload,), eta=<due>, id=<id>)` on the RedisHuey of its
topic: a topic is a huey queue (`RedisHuey(<topic>)`, keys `huey.redis.<topic>` and
`huey.schedule.<topic>`). A huey consumer serves one queue, so a worker runs one Consumer
per topic in this process (what `huey_consumer` runs, started with `Consumer.start()` and
stopped gracefully on SIGTERM), each with its thread workers and its scheduler thread.
Run it with the interpreter of benchmarks/.cache/venv-huey (requirements: huey.txt).
"""

from __future__ import annotations

import os
import sys
import time
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from huey import RedisHuey
from huey.consumer import Consumer

# The settings `--profile tuned` uses (the fastest we found) and huey's own defaults.
TUNED: dict[str, Any] = {
    "workers": 8,  # thread workers per topic (per consumer); --concurrency overrides it
    "worker_type": "thread",
    "scheduler_interval_s": 1,  # huey's least: it clamps the interval to 1..60 s
    "periodic": False,  # no periodic tasks to look for
    "results": False,  # no result handles made or stored
    "blocking": True,  # BRPOP on the queue
    "read_timeout_s": 1,
}
DEFAULTS: dict[str, Any] = {
    "workers": 1,
    "worker_type": "thread",
    "scheduler_interval_s": 1,
    "periodic": True,
    "results": True,
    "blocking": True,
    "read_timeout_s": 1,
}
#: How often the main thread checks that the consumers' threads are alive (huey's default).
HEALTH_CHECK_S = 10.0
NOTES = (
    "huey 3 RedisHuey + thread workers; task.schedule(eta=..., id=<timer id>). A topic is a "
    "huey queue and a consumer serves one queue, so a worker runs one Consumer per topic "
    "(--concurrency thread workers and a scheduler thread each: many topics cost many "
    "threads and blocking BRPOPs). schedule() pushes every task onto the queue at once; a "
    "worker thread pops it and, if its eta is ahead, adds it to the schedule (a sorted "
    "set); the scheduler thread pops every due task from there once a second (huey's least "
    "interval: it clamps scheduler_interval to 1..60 s) and pushes it back onto the queue, "
    "so a timer fires 0-1 s after its due time. Timers scheduled while no worker runs stay "
    "in the queue list until a worker moves them. Several workers: the schedule is popped "
    "atomically (a Lua script) and a queue gives each task to one worker. No acks: the "
    "tasks a killed worker had popped (from the queue, or from the schedule in that "
    "second) are lost. No bulk API. Tuned: --concurrency thread workers per topic (8: "
    "with a handler that does nothing, 1 to 16 threads drain alike, bound by the GIL and "
    "3 commands per due task, 6 for one that waits in the schedule), no periodic-task "
    "check, results off."
)

recorder: _common.Recorder | None = None


def make_huey(redis_url: str, topic: str, settings: dict[str, Any]) -> tuple[RedisHuey, Any]:
    """The RedisHuey of one topic and its task (the handler, recording each call)."""
    huey = RedisHuey(
        topic,
        results=settings["results"],
        url=redis_url,
        blocking=settings["blocking"],
        read_timeout=settings["read_timeout_s"],
        clean_name=False,  # the key is the topic as it is
    )

    @huey.task(context=True, name="fire")
    def fire(payload: dict[str, Any], task: Any = None) -> None:
        assert recorder is not None
        recorder.record(task.id, topic)

    return huey, fire


def schedule(args: Any) -> None:
    if args.bulk:
        _common.refuse("huey has no bulk API: task.schedule() enqueues one task per call")
    timers, payload = _common.load_plan(args.plan)
    tasks = {topic: make_huey(args.redis_url, topic, TUNED)[1] for _, topic, _ in timers}

    def one(timer: _common.Timer) -> None:
        timer_id, topic, due = timer
        tasks[topic].schedule(
            args=(payload,),
            eta=datetime.fromtimestamp(due / 1000, tz=timezone.utc),
            id=timer_id,
        )

    _common.timed(lambda: _common.in_threads(timers, args.threads, one))


def worker(args: Any) -> None:
    global recorder
    tuned = args.profile == "tuned"
    settings = TUNED if tuned else DEFAULTS
    recorder = _common.Recorder(args)
    consumers: list[Consumer] = []
    for topic in args.topics:
        huey, _ = make_huey(args.redis_url, topic, settings)
        consumers.append(
            huey.create_consumer(
                workers=args.concurrency if tuned else settings["workers"],
                worker_type=settings["worker_type"],
                scheduler_interval=settings["scheduler_interval_s"],
                periodic=settings["periodic"],
            )
        )
    for consumer in consumers:
        consumer.start()  # starts its threads; sets huey's signal handlers, replaced below
    stop = _common.on_sigterm(lambda: None)
    recorder.ready()
    next_check = time.monotonic() + HEALTH_CHECK_S
    while not stop.wait(0.5):
        if time.monotonic() >= next_check:  # what Consumer.run() does between signals
            for consumer in consumers:
                consumer.check_worker_health()
            next_check = time.monotonic() + HEALTH_CHECK_S
    # Graceful: every thread finishes the task it has (a worker blocked in BRPOP returns
    # within read_timeout); set every stop flag first so the consumers stop together.
    for consumer in consumers:
        consumer.stop_flag.set()
    for consumer in consumers:
        consumer.stop(graceful=True)
    recorder.finish()
    sys.exit(0)


def main() -> None:
    _common.run(
        {
            "library": "huey",
            "version": version("huey"),
            "tuned": TUNED,
            "defaults": DEFAULTS,
            "multi_worker_safe": True,
            "bulk_schedule": False,
            "notes": NOTES,
        },
        schedule,
        worker,
    )


if __name__ == "__main__":
    main()
