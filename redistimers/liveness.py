"""A started scheduler's heartbeat: its record in Redis's registry of live workers (who it
is, what it delivers, what it did), written at start and every few seconds, removed at
stop, expiring by itself a few heartbeats after its process dies. The same thread logs
the minute summaries of its deliveries."""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Callable, Mapping

import attrs
import cattrs

from .failures import is_transient
from .metrics import Metrics
from .models import WorkerInfo
from .store import StoredWorker, WorkerRegistry
from .summary import MinuteSummary
from .validation import datetime_of_ms
from .version import __version__

log = logging.getLogger("redistimers.liveness")

#: Heartbeats a worker may miss before its record expires.
MISSED_BEATS = 3

_converter = cattrs.Converter()


@attrs.frozen
class WorkerRecord:
    """What a worker's heartbeat writes about it (JSON in Redis)."""

    host: str
    pid: int
    version: str
    namespace: str
    topics: dict[str, int]
    running: dict[str, int]
    delivered: int
    succeeded: int
    retried: int
    dead_lettered: int
    failed: int
    healthy: bool
    started_ms: float
    heartbeat_ms: int
    #: Per topic (absent from the records of versions before them).
    delivered_per_topic: dict[str, int] = attrs.Factory(dict)
    failed_per_topic: dict[str, int] = attrs.Factory(dict)
    lateness_counts: list[int] = attrs.Factory(list)


#: The totals a record carries, named as in Metrics.
_TOTALS = ("delivered", "succeeded", "retried", "dead_lettered", "failed")
#: The fields of a WorkerInfo that are the record's own, as written.
_AS_RECORDED = ("host", "pid", "version", "namespace", "topics", "running", *_TOTALS, "healthy",
                "delivered_per_topic", "failed_per_topic")


def new_worker_id() -> str:
    """A worker's id: its host and pid, and a random part (pids are reused)."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"


def worker_info(stored: StoredWorker) -> WorkerInfo | None:
    """A live worker as `TimerScheduler.workers` returns it; None for a record this version
    cannot read."""
    try:
        record = _converter.structure(json.loads(stored.record), WorkerRecord)
    except (ValueError, TypeError, cattrs.BaseValidationError) as exc:
        log.debug("ignoring the unreadable record of worker %s: %s", stored.worker_id, exc)
        return None
    return WorkerInfo(
        worker_id=stored.worker_id,
        **{name: getattr(record, name) for name in _AS_RECORDED},
        lateness_counts=tuple(record.lateness_counts),
        started_at=datetime_of_ms(record.started_ms),
        last_seen=datetime_of_ms(stored.seen_ms),
        heartbeat_interval=dt.timedelta(milliseconds=record.heartbeat_ms),
    )


class Heartbeat:
    """Writes `describe()` to the registry at once and every `interval` seconds until
    stopped, then removes it; and lets `summary` log at each beat. `server_now_ms`
    estimates the Redis server's clock, by which records expire."""

    def __init__(
        self,
        registry: WorkerRegistry,
        describe: Callable[[], WorkerRecord],
        interval: float,
        summary: MinuteSummary,
        server_now_ms: Callable[[], float],
    ) -> None:
        self.worker_id = new_worker_id()
        self._registry = registry
        self._server_now_ms = server_now_ms
        self._describe = describe
        self._interval = interval
        self._summary = summary
        self._stopping = threading.Event()
        self._failure: tuple[str, str] | None = None  # the failure last logged
        self._thread = threading.Thread(
            target=self._run, name="redistimers-heartbeat", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """End the beats, and remove the record (a worker that stops is no longer live)."""
        self._stopping.set()
        if self._thread.is_alive():
            self._thread.join(max(1.0, self._interval))
        self._summary.tick(final=True)
        try:
            self._registry.leave(self.worker_id)
        except Exception as exc:  # it expires by itself
            log.info("could not remove the record of worker %s (it expires within %.0fs): %s",
                     self.worker_id, self._interval * MISSED_BEATS, exc)

    def _run(self) -> None:
        while True:
            try:
                self._beat()
                self._summary.tick()
            except Exception:  # never end the thread; a bug is logged once per kind
                self._failed_unexpectedly()
            if self._stopping.wait(self._interval):
                return

    def _beat(self) -> None:
        record = json.dumps(_converter.unstructure(self._describe()), separators=(",", ":"))
        ttl_ms = max(1, round(self._interval * MISSED_BEATS * 1000))
        try:
            self._registry.beat(self.worker_id, record, self._server_now_ms(), ttl_ms)
        except Exception as exc:
            seen = (type(exc).__name__, str(exc))
            if is_transient(exc):  # an outage: the poller reports it
                log.debug("heartbeat of worker %s not written: %s", self.worker_id, exc)
            elif seen != self._failure:
                log.warning(
                    "could not write the heartbeat of worker %s: %s: %s; it is missing from "
                    "the live workers until it can", self.worker_id, *seen,
                )
            self._failure = seen
            return
        if self._failure is not None:
            log.info("heartbeat of worker %s written again", self.worker_id)
            self._failure = None

    def _failed_unexpectedly(self) -> None:
        kind = ("bug", "")
        if self._failure != kind:
            log.exception("heartbeat of worker %s failed; trying again", self.worker_id)
        self._failure = kind


def worker_record(
    *, namespace: str, topics: Mapping[str, int], metrics: Metrics, healthy: bool,
    started_ms: float, interval: float,
) -> WorkerRecord:
    """The record of this process's worker, as of now."""
    return WorkerRecord(
        host=socket.gethostname(),
        pid=os.getpid(),
        version=__version__,
        namespace=namespace,
        topics=dict(topics),
        running=dict(metrics.in_flight),
        **{name: getattr(metrics, name) for name in _TOTALS},
        healthy=healthy,
        started_ms=started_ms,
        heartbeat_ms=round(interval * 1000),
        delivered_per_topic={t: m.delivered for t, m in metrics.topics.items()},
        failed_per_topic={t: m.failed for t, m in metrics.topics.items()},
        lateness_counts=[
            sum(counts) for counts in zip(*(m.lateness_seconds.counts
                                            for m in metrics.topics.values()), strict=True)
        ],
    )
