"""Benchmark adapter for faststream-redis-timers (FastStream's TimersBroker; see PROTOCOL.md).

A timer is ``await broker.publish(payload, topic=<topic>, timer_id=<id>, activate_at=<due>)``
(a sorted set and a hash per topic, written in one MULTI); a worker is one TimersBroker with
a subscriber per topic, each its own asyncio poll loop: ZRANGEBYSCORE for up to its free
handler slots of due ids, then one claim script (EVALSHA) per timer, the handler, and one
commit script per timer. The library is asyncio only, so ``--threads K`` schedules from K
concurrent asyncio tasks on one event loop (one connection each from the client's pool), not
from K OS threads. It has no bulk API (``publish_batch`` raises), so ``--bulk`` exits 3.

Run it with the interpreter of benchmarks/.cache/venv-faststream (faststream.txt).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from datetime import datetime, timezone
from importlib.metadata import version
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import _common
from faststream_redis_timers import TimersBroker
from redis.asyncio import Redis

#: Seconds a claimed timer is leased: a killed worker's timers fire again after it (the
#: crash workload). The library does not renew a lease, so a handler must finish within
#: it; ours returns at once. The same as the redistimers adapter's tuned lease.
TUNED_LEASE_TTL = 5
#: redis-py's asyncio pool size when none is given (redis.asyncio.ConnectionPool).
DEFAULT_POOL_SIZE = 100

# The settings `--profile tuned` uses (the fastest we found) and the library's defaults
# (TimersRegistrator.subscriber and TimersBroker.__init__ of faststream-redis-timers 0.5.4).
TUNED: dict[str, Any] = {
    "max_concurrent": 100,  # per topic (subscriber); --concurrency overrides it
    "polling_interval": 0.005,
    "max_polling_interval": 0.05,
    "lease_ttl": TUNED_LEASE_TTL,
    "redis_max_connections": "topics * (max_concurrent + 1) + 10",
    "access_log": False,
    "apply_types": False,
}
DEFAULTS: dict[str, Any] = {
    "max_concurrent": 5,
    "polling_interval": 0.05,
    "max_polling_interval": 5.0,
    "lease_ttl": 30,
    "redis_max_connections": DEFAULT_POOL_SIZE,
    "access_log": True,
    "apply_types": True,
}
NOTES = (
    "faststream-redis-timers (FastStream TimersBroker), asyncio. Per topic a sorted set and "
    "a hash; each subscriber (one per topic) polls ZRANGEBYSCORE for up to its free handler "
    "slots of due ids, then claims each timer with its own script call (EVALSHA, pushing its "
    "score lease_ttl ahead) and removes it with another after the handler: no batching. The "
    "poller asks again before the claims it started have run, so about one claim per timer "
    "is a contested extra (about 3 script calls per timer in a drain). A saturated "
    "subscriber sleeps polling_interval before it looks again; an idle one backs off from "
    "polling_interval, doubling with jitter, up to max_polling_interval (default 5 s: idle "
    "lateness up to that). No lease renewal: a handler longer than lease_ttl runs twice. "
    "Tuned: max_concurrent = --concurrency per topic (100: 200 and more drained slower), 5 ms "
    "polling interval backing off to at most 50 ms (idle lateness under ~50 ms, for 20 "
    "ZRANGEBYSCORE a second per idle topic), a 5 s lease (crash recovery time), a Redis "
    "connection pool with room for every handler (the default 100 raises "
    "MaxConnectionsError past that, and the timer waits out its lease), no per-message access "
    "log (two lines per timer by default) and no FastDepends/pydantic injection "
    "(apply_types=False). Default: the library's defaults (5 handlers per topic, 50 ms to 5 s "
    "polling, 30 s lease, access log to stdout). Both profiles open 2 connections per topic "
    "+ max_concurrent + 10 before they say ready (opened on demand, they held the first "
    "fires of a burst 100-300 ms late). --threads K schedules from K asyncio tasks on one "
    "loop; no bulk API."
)


def due_at(due_ms: float) -> datetime:
    return datetime.fromtimestamp(due_ms / 1000, tz=timezone.utc)


def schedule(args: Any) -> None:
    if args.bulk:
        _common.refuse("faststream-redis-timers has no bulk API (publish_batch raises)")
    timers, payload = _common.load_plan(args.plan)

    async def run() -> None:
        client = Redis.from_url(args.redis_url)
        broker = TimersBroker(client, logger=None)
        await broker.connect()
        try:
            loop = asyncio.get_running_loop()
            start = loop.time()
            share = max(1, args.threads)

            async def publish(part: list[_common.Timer]) -> None:
                for timer_id, topic, due in part:
                    await broker.publish(
                        payload, topic=topic, timer_id=timer_id, activate_at=due_at(due)
                    )

            await asyncio.gather(*(publish(timers[i::share]) for i in range(share)))
            seconds = loop.time() - start
        finally:
            await broker.stop()
            await client.aclose()
        _common.print_json({"scheduled": len(timers), "seconds": seconds})

    asyncio.run(run())


def worker(args: Any) -> None:
    tuned = args.profile == "tuned"
    settings = TUNED if tuned else DEFAULTS
    recorder = _common.Recorder(args)

    async def run() -> None:
        concurrency = args.concurrency if tuned else settings["max_concurrent"]
        if tuned:
            # Room for every subscriber's poller and handlers at once: the client's default
            # pool (100) raises MaxConnectionsError past that, and the timer waits a lease.
            pool_size = len(args.topics) * (concurrency + 1) + 10
            client = Redis.from_url(args.redis_url, max_connections=pool_size)
        else:
            pool_size = DEFAULT_POOL_SIZE
            client = Redis.from_url(args.redis_url)
        if settings["access_log"]:
            broker = TimersBroker(client)  # the library's own logger: "Received"/"Processed"
        else:
            # Errors still reach stderr; the per-message access log is at DEBUG, not shown.
            quiet = logging.getLogger("bench.faststream")
            quiet.setLevel(logging.WARNING)
            quiet.addHandler(logging.StreamHandler(sys.stderr))
            broker = TimersBroker(
                client,
                logger=quiet,
                log_level=logging.DEBUG,
                apply_types=settings["apply_types"],
            )
        context = broker.context

        async def fire(body: Any) -> None:
            message = context.get_local("message")
            recorder.record(message.message_id, message.raw_message["channel"])

        for topic in args.topics:
            broker.subscriber(
                topic,
                max_concurrent=concurrency,
                polling_interval=settings["polling_interval"],
                max_polling_interval=settings["max_polling_interval"],
                lease_ttl=settings["lease_ttl"],
            )(fire)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        # Warm-up, while nothing else uses the pool: open the connections a burst of due
        # timers needs. Opened on demand, they held the first fires of a burst 100-300 ms late.
        warm = min(pool_size, 2 * len(args.topics) + concurrency + 10)
        await asyncio.gather(*(client.ping() for _ in range(warm)))
        await broker.start()
        recorder.ready()
        await stop.wait()
        await broker.stop()
        await client.aclose()

    asyncio.run(run())
    recorder.finish()


def main() -> None:
    _common.run(
        {
            "library": "faststream-redis-timers",
            "version": version("faststream-redis-timers"),
            "faststream_version": version("faststream"),
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
