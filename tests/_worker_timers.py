"""A worker process for tests/test_processes.py: one TimerScheduler delivering one topic.

    python tests/_worker_timers.py URL --name NAME --topic TOPIC --mode record|hang
        [--namespace NS] [--lease-ttl SECONDS] [--prefix KEY_PREFIX]

It runs `scheduler.run_forever()` (SIGTERM stops it) and reports through Redis keys
outside the redistimers namespace, all starting with `--prefix`:

- `<prefix>:ready`      RPUSH NAME once the scheduler is running;
- `<prefix>:delivered`  mode "record": RPUSH "NAME TIMER_ID ATTEMPT" per delivery;
- `<prefix>:started`    mode "hang": RPUSH "NAME TIMER_ID ATTEMPT", then the handler
                        sleeps until the process is killed.

The process exits by itself when its parent dies, so a crashed test run leaves no worker.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

# Import redistimers from this repository, whatever is installed elsewhere.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from redistimers import Delivery, Router, TimerScheduler
from tests._process_helpers import announce_ready, exit_with_parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--name", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--mode", choices=["record", "hang"], required=True)
    parser.add_argument("--namespace", default="redistimers")
    parser.add_argument("--lease-ttl", type=float, default=30.0)
    parser.add_argument("--prefix", default="test")
    args = parser.parse_args()

    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()

    client = redis.Redis.from_url(args.url)
    router = Router()

    if args.mode == "record":

        @router.handler(args.topic, lease_ttl=args.lease_ttl)
        def record(payload: object, delivery: Delivery) -> None:
            client.rpush(
                f"{args.prefix}:delivered", f"{args.name} {delivery.timer_id} {delivery.attempt}"
            )

    else:

        @router.handler(args.topic, lease_ttl=args.lease_ttl)
        def hang(payload: object, delivery: Delivery) -> None:
            client.rpush(
                f"{args.prefix}:started", f"{args.name} {delivery.timer_id} {delivery.attempt}"
            )
            time.sleep(600)

    scheduler = TimerScheduler.from_url(args.url, routers=[router], namespace=args.namespace)
    threading.Thread(
        target=announce_ready,
        args=(scheduler, client, f"{args.prefix}:ready", args.name),
        daemon=True,
    ).start()
    scheduler.run_forever()


if __name__ == "__main__":
    main()
