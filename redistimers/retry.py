"""When a failed delivery is tried again, and when it is given up for dead letters."""

from __future__ import annotations

import datetime as dt
import math
import random

import attrs

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
        """Seconds to wait after delivery number `attempt` (1 for the first) failed.

        Tenacity's wait_exponential / wait_random_exponential formula, computed here
        rather than through a made-up tenacity call state: an exponent past the cap is
        the cap (no huge power is computed), and jitter draws uniformly from 0 to it."""
        exponent = max(1, attempt) - 1
        if self.factor > 1 and exponent > math.log(self.maximum / self.initial, self.factor):
            capped = self.maximum
        else:
            capped = min(self.initial * self.factor**exponent, self.maximum)
        return random.uniform(0.0, capped) if self.jitter else float(capped)
