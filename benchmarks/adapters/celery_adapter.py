"""Benchmark adapter for Celery 5 with the Redis broker (see PROTOCOL.md).

A timer is `fire.apply_async(kwargs=payload, task_id=<id>, queue=<topic>, eta=<due>)`; a
topic is a Celery queue, so one worker serves several by consuming several queues. The
worker runs in this process (`app.Worker(...).start()`) with the `threads` pool. Run it
with the interpreter of benchmarks/.cache/venv-celery (requirements: celery.txt).
"""

from __future__ import annotations

import os
import sys
from datetime import datetime, timezone
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
import celery
from celery import Celery, signals

# The settings `--profile tuned` uses (the fastest we found) and Celery's own defaults.
# Scheduling is the same for both: Celery has no scheduling settings that matter here.
TUNED: dict[str, Any] = {
    "pool": "threads",
    "concurrency": 8,  # --concurrency overrides it
    "worker_prefetch_multiplier": 64,
    "task_acks_late": False,
    "worker_disable_rate_limits": True,
    "visibility_timeout": 3600,
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 10,
    "without_mingle": True,
    "without_gossip": True,
    "without_heartbeat": True,
    "worker_enable_remote_control": False,
    "loglevel": "WARNING",
}
DEFAULTS: dict[str, Any] = {
    "pool": "threads",  # Celery's default pool is prefork; the benchmark uses threads
    "concurrency": os.cpu_count() or 1,
    "worker_prefetch_multiplier": 4,
    "task_acks_late": False,
    "worker_disable_rate_limits": False,
    "visibility_timeout": 3600,
    "unacked_restore_interval": 10,
    "unacked_restore_throttle": 10,
    "without_mingle": False,
    "without_gossip": False,
    "without_heartbeat": False,
    "worker_enable_remote_control": True,
    "loglevel": "WARNING",
}
NOTES = (
    "Celery 5.7 + Redis broker (kombu 5.7), apply_async(eta=...), threads pool. A task with "
    "an ETA goes into its queue (a Redis list) at once; a worker BRPOPs it (one message per "
    "round trip, then one MULTI to mark it unacked and one to ack it) and holds it in its own "
    "memory until the ETA (about 9 KB of worker RSS per pending timer), so an idle worker "
    "fires within a few ms; but it must pull every earlier message of the queue first (FIFO, "
    "not by due time). Redis redelivers a message unacked for visibility_timeout whether or "
    "not a live worker holds it, so a timer further ahead than that fires once per "
    "visibility_timeout elapsed (5 s timeout, 15 s ahead: 3 fires each): tuned keeps the 1 h "
    "default, and the timers a killed worker held come back only after it (none within the "
    "crash workload's limit). SIGTERM (warm shutdown) puts each held message back in its own "
    "WATCH/MULTI transaction: about 1 ms per pending timer (20,000: 12-18 s). Tuned: "
    "--concurrency threads, prefetch multiplier 64, rate limits off, no mingle, gossip, "
    "heartbeat or remote control (faster start, less idle traffic); the drain rate was the "
    "same within noise for 1 to 32 threads, prefetch 4 or 64, early or late ack: the one "
    "consumer thread (~1 ms of CPU per timer) is the limit. Default: Celery's defaults but "
    "the pool (prefork by default; handlers must record in this process). Bulk: kombu's "
    "Producer.batch() (pipelined LPUSH) with apply_async(producer=...)."
)

#: The settings above that are options of kombu's Redis transport.
TRANSPORT_OPTIONS = ("visibility_timeout", "unacked_restore_interval", "unacked_restore_throttle")

app = Celery("bench", set_as_current=True)
recorder: _common.Recorder | None = None


@app.task(name="bench.fire", bind=True, ignore_result=True)
def fire(self: Any, **payload: Any) -> None:
    assert recorder is not None
    recorder.record(self.request.id, self.request.delivery_info["routing_key"])


def configure(redis_url: str, settings: dict[str, Any]) -> None:
    app.conf.update(
        broker_url=redis_url,
        broker_connection_retry_on_startup=True,
        broker_transport_options={key: settings[key] for key in TRANSPORT_OPTIONS},
        task_ignore_result=True,
        task_acks_late=settings["task_acks_late"],
        worker_disable_rate_limits=settings["worker_disable_rate_limits"],
        worker_prefetch_multiplier=settings["worker_prefetch_multiplier"],
        worker_enable_remote_control=settings["worker_enable_remote_control"],
        worker_hijack_root_logger=False,
    )


def eta(due_ms: float) -> datetime:
    return datetime.fromtimestamp(due_ms / 1000, tz=timezone.utc)


def schedule(args: Any) -> None:
    configure(args.redis_url, TUNED)
    timers, payload = _common.load_plan(args.plan)

    def one(timer: _common.Timer, producer: Any = None) -> None:
        timer_id, topic, due = timer
        fire.apply_async(
            kwargs=payload, task_id=timer_id, queue=topic, eta=eta(due), producer=producer
        )

    if args.bulk:

        def bulk() -> int:
            with app.producer_or_acquire() as producer, producer.batch(1000):
                for timer in timers:
                    one(timer, producer)
            return len(timers)

        _common.timed(bulk)
    else:
        _common.timed(lambda: _common.in_threads(timers, args.threads, one))


def worker(args: Any) -> None:
    global recorder
    settings = TUNED if args.profile == "tuned" else DEFAULTS
    concurrency = args.concurrency if args.profile == "tuned" else settings["concurrency"]
    configure(args.redis_url, settings)
    recorder = _common.Recorder(args)
    signals.worker_ready.connect(lambda **_: recorder.ready(), weak=False)
    w = app.Worker(
        hostname=f"{args.name}@bench",
        pool="threads",
        concurrency=concurrency,
        queues=args.topics,
        loglevel=settings["loglevel"],
        quiet=True,
        redirect_stdouts=False,
        without_mingle=settings["without_mingle"],
        without_gossip=settings["without_gossip"],
        without_heartbeat=settings["without_heartbeat"],
    )
    w.start()  # returns after a warm shutdown (Celery's own SIGTERM handler)
    recorder.finish()
    sys.exit(0)


def main() -> None:
    _common.run(
        {
            "library": "celery",
            "version": celery.__version__,
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
