"""A worker process for tests/test_suspects.py whose handler ends the process for one
timer (payload "poison") every time, and takes its time with every other timer.

    python tests/_worker_poison.py URL --name NAME

It reports through Redis lists outside the redistimers namespace: `test:ready` (NAME once
running), `test:started` and `test:done` ("TIMER_ID ATTEMPT" per handler start and end).
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

from redistimers import Delivery, RetryPolicy, Router, TimerScheduler
from tests._process_helpers import announce_ready, exit_with_parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("--name", required=True)
    args = parser.parse_args()
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()

    client = redis.Redis.from_url(args.url)
    router = Router()

    @router.handler("jobs", max_concurrent=10, lease_ttl=0.5,
                    retry=RetryPolicy(max_attempts=2, initial=0.05, jitter=False))
    def handle(payload: str, delivery: Delivery) -> None:
        client.rpush("test:started", f"{delivery.timer_id} {delivery.attempt}")
        if payload == "poison":
            time.sleep(0.1)  # its neighbours are running by now
            os._exit(1)
        time.sleep(0.3)
        client.rpush("test:done", f"{delivery.timer_id} {delivery.attempt}")

    scheduler = TimerScheduler.from_url(args.url, routers=[router])
    threading.Thread(
        target=announce_ready, args=(scheduler, client, "test:ready", args.name), daemon=True
    ).start()
    scheduler.run_forever()


if __name__ == "__main__":
    main()
