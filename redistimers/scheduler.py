"""TimerScheduler: schedule, cancel and inspect timers, and run the handlers of due ones."""

from __future__ import annotations

import datetime as dt
import logging
import signal
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import FrameType, TracebackType
from typing import Any, overload

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.cluster import RedisCluster
from redis.retry import Retry

from . import defaults, forking
from .admin import TimerAdmin
from .codec import encode_envelope
from .connect import RedisClient, client_from_url
from .delivery import Hooks
from .engines import Engine, Engines
from .errors import (
    ConfigurationError,
    InvalidTimerError,
    PayloadTooLargeError,
    RedisReplicationError,
    SchedulerStateError,
)
from .failures import describe_location, describe_user
from .liveness import Heartbeat, WorkerRecord, worker_record
from .metrics import Metrics, MetricsCounter, Window
from .models import (
    DeadTimer,
    Delivery,
    DueForecast,
    ServerInfo,
    TimerInfo,
    TimerPage,
    TimerSpec,
    TopicStats,
    WorkerInfo,
)
from .outage import OutageTracker
from .periodic import check_period
from .poller import Poller
from .retry import RetryPolicy
from .router import HandlerSpec, Router, merge_routers
from .store import Replication, ScheduleEntry, TimerStore, WriteFailed, Written
from .summary import MinuteSummary
from .validation import (
    DueTime,
    check_correlation_id,
    check_due,
    check_headers,
    check_namespace,
    check_timer_id,
    check_topic,
    new_timer_id,
    seconds_of,
)

log = logging.getLogger("redistimers.scheduler")


class _ServerClock:
    """The Redis server's now, read once (one round trip) and only if asked: a cron timer's
    first occurrence comes from Redis's clock, as every due time does."""

    def __init__(self, store: TimerStore, tracker: OutageTracker) -> None:
        self._store = store
        self._tracker = tracker
        self._now_ms: float | None = None

    def now_ms(self) -> float:
        if self._now_ms is None:
            with self._tracker.translating():
                self._now_ms = self._store.server_time_ms()
        return self._now_ms


def _replication(min_replicas: int, replica_timeout: float | dt.timedelta) -> Replication | None:
    """What writes wait for: `min_replicas` replicas within `replica_timeout` (None: none)."""
    if not isinstance(min_replicas, int) or isinstance(min_replicas, bool) or min_replicas < 0:
        raise ConfigurationError(f"min_replicas must be an int >= 0, got {min_replicas!r}")
    timeout = seconds_of(replica_timeout, "replica_timeout")
    if not timeout > 0:
        raise ConfigurationError(f"replica_timeout must be > 0 seconds, got {replica_timeout!r}")
    if min_replicas == 0:
        return None
    return Replication(min_replicas, max(1, round(timeout * 1000)))


class TimerScheduler:
    """Distributed timers on one Redis: any process may schedule; processes with routers
    deliver each due timer of their topics to its handler, at least once, never early.
    """

    def __init__(
        self,
        client: RedisClient,
        routers: Iterable[Router] = (),
        namespace: str = defaults.NAMESPACE,
        *,
        retry: RetryPolicy | None = None,
        max_poll_interval: float | dt.timedelta = defaults.MAX_POLL_INTERVAL,
        on_success: Callable[[Delivery], object] | None = None,
        on_failure: Callable[[Delivery, BaseException], object] | None = None,
        on_dead: Callable[[Delivery, str], object] | None = None,
        max_payload_bytes: int = defaults.MAX_PAYLOAD_BYTES,
        min_replicas: int = 0,
        replica_timeout: float | dt.timedelta = defaults.REPLICA_TIMEOUT,
        heartbeat_interval: float | dt.timedelta = defaults.HEARTBEAT_INTERVAL,
    ) -> None:
        if not isinstance(client, (redis.Redis, RedisCluster)):
            raise ConfigurationError(
                f"client must be a redis.Redis (a Sentinel's master_for client is one) or a "
                f"redis.cluster.RedisCluster, got {type(client).__name__}; use "
                "TimerScheduler.from_url(url) to connect by URL"
            )
        if isinstance(routers, Router):
            routers = [routers]
        self._specs: dict[str, HandlerSpec] = merge_routers(routers)
        self._store = TimerStore(
            client, check_namespace(namespace), _replication(min_replicas, replica_timeout)
        )
        self._default_retry = retry if retry is not None else RetryPolicy()
        if not isinstance(self._default_retry, RetryPolicy):
            raise ConfigurationError(f"retry must be a RetryPolicy, got {type(retry).__name__}")
        if not isinstance(max_payload_bytes, int) or isinstance(max_payload_bytes, bool) or (
            max_payload_bytes < 1
        ):
            raise ConfigurationError(
                f"max_payload_bytes must be an int >= 1, got {max_payload_bytes!r}"
            )
        self.max_payload_bytes = max_payload_bytes
        self._max_poll_interval = seconds_of(max_poll_interval, "max_poll_interval")
        if self._max_poll_interval <= 0:
            raise ConfigurationError("max_poll_interval must be > 0 seconds")
        self._heartbeat_interval = seconds_of(heartbeat_interval, "heartbeat_interval")
        if not self._heartbeat_interval > 0:
            raise ConfigurationError(
                f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval!r}"
            )
        for name, hook in (("on_success", on_success), ("on_failure", on_failure),
                           ("on_dead", on_dead)):
            if hook is not None and not callable(hook):
                raise ConfigurationError(f"{name} must be callable, got {type(hook).__name__}")
        self._hooks = Hooks(on_success, on_failure, on_dead)
        self._metrics = MetricsCounter()
        self._where = describe_location(client)
        self._tracker = OutageTracker(self._where, describe_user(client))
        self._admin = TimerAdmin(self._store, self._specs, self._tracker, self._wake_locally)
        self._lock = threading.Lock()
        self._poller: Engines | None = None
        self._draining: Engines | None = None  # pollers that stop() waits for
        self._heartbeat: Heartbeat | None = None
        self._started_ms = 0.0
        #: Trackers and counts of a Cluster's per-master pollers, of every start so far.
        self._engine_trackers: list[OutageTracker] = []
        self._engine_metrics: list[MetricsCounter] = []
        self._lost_to_fork = False
        forking.track(self._store, self._forget_after_fork)

    @classmethod
    def from_url(
        cls,
        url: str,
        routers: Iterable[Router] = (),
        namespace: str = defaults.NAMESPACE,
        **options: Any,
    ) -> TimerScheduler:
        """A scheduler of the Redis at `url`: ``redis://``, ``rediss://`` or ``unix://`` for
        one server, ``redis+sentinel://host:port[,host:port...]/service_name[/db]`` for a
        Sentinel-managed primary, ``redis+cluster://host:port[,host:port...]`` for a Redis
        Cluster.

        It does not connect yet, as redis-py clients do not: a web app boots while Redis
        restarts, and a worker waits for it. A Cluster client is the exception: it reads
        the Cluster's layout when made, and raises RedisUnavailableError when no node
        answers. A malformed URL is a ConfigurationError.

        `retry` and `max_poll_interval` go to the scheduler; other keyword arguments go
        to the redis-py client, with a socket timeout of REDIS_SOCKET_TIMEOUT and TCP
        keepalive unless given (a silent connection is then reopened, not waited on).
        """
        scheduler_options = {
            key: options.pop(key)
            for key in ("retry", "max_poll_interval", "on_success", "on_failure", "on_dead",
                        "max_payload_bytes", "min_replicas", "replica_timeout",
                        "heartbeat_interval")
            if key in options
        }
        client_options: dict[str, Any] = {
            "socket_connect_timeout": 5.0,
            "socket_timeout": defaults.REDIS_SOCKET_TIMEOUT,
            "socket_keepalive": True,
            # One quick retry replaces a pooled connection that died with a Redis restart;
            # longer outages are ridden out by the scheduler's own backoff.
            "retry": Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1),
            **options,
        }
        return cls(client_from_url(url, **client_options), routers, namespace,
                   **scheduler_options)

    # -- scheduling ---------------------------------------------------------------------

    def set_timer(
        self,
        topic: str,
        payload: Any,
        *,
        activate_in: dt.timedelta | float | None = None,
        activate_at: dt.datetime | None = None,
        timer_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
        every: dt.timedelta | float | None = None,
        cron: str | None = None,
        tz: Any = None,
    ) -> str:
        """Schedule `payload` on `topic` to fire after `activate_in` or at `activate_at`.

        With `every` (a timedelta) the timer repeats at a fixed rate on a grid from its
        first due time (by default `every` from now); with `cron` (needs the `cron` extra)
        at the times of that expression in time zone `tz` (default UTC). Occurrences
        missed while no worker ran are skipped.

        Setting an id that exists replaces that timer (payload, time, attempts, period).
        Returns the timer id, generated when not given. Everything is checked before
        anything is written: InvalidTimerError (a ValueError) for bad arguments,
        PayloadTypeError (a TypeError) for a payload that does not fit the topic's type.
        """
        spec = TimerSpec(
            topic, payload, activate_in, activate_at, timer_id, headers, correlation_id,
            every, cron, tz,
        )
        return self._set_one(spec, with_due=False)[0].timer_id

    def set_timer_and_get(
        self,
        topic: str,
        payload: Any,
        *,
        activate_in: dt.timedelta | float | None = None,
        activate_at: dt.datetime | None = None,
        timer_id: str | None = None,
        headers: Mapping[str, str] | None = None,
        correlation_id: str | None = None,
        every: dt.timedelta | float | None = None,
        cron: str | None = None,
        tz: Any = None,
    ) -> TimerInfo:
        """Schedule a timer exactly as `set_timer` does, and return it as written: its id,
        its due time as Redis computed it (and `remaining` by Redis's clock), its payload,
        headers and period, attempts 0. Nothing is read back: a worker may already hold it.
        """
        spec = TimerSpec(
            topic, payload, activate_in, activate_at, timer_id, headers, correlation_id,
            every, cron, tz,
        )
        entry, written = self._set_one(spec, with_due=True)
        return self._admin.timer_info(
            spec.topic, entry.timer_id, entry.envelope, written.due_ms[spec.topic][0],
            written.server_now_ms or 0.0, 0, False,
        )

    def _set_one(self, spec: TimerSpec, with_due: bool) -> tuple[ScheduleEntry, Written]:
        """Check, encode and write one timer (its due time told when `with_due`)."""
        entry = self._entry(spec, check_topic(spec.topic), self._clock())
        return entry, self._write({spec.topic: [entry]}, with_due)

    def set_timers(self, timers: Iterable[TimerSpec]) -> list[str]:
        """Schedule many timers, each as `set_timer` would (same id replaces, wake-ups),
        in pipelined chunks: about 10,000 timers per round trip. Returns their ids, in order.

        Every timer is checked and encoded before anything is written. Each chunk of 1,000
        timers of a topic is written whole or not at all; if Redis fails part-way, the
        RedisCallError raised (RedisFullError, RedisUnavailableError) says which timers were
        written (`written_ids`), which were not (`unwritten_ids`) and which may or may not
        have been (`unconfirmed_ids`).
        """
        by_topic: dict[str, list[ScheduleEntry]] = {}
        ids: list[str] = []
        clock = self._clock()
        for spec in timers:
            if not isinstance(spec, TimerSpec):
                raise InvalidTimerError(
                    f"set_timers takes TimerSpec values, got {type(spec).__name__}"
                )
            entries = by_topic.get(spec.topic) if isinstance(spec.topic, str) else None
            if entries is None:  # each topic checked once per call
                entries = by_topic[check_topic(spec.topic)] = []
            entry = self._entry(spec, spec.topic, clock)
            entries.append(entry)
            ids.append(entry.timer_id)
        self._write(by_topic)
        return ids

    def _write(
        self, by_topic: Mapping[str, list[ScheduleEntry]], with_due: bool = False
    ) -> Written:
        """Write checked timers; a Redis failure is raised as a RedisCallError that says
        what became of each timer."""
        try:
            written = self._store.schedule_many(by_topic, with_due)
        except WriteFailed as failure:
            error = self._write_error(failure, by_topic)
            if error is failure.cause:  # not Redis being gone or full: as Redis said it
                raise error from None
            raise error from failure.cause
        self._wake_locally(*written.woke)
        return written

    def _write_error(
        self, failure: WriteFailed, by_topic: Mapping[str, list[ScheduleEntry]]
    ) -> Exception:
        """The error to raise for a write Redis failed: RedisFullError or
        RedisUnavailableError telling which timers were written; other errors as they are."""
        cause = failure.cause
        error = self._tracker.call_error(cause)
        if error is None:
            return cause
        error.with_timers(failure.written, failure.unwritten, failure.unconfirmed)
        entries = [entry for entries in by_topic.values() for entry in entries]
        replication = isinstance(error, RedisReplicationError)
        if len(entries) == 1:
            name = f"timer {entries[0].timer_id!r}"
            if replication:
                outcome = (f"{name} is in its unconfirmed_ids: setting it again with the "
                           "same timer_id is safe")
            elif failure.unconfirmed:
                outcome = (f"{name} may or may not have been written: setting it again with "
                           "the same timer_id is safe")
            elif failure.unwritten:
                outcome = f"{name} was not written"
            else:
                outcome = f"{name} was written, but its topic was not added to the topics"
        else:
            counts = [(len(failure.written), "were written (written_ids)"),
                      (len(failure.unconfirmed),
                       "were written but not confirmed by the replicas (unconfirmed_ids)"
                       if replication else "may or may not have been (unconfirmed_ids)"),
                      (len(failure.unwritten), "were not (unwritten_ids)")]
            outcome = f"of {len(entries):,} timers, " + ", ".join(
                f"{count:,} {what}" for count, what in counts if count
            )
            if failure.unconfirmed or failure.unwritten:
                outcome += "; setting timers again with the same ids is safe"
        error.args = (f"{error.args[0]}; {outcome}",)
        return error

    def _entry(self, spec: TimerSpec, topic: str, clock: _ServerClock) -> ScheduleEntry:
        """A timer (of a checked topic) checked and encoded, ready to write; raises before
        anything is written."""
        if spec.every is None and spec.cron is None and spec.tz is None:
            period = None
            due = check_due(spec.activate_in, spec.activate_at)
        else:
            period = check_period(spec.every, spec.cron, spec.tz)
            if period is not None and spec.activate_in is None and spec.activate_at is None:
                if period.every_ms is not None:
                    due = DueTime(delay_ms=period.every_ms)
                else:  # the next time of the cron expression by Redis's clock, like all times
                    due = DueTime(at_ms=period.next_after(clock.now_ms(), None))
            else:
                due = check_due(spec.activate_in, spec.activate_at)
        timer_id = new_timer_id() if spec.timer_id is None else check_timer_id(spec.timer_id)
        handler = self._specs.get(topic)
        envelope = encode_envelope(
            topic,
            spec.payload,
            handler.payload_type if handler else None,
            check_headers(spec.headers),
            check_correlation_id(spec.correlation_id),
            period=period,
            anchor_ms=due.at_ms,
        )
        if handler is not None and handler.payload_check is not None:
            handler.payload_check(spec.payload)  # the topic's own rules (a webhook allow-list)
        if len(envelope) > self.max_payload_bytes // 4 and (
            len(envelope.encode()) > self.max_payload_bytes  # its size as Redis stores it
        ):
            raise PayloadTooLargeError(
                f"payload for topic {topic!r} is {len(envelope.encode()):,} bytes as JSON "
                f"(with its headers); the limit is {self.max_payload_bytes:,} "
                "(TimerScheduler(max_payload_bytes=...))"
            )
        return ScheduleEntry(timer_id, envelope, due.at_ms, due.delay_ms)

    def _clock(self) -> _ServerClock:
        return _ServerClock(self._store, self._tracker)

    def _wake_locally(self, *topics: str) -> None:
        """Topics whose earliest timer this process just changed: claim them now, without
        waiting for the pub/sub message."""
        poller = self._poller
        if poller is not None:
            for topic in topics:
                if topic in self._specs:
                    poller.wake(topic)

    def cancel_timer(self, topic: str, timer_id: str) -> bool:
        """Remove a timer so it never fires (again); True if it existed."""
        topic, timer_id = check_topic(topic), check_timer_id(timer_id)
        with self._tracker.translating():
            return self._store.cancel(topic, timer_id)

    # -- inspecting and repairing ---------------------------------------------------------

    def get_timer(self, topic: str, timer_id: str) -> TimerInfo | None:
        """The pending timer `timer_id` of `topic`, or None if there is none."""
        return self._admin.get_timer(topic, timer_id)

    def payload_type(self, topic: str) -> Any | None:
        """The payload type this process's handler of `topic` declares (None: no handler,
        or an untyped one). Admin tools use it to decode JSON into the topic's type."""
        return self._admin.payload_type(topic)

    def topics(self) -> list[str]:
        """The topics of this namespace that have pending timers or dead letters now, sorted."""
        return self._admin.topics()

    @overload
    def stats(self, topic: str) -> TopicStats: ...

    @overload
    def stats(self, topic: None = None) -> dict[str, TopicStats]: ...

    def stats(self, topic: str | None = None) -> TopicStats | dict[str, TopicStats]:
        """Counts of one topic, or of every known topic (a dict by topic): pending timers,
        those due now, leased (handlers running), dead letters, and how late the oldest
        due timer is."""
        return self._admin.stats(topic)

    def list_timers(
        self,
        topic: str,
        *,
        due_before: dt.datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
        id_prefix: str | None = None,
    ) -> TimerPage:
        """A page of `topic`'s pending timers in due order (leased ones at their lease's
        expiry). Pass the page's `cursor` to get the next one; it stays exact while timers
        come and go. `due_before` (aware) keeps only timers due before it; `id_prefix`
        only those whose ids start with it (pass the same filters with the cursor): a call
        walks past at most LIST_WALK_MAX other timers, so a rare prefix may give short (or
        empty) pages before the last, each with a cursor to go on from."""
        return self._admin.list_timers(
            topic, due_before=due_before, limit=limit, cursor=cursor, id_prefix=id_prefix
        )

    def reschedule(
        self,
        topic: str,
        timer_id: str,
        *,
        activate_in: dt.timedelta | float | None = None,
        activate_at: dt.datetime | None = None,
    ) -> bool:
        """Move a pending timer to a new due time, keeping its payload, headers and period.
        False when there is no such timer, or a handler is running it (it is not moved
        under its running handler)."""
        return self._admin.reschedule(
            topic, timer_id, activate_in=activate_in, activate_at=activate_at
        )

    def reschedule_and_get(
        self,
        topic: str,
        timer_id: str,
        *,
        activate_in: dt.timedelta | float | None = None,
        activate_at: dt.datetime | None = None,
    ) -> TimerInfo | None:
        """Move a pending timer as `reschedule` does, and return it as it is now, read by
        the same script: moved, or, when a handler is running it, not moved and
        `leased` (its `due_at` is then when the lease ends). None when there is no such
        timer."""
        return self._admin.reschedule_and_get(
            topic, timer_id, activate_in=activate_in, activate_at=activate_at
        )

    def purge(self, topic: str) -> int:
        """Remove every pending timer of `topic` (dead letters are kept); returns how many."""
        return self._admin.purge(topic)

    def dead_timers(self, topic: str, limit: int = 100, offset: int = 0) -> list[DeadTimer]:
        """Dead-lettered timers of `topic`, in the order they died: `limit` from `offset`."""
        return self._admin.dead_timers(topic, limit, offset)

    def requeue_dead(self, topic: str, timer_id: str | None = None) -> int:
        """Make one dead-lettered timer (or all of `topic`'s) due now, with its attempts
        reset; returns how many came back."""
        return self._admin.requeue_dead(topic, timer_id)

    def purge_dead(self, topic: str) -> int:
        """Delete the dead letters of `topic`; returns how many there were."""
        return self._admin.purge_dead(topic)

    def metrics(self) -> Metrics:
        """Counts since this scheduler was created (claimed, succeeded, retried, dead-lettered,
        rejected, released, lease renewals, stale acks, Redis errors) and handlers running
        now per topic."""
        poller = self._poller or self._draining
        in_flight = poller.in_flight if poller is not None else dict.fromkeys(self._specs, 0)
        trackers = [self._tracker, *self._engine_trackers]
        return self._metrics.snapshot(
            sum(t.errors for t in trackers), sum(t.outages for t in trackers),
            sum(t.full_count for t in trackers), in_flight, self._engine_metrics,
        )

    def due_per_minute(self, topic: str, minutes: int = 60) -> DueForecast:
        """How many of `topic`'s timers fall due in each of the next `minutes` minutes
        (at most a day) by the Redis server's clock: for a chart of the load ahead."""
        return self._admin.due_per_minute(topic, minutes)

    def server_info(self) -> ServerInfo:
        """The Redis server's version and memory (used, and its limit), from INFO."""
        return self._admin.server_info()

    def workers(self) -> list[WorkerInfo]:
        """The live workers of this namespace: every started scheduler with handlers, in
        any process, whose heartbeat is recent (by host and pid)."""
        return self._admin.workers()

    @property
    def worker_id(self) -> str | None:
        """This scheduler's id among the live workers while it runs with handlers."""
        heartbeat = self._heartbeat
        return heartbeat.worker_id if heartbeat is not None else None

    # -- running handlers -----------------------------------------------------------------

    @property
    def topics_handled(self) -> list[str]:
        """The topics this scheduler delivers (those its routers have handlers for)."""
        return list(self._specs)

    @property
    def running(self) -> bool:
        """True between start() and stop()."""
        return self._poller is not None

    @property
    def healthy(self) -> bool:
        """False while this scheduler's worker threads find Redis unreachable, stalled or
        full (over maxmemory), when a started scheduler's threads are gone, or in a forked
        child whose parent had started this scheduler (call start() there). The errors of
        calls such as set_timer are raised to their callers and do not change it.
        """
        if self._lost_to_fork:
            return False
        poller = self._poller
        if poller is not None and not poller.alive:
            return False
        engines = poller.engines if poller is not None else []
        return self._tracker.healthy and all(engine.tracker.healthy for engine in engines)

    def start(self) -> None:
        """Start delivering in background threads; returns at once.

        A Redis that does not answer yet is waited for (one log line when waiting begins,
        one when Redis answers); one that refuses the credentials or permissions ends the
        threads, with one log line, and `healthy` stays False.
        """
        with self._lock:
            if self._poller is not None:
                raise SchedulerStateError("scheduler is already running")
            self._tracker.refused = None
            self._poller = self._engines()
            self._lost_to_fork = False
            self._poller.start()
            if self._specs:
                self._started_ms = time.time() * 1000
                self._heartbeat = Heartbeat(
                    self._store.workers, self._describe, self._heartbeat_interval,
                    MinuteSummary(self._take_windows), self._store.server_now_ms,
                )
                self._heartbeat.start()
        if not self._specs:
            log.warning("scheduler started without handlers: it will deliver nothing")
        log.info("scheduler started for topics %s on Redis at %s", self.topics_handled, self._where)

    def stop(self, timeout: float = defaults.SHUTDOWN_TIMEOUT) -> bool:
        """Stop claiming, let running handlers finish (up to `timeout` seconds), hand back
        timers claimed but not started, and end the threads. True when all drained.
        """
        with self._lock:
            poller, self._poller = self._poller, None
            heartbeat, self._heartbeat = self._heartbeat, None
        if poller is None:
            return True
        self._draining = poller
        try:
            drained = poller.stop(timeout)
        finally:
            self._draining = None
            if heartbeat is not None:
                heartbeat.stop()
        log.info("scheduler stopped%s", "" if drained else " with handlers still running")
        return drained

    def __enter__(self) -> TimerScheduler:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def run_forever(self, shutdown_timeout: float = defaults.SHUTDOWN_TIMEOUT) -> None:
        """Deliver until SIGTERM or SIGINT (or `stop()` from another thread), then stop
        gracefully; a second signal stops at once, without waiting for running handlers.

        Waits for a Redis that does not answer yet; raises RedisAuthenticationError or
        RedisPermissionError, once stopped, if Redis refuses the credentials or permissions,
        and SchedulerStateError if its threads end without being stopped (so that a process
        supervisor sees a failure, and restarts the worker).
        """
        stop_requested = threading.Event()
        timeout = [shutdown_timeout]
        started: list[Engines | None] = [None]

        def on_signal(signum: int, frame: FrameType | None) -> None:
            name = signal.Signals(signum).name
            if stop_requested.is_set():
                running = started[0].running_handlers if started[0] is not None else 0
                log.warning(
                    "received %s again: stopping now, without waiting for the %d handler(s) "
                    "still running (their timers are delivered again once their leases "
                    "expire)", name, running,
                )
                timeout[0] = 0.0
                if started[0] is not None:
                    started[0].stop_now()
            else:
                running = started[0].running_handlers if started[0] is not None else 0
                log.info(
                    "received %s: stopping; the %d handler(s) running have up to %gs to "
                    "finish (%s again stops at once)", name, running, timeout[0],
                    "Ctrl-C" if signum == signal.SIGINT else name,
                )
            stop_requested.set()

        previous: dict[int, Any] = {}
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                previous[signum] = signal.signal(signum, on_signal)
        try:
            self.start()
            poller = started[0] = self._poller
            ended = False
            while not stop_requested.wait(0.5):
                if self._poller is not poller or poller is None:
                    break  # stopped from elsewhere
                if not poller.alive:
                    ended = True
                    break
        finally:
            self.stop(timeout[0])
            for handled, handler in previous.items():
                signal.signal(handled, handler)
        refused = self._refused()
        if refused is not None:
            raise refused
        if ended:  # a supervisor should restart this worker: say so with a failure
            raise SchedulerStateError(
                "the scheduler's worker threads ended without being stopped (see the log)"
            )

    def run_pending(self) -> int:
        """Deliver every timer due now, one at a time in this thread; return how many ran.

        It claims, runs, isolates suspects and settles as the background worker does, and
        leaves a timer that comes due again at once for later. For tests and cron-style
        use; not while the scheduler runs in the background. Redis errors are raised.
        """
        if self._poller is not None:
            raise SchedulerStateError("run_pending() cannot be used while the scheduler runs")
        return self._poller_of(self._specs, self._tracker, self._metrics, inline=True).run_pending()

    # -- helpers --------------------------------------------------------------------------

    def _engines(self) -> Engines:
        """A poller for the topics; on a Cluster, one per master holding some of them (as
        the Cluster is laid out now), each with its own tracker and counts."""
        by_master: dict[str, dict[str, HandlerSpec]] = {}
        for topic, spec in self._specs.items():
            by_master.setdefault(self._store.master_of(topic), {})[topic] = spec
        if len(by_master) <= 1:
            return Engines([Engine(self._poller_of(self._specs, self._tracker, self._metrics),
                                   self._tracker, self._metrics)])
        engines = []
        for master, specs in sorted(by_master.items()):
            tracker = OutageTracker(
                f"{master or 'an unknown master'} (a master of {self._where})", self._tracker.who
            )
            counts = MetricsCounter()
            self._engine_trackers.append(tracker)
            self._engine_metrics.append(counts)
            engines.append(Engine(self._poller_of(specs, tracker, counts), tracker, counts))
        return Engines(engines)

    def _poller_of(
        self, specs: dict[str, HandlerSpec], tracker: OutageTracker, counts: MetricsCounter,
        inline: bool = False,
    ) -> Poller:
        return Poller(
            self._store,
            specs,
            tracker,
            default_retry=self._default_retry,
            max_poll_interval=self._max_poll_interval,
            hooks=self._hooks,
            metrics=counts,
            inline=inline,
        )

    def _describe(self) -> WorkerRecord:
        """This worker's record among the live workers, as of now."""
        return worker_record(
            namespace=self._store.namespace,
            topics={topic: spec.max_concurrent for topic, spec in self._specs.items()},
            metrics=self.metrics(), healthy=self.healthy, started_ms=self._started_ms,
            interval=self._heartbeat_interval,
        )

    def _take_windows(self) -> list[Window]:
        return [counter.take_window() for counter in (self._metrics, *self._engine_metrics)]

    def _refused(self) -> Exception | None:
        """Why Redis refused this scheduler's worker, if it did."""
        for tracker in [self._tracker, *self._engine_trackers]:
            if tracker.refused is not None:
                return tracker.refused
        return None

    def _forget_after_fork(self) -> None:
        """In a forked child: the parent's threads do not exist here, and locks they held
        would stay held for ever."""
        if self._poller is not None:
            self._poller = None
            self._lost_to_fork = True
        self._heartbeat = None  # its thread is the parent's; the record too
        self._lock = threading.Lock()
        self._tracker.reset_after_fork()

    def __repr__(self) -> str:
        state = "running" if self._poller is not None else "stopped"
        return (
            f"<TimerScheduler {state} namespace={self._store.namespace!r} "
            f"topics={self.topics_handled} redis={self._where}>"
        )
