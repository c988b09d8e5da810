"""Benchmark adapter for APScheduler 3 with its RedisJobStore (see PROTOCOL.md).

A timer is `scheduler.add_job("apscheduler_adapter:fire", "date", run_date=<due>,
id=<id>, jobstore=<topic>)`; a topic is a RedisJobStore of its own (keys
`apscheduler.jobs.<topic>` and `apscheduler.run_times.<topic>`), so one worker serves several
topics by adding several job stores. The worker is a BackgroundScheduler with a thread pool
executor in this process. Run it with the interpreter of benchmarks/.cache/venv-apscheduler
(requirements: apscheduler.txt).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
import redis
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.jobstores.redis import RedisJobStore
from apscheduler.schedulers.background import BackgroundScheduler

# The handler by its importable name: the job stores keep this text reference.
HANDLER = "apscheduler_adapter:fire"

# The settings `--profile tuned` uses (the fastest we found) and APScheduler's own defaults.
TUNED: dict[str, Any] = {
    "scheduler": "BackgroundScheduler",
    "executor": "ThreadPoolExecutor",
    "max_workers": 16,  # --concurrency overrides it
    "misfire_grace_time": None,  # set when scheduling, for both profiles: run however late
    "coalesce": True,
    "wakeup_poll_s": 0.05,
}
DEFAULTS: dict[str, Any] = {
    "scheduler": "BackgroundScheduler",
    "executor": "ThreadPoolExecutor",
    "max_workers": 10,
    "misfire_grace_time": None,  # APScheduler's default is 1 s: see NOTES
    "coalesce": True,
    "wakeup_poll_s": 1.0,
}
NOTES = (
    "APScheduler 3 BackgroundScheduler + RedisJobStore (one store per topic) + thread pool "
    "executor; add_job(func, 'date', run_date=..., id=...). Not safe with several workers: "
    "every scheduler sharing a RedisJobStore reads the same due jobs and runs them (the "
    "FAQ says a job store must not be shared), and the one that comes second to remove a "
    "job raises JobLookupError in its scheduler thread, which then dies: that worker fires "
    "nothing more. A scheduler does not see jobs added by another process until it next "
    "wakes up, and with no job known it sleeps until woken; APScheduler 3 has no setting "
    "for that, so the adapter calls scheduler.wakeup() every wakeup_poll_s (tuned 50 ms, "
    "default 1 s; each look costs 2 commands per topic); a job it knows of it wakes for "
    "exactly, so timers scheduled ahead fire within milliseconds. Timers are always "
    "scheduled with misfire_grace_time=None: APScheduler's default (1 s) silently drops "
    "every job that starts more than 1 s late, i.e. most of a backlog. Each look loads "
    "every due job at once (no batch limit), hands it to the executor and then removes it "
    "from Redis: a killed worker loses the jobs it had handed over but not run. No bulk "
    "API. Tuned: --concurrency executor threads, 50 ms wake-up poll."
)

recorder: _common.Recorder | None = None


def fire(topic: str, payload: dict[str, Any]) -> None:
    """The handler: no work but recording the call."""
    assert recorder is not None
    recorder.record(payload["id"], topic)


def job_store(redis_url: str, topic: str) -> RedisJobStore:
    return RedisJobStore(
        jobs_key=f"apscheduler.jobs.{topic}",
        run_times_key=f"apscheduler.run_times.{topic}",
        connection_pool=redis.ConnectionPool.from_url(redis_url),
    )


def make_scheduler(redis_url: str, topics: list[str], max_workers: int) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={topic: job_store(redis_url, topic) for topic in topics},
        executors={"default": ThreadPoolExecutor(max_workers)},
        timezone=timezone.utc,
    )


def schedule(args: Any) -> None:
    if args.bulk:
        _common.refuse("APScheduler 3 has no bulk API: add_job writes one job per call")
    timers, payload = _common.load_plan(args.plan)
    scheduler = make_scheduler(args.redis_url, sorted({t for _, t, _ in timers}), 1)
    # Paused: add_job writes to the store at once and nothing runs here. It is never shut
    # down: shutdown() makes the scheduler thread process (and remove) the due jobs.
    scheduler.start(paused=True)

    def one(timer: _common.Timer) -> None:
        timer_id, topic, due = timer
        scheduler.add_job(
            HANDLER,
            "date",
            run_date=datetime.fromtimestamp(due / 1000, tz=timezone.utc),
            id=timer_id,
            args=(topic, {**payload, "id": timer_id}),
            jobstore=topic,
            misfire_grace_time=None,
        )

    _common.timed(lambda: _common.in_threads(timers, args.threads, one))


def worker(args: Any) -> None:
    global recorder
    tuned = args.profile == "tuned"
    settings = TUNED if tuned else DEFAULTS
    recorder = _common.Recorder(args)
    max_workers = args.concurrency if tuned else settings["max_workers"]
    scheduler = make_scheduler(args.redis_url, args.topics, max_workers)
    stop = _common.on_sigterm(lambda: None)
    scheduler.start()
    recorder.ready()
    while not stop.wait(settings["wakeup_poll_s"]):
        scheduler.wakeup()  # see jobs that other processes added since the last look
    # shutdown() makes the scheduler thread take one more look at the job stores, with the
    # executor already shut down (due jobs would be removed unrun): pause, detach the
    # stores (their jobs stay in Redis), then wait for the jobs handed to the executor.
    scheduler.pause()
    for topic in args.topics:
        scheduler.remove_jobstore(topic, shutdown=False)
    scheduler.shutdown(wait=True)
    recorder.finish()
    sys.exit(0)


def main() -> None:
    _common.run(
        {
            "library": "apscheduler",
            "version": version("APScheduler"),
            "tuned": TUNED,
            "defaults": DEFAULTS,
            "multi_worker_safe": False,
            "bulk_schedule": False,
            "notes": NOTES,
        },
        schedule,
        worker,
    )


if __name__ == "__main__":
    # Run as the importable module `apscheduler_adapter`, the name job references use.
    import apscheduler_adapter

    apscheduler_adapter.main()
