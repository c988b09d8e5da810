"""Durations written for people: "90s", "15m", "2h", "7d", "1h30m", "250ms" or plain seconds."""

from __future__ import annotations

import datetime as dt
import math
import re

from .errors import InvalidTimerError

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_duration(text: str) -> dt.timedelta:
    """A timedelta from "90s", "15m", "2h", "7d", "1h30m", "250ms" or "42" (seconds)."""
    if not isinstance(text, str):
        raise InvalidTimerError(f"a duration must be a str like '90s', got {type(text).__name__}")
    cleaned = text.strip().lower().replace(" ", "")
    try:
        seconds = float(cleaned)
    except ValueError:
        position, seconds = 0, 0.0
        for match in _PART.finditer(cleaned):
            if match.start() != position:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            position = match.end()
        if position != len(cleaned) or not cleaned:
            raise InvalidTimerError(
                f"duration {text!r} is not like '90s', '15m', '2h', '7d' or '1h30m'"
            ) from None
    if not math.isfinite(seconds) or seconds < 0:
        raise InvalidTimerError(f"duration {text!r} must be a finite number >= 0")
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:  # past timedelta's billion days
        raise InvalidTimerError(f"duration {text!r} is out of range") from None
