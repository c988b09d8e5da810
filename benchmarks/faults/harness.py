"""What every scenario needs: its own temp dir, redis-servers, worker fleet and proxies
(all stopped and removed at the end), scheduling with the public API, polling waits with
deadlines, and the final state of Redis for the counts."""

from __future__ import annotations

import contextlib
import datetime as dt
import shutil
import tempfile
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import redis

from redistimers import TimerScheduler, TimerSpec
from redistimers.testing import RedisServer

from . import ledger
from .counts import Counts, FinalState, Key, count, standard_notes
from .fleet import Fleet, WorkerProcess
from .proxy import FreezableProxy

Log = Callable[[str], None]


def topic_conf(topic: str, *, lease_ttl: float, max_concurrent: int = 10,
               max_attempts: int | None = None, sleep: float = 0.02) -> dict[str, Any]:
    """One topic of a worker's config (worker.py)."""
    return {"topic": topic, "lease_ttl": lease_ttl, "max_concurrent": max_concurrent,
            "max_attempts": max_attempts, "sleep": sleep}


def now_ms() -> float:
    return time.time() * 1000


def poll(condition: Callable[[], bool], timeout: float, interval: float = 0.1) -> bool:
    """Until `condition()` or `timeout` seconds; errors count as "not yet"."""
    deadline = time.monotonic() + timeout
    while True:
        with contextlib.suppress(Exception):
            if condition():
                return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


class Context:
    """One scenario's resources and results; close() stops and removes everything."""

    def __init__(self, name: str, quick: bool, log: Log) -> None:
        self.name = name
        self.quick = quick
        self.log = log
        self.folder = Path(tempfile.mkdtemp(prefix=f"redistimers-faults-{name}-"))
        self.fleet = Fleet(self.folder)
        self.servers: list[RedisServer] = []
        self.clients: list[redis.Redis] = []
        self.proxies: list[FreezableProxy] = []
        self.cleanups: list[Callable[[], None]] = []
        self.scheduled: dict[Key, float | None] = {}
        self.unconfirmed: set[Key] = set()
        self.refused: set[Key] = set()  # the library said it did not write them
        self.periodic: set[Key] = set()
        self.notes: list[str] = []
        self.details: dict[str, Any] = {}
        self.counts: Counts | None = None

    def size(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full

    # -- resources ------------------------------------------------------------------------

    def server(self, *, appendonly: bool = False,
               config: Mapping[str, str] | None = None) -> RedisServer:
        server = RedisServer(appendonly=appendonly, config=config)
        self.servers.append(server)
        server.start()
        return server

    def admin(self, url: str, socket_timeout: float = 5.0) -> TimerScheduler:
        """The harness's own scheduler: no routers; schedules and inspects."""
        client = redis.Redis.from_url(url, socket_timeout=socket_timeout,
                                      socket_connect_timeout=2.0)
        self.clients.append(client)
        return TimerScheduler(client)

    def proxy(self, server: RedisServer) -> FreezableProxy:
        proxy = FreezableProxy("127.0.0.1", server.port).start()
        self.proxies.append(proxy)
        return proxy

    def worker(self, name: str, url: str, topics: Sequence[dict[str, Any]], *,
               socket_timeout: float | None = None,
               env: Mapping[str, str] | None = None) -> WorkerProcess:
        config = {"url": url, "socket_timeout": socket_timeout, "topics": list(topics)}
        return self.fleet.add(name, config, env)

    def close(self) -> None:
        self.fleet.close()
        for cleanup in reversed(self.cleanups):
            with contextlib.suppress(Exception):
                cleanup()
        for proxy in self.proxies:
            proxy.close()
        for client in self.clients:
            with contextlib.suppress(Exception):
                client.close()
        for server in self.servers:
            with contextlib.suppress(Exception):
                server.close()
        shutil.rmtree(self.folder, ignore_errors=True)

    # -- scheduling -----------------------------------------------------------------------

    def schedule(self, admin: TimerScheduler, specs: Sequence[TimerSpec],
                 intended: Sequence[float | None] | None = None) -> int:
        """set_timers; the timers Redis confirmed count as scheduled (on an error, those
        the error says were written); of the others, those the error says were not written
        are refused, the rest unconfirmed. Returns how many were confirmed; re-raises."""
        meant = list(intended) if intended is not None else [None] * len(specs)
        keys = [(spec.topic, str(spec.timer_id)) for spec in specs]
        try:
            admin.set_timers(specs)
        except Exception as exc:
            written = set(getattr(exc, "written_ids", ()) or ())
            for key, due in zip(keys, meant, strict=True):
                if key[1] in written:
                    self._confirmed(key, due)
                else:
                    self.failed_write(key, exc)
            raise
        for key, due in zip(keys, meant, strict=True):
            self._confirmed(key, due)
        return len(keys)

    def failed_write(self, key: Key, exc: BaseException) -> None:
        """A timer whose write raised `exc`: refused if the error says it was not written,
        else unconfirmed (it may or may not exist)."""
        if key[1] in set(getattr(exc, "unwritten_ids", ()) or ()):
            self.refused.add(key)
        else:
            self.unconfirmed.add(key)

    def _confirmed(self, key: Key, due: float | None) -> None:
        self.scheduled[key] = due
        self.unconfirmed.discard(key)

    def spread(self, admin: TimerScheduler, topic: str, prefix: str, n: int, start_s: float,
               span_s: float, payload: Mapping[str, Any] | None = None) -> int:
        """Schedule `n` one-shot timers due evenly from now+start_s over span_s seconds."""
        base = now_ms() + start_s * 1000
        specs, intended = [], []
        for i in range(n):
            due = base + (span_s * 1000 * i / max(1, n - 1) if n > 1 else 0.0)
            at = dt.datetime.fromtimestamp(due / 1000, dt.timezone.utc)
            specs.append(TimerSpec(topic, dict(payload or {}), activate_at=at,
                                   timer_id=f"{prefix}-{i:05d}"))
            intended.append(due)
        return self.schedule(admin, specs, intended)

    # -- waiting and counting -------------------------------------------------------------

    def wait_settled(self, admin: TimerScheduler, topics: Collection[str], timeout: float,
                     tick: Callable[[], None] | None = None) -> bool:
        """Until no timer of `topics` is pending (all fired or dead), or `timeout`."""

        def settled() -> bool:
            if tick is not None:
                tick()
            return all(admin.stats(topic).pending == 0 for topic in topics)

        done = poll(settled, timeout, 0.2)
        if not done:
            self.notes.append(f"not settled within {timeout:g} s")
        return done

    def final_state(self, admin: TimerScheduler, topics: Collection[str],
                    timeout: float = 15.0) -> FinalState:
        """Pending timers and dead letters of `topics` (tries again while Redis loads)."""
        result: list[FinalState] = []

        def read() -> bool:
            pending: set[Key] = set()
            dead: dict[Key, str] = {}
            for topic in topics:
                cursor: str | None = None
                while True:
                    page = admin.list_timers(topic, limit=1000, cursor=cursor)
                    pending |= {(topic, info.timer_id) for info in page.timers}
                    cursor = page.cursor
                    if cursor is None:
                        break
                offset = 0
                while True:
                    letters = admin.dead_timers(topic, limit=1000, offset=offset)
                    dead.update({(topic, letter.timer_id): letter.reason for letter in letters})
                    if len(letters) < 1000:
                        break
                    offset += len(letters)
            result.append(FinalState(frozenset(pending), dead))
            return True

        if not poll(read, timeout, 0.5):
            raise RuntimeError("could not read the pending timers and dead letters at the end")
        return result[0]

    def records(self) -> list[ledger.Record]:
        return ledger.read_all(self.folder)

    def finish(self, admin: TimerScheduler, topics: Collection[str]) -> Counts:
        """The counts of this scenario, from the ledgers and Redis's final state."""
        final = self.final_state(admin, topics)
        self.counts = count(self.scheduled, self.records(), final, periodic=self.periodic,
                            unconfirmed=self.unconfirmed, refused=self.refused)
        return self.counts

    def all_notes(self) -> list[str]:
        extra = standard_notes(self.counts) if self.counts is not None else []
        return [*self.notes, *extra]


def tracebacks(text: str) -> int:
    """How many tracebacks a log holds."""
    return text.count("Traceback (most recent call last)")
