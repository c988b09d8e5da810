"""When a failed delivery is tried again, and when it is given up for dead letters."""

from __future__ import annotations

import datetime as dt

import attrs
import tenacity

from . import defaults


def _seconds(value: float | dt.timedelta) -> float:
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


def _positive(instance: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not value > 0:
        raise ValueError(f"RetryPolicy.{attribute.name} must be > 0, got {value!r}")


@attrs.frozen
class RetryPolicy:
    """Exponential backoff for handlers that raise: `initial * factor ** (attempt - 1)`
    seconds, capped at `maximum`; with `jitter`, a uniformly random wait up to that
    ("full jitter"), so that failures of many timers do not retry in step.
    """

    max_attempts: int = attrs.field(default=defaults.RETRY_MAX_ATTEMPTS)
    initial: float = attrs.field(
        default=defaults.RETRY_INITIAL, converter=_seconds, validator=_positive
    )
    factor: float = attrs.field(default=defaults.RETRY_FACTOR)
    maximum: float = attrs.field(
        default=defaults.RETRY_MAXIMUM, converter=_seconds, validator=_positive
    )
    jitter: bool = True

    @max_attempts.validator
    def _check_max_attempts(self, attribute: attrs.Attribute[int], value: int) -> None:
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"RetryPolicy.max_attempts must be an int >= 1, got {value!r}")

    @factor.validator
    def _check_factor(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not value >= 1:
            raise ValueError(f"RetryPolicy.factor must be >= 1, got {value!r}")

    def exhausted(self, attempt: int) -> bool:
        """True when the delivery numbered `attempt` was the last one allowed."""
        return attempt >= self.max_attempts

    def delay(self, attempt: int) -> float:
        """Seconds to wait after delivery number `attempt` (1 for the first) failed."""
        wait_cls = tenacity.wait_random_exponential if self.jitter else tenacity.wait_exponential
        wait = wait_cls(multiplier=self.initial, max=self.maximum, exp_base=self.factor)
        state = tenacity.RetryCallState(retry_object=None, fn=None, args=(), kwargs={})  # type: ignore[arg-type]
        state.attempt_number = max(1, attempt)
        return float(wait(state))
