"""The JSON of timers, stats, dead letters and live workers: one vocabulary for
``redistimers ... --json`` and the HTTP admin API (README.rst, "JSON of timers, stats
and dead letters").

Ids are ``id``; durations are seconds in fields ending ``_s``; times are ISO 8601 in UTC
with microseconds and a ``Z``; payloads are their JSON form as stored.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from .codec import converter
from .models import DeadTimer, TimerInfo, TimerPage, TopicStats, WorkerInfo

Json = dict[str, Any]


def iso(moment: dt.datetime) -> str:
    """ISO 8601 in UTC with microseconds and a Z: 2030-01-01T09:00:00.000000Z."""
    utc = moment.astimezone(dt.timezone.utc)
    return utc.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


def seconds(delta: dt.timedelta) -> float:
    """A duration in seconds, to the microsecond."""
    return round(delta.total_seconds(), 6)


def payload_json(payload: Any) -> Any:
    """A payload's JSON form, as it is stored (cattrs' JSON form of the topic's type)."""
    return converter.unstructure(payload)


def timer_json(info: TimerInfo) -> Json:
    """A pending timer: ``every_s``, or ``cron`` and ``tz``, only when it repeats."""
    body: Json = {
        "topic": info.topic,
        "id": info.timer_id,
        "due_at": iso(info.due_at),
        "remaining_s": seconds(info.remaining),
        "attempts": info.attempts,
        "leased": info.leased,
        "payload": payload_json(info.payload),
        "headers": dict(info.headers),
        "correlation_id": info.correlation_id,
    }
    if info.every is not None:
        body["every_s"] = info.every.total_seconds()
    if info.cron is not None:
        body["cron"], body["tz"] = info.cron, info.tz
    return body


def timer_page_json(page: TimerPage) -> Json:
    """A page of pending timers and the cursor of the next (null on the last)."""
    return {"timers": [timer_json(t) for t in page.timers], "next_cursor": page.cursor}


def dead_json(dead: DeadTimer) -> Json:
    """A dead-lettered timer; its payload as stored (it may be why it died)."""
    return {
        "topic": dead.topic,
        "id": dead.timer_id,
        "payload": dead.payload,
        "error": dead.error,
        "reason": dead.reason,
        "error_type": dead.error_type,
        "traceback": dead.traceback,
        "attempts": dead.attempts,
        "died_at": iso(dead.died_at),
        "headers": dict(dead.headers),
        "correlation_id": dead.correlation_id,
    }


def dead_page_json(dead: Sequence[DeadTimer], offset: int, limit: int) -> Json:
    """A page of dead letters and the offset of the next (null when this one is not full)."""
    next_offset = offset + len(dead) if len(dead) == limit else None
    return {"dead": [dead_json(d) for d in dead], "next_offset": next_offset}


def stats_json(stats: TopicStats) -> Json:
    """The counts of one topic; ``oldest_due_lag_s`` is null when nothing is due."""
    lag = stats.oldest_due_lag
    return {
        "topic": stats.topic,
        "pending": stats.pending,
        "due": stats.due,
        "leased": stats.leased,
        "dead": stats.dead,
        "oldest_due_lag_s": None if lag is None else seconds(lag),
    }


def all_stats_json(stats: Mapping[str, TopicStats]) -> Json:
    """The counts of every topic, by topic."""
    return {"topics": {name: stats_json(s) for name, s in stats.items()}}


def topics_json(names: Iterable[str]) -> Json:
    return {"topics": list(names)}


def cancelled_json(cancelled: bool) -> Json:
    return {"cancelled": cancelled}


def purged_json(count: int) -> Json:
    return {"purged": count}


def requeued_json(count: int) -> Json:
    return {"requeued": count}


def worker_json(worker: WorkerInfo) -> Json:
    """A live worker: its topics with their concurrency, handlers running per topic, its
    totals since it started."""
    return {
        "id": worker.worker_id,
        "host": worker.host,
        "pid": worker.pid,
        "version": worker.version,
        "namespace": worker.namespace,
        "topics": dict(worker.topics),
        "running": dict(worker.running),
        "delivered": worker.delivered,
        "succeeded": worker.succeeded,
        "retried": worker.retried,
        "dead_lettered": worker.dead_lettered,
        "failed": worker.failed,
        "healthy": worker.healthy,
        "started_at": iso(worker.started_at),
        "last_seen": iso(worker.last_seen),
        "heartbeat_interval_s": seconds(worker.heartbeat_interval),
        "delivered_per_topic": dict(worker.delivered_per_topic),
        "failed_per_topic": dict(worker.failed_per_topic),
        "lateness_counts": list(worker.lateness_counts),
    }


def workers_json(workers: Iterable[WorkerInfo]) -> Json:
    return {"workers": [worker_json(w) for w in workers]}
