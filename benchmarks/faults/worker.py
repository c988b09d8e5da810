"""A worker process of the fault suite: one TimerScheduler delivering the topics of its
config, recording every handler start and end in its ledger (ledger.py).

    python -m benchmarks.faults.worker --ledger PATH --config JSON

The config: ``{"url", "socket_timeout" (or null), "topics": [{"topic", "lease_ttl",
"max_concurrent", "max_attempts" (or null), "retry_initial", "sleep"}]}``. A payload
``{"x": "exit"}`` makes the handler call os._exit(1) (a poison timer); ``{"s": seconds}``
overrides the topic's sleep. SIGTERM stops it gracefully (run_forever); it exits by itself
when the harness that started it is gone.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks.faults import skew
from benchmarks.faults.ledger import Journal


def exit_with_parent(parent: int) -> None:
    """End this process once the harness is gone (run on a daemon thread)."""
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(3)


def build_router(topics: Sequence[dict[str, Any]], journal: Journal) -> Any:
    """A Router with one recording handler per configured topic."""
    from redistimers import Delivery, RetryPolicy, Router

    router = Router()
    for conf in topics:
        retry = None
        if conf.get("max_attempts"):
            retry = RetryPolicy(max_attempts=int(conf["max_attempts"]),
                                initial=float(conf.get("retry_initial") or 0.2))
        sleep = float(conf.get("sleep") or 0.0)

        def handle(payload: Any, delivery: Delivery, sleep: float = sleep) -> None:
            due_ms = delivery.due_at.timestamp() * 1000
            journal.write("S", delivery.topic, delivery.timer_id, delivery.attempt, due_ms)
            wanted = payload if isinstance(payload, dict) else {}
            if wanted.get("x") == "exit":
                os._exit(1)
            pause = float(wanted.get("s", sleep))
            if pause > 0:
                time.sleep(pause)
            journal.write("E", delivery.topic, delivery.timer_id, delivery.attempt, due_ms)

        router.handler(conf["topic"], lease_ttl=float(conf["lease_ttl"]),
                       max_concurrent=int(conf["max_concurrent"]), retry=retry)(handle)
    return router


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.faults.worker")
    parser.add_argument("--ledger", type=Path, required=True)
    parser.add_argument("--config", required=True, help="JSON, see the module docstring")
    args = parser.parse_args(argv)
    config = json.loads(args.config)

    skew.prepare_clock()  # before redistimers is imported, when asked for
    threading.Thread(target=exit_with_parent, args=(os.getppid(),), daemon=True).start()
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr,
        format="%(created).3f %(levelname)s %(name)s: %(message)s",  # worklog.py reads it
    )
    from redistimers import TimerScheduler

    journal = Journal(args.ledger)
    router = build_router(config["topics"], journal)
    options: dict[str, Any] = {}
    if config.get("socket_timeout") is not None:
        options["socket_timeout"] = float(config["socket_timeout"])
    scheduler = TimerScheduler.from_url(config["url"], routers=[router], **options)

    def announce() -> None:
        deadline = time.monotonic() + 30
        while not scheduler.running and time.monotonic() < deadline:
            time.sleep(0.01)
        journal.write("R")

    threading.Thread(target=announce, daemon=True).start()
    scheduler.run_forever(shutdown_timeout=2.0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
