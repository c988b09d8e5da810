"""What a webhook's receiver answered: the WebhookResponse, and the seconds its Retry-After
asks to wait. At the bottom of the package: the client makes responses, the errors carry
them."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Mapping

import attrs


@attrs.frozen
class WebhookResponse:
    """What the receiver answered. `body` holds the first bytes of a non-2xx response's
    body; a 2xx response's body is not read (the status is all a timer needs)."""

    status: int
    reason: str
    #: Response headers, names in lower case (repeated ones joined with ", ").
    headers: Mapping[str, str]
    body: bytes = b""

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds a Retry-After header asks to wait (delta-seconds or an HTTP date), or None
    when it is missing or malformed."""
    if value is None:
        return None
    value = value.strip()
    if re.fullmatch(r"[0-9]{1,10}", value):
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.timezone.utc)
    now = now or dt.datetime.now(dt.timezone.utc)
    return max(0.0, (when - now).total_seconds())
