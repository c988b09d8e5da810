"""``redistimers workers``: the live workers of a namespace (every started scheduler with
handlers keeps a record in Redis by its heartbeat), as a table or as JSON."""

from __future__ import annotations

import datetime as dt

from ..jsonforms import workers_json
from ..models import WorkerInfo
from .context import Context
from .output import duration, when

HEADERS = [
    "ID", "HOST", "PID", "TOPICS", "RUNNING", "DELIVERED", "RETRIED", "DEAD", "FAILED",
    "HEALTHY", "STARTED", "LAST SEEN",
]


def topics_cell(worker: WorkerInfo) -> str:
    """'invoices (max 4), emails (max 2)': its topics with their concurrency."""
    return ", ".join(f"{topic} (max {count})" for topic, count in sorted(worker.topics.items()))


def seen_ago(last_seen: dt.datetime, now: dt.datetime) -> str:
    """'3.2s ago' (by this machine's clock; last_seen is Redis's, so never below 0)."""
    return f"{duration(max(now - last_seen, dt.timedelta(0)))} ago"


def workers(ctx: Context) -> int:
    found = ctx.scheduler().workers()
    if ctx.json:
        ctx.console.json(workers_json(found))
        return 0
    if not found:
        ctx.console.note(f"no live workers{ctx.where}")
        return 0
    now = dt.datetime.now(dt.timezone.utc)
    ctx.console.table(
        HEADERS,
        [
            [
                w.worker_id, w.host, w.pid, topics_cell(w), sum(w.running.values()), w.delivered,
                w.retried, w.dead_lettered, w.failed, "yes" if w.healthy else "no",
                when(w.started_at), seen_ago(w.last_seen, now),
            ]
            for w in found
        ],
    )
    return 0
