"""The only code that knows Redis keys and Lua: timers in, timers out, fenced by tokens.

Every key of a topic carries the topic as its hash tag, ``<namespace>:{<topic>}:<kind>``,
so each script touches one cluster slot. Scripts run by EVALSHA and are loaded again
when Redis answers NOSCRIPT (after a restart or SCRIPT FLUSH). Several operations go to
Redis in one pipelined round trip through `Batch`.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import time
from collections.abc import Mapping, Sequence
from importlib import resources
from typing import Any, NamedTuple

import attrs
import redis
from redis.exceptions import NoScriptError

from . import defaults

SCRIPT_NAMES = (
    "schedule", "claim", "ack", "retry", "extend", "solo", "bury", "cancel", "requeue",
    "stats", "list", "get", "reschedule", "purge", "purge_dead",
)


def text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _load_sources() -> dict[str, tuple[str, str]]:
    """Script name -> (source, sha1)."""
    folder = resources.files("redistimers") / "lua"
    sources = {}
    for name in SCRIPT_NAMES:
        source = (folder / f"{name}.lua").read_text(encoding="utf-8")
        sources[name] = (source, hashlib.sha1(source.encode()).hexdigest())
    return sources


_SCRIPTS = _load_sources()


@attrs.frozen
class TopicKeys:
    """The Redis keys of one topic."""

    due: str
    body: str
    lease: str
    attempts: str
    seq: str
    dead: str
    dead_body: str
    wake: str

    @classmethod
    def of(cls, namespace: str, topic: str) -> TopicKeys:
        prefix = f"{namespace}:{{{topic}}}:"
        return cls(*(prefix + kind for kind in attrs.fields_dict(cls)))


class ScheduleEntry(NamedTuple):
    """One timer to write: at an epoch millisecond, or after a delay from Redis's now.

    Times are milliseconds with a fraction: scores keep microseconds.
    """

    timer_id: str
    envelope: str
    at_ms: float | None = None
    delay_ms: float | None = None


class ClaimedTimer(NamedTuple):
    """A timer this worker now holds a lease on (a tuple: thousands are made per second)."""

    topic: str
    timer_id: str
    token: str
    attempt: int
    due_ms: float
    envelope: bytes | str
    #: '' unless the previous delivery never reported back (its worker died or hung past
    #: the lease): then '!', or '*' when that delivery ran alone in its worker, so that it
    #: was this timer's own handler that ended it.
    mark: str = ""

    @property
    def suspect(self) -> bool:
        """Its previous delivery vanished: its handler may be what ends its worker."""
        return self.mark != ""

    @property
    def ended_its_worker(self) -> bool:
        """Its previous delivery ran alone and never reported back."""
        return self.mark == "*"


@attrs.frozen
class ClaimResult:
    """What one claim returned, with the server's clock so callers sleep for durations."""

    timers: list[ClaimedTimer]
    #: The server's clock (None when the topic was empty: the script did not read it).
    server_now_ms: float | None
    #: Score of the earliest timer left in the topic (a due time or a lease expiry).
    next_ms: float | None
    #: Whether Redis was over maxmemory: known (True or False) when this claim wrote or
    #: probed for it, else None.
    full: bool | None = None
    #: Redis had run this very request before (it was sent again after a timeout): these
    #: are the timers it leased then.
    replayed: bool = False
    #: Some of the timers are suspects (their `mark` says so).
    suspects: bool = False


@attrs.define
class Written:
    """What a write did: the topics whose earliest timer changed (a wake-up was published),
    and, when asked for, each timer's due time as Redis computed it, with Redis's now."""

    woke: set[str] = attrs.Factory(set)
    #: Due ms of the timers of each topic, in the order written.
    due_ms: dict[str, list[float]] = attrs.Factory(dict)
    server_now_ms: float | None = None


@attrs.frozen
class StoredTimer:
    """A timer as stored, for inspection."""

    envelope: bytes | str
    score_ms: float
    server_now_ms: float
    attempts: int
    leased: bool


@attrs.frozen
class Op:
    """One script call: which script, on which keys, with which arguments."""

    kind: str
    topic: str
    script: str
    keys: tuple[str, ...]
    args: tuple[str | int | bytes, ...]


def chunks(items: Sequence[Any], size: int) -> list[Sequence[Any]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


class Batch:
    """Operations on timers gathered for one pipelined round trip (`TimerStore.execute`).

    Its claims carry a request id of their own, so that the batch can be sent again after
    a timeout: Redis answers a claim it already ran with the timers it leased then.
    """

    def __init__(self, store: TimerStore, claimer: str | None = None) -> None:
        self._store = store
        self.ops: list[Op] = []
        self.claimer = claimer or new_claimer_id()
        # Unique per claimer, which is all a request id needs to be. (A counter, not
        # os.urandom: that releases the GIL, and the poller would wait for it to come back
        # from the handler threads on every round trip.)
        self.request = str(next(_REQUEST_IDS))

    def __bool__(self) -> bool:
        return bool(self.ops)

    @property
    def settles(self) -> bool:
        """True when the batch carries outcomes of deliveries (not just claims/renewals)."""
        return any(op.kind not in ("claim", "extend", "solo") for op in self.ops)

    def _add(self, kind: str, topic: str, script: str, keys: tuple[str, ...], args: Any) -> None:
        self.ops.append(Op(kind, topic, script, keys, tuple(args)))

    def claim(self, topic: str, lease_ms: int, limit: int, probe_full: bool = False) -> None:
        """Lease up to `limit` due timers (ClaimResult); `probe_full` asks whether Redis is
        still full even when nothing is due."""
        k = self._store.keys(topic)
        keys = (k.due, k.body, k.lease, k.attempts, k.seq,
                self._store.claim_record_key(topic, self.claimer))
        limit = min(limit, defaults.CLAIM_BATCH_MAX)
        args = (lease_ms, limit, self.request, "1" if probe_full else "0")
        self._add("claim", topic, "claim", keys, args)

    def ack(self, topic: str, items: Sequence[tuple[str, str, float | None]]) -> None:
        """Settle delivered timers: (id, token, next due ms) triples, where a next due time
        (of a periodic timer) moves the timer there and None removes it (stale ids)."""
        k = self._store.keys(topic)
        for chunk in chunks(items, defaults.SETTLE_BATCH_MAX):
            records = "\x1e".join(
                f"{timer_id}\x1f{token}\x1f" + ("" if next_ms is None else repr(float(next_ms)))
                for timer_id, token, next_ms in chunk
            )
            self._add("ack", topic, "ack", (k.due, k.body, k.lease, k.attempts), (k.wake, records))

    def retry(self, topic: str, items: Sequence[tuple[str, str, int]]) -> None:
        """Deliver again after a delay: (id, token, delay ms) triples (stale ids)."""
        self._retry("retry", topic, items, uncount=False)

    def release(self, topic: str, items: Sequence[tuple[str, str, str]]) -> None:
        """Hand back leases of deliveries that never started: due now, attempt not counted:
        (id, token, mark) triples, where a suspect's mark ('!' or '*') stays with it."""
        self._retry("release", topic, items, uncount=True)

    def solo(self, topic: str, lease_ms: int, timer_id: str, token: str) -> None:
        """Mark a suspect's delivery as running alone (its new token, or '' if lost)."""
        k = self._store.keys(topic)
        self._add("solo", topic, "solo", (k.due, k.lease), (lease_ms, timer_id, token))

    def _retry(
        self, kind: str, topic: str, items: Sequence[tuple[str, str, int | str]], uncount: bool
    ) -> None:
        k = self._store.keys(topic)
        for chunk in chunks(items, defaults.SETTLE_BATCH_MAX):
            args = [k.wake, "1" if uncount else "0", *(part for item in chunk for part in item)]
            self._add(kind, topic, "retry", (k.due, k.lease, k.attempts), args)

    def extend(self, topic: str, lease_ms: int, items: Sequence[tuple[str, str]]) -> None:
        """Renew leases of running handlers: (id, token) pairs ((id, token) of lost leases)."""
        k = self._store.keys(topic)
        for chunk in chunks(items, defaults.SETTLE_BATCH_MAX):
            args = [lease_ms, *(part for item in chunk for part in item)]
            self._add("extend", topic, "extend", (k.due, k.lease), args)

    def bury(self, topic: str, items: Sequence[tuple[str, str, str]]) -> None:
        """Move to dead letters: (id, token, record JSON) triples (stale ids)."""
        k = self._store.keys(topic)
        keys = (k.due, k.body, k.lease, k.attempts, k.dead, k.dead_body)
        for chunk in chunks(items, defaults.SETTLE_BATCH_MAX):
            self._add("bury", topic, "bury", keys, [part for item in chunk for part in item])


class TimerStore:
    """Timers of one namespace in one Redis: schedule, claim, settle, inspect."""

    def __init__(self, client: redis.Redis, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.topics_key = f"{namespace}:topics"
        self._keys: dict[str, TopicKeys] = {}
        #: Redis's clock minus this machine's, in ms, as of the last claim.
        self.clock_offset_ms = 0.0

    def server_now_ms(self) -> float:
        """An estimate of the Redis server's now, from the clock offset seen at claims."""
        return time.time() * 1000 + self.clock_offset_ms

    def keys(self, topic: str) -> TopicKeys:
        """The keys of `topic` (cached: they are built on every round trip)."""
        keys = self._keys.get(topic)
        if keys is None:
            keys = self._keys[topic] = TopicKeys.of(self.namespace, topic)
        return keys

    def batch(self, claimer: str | None = None) -> Batch:
        """A batch of operations; its claims are `claimer`'s (a new id when None)."""
        return Batch(self, claimer)

    def schedule_many(
        self, entries_by_topic: Mapping[str, Sequence[ScheduleEntry]], with_due: bool = False
    ) -> Written:
        """Write timers of several topics (a same id replaces): a script call per chunk of
        SCHEDULE_BATCH_MAX timers, SCHEDULE_CALLS_PER_ROUND_TRIP calls per pipelined round
        trip. With `with_due`, the scripts also say each timer's due time (bulk writes
        skip formatting them).

        Every chunk is encoded before the first is sent, and each is written whole or not
        at all (one script call). The first round trip that fails ends the write: it
        raises WriteFailed, saying which timers were written.
        """
        calls = [
            call
            for topic, entries in entries_by_topic.items()
            for call in self._schedule_ops(topic, entries, with_due)
        ]
        written = Written()
        new_topics: set[str] = set()
        ids: list[str] = []
        step = defaults.SCHEDULE_CALLS_PER_ROUND_TRIP
        for start in range(0, len(calls), step):
            group = calls[start : start + step]
            try:
                replies = self.run([op for op, _ids in group], raise_on_error=False)
            except redis.RedisError as exc:  # no answer: the group may or may not be written
                sent = [i for _op, group_ids in group for i in group_ids]
                raise WriteFailed(exc, ids, _ids_of(calls[start + step :]), sent) from exc
            refused: Exception | None = None
            unwritten: list[str] = []
            for (op, op_ids), reply in zip(group, replies, strict=True):
                if isinstance(reply, Exception):
                    refused = refused or reply
                    unwritten += op_ids
                    continue
                ids += op_ids
                if reply[0]:
                    written.woke.add(op.topic)
                if reply[2]:
                    new_topics.add(op.topic)
                if with_due:
                    due = written.due_ms.setdefault(op.topic, [])
                    due += [float(d) for d in text(reply[1]).split(",")]
                    written.server_now_ms = float(reply[3])
            if refused is not None:
                unwritten += _ids_of(calls[start + step :])
                raise WriteFailed(refused, ids, unwritten, []) from refused
        if new_topics:
            # Only when a topic had no pending timer: a set of topics written on every call
            # would cost each set_timer a command, and on a cluster a second node.
            try:
                self.client.sadd(self.topics_key, *sorted(new_topics))
            except redis.RedisError as exc:
                raise WriteFailed(exc, ids, [], []) from exc
        return written

    def _schedule_ops(
        self, topic: str, entries: Sequence[ScheduleEntry], with_due: bool
    ) -> list[tuple[Op, list[str]]]:
        k = self.keys(topic)
        keys = (k.due, k.body, k.lease, k.attempts, k.dead, k.dead_body)
        flag = "1" if with_due else "0"
        calls = []
        for chunk in chunks(entries, defaults.SCHEDULE_BATCH_MAX):
            records = "\x1e".join(
                f"{e.timer_id}\x1fat\x1f{e.at_ms!r}\x1f{e.envelope}"
                if e.at_ms is not None
                else f"{e.timer_id}\x1fin\x1f{float(e.delay_ms or 0)!r}\x1f{e.envelope}"
                for e in chunk
            )
            # Encoded here, before anything is sent: a string that cannot be encoded must
            # fail the whole call, not a chunk halfway through it.
            op = Op("schedule", topic, "schedule", keys, (k.wake, records.encode(), flag))
            calls.append((op, [e.timer_id for e in chunk]))
        return calls

    def cancel(self, topic: str, timer_id: str) -> bool:
        """Remove a timer; True if it existed."""
        k = self.keys(topic)
        ops = [Op("cancel", topic, "cancel", (k.due, k.body, k.lease, k.attempts), (timer_id,))]
        return bool(self.run(ops)[0])

    def inspect(self, topic: str, timer_id: str) -> StoredTimer | None:
        """A stored timer and the server's now, read by one script (it works in a full
        Redis, where a MULTI is refused)."""
        k = self.keys(topic)
        op = Op("get", topic, "get", (k.due, k.body, k.lease, k.attempts), (timer_id,))
        now, score, envelope, leased, attempts = self.run([op])[0]
        if not score or envelope is None:
            return None
        return StoredTimer(
            envelope=envelope,
            score_ms=float(score),
            server_now_ms=float(now),
            attempts=int(attempts or 0),
            leased=bool(leased),
        )

    def server_time_ms(self) -> float:
        """The Redis server's clock, in ms since the epoch (one round trip)."""
        seconds, micros = self.client.time()
        return int(seconds) * 1000 + int(micros) / 1000

    def claim_record_key(self, topic: str, claimer: str) -> str:
        """Where a claimer's last claim of `topic` is kept, to answer it again (claim.lua)."""
        return f"{self.keys(topic).seq[:-3]}claim:{claimer}"

    def execute(self, batch: Batch) -> list[Any]:
        """Run a batch in one round trip: a ClaimResult per claim, stale ids per settle."""
        replies = self.run(batch.ops)
        results: list[Any] = []
        received_ms = time.time() * 1000
        for op, reply in zip(batch.ops, replies, strict=True):
            if op.kind == "claim":
                claim = _claim_result(op.topic, reply)
                if claim.server_now_ms is not None:
                    self.clock_offset_ms = claim.server_now_ms - received_ms
                results.append(claim)
            elif op.kind == "solo":
                results.append(text(reply))
            else:
                results.append([text(x) for x in reply])
        return results

    def run(self, ops: Sequence[Op], raise_on_error: bool = True) -> list[Any]:
        """EVALSHA every op in one pipeline; load scripts on NOSCRIPT. With `raise_on_error`
        false, an op Redis refused has its error as its reply."""
        pipe: Any = self.client.pipeline(transaction=False)
        for op in ops:
            sha = _SCRIPTS[op.script][1]
            pipe.execute_command("EVALSHA", sha, len(op.keys), *op.keys, *op.args)
        replies = pipe.execute(raise_on_error=False)
        missing = [i for i, r in enumerate(replies[: len(ops)]) if isinstance(r, NoScriptError)]
        if missing:
            # A NOSCRIPT reply means that script did not run at all: run just those again.
            self.load_scripts()
            retry: Any = self.client.pipeline(transaction=False)
            for i in missing:
                op = ops[i]
                source = _SCRIPTS[op.script][0]
                retry.execute_command("EVAL", source, len(op.keys), *op.keys, *op.args)
            for i, reply in zip(missing, retry.execute(raise_on_error=False), strict=True):
                replies[i] = reply
        if raise_on_error:
            for reply in replies:
                if isinstance(reply, Exception):
                    raise reply
        return list(replies)

    def hold_for_fork(self) -> list[Any]:
        """Take the connection pool's locks before os.fork(), so that no other thread holds
        them in the child (redis-py resets the pool there under those locks, and would wait
        for ever for a lock whose holder does not exist in the child). Returns what was
        taken, to give to `release_after_fork` in the parent and in the child.
        """
        pool = getattr(self.client, "connection_pool", None)
        held = []
        for name in ("_fork_lock", "_lock"):
            lock = getattr(pool, name, None)
            if lock is not None and lock.acquire(timeout=5):
                held.append(lock)
        return held

    @staticmethod
    def release_after_fork(held: list[Any]) -> None:
        for lock in reversed(held):
            lock.release()

    def load_scripts(self) -> None:
        """Load every script into Redis's script cache (one round trip)."""
        pipe: Any = self.client.pipeline(transaction=False)
        for source, _sha in _SCRIPTS.values():
            pipe.execute_command("SCRIPT", "LOAD", source)
        pipe.execute()


def _claim_result(topic: str, reply: list[Any]) -> ClaimResult:
    timers = []
    for item in reply[4:]:
        raw = item if isinstance(item, bytes) else item.encode()  # lengths count bytes
        token, attempt, due, length, rest = raw.split(b"\x1f", 4)
        size = int(length)
        envelope: bytes | str = rest[size:] if raw is item else rest[size:].decode()
        timers.append(
            ClaimedTimer(
                topic, rest[:size].decode(), token.decode(), int(attempt), float(due), envelope
            )
        )
    marks = text(reply[3])
    if marks:  # suspects: "<place><mark>" each, places counted from 1
        for entry in marks.split(","):
            place = int(entry[:-1]) - 1
            timers[place] = timers[place]._replace(mark=entry[-1])
    flags = text(reply[2])
    return ClaimResult(
        timers, float(reply[0]) if reply[0] else None, float(reply[1]) if reply[1] else None,
        full=True if "F" in flags else False if "M" in flags else None, replayed="R" in flags,
        suspects=bool(marks),
    )


def _ids_of(calls: Sequence[tuple[Op, list[str]]]) -> list[str]:
    return [timer_id for _op, ids in calls for timer_id in ids]


_REQUEST_IDS = itertools.count(1)


def new_claimer_id() -> str:
    """An id for one claiming worker (a poller, a run_pending call): its claims are kept
    under a key of their own, so that no other worker's claim overwrites them."""
    return os.urandom(6).hex()


class WriteFailed(Exception):
    """Redis failed while timers were being written: `written` ids it confirmed,
    `unwritten` ids it refused or never received, `unconfirmed` ids it received without
    answering (they may or may not be written). `cause` is Redis's error."""

    def __init__(
        self,
        cause: Exception,
        written: Sequence[str],
        unwritten: Sequence[str],
        unconfirmed: Sequence[str],
    ) -> None:
        super().__init__(str(cause))
        self.cause = cause
        self.written = tuple(written)
        self.unwritten = tuple(unwritten)
        self.unconfirmed = tuple(unconfirmed)
