"""Inspect and repair timers: get, list, count, move, purge, dead letters.

What `TimerScheduler` holds for operators and admin tools; it speaks of timers and
times, and leaves keys and scripts to the store.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, overload

from .codec import Envelope, EnvelopeError, decode_envelope, structure_payload
from .deadletters import dead_timer_of
from .errors import InvalidTimerError
from .liveness import worker_info
from .models import (
    DeadTimer,
    DueForecast,
    ServerInfo,
    TimerInfo,
    TimerPage,
    TopicStats,
    WorkerInfo,
)
from .outage import OutageTracker
from .router import HandlerSpec
from .store import TimerStore
from .validation import check_due, check_timer_id, check_topic, datetime_of_ms

log = logging.getLogger("redistimers.admin")

#: Most minutes `due_per_minute` counts: a day, one pipelined ZCOUNT each.
MAX_FORECAST_MINUTES = 24 * 60


def _count(name: str, value: object, minimum: int) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise InvalidTimerError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def encode_cursor(score_text: str, timer_id: str) -> str:
    """An opaque cursor: where the last page ended (its score as stored, and its id)."""
    raw = json.dumps([score_text, timer_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


#: A score as Redis writes one (and as Lua's tonumber reads it back): a plain decimal,
#: maybe with an exponent. Python's float() also takes "1_0", "inf" and "nan", which the
#: list script could not read.
_SCORE_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def decode_cursor(cursor: str) -> tuple[str, str]:
    """The (score as stored, timer id) of a cursor from `encode_cursor`; InvalidTimerError
    for anything else, before it reaches Redis."""
    refused = InvalidTimerError(f"cursor {cursor!r} is not one this library returned")
    if not isinstance(cursor, str):
        raise refused
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        score_text, timer_id = json.loads(raw)
    except (ValueError, TypeError) as exc:
        raise refused from exc
    if not isinstance(score_text, str) or not isinstance(timer_id, str):
        raise refused
    if not _SCORE_TEXT.fullmatch(score_text) or not math.isfinite(float(score_text)):
        raise refused
    try:
        check_timer_id(timer_id)
    except InvalidTimerError as exc:
        raise refused from exc
    return score_text, timer_id


class TimerAdmin:
    """Read and repair operations on the timers of a store, for `TimerScheduler`'s methods
    of the same names. Redis's errors are raised as RedisCallErrors (`tracker`); `wake`
    is told of topics whose earliest timer it changed, for this process's worker."""

    def __init__(
        self,
        store: TimerStore,
        specs: Mapping[str, HandlerSpec],
        tracker: OutageTracker,
        wake: Callable[[str], None],
    ) -> None:
        self._store = store
        self._inspection = store.inspection
        self._specs = specs
        self._tracker = tracker
        self._wake = wake

    def get_timer(self, topic: str, timer_id: str) -> TimerInfo | None:
        """What `TimerScheduler.get_timer` does (documented there)."""
        topic, timer_id = check_topic(topic), check_timer_id(timer_id)
        with self._tracker.translating():
            stored = self._store.inspect(topic, timer_id)
        if stored is None:
            return None
        return self.timer_info(
            topic, timer_id, stored.envelope, stored.score_ms, stored.server_now_ms,
            stored.attempts, stored.leased,
        )

    def timer_info(
        self,
        topic: str,
        timer_id: str,
        raw_envelope: bytes | str,
        score_ms: float,
        server_now_ms: float,
        attempts: int,
        leased: bool,
    ) -> TimerInfo:
        """A TimerInfo from what the store holds; the payload in the topic's type when this
        process knows it (its JSON form when it no longer decodes)."""
        try:
            envelope = decode_envelope(raw_envelope)
        except EnvelopeError as exc:  # shown as stored, so that it can be found and fixed
            log.warning("timer %s/%s: %s", topic, timer_id, exc)
            text = raw_envelope.decode(errors="replace") if isinstance(raw_envelope, bytes) else (
                raw_envelope
            )
            envelope = Envelope(payload=text)
        spec = self._specs.get(topic)
        payload = envelope.payload
        if spec is not None:
            try:
                payload = structure_payload(envelope.payload, spec.payload_type)
            except EnvelopeError as exc:
                log.warning("timer %s/%s: %s; returning its JSON payload", topic, timer_id, exc)
        period = envelope.period
        return TimerInfo(
            topic=topic,
            timer_id=timer_id,
            due_at=datetime_of_ms(score_ms),
            remaining=dt.timedelta(milliseconds=max(0.0, score_ms - server_now_ms)),
            attempts=attempts,
            leased=leased,
            payload=payload,
            headers=envelope.headers,
            correlation_id=envelope.correlation_id,
            every=(
                dt.timedelta(milliseconds=period.every_ms)
                if period is not None and period.every_ms is not None
                else None
            ),
            cron=period.cron if period is not None else None,
            tz=period.tz if period is not None and period.cron is not None else None,
        )

    # -- topics and timers ----------------------------------------------------------------

    def payload_type(self, topic: str) -> Any | None:
        """What `TimerScheduler.payload_type` does (documented there)."""
        spec = self._specs.get(check_topic(topic))
        return spec.payload_type if spec is not None else None

    def topics(self) -> list[str]:
        """What `TimerScheduler.topics` does (documented there)."""
        with self._tracker.translating():
            return self._inspection.topics()

    @overload
    def stats(self, topic: str) -> TopicStats: ...

    @overload
    def stats(self, topic: None = None) -> dict[str, TopicStats]: ...

    def stats(self, topic: str | None = None) -> TopicStats | dict[str, TopicStats]:
        """What `TimerScheduler.stats` does (documented there)."""
        topics = [check_topic(topic)] if topic is not None else None
        with self._tracker.translating():
            if topics is None:
                topics = self._inspection.topics()
            counts = self._inspection.stats(topics)
        result = {}
        for name, stored in zip(topics, counts, strict=True):
            lag = None
            if stored.first_ms is not None and stored.first_ms <= stored.server_now_ms:
                lag = dt.timedelta(milliseconds=stored.server_now_ms - stored.first_ms)
            result[name] = TopicStats(
                topic=name,
                pending=stored.pending,
                due=stored.due,
                leased=stored.leased,
                dead=stored.dead,
                oldest_due_lag=lag,
            )
        return result[topic] if topic is not None else result

    def list_timers(
        self,
        topic: str,
        *,
        due_before: dt.datetime | None = None,
        limit: int = 100,
        cursor: str | None = None,
        id_prefix: str | None = None,
    ) -> TimerPage:
        """What `TimerScheduler.list_timers` does (documented there)."""
        topic = check_topic(topic)
        _count("limit", limit, 1)
        if id_prefix is not None and not isinstance(id_prefix, str):
            raise InvalidTimerError(f"id_prefix must be a str, got {type(id_prefix).__name__}")
        after = decode_cursor(cursor) if cursor is not None else None
        before_ms = None
        if due_before is not None:
            due = check_due(None, due_before)
            before_ms = due.at_ms
        with self._tracker.translating():
            now, listed, resume = self._inspection.list_page(
                topic, after, before_ms, limit, id_prefix or ""
            )
        timers = [
            self.timer_info(
                topic, item.timer_id, item.envelope, item.score_ms, now, item.attempts, item.leased
            )
            for item in listed
        ]
        next_cursor = None
        if resume is not None:  # a prefix's walk stopped early: a short page, more to see
            next_cursor = encode_cursor(*resume)
        elif len(listed) == limit:
            next_cursor = encode_cursor(listed[-1].score_text, listed[-1].timer_id)
        return TimerPage(timers=timers, cursor=next_cursor)

    def reschedule(
        self,
        topic: str,
        timer_id: str,
        *,
        activate_in: dt.timedelta | float | None = None,
        activate_at: dt.datetime | None = None,
    ) -> bool:
        """What `TimerScheduler.reschedule` does (documented there)."""
        moved = self.reschedule_and_get(
            topic, timer_id, activate_in=activate_in, activate_at=activate_at
        )
        return moved is not None and not moved.leased

    def reschedule_and_get(
        self,
        topic: str,
        timer_id: str,
        *,
        activate_in: dt.timedelta | float | None = None,
        activate_at: dt.datetime | None = None,
    ) -> TimerInfo | None:
        """What `TimerScheduler.reschedule_and_get` does (documented there)."""
        topic, timer_id = check_topic(topic), check_timer_id(timer_id)
        due = check_due(activate_in, activate_at)
        with self._tracker.translating():
            status, stored = self._inspection.reschedule(topic, timer_id, due.at_ms, due.delay_ms)
        if stored is None:
            return None
        if status == 1:
            self._wake(topic)
        return self.timer_info(
            topic, timer_id, stored.envelope, stored.score_ms, stored.server_now_ms,
            stored.attempts, stored.leased,
        )

    def purge(self, topic: str) -> int:
        """What `TimerScheduler.purge` does (documented there)."""
        topic = check_topic(topic)
        with self._tracker.translating():
            return self._inspection.purge(topic)

    # -- dead letters ---------------------------------------------------------------------

    def dead_timers(self, topic: str, limit: int = 100, offset: int = 0) -> list[DeadTimer]:
        """What `TimerScheduler.dead_timers` does (documented there)."""
        topic = check_topic(topic)
        _count("limit", limit, 0)
        _count("offset", offset, 0)
        if limit == 0:
            return []
        with self._tracker.translating():
            records = self._inspection.dead(topic, limit, offset)
        return [dead_timer_of(topic, record) for record in records]

    def requeue_dead(self, topic: str, timer_id: str | None = None) -> int:
        """What `TimerScheduler.requeue_dead` does (documented there)."""
        topic = check_topic(topic)
        ids = None if timer_id is None else [check_timer_id(timer_id)]
        with self._tracker.translating():
            count = self._inspection.requeue_dead(topic, ids)
        if count:
            self._wake(topic)
        return count

    def purge_dead(self, topic: str) -> int:
        """What `TimerScheduler.purge_dead` does (documented there)."""
        topic = check_topic(topic)
        with self._tracker.translating():
            return self._inspection.purge_dead(topic)

    def due_per_minute(self, topic: str, minutes: int = 60) -> DueForecast:
        """What `TimerScheduler.due_per_minute` does (documented there)."""
        topic = check_topic(topic)
        _count("minutes", minutes, 0)
        if minutes > MAX_FORECAST_MINUTES:
            raise InvalidTimerError(
                f"minutes must be at most {MAX_FORECAST_MINUTES}, got {minutes!r}"
            )
        with self._tracker.translating():
            now_ms = self._store.server_time_ms()
            counts = self._inspection.due_per_minute(topic, now_ms, minutes)
        return DueForecast(topic=topic, start=datetime_of_ms(now_ms), counts=counts)

    def server_info(self) -> ServerInfo:
        """What `TimerScheduler.server_info` does (documented there)."""
        with self._tracker.translating():
            stored = self._inspection.server_info()
        return ServerInfo(
            version=stored.version,
            used_memory=stored.used_memory,
            maxmemory=stored.maxmemory or None,
        )

    def workers(self) -> list[WorkerInfo]:
        """What `TimerScheduler.workers` does (documented there)."""
        with self._tracker.translating():
            stored = self._store.workers.live()
        found = [info for info in map(worker_info, stored) if info is not None]
        return sorted(found, key=lambda w: (w.host, w.pid, w.worker_id))
