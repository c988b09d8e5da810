"""One delivery: decode the payload, call the handler, turn what happened into an outcome.

This is the README's table of what a handler does and what becomes of its timer, in code;
it does no Redis I/O: the poller runs it, in its threads or in `run_pending`'s pass, and
settles the outcomes.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import time
import traceback
from collections.abc import Callable
from typing import Any, Literal, NamedTuple

import attrs

from .codec import Envelope, EnvelopeError, decode_envelope, structure_payload
from .errors import RejectTimer, RetryTimer
from .metrics import OUTCOME_NAMES
from .models import Delivery
from .retry import RetryPolicy
from .router import HandlerSpec
from .store import Batch, ClaimedTimer
from .validation import datetime_of_ms

log = logging.getLogger("redistimers.delivery")

#: Longest traceback summary kept with a dead letter, in characters.
MAX_TRACEBACK_CHARS = 4000

OutcomeKind = Literal["ack", "reject", "retry", "bury", "release"]


class Outcome(NamedTuple):
    """What to do with a delivered timer: remove it (or move a periodic one to its next
    occurrence), try it again later, hand it back, or bury it in the dead letters. (A
    NamedTuple: one is made per delivery, and a tuple is made in a fraction of the time.)"""

    kind: OutcomeKind
    delay_ms: int = 0
    #: For "bury": the dead-letter record (JSON).
    record: str = ""
    #: For "ack" of a periodic timer: when its next occurrence is due (epoch ms).
    next_ms: float | None = None
    #: The handler raised an exception (the outcome is then "retry" or "bury").
    failed: bool = False
    #: How late the delivery started, after its due time by Redis's clock, in seconds.
    lateness_s: float = 0.0
    #: How long the handler ran, in seconds.
    duration_s: float = 0.0


ACK = Outcome("ack")
REJECT = Outcome("reject")
RELEASE = Outcome("release")

_new_tuple = tuple.__new__


def _timed(outcome: Outcome, failed: bool, lateness_s: float, duration_s: float) -> Outcome:
    """`outcome` with a delivery's timing, made as a plain tuple is (a NamedTuple's own
    constructor costs a Python call and argument checks: a microsecond per delivery)."""
    kind, delay_ms, record, next_ms = outcome[:4]
    timed: Outcome = _new_tuple(
        Outcome, (kind, delay_ms, record, next_ms, failed, lateness_s, duration_s)
    )
    return timed


@attrs.frozen
class Hooks:
    """Optional callables told of outcomes, for users who wire their own metrics or
    alerts. They run in the handler's thread; one that raises is logged and ignored."""

    on_success: Callable[[Delivery], object] | None = None
    on_failure: Callable[[Delivery, BaseException], object] | None = None
    on_dead: Callable[[Delivery, str], object] | None = None

    def call(self, name: str, *args: Any) -> None:
        hook = getattr(self, name)
        if hook is None:
            return
        try:
            hook(*args)
        except BaseException:  # even SystemExit: a hook must not change a delivery's outcome
            delivery = args[0]
            log.exception(
                "%s hook %r raised; delivery goes on", name, hook,
                extra={
                    "topic": delivery.topic,
                    "timer_id": delivery.timer_id,
                    "attempt": delivery.attempt,
                },
            )


NO_HOOKS = Hooks()


def log_extra(timer: ClaimedTimer) -> dict[str, Any]:
    """The `extra` fields of the poller's log records about a timer."""
    return {"topic": timer.topic, "timer_id": timer.timer_id, "attempt": timer.attempt}


def dead_record(
    timer: ClaimedTimer,
    reason: str,
    exc: BaseException | None,
    attempts: int | None = None,
    message: str = "",
) -> str:
    """The dead-letter record of a timer: its envelope as stored, why it died (the error,
    or without one `message`), and when."""
    envelope = timer.envelope
    if isinstance(envelope, bytes):  # kept even when it is not UTF-8 (it may be why it died)
        envelope = envelope.decode(errors="backslashreplace")
    error: dict[str, Any] = {"reason": reason}
    if exc is None and message:
        error["message"] = _sendable(message)
    if exc is not None:
        error["type"] = type(exc).__qualname__
        error["message"] = _sendable(str(exc))
        summary = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        error["traceback"] = _sendable(summary[-MAX_TRACEBACK_CHARS:])
    return json.dumps(
        {
            "envelope": envelope,
            "error": error,
            "attempts": timer.attempt if attempts is None else attempts,
            "due_ms": timer.due_ms,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


def _sendable(text: str) -> str:
    """`text` as UTF-8 can carry it: an exception's message may hold lone surrogates,
    which would fail the write of the whole batch (shown escaped instead)."""
    if text.isascii():
        return text
    return text.encode("utf-8", "backslashreplace").decode()


class _Context:
    """What the outcome decisions of one delivery need, built once."""

    def __init__(
        self, timer: ClaimedTimer, policy: RetryPolicy, hooks: Hooks, envelope: Envelope | None,
        lateness_s: float = 0.0, started: float | None = None,
    ) -> None:
        self.timer = timer
        self.policy = policy
        self.hooks = hooks
        self.envelope = envelope
        self.lateness_s = lateness_s
        self.started = time.monotonic() if started is None else started
        self._delivery: Delivery | None = None

    def extra(self, kind: str, duration_s: float) -> dict[str, Any]:
        """The `extra` fields of every log record of a finished delivery."""
        timer = self.timer
        return {
            "topic": timer.topic, "timer_id": timer.timer_id, "attempt": timer.attempt,
            "outcome": OUTCOME_NAMES[kind], "lateness_ms": round(self.lateness_s * 1000, 3),
            "duration_ms": round(duration_s * 1000, 3),
        }

    def finish(self, outcome: Outcome, failed: bool = False) -> Outcome:
        """`outcome` with this delivery's timing; a success is logged at DEBUG (the other
        outcomes were logged as they were decided)."""
        duration = time.monotonic() - self.started
        if outcome.kind == "ack" and log.isEnabledFor(logging.DEBUG):
            timer = self.timer
            log.debug(
                "timer %s/%s delivered (attempt %d): %.1f ms late, handler took %.1f ms",
                timer.topic, timer.timer_id, timer.attempt, self.lateness_s * 1000,
                duration * 1000, extra=self.extra("ack", duration),
            )
        return _timed(outcome, failed, self.lateness_s, duration)

    @property
    def delivery(self) -> Delivery:
        if self._delivery is None:
            envelope = self.envelope
            self._delivery = Delivery(
                topic=self.timer.topic,
                timer_id=self.timer.timer_id,
                attempt=self.timer.attempt,
                due_at=datetime_of_ms(self.timer.due_ms),
                headers=envelope.headers if envelope else {},
                correlation_id=envelope.correlation_id if envelope else None,
                occurrence_at=self._occurrence_at(),
            )
        return self._delivery

    def _occurrence_at(self) -> dt.datetime | None:
        envelope = self.envelope
        if envelope is None or envelope.period is None:
            return None
        try:
            occurrence_ms = envelope.period.occurrence_at(self.timer.due_ms, envelope.anchor_ms)
        except Exception as exc:  # croniter missing here: the delivery says so when it ends
            log.debug("no occurrence time for %s/%s: %s", self.timer.topic,
                      self.timer.timer_id, exc, extra=log_extra(self.timer))
            return None
        return datetime_of_ms(occurrence_ms)

    def bury(
        self, reason: str, exc: BaseException | None, message: str, attempts: int | None = None
    ) -> Outcome:
        timer = self.timer
        log.error(
            "timer %s/%s moved to dead letters after attempt %d: %s",
            timer.topic, timer.timer_id, timer.attempt, message,
            exc_info=exc if reason == "failed" else None,
            extra=self.extra("bury", time.monotonic() - self.started),
        )
        if self.hooks.on_dead is not None:
            self.hooks.call("on_dead", self.delivery, message)
        return self.finish(
            Outcome("bury", record=dead_record(timer, reason, exc, attempts, message)),
            failed=reason == "failed",
        )

    def failed(self, exc: BaseException, delay: float | None = None) -> Outcome:
        """The handler raised (or asked for a retry after `delay`): deliver again after that
        delay or the policy's backoff, or bury once the policy's attempts are used up."""
        timer, policy = self.timer, self.policy
        if self.hooks.on_failure is not None and delay is None:  # RetryTimer is no failure
            self.hooks.call("on_failure", self.delivery, exc)
        if policy.exhausted(timer.attempt):
            return self.bury(
                "failed", exc, f"attempt {timer.attempt} of {policy.max_attempts} failed: {exc!r}"
            )
        failed = delay is None
        if delay is None:
            delay = policy.delay(timer.attempt)
            log.warning(
                "timer %s/%s failed on attempt %d, retrying in %.2fs: %r",
                timer.topic, timer.timer_id, timer.attempt, delay, exc,
                exc_info=exc, extra=self.extra("retry", time.monotonic() - self.started),
            )
        else:
            log.info(
                "timer %s/%s asked to be retried in %.3fs",
                timer.topic, timer.timer_id, delay,
                extra=self.extra("retry", time.monotonic() - self.started),
            )
        return self.finish(Outcome("retry", delay_ms=math.ceil(delay * 1000)), failed=failed)


def failure_outcome(
    timer: ClaimedTimer, exc: BaseException, policy: RetryPolicy, hooks: Hooks = NO_HOOKS
) -> Outcome:
    """The outcome of a delivery whose handler raised `exc` outside `deliver`."""
    return _Context(timer, policy, hooks, None).failed(exc)


def deliver(
    spec: HandlerSpec,
    timer: ClaimedTimer,
    default_retry: RetryPolicy,
    hooks: Hooks = NO_HOOKS,
    server_now_ms: Callable[[], float] | None = None,
) -> Outcome:
    """Run `spec`'s handler for `timer` and say what should become of the timer, and how
    late it started and how long it ran.

    `server_now_ms` estimates the Redis server's clock: for the lateness, and to place a
    periodic timer's next occurrence after now.
    """
    started = time.monotonic()
    late_ms = (server_now_ms() - timer.due_ms) if server_now_ms is not None else 0.0
    lateness_s = late_ms / 1000 if late_ms > 0 else 0.0
    policy = spec.retry or default_retry
    try:
        envelope = decode_envelope(timer.envelope)
    except (EnvelopeError, UnicodeDecodeError) as exc:
        context = _Context(timer, policy, hooks, None, lateness_s, started)
        return context.bury("undecodable", exc, str(exc))
    context = _Context(timer, policy, hooks, envelope, lateness_s, started)
    if timer.attempt > policy.max_attempts and timer.ended_its_worker:
        # Its last delivery ran alone and never reported back: its own handler ended (or
        # hung) its worker. A suspect whose last delivery ran beside others is not blamed
        # for their crash: the poller gives it one more delivery, alone.
        return context.bury(
            "lease expired", None,
            f"delivery {timer.attempt - 1} ran alone in its worker and never reported back "
            f"(the handler ended its worker, or hung past the lease); {policy.max_attempts} "
            "attempts are allowed",
            attempts=timer.attempt - 1,  # this claim started no delivery
        )
    try:
        payload = structure_payload(envelope.payload, spec.payload_type)
    except EnvelopeError as exc:
        return context.bury("undecodable", exc, str(exc))
    try:
        if spec.takes_delivery:
            spec.func(payload, context.delivery)
        else:
            spec.func(payload)
    except RetryTimer as request:
        return context.failed(request, delay=request.delay)
    except RejectTimer as rejection:
        if rejection.dead_letter:
            return context.bury("rejected", rejection, f"rejected by its handler: {rejection}")
        log.warning(
            "timer %s/%s rejected by its handler and removed: %s",
            timer.topic, timer.timer_id, rejection,
            extra=context.extra("reject", time.monotonic() - started),
        )
        return context.finish(REJECT)
    except Exception as exc:
        return context.failed(exc)
    if hooks.on_success is not None:
        hooks.call("on_success", context.delivery)
    if envelope.period is None:
        if log.isEnabledFor(logging.DEBUG):
            return context.finish(ACK)
        # The common case, inlined: a few calls fewer per delivery.
        timed: Outcome = _new_tuple(
            Outcome, ("ack", 0, "", None, False, lateness_s, time.monotonic() - started)
        )
        return timed
    try:
        now = server_now_ms() if server_now_ms is not None else timer.due_ms
        next_ms = envelope.period.next_after(max(now, timer.due_ms), envelope.anchor_ms)
    except Exception as exc:  # croniter missing in this worker, or a malformed period
        return context.bury("no next occurrence", exc, str(exc))
    return context.finish(Outcome("ack", next_ms=next_ms))


def settle(batch: Batch, outcomes: list[tuple[ClaimedTimer, Outcome]]) -> None:
    """Add the Redis operations that carry out `outcomes` to `batch`, grouped per topic."""
    groups: dict[tuple[str, str], list[tuple[ClaimedTimer, Outcome]]] = {}
    for timer, outcome in outcomes:
        kind: str = "ack" if outcome.kind == "reject" else outcome.kind
        groups.setdefault((timer.topic, kind), []).append((timer, outcome))
    for (topic, kind), items in groups.items():
        if kind == "ack":
            batch.ack(topic, [(t.timer_id, t.token, o.next_ms) for t, o in items])
        elif kind == "retry":
            batch.retry(topic, [(t.timer_id, t.token, o.delay_ms) for t, o in items])
        elif kind == "release":
            batch.release(topic, [(t.timer_id, t.token, t.mark) for t, _ in items])
        else:
            batch.bury(topic, [(t.timer_id, t.token, o.record) for t, o in items])
