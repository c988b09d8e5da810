"""Periodic timers: a fixed-rate grid (`every`) or a cron expression, and their next time.

After each successful delivery the same timer moves to its next occurrence, computed
from the schedule (never from when the delivery happened), and later than now: missed
occurrences are skipped, not fired in a burst.
"""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

import attrs

from .errors import InvalidTimerError
from .validation import seconds_of

#: Shortest period accepted.
MIN_EVERY_MS = 1.0


@attrs.frozen
class Period:
    """How a periodic timer repeats: every `every_ms` on a grid from its first due time,
    or at the times of a cron expression in time zone `tz`."""

    every_ms: float | None = None
    cron: str | None = None
    tz: str = "UTC"

    def next_after(self, ref_ms: float, anchor_ms: float | None) -> float:
        """The first occurrence strictly after `ref_ms` (epoch ms, the server's clock)."""
        if self.every_ms is not None:
            base = ref_ms if anchor_ms is None else anchor_ms
            return base + (math.floor((ref_ms - base) / self.every_ms) + 1) * self.every_ms
        assert self.cron is not None
        croniter = _croniter()
        zone = _zone(self.tz)
        start = dt.datetime.fromtimestamp(ref_ms / 1000, zone)
        return float(croniter(self.cron, start).get_next(float)) * 1000

    def occurrence_at(self, due_ms: float, anchor_ms: float | None) -> float:
        """The occurrence a delivery due at `due_ms` belongs to: the latest time of the
        schedule not after it. The same for an occurrence's retries (their due time is the
        retry's), and for a delivery whose worker died (due at the lost lease's expiry),
        as long as they stay before the next occurrence."""
        if self.every_ms is not None:
            if anchor_ms is None:
                return due_ms
            # Scores and the anchor are rounded apart (to the microsecond): a first
            # occurrence may sit a hair before the anchor it is.
            slack = min(1.0, self.every_ms / 2)
            return anchor_ms + math.floor((due_ms - anchor_ms + slack) / self.every_ms) * (
                self.every_ms
            )
        assert self.cron is not None
        croniter = _croniter()
        after = dt.datetime.fromtimestamp((due_ms + 1) / 1000, _zone(self.tz))
        return float(croniter(self.cron, after).get_prev(float)) * 1000

    def to_wire(self) -> dict[str, Any]:
        if self.every_ms is not None:
            return {"e": self.every_ms}
        return {"cron": self.cron, "tz": self.tz}

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Period | None:
        """The period stored in an envelope; ValueError when it cannot work."""
        if "e" in body:
            every_ms = float(body["e"])
            if not every_ms >= MIN_EVERY_MS:  # also refuses NaN
                raise ValueError(f"every must be at least {MIN_EVERY_MS} ms, got {every_ms}")
            return cls(every_ms=every_ms)
        if "cron" in body:
            return cls(cron=str(body["cron"]), tz=str(body.get("tz") or "UTC"))
        return None


def _croniter() -> Any:
    try:
        from croniter import croniter
    except ImportError as exc:  # the optional `cron` extra
        raise InvalidTimerError(
            "cron timers need the croniter package: pip install 'redistimers[cron]'"
        ) from exc
    return croniter


def _zone(name: str) -> dt.tzinfo:
    if name == "UTC":
        return dt.timezone.utc
    import zoneinfo

    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise InvalidTimerError(f"unknown time zone {name!r}") from exc


def _zone_name(tz: object) -> str:
    if tz is None or tz is dt.timezone.utc:
        return "UTC"
    if isinstance(tz, str):
        _zone(tz)
        return tz
    key = getattr(tz, "key", None)
    if isinstance(key, str):
        return key
    raise InvalidTimerError(
        f"tz must be a zoneinfo.ZoneInfo or a time zone name, got {type(tz).__name__}"
    )


def check_period(every: object, cron: object, tz: object) -> Period | None:
    """The period of a timer from set_timer's `every`, `cron` and `tz`, checked."""
    if every is not None and cron is not None:
        raise InvalidTimerError("give at most one of every and cron")
    if tz is not None and cron is None:
        raise InvalidTimerError("tz applies to cron timers only")
    if every is not None:
        every_ms = seconds_of(every, "every") * 1000
        if every_ms < MIN_EVERY_MS:
            raise InvalidTimerError(f"every must be at least 1 ms, got {every!r}")
        return Period(every_ms=every_ms)
    if cron is not None:
        if not isinstance(cron, str):
            raise InvalidTimerError(f"cron must be a str, got {type(cron).__name__}")
        croniter = _croniter()
        if not croniter.is_valid(cron):
            raise InvalidTimerError(f"cron expression {cron!r} is not valid")
        return Period(cron=cron, tz=_zone_name(tz))
    return None
