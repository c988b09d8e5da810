"""Operations on timers gathered for one pipelined round trip, and what claims return."""

from __future__ import annotations

import itertools
import os
from collections.abc import Sequence
from typing import Any, NamedTuple

import attrs

from .. import defaults
from .keys import Keys
from .scripts import Op, chunks, text


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



class Batch:
    """Operations on timers gathered for one pipelined round trip (`TimerStore.execute`).

    Its claims carry a request id of their own, so that the batch can be sent again after
    a timeout: Redis answers a claim it already ran with the timers it leased then.
    """

    def __init__(self, keys: Keys, claimer: str | None = None) -> None:
        self._keys = keys
        self.ops: list[Op] = []
        #: Set by `TimerStore.execute` when too few replicas confirmed the batch's writes.
        self.unreplicated: Exception | None = None
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
        k = self._keys.topic(topic)
        keys = (k.due, k.body, k.lease, k.attempts, k.seq,
                self._keys.claim_record(topic, self.claimer))
        limit = min(limit, defaults.CLAIM_BATCH_MAX)
        args = (lease_ms, limit, self.request, "1" if probe_full else "0")
        self._add("claim", topic, "claim", keys, args)

    def ack(self, topic: str, items: Sequence[tuple[str, str, float | None]]) -> None:
        """Settle delivered timers: (id, token, next due ms) triples, where a next due time
        (of a periodic timer) moves the timer there and None removes it (stale ids)."""
        k = self._keys.topic(topic)
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
        k = self._keys.topic(topic)
        self._add("solo", topic, "solo", (k.due, k.lease), (lease_ms, timer_id, token))

    def _retry(
        self, kind: str, topic: str, items: Sequence[tuple[str, str, int | str]], uncount: bool
    ) -> None:
        k = self._keys.topic(topic)
        for chunk in chunks(items, defaults.SETTLE_BATCH_MAX):
            args = [k.wake, "1" if uncount else "0", *(part for item in chunk for part in item)]
            self._add(kind, topic, "retry", (k.due, k.lease, k.attempts), args)

    def extend(self, topic: str, lease_ms: int, items: Sequence[tuple[str, str]]) -> None:
        """Renew leases of running handlers: (id, token) pairs ((id, token) of lost leases)."""
        k = self._keys.topic(topic)
        for chunk in chunks(items, defaults.SETTLE_BATCH_MAX):
            args = [lease_ms, *(part for item in chunk for part in item)]
            self._add("extend", topic, "extend", (k.due, k.lease), args)

    def bury(self, topic: str, items: Sequence[tuple[str, str, str]]) -> None:
        """Move to dead letters: (id, token, record JSON) triples (stale ids)."""
        k = self._keys.topic(topic)
        keys = (k.due, k.body, k.lease, k.attempts, k.dead, k.dead_body)
        for chunk in chunks(items, defaults.SETTLE_BATCH_MAX):
            self._add("bury", topic, "bury", keys, [part for item in chunk for part in item])


def claim_result(topic: str, reply: list[Any]) -> ClaimResult:
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



_REQUEST_IDS = itertools.count(1)



def new_claimer_id() -> str:
    """An id for one claiming worker (a poller, a run_pending call): its claims are kept
    under a key of their own, so that no other worker's claim overwrites them."""
    return os.urandom(6).hex()
