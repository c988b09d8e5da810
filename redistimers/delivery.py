"""One delivery: decode the payload, call the handler, turn what happened into an outcome.

This is DESIGN.md's table "Outcomes of a delivery" in code; it does no I/O, so the
threaded poller and `run_pending` share it and settle outcomes their own way.
"""

from __future__ import annotations

import json
import logging
import math
import traceback
from typing import Any, Literal

import attrs

from .codec import EnvelopeError, decode_envelope, structure_payload
from .errors import RejectTimer, RetryTimer
from .models import Delivery
from .retry import RetryPolicy
from .router import HandlerSpec
from .store import Batch, ClaimedTimer
from .validation import datetime_of_ms

log = logging.getLogger("redistimers.delivery")

#: Longest traceback summary kept with a dead letter, in characters.
MAX_TRACEBACK_CHARS = 4000

OutcomeKind = Literal["ack", "reject", "retry", "bury", "release"]


@attrs.frozen
class Outcome:
    """What to do with a delivered timer: remove it, try it again later, or bury it."""

    kind: OutcomeKind
    delay_ms: int = 0
    #: For "bury": the dead-letter record (JSON).
    record: str = ""


ACK = Outcome("ack")
REJECT = Outcome("reject")
RELEASE = Outcome("release")


def log_extra(timer: ClaimedTimer) -> dict[str, Any]:
    """The `extra` fields of every delivery-level log record."""
    return {"topic": timer.topic, "timer_id": timer.timer_id, "attempt": timer.attempt}


def dead_record(timer: ClaimedTimer, reason: str, exc: BaseException | None) -> str:
    """The dead-letter record of a timer: its envelope as stored, why it died, and when."""
    envelope = timer.envelope.decode() if isinstance(timer.envelope, bytes) else timer.envelope
    error: dict[str, Any] = {"reason": reason}
    if exc is not None:
        error["type"] = type(exc).__qualname__
        error["message"] = str(exc)
        summary = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error["traceback"] = summary[-MAX_TRACEBACK_CHARS:]
    return json.dumps(
        {"envelope": envelope, "error": error, "attempts": timer.attempt, "due_ms": timer.due_ms},
        separators=(",", ":"),
        ensure_ascii=False,
    )


def failure_outcome(
    timer: ClaimedTimer, exc: BaseException, policy: RetryPolicy, delay: float | None = None
) -> Outcome:
    """A handler raised (or asked for a retry after `delay`): deliver again after that delay
    or the policy's backoff, or bury once the policy's attempts are used up."""
    extra = log_extra(timer)
    if policy.exhausted(timer.attempt):
        log.error(
            "timer %s/%s failed on attempt %d of %d, moved to dead letters: %r",
            timer.topic, timer.timer_id, timer.attempt, policy.max_attempts, exc,
            exc_info=exc, extra=extra,
        )
        return Outcome("bury", record=dead_record(timer, "failed", exc))
    if delay is not None:
        log.info(
            "timer %s/%s asked to be retried in %.3fs",
            timer.topic, timer.timer_id, delay, extra=extra,
        )
        return Outcome("retry", delay_ms=math.ceil(delay * 1000))
    delay = policy.delay(timer.attempt)
    log.warning(
        "timer %s/%s failed on attempt %d, retrying in %.2fs: %r",
        timer.topic, timer.timer_id, timer.attempt, delay, exc,
        exc_info=exc, extra=extra,
    )
    return Outcome("retry", delay_ms=math.ceil(delay * 1000))


def deliver(spec: HandlerSpec, timer: ClaimedTimer, default_retry: RetryPolicy) -> Outcome:
    """Run `spec`'s handler for `timer` and say what should become of the timer."""
    policy = spec.retry or default_retry
    extra = log_extra(timer)
    if timer.attempt > policy.max_attempts:
        # Earlier deliveries ended without an outcome: their workers died mid-handler.
        log.error(
            "timer %s/%s reached attempt %d of %d after lost deliveries, moved to dead letters",
            timer.topic, timer.timer_id, timer.attempt, policy.max_attempts, extra=extra,
        )
        return Outcome("bury", record=dead_record(timer, "lease expired", None))
    try:
        envelope = decode_envelope(timer.envelope)
        payload = structure_payload(envelope.payload, spec.payload_type)
    except EnvelopeError as exc:
        log.error(
            "timer %s/%s cannot be decoded, moved to dead letters: %s",
            timer.topic, timer.timer_id, exc, extra=extra,
        )
        return Outcome("bury", record=dead_record(timer, "undecodable", exc))
    try:
        if spec.takes_delivery:
            delivery = Delivery(
                topic=timer.topic,
                timer_id=timer.timer_id,
                attempt=timer.attempt,
                due_at=datetime_of_ms(timer.due_ms),
                headers=envelope.headers,
                correlation_id=envelope.correlation_id,
            )
            spec.func(payload, delivery)
        else:
            spec.func(payload)
    except RetryTimer as request:
        return failure_outcome(timer, request, policy, delay=request.delay)
    except RejectTimer as rejection:
        log.warning(
            "timer %s/%s rejected by its handler and removed: %s",
            timer.topic, timer.timer_id, rejection, extra=extra,
        )
        return REJECT
    except Exception as exc:
        return failure_outcome(timer, exc, policy)
    return ACK


def settle(batch: Batch, outcomes: list[tuple[ClaimedTimer, Outcome]]) -> None:
    """Add the Redis operations that carry out `outcomes` to `batch`, grouped per topic."""
    groups: dict[tuple[str, str], list[tuple[ClaimedTimer, Outcome]]] = {}
    for timer, outcome in outcomes:
        kind: str = "ack" if outcome.kind == "reject" else outcome.kind
        groups.setdefault((timer.topic, kind), []).append((timer, outcome))
    for (topic, kind), items in groups.items():
        if kind == "ack":
            batch.ack(topic, [(t.timer_id, t.token) for t, _ in items])
        elif kind == "retry":
            batch.retry(topic, [(t.timer_id, t.token, o.delay_ms) for t, o in items])
        elif kind == "release":
            batch.release(topic, [(t.timer_id, t.token) for t, _ in items])
        else:
            batch.bury(topic, [(t.timer_id, t.token, o.record) for t, o in items])
