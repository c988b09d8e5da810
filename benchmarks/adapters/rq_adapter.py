"""Benchmark adapter for rq-scheduler with an rq worker (see PROTOCOL.md).

A timer is `Scheduler(connection=...).enqueue_at(<due>, "rq_adapter.fire", payload,
job_id=<id>, queue_name=<topic>)`; a topic is an rq queue, so one worker serves several by
listening on several queues. The worker is an rq worker in this process plus the
rq-scheduler loop (`Scheduler.run()`, what the `rqscheduler` command runs) in a child
process, as rq-scheduler is deployed: the scheduler moves due jobs from its sorted set into
their queues, the rq worker runs them. Run it with the interpreter of
benchmarks/.cache/venv-rq (requirements: rq.txt).
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from redis import Redis
from rq import get_current_job
from rq.job import JOB_ID_PATTERN
from rq.worker import SimpleWorker, Worker
from rq_scheduler import Scheduler

# The handler by its importable name: rq jobs keep this text reference.
HANDLER = "rq_adapter.fire"

# The settings `--profile tuned` uses (the fastest we found) and rq's own defaults.
TUNED: dict[str, Any] = {
    "worker_class": "SimpleWorker",  # runs each job in the worker process
    "concurrency": 1,  # jobs at once per worker process: rq has no threads (flag ignored)
    "scheduler_interval_s": 1.0,
    "default_result_ttl_s": 0,  # a finished job is deleted at once, no result written
    "log_job_description": False,
    "loglevel": "WARNING",
}
DEFAULTS: dict[str, Any] = {
    "worker_class": "Worker",  # forks a work horse per job
    "concurrency": 1,
    "scheduler_interval_s": 60.0,  # Scheduler() and `rqscheduler`
    "default_result_ttl_s": 500,
    "log_job_description": True,
    "loglevel": "WARNING",  # the `rq worker` command logs INFO, 3 lines per job
}
NOTES = (
    "rq-scheduler (Scheduler.enqueue_at) + an rq worker; one job at a time per worker "
    "process (--concurrency is ignored: rq scales with processes, not threads). The "
    "scheduler (a child process of each worker, as `rqscheduler` runs beside `rq worker`) "
    "wakes every interval, takes a Redis lock and moves every due job into its queue, about "
    "3 round trips per job; the worker then spends about 90 commands in about 25 round trips "
    "on each job (registries, executions, heartbeats), which bounds a worker to a few "
    "hundred jobs/s. "
    "rq-scheduler stores and compares whole seconds (calendar.timegm of the datetime), so a "
    "timer is queued from the start of its due second: up to 1 s EARLY, whatever the "
    "interval; a shorter interval than 1 s only fires timers earlier, so tuned polls every "
    "1 s (default 60 s). Not safe with several workers: the lock lets one scheduler at a "
    "time move jobs, but it expires int(interval)+10 s after it is taken and is deleted "
    "without an owner check, so a pass that takes longer (a backlog of ~10,000 or more) is "
    "overlapped by another scheduler that queues the same jobs again: two workers fired 1 "
    "timer of 20,000 twice in our check. A killed scheduler's lock blocks the others until it "
    "expires; a job taken by a killed worker is not run again (rq marks it failed, no "
    "retry). Tuned: SimpleWorker (no fork per job), result_ttl 0, no per-job log lines. "
    "No bulk API for scheduled jobs. (rq's own Queue.enqueue_at and `rq worker "
    "--with-scheduler` are not what this adapter measures.)"
)

recorder: _common.Recorder | None = None


def fire(payload: dict[str, Any]) -> None:
    """The handler: no work but recording the call (the timer id is the job id)."""
    assert recorder is not None
    job = get_current_job()
    assert job is not None
    recorder.record(payload.get("id", job.id), job.origin)


def schedule(args: Any) -> None:
    if args.bulk:
        _common.refuse("rq-scheduler has no bulk API: enqueue_at writes one job per call")
    timers, payload = _common.load_plan(args.plan)
    scheduler = Scheduler(connection=Redis.from_url(args.redis_url))

    def one(timer: _common.Timer) -> None:
        timer_id, topic, due = timer
        valid = JOB_ID_PATTERN.fullmatch(timer_id) is not None  # else the id rides along
        scheduler.enqueue_at(
            datetime.fromtimestamp(due / 1000, tz=timezone.utc),
            HANDLER,
            payload if valid else {**payload, "id": timer_id},
            job_id=timer_id if valid else None,
            queue_name=topic,
        )

    _common.timed(lambda: _common.in_threads(timers, args.threads, one))


class ForkRecorder(_common.Recorder):
    """A Recorder that also takes the records of the work horses the forking `Worker` runs
    each job in: a horse writes its row as a line to a pipe this process reads."""

    def __init__(self, args: Any) -> None:
        super().__init__(args)
        self.owner = os.getpid()
        self.read_fd, self.write_fd = os.pipe()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def record(self, timer_id: str, topic: str) -> None:
        if os.getpid() == self.owner:
            super().record(timer_id, topic)
        else:  # in a work horse: one write of a short line is atomic
            row = [timer_id, topic, time.time() * 1000]
            os.write(self.write_fd, (json.dumps(row) + "\n").encode())

    def _read(self) -> None:
        with os.fdopen(self.read_fd) as lines:
            for line in lines:
                row = json.loads(line)
                with self.lock:
                    self.records.append(row)
                    if self.log is not None:
                        self.log.write(line)

    def finish(self) -> None:
        os.close(self.write_fd)  # the horses are gone: the reader sees the end
        self.reader.join()
        super().finish()


def _die_with_parent() -> None:
    """In the scheduler child: get SIGKILL when the worker dies (prctl PR_SET_PDEATHSIG)."""
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)


SCHEDULER_CHILD = """\
import logging, sys
from redis import Redis
from rq_scheduler import Scheduler
url, interval, name = sys.argv[1:]
# Not a line a second on stderr from the schedulers that do not hold the lock.
logging.getLogger("rq_scheduler.scheduler").setLevel(logging.ERROR)
Scheduler(connection=Redis.from_url(url), interval=float(interval), name=name).run()
"""


def start_scheduler(redis_url: str, interval: float, name: str) -> subprocess.Popen[bytes]:
    """The rq-scheduler loop in a child process; returns once it has registered."""
    child = subprocess.Popen(
        [sys.executable, "-c", SCHEDULER_CHILD, redis_url, str(interval), name],
        preexec_fn=_die_with_parent,
    )
    client = Redis.from_url(redis_url)
    key = Scheduler.redis_scheduler_namespace_prefix + name
    deadline = time.monotonic() + 30
    while not client.hexists(key, "birth"):
        if child.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the rq-scheduler child did not start (exit {child.returncode})")
        time.sleep(0.01)
    client.close()
    return child


def worker(args: Any) -> None:
    global recorder
    tuned = args.profile == "tuned"
    settings = TUNED if tuned else DEFAULTS
    base: type[Worker] | type[SimpleWorker] = SimpleWorker if tuned else Worker
    recorder = _common.Recorder(args) if tuned else ForkRecorder(args)
    scheduler = start_scheduler(
        args.redis_url, settings["scheduler_interval_s"], f"{args.name}-{os.getpid()}"
    )

    class BenchWorker(base):  # type: ignore[valid-type,misc]
        def bootstrap(self, *a: Any, **kw: Any) -> None:
            super().bootstrap(*a, **kw)
            assert recorder is not None
            recorder.ready()

    rq_worker = BenchWorker(
        args.topics,
        name=f"{args.name}-{os.getpid()}",
        connection=Redis.from_url(args.redis_url),
        default_result_ttl=settings["default_result_ttl_s"],
        log_job_description=settings["log_job_description"],
    )
    rq_worker.work(logging_level=settings["loglevel"])  # returns after rq's warm shutdown
    scheduler.terminate()  # the scheduler's own SIGTERM handler: drop its lock, exit
    scheduler.wait()
    recorder.finish()
    sys.exit(0)


def main() -> None:
    _common.run(
        {
            "library": "rq-scheduler",
            "version": f"rq-scheduler {version('rq-scheduler')}, rq {version('rq')}",
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
    # Run as the importable module `rq_adapter`, the name the job references use.
    import rq_adapter

    rq_adapter.main()
