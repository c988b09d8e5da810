"""The values the scheduler hands to handlers and to callers that inspect timers."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

import attrs


def _frozen_headers(headers: Mapping[str, str]) -> Mapping[str, str]:
    return MappingProxyType(dict(headers))


@attrs.frozen
class Delivery:
    """One delivery of a timer, passed to handlers that take a second parameter."""

    topic: str
    timer_id: str
    #: 1 for the first delivery; a retry or a delivery after a worker died counts up.
    attempt: int
    #: When this delivery was due, by the Redis server's clock (aware, UTC).
    due_at: dt.datetime
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_headers)
    correlation_id: str | None = None
    #: For a periodic timer: the time of the occurrence this delivery is for, the same for
    #: its retries (whose `due_at` is the retry's). None for a one-shot timer.
    occurrence_at: dt.datetime | None = None


@attrs.frozen
class TimerInfo:
    """A pending timer as stored in Redis, from `TimerScheduler.get_timer`."""

    topic: str
    timer_id: str
    #: When it fires next; while a handler holds it, when that handler's lease runs out.
    due_at: dt.datetime
    #: Time left until `due_at` by the Redis server's clock, never negative.
    remaining: dt.timedelta
    #: Deliveries started so far (0 until the first one).
    attempts: int
    #: True while a worker holds a lease on it (a handler is running).
    leased: bool
    payload: Any
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_headers)
    correlation_id: str | None = None
    #: For a periodic timer: its period, or its cron expression and time zone.
    every: dt.timedelta | None = None
    cron: str | None = None
    tz: str | None = None


@attrs.frozen
class DeadTimer:
    """A dead-lettered timer, from `TimerScheduler.dead_timers`."""

    topic: str
    timer_id: str
    #: The payload as stored: its JSON value, not decoded into the topic's type (it may
    #: be why the timer died).
    payload: Any
    #: What killed it, e.g. "ValueError: card declined".
    error: str
    #: "failed" (the handler raised on the last attempt), "undecodable", "lease expired"
    #: (workers died mid-handler until no attempt was left), "rejected" (the handler
    #: raised RejectTimer(dead_letter=True)), "no next occurrence".
    reason: str
    attempts: int
    died_at: dt.datetime
    #: The exception's type name and traceback summary, when a handler raised.
    error_type: str | None = None
    traceback: str | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict, converter=_frozen_headers)
    correlation_id: str | None = None


@attrs.frozen
class TopicStats:
    """Counts of one topic, from `TimerScheduler.stats`."""

    topic: str
    #: Timers stored and not dead (running ones included).
    pending: int
    #: Timers whose time has come and that no handler holds: the backlog.
    due: int
    #: Timers a handler holds right now.
    leased: int
    dead: int
    #: How late the oldest due timer is (None when none is due).
    oldest_due_lag: dt.timedelta | None


@attrs.frozen
class TimerPage:
    """A page of `TimerScheduler.list_timers`; `cursor` fetches the next (None: last page)."""

    timers: list[TimerInfo]
    cursor: str | None


@attrs.frozen
class TimerSpec:
    """One timer for `TimerScheduler.set_timers`: the arguments of `set_timer`."""

    topic: str
    payload: Any
    activate_in: dt.timedelta | float | None = None
    activate_at: dt.datetime | None = None
    timer_id: str | None = None
    headers: Mapping[str, str] | None = None
    correlation_id: str | None = None
    every: dt.timedelta | float | None = None
    cron: str | None = None
    tz: Any = None


@attrs.frozen
class WorkerInfo:
    """A live worker (a started scheduler with handlers), from `TimerScheduler.workers`."""

    worker_id: str
    host: str
    pid: int
    #: The redistimers version it runs.
    version: str
    namespace: str
    #: The topics it delivers, each with how many of its handlers may run at once.
    topics: Mapping[str, int]
    #: Handlers running now, per topic (as of its last heartbeat).
    running: Mapping[str, int]
    #: Handler calls that ended since it started, whatever their outcome.
    delivered: int
    succeeded: int
    retried: int
    dead_lettered: int
    #: Handler calls that raised an exception (retried or dead-lettered after it).
    failed: int
    #: False while its threads find Redis unreachable, stalled or full.
    healthy: bool
    #: When it started, by its own clock (aware, UTC).
    started_at: dt.datetime
    #: Its last heartbeat, by the Redis server's clock (aware, UTC).
    last_seen: dt.datetime
    #: How often it writes its heartbeat; its record expires after a few missed ones.
    heartbeat_interval: dt.timedelta
    #: `delivered` and `failed` per topic.
    delivered_per_topic: Mapping[str, int] = attrs.field(factory=dict)
    failed_per_topic: Mapping[str, int] = attrs.field(factory=dict)
    #: Deliveries since it started per lateness bucket: the counts of its
    #: `Metrics.topics[...].lateness_seconds` histograms, summed over its topics.
    lateness_counts: tuple[int, ...] = ()


@attrs.frozen
class ServerInfo:
    """The Redis server, from `TimerScheduler.server_info`: for dashboards and checks."""

    #: As INFO reports it, e.g. "7.2.4".
    version: str
    #: Bytes Redis uses now.
    used_memory: int
    #: Its memory limit in bytes (None: no limit set).
    maxmemory: int | None


@attrs.frozen
class DueForecast:
    """How many timers of a topic fall due in each coming minute, from
    `TimerScheduler.due_per_minute`: ``counts[i]`` from ``start + i`` minutes."""

    topic: str
    #: The Redis server's now when counted (aware, UTC): the first minute starts here.
    start: dt.datetime
    counts: list[int]
