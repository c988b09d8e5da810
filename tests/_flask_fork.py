"""A process for tests/test_flask_in_process.py: the in-process mode across os.fork().

    python tests/_flask_fork.py URL NAMESPACE

The parent serves a request (which starts its scheduler), forks, stops its own scheduler
and says so in Redis, so that only the child can deliver. The child reports whether it saw
a scheduler running before its first request, serves one (which must start a scheduler in
the child), schedules a timer through a route and waits until a handler in the child
delivered it. The child prints one JSON line; the parent exits with the child's status.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis
from flask import Flask

from redistimers import Delivery
from redistimers.contrib.flask import Timers


def main() -> int:
    url, namespace = sys.argv[1], sys.argv[2]
    results = redis.Redis.from_url(url, decode_responses=True)
    timers = Timers()

    @timers.handler("forked")
    def record(payload: object, delivery: Delivery) -> None:
        results.rpush(f"{namespace}:delivered", f"{os.getpid()} {delivery.timer_id}")

    app = Flask("fork_app")
    app.config.update(
        REDISTIMERS_URL=url, REDISTIMERS_NAMESPACE=namespace, REDISTIMERS_RUN_IN_WEB=True
    )
    timers.init_app(app)

    @app.post("/schedule")
    def schedule() -> dict[str, object]:
        return {"timer_id": timers.set_timer("forked", "x", activate_in=0)}

    client = app.test_client()
    client.get("/")  # any request starts the scheduler (404 is fine)
    scheduler = timers.get_scheduler(app)
    assert scheduler.running, "the parent's first request did not start the scheduler"

    pid = os.fork()
    if pid:
        timers.stop_in_process(app, timeout=5)
        results.rpush(f"{namespace}:parent-stopped", "1")
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status)

    report: dict[str, object] = {"pid": os.getpid(), "running_before": scheduler.running}
    client.get("/")
    report["running_after"] = scheduler.running
    report["started_pid"] = app.extensions["redistimers"].started_pid
    deadline = time.monotonic() + 20
    # So that only the child can deliver the timer it schedules.
    while time.monotonic() < deadline and not results.llen(f"{namespace}:parent-stopped"):
        time.sleep(0.02)
    timer_id = client.post("/schedule").get_json()["timer_id"]
    delivered: list[str] = []
    while time.monotonic() < deadline and not delivered:
        delivered = results.lrange(f"{namespace}:delivered", 0, -1)
        time.sleep(0.02)
    report["timer_id"] = timer_id
    report["delivered"] = delivered
    print(json.dumps(report), flush=True)
    timers.stop_in_process(app, timeout=5)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
