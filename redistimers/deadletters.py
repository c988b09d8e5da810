"""Dead-letter records as stored, read back into `DeadTimer` values."""

from __future__ import annotations

import json
from typing import Any

from .codec import EnvelopeError, decode_envelope
from .models import DeadTimer
from .store import DeadRecord
from .validation import datetime_of_ms


def dead_timer_of(topic: str, dead: DeadRecord) -> DeadTimer:
    """The DeadTimer of a stored record; a record that does not parse is shown as such."""
    try:
        record: dict[str, Any] = json.loads(dead.record)
        error: dict[str, Any] = record.get("error") or {}
        raw_envelope = record.get("envelope", "")
    except (ValueError, AttributeError):
        record, error, raw_envelope = {}, {"reason": "unreadable dead letter"}, ""
    payload: Any = None
    headers: dict[str, str] = {}
    correlation_id = None
    try:
        envelope = decode_envelope(raw_envelope)
        payload, headers = envelope.payload, dict(envelope.headers)
        correlation_id = envelope.correlation_id
    except EnvelopeError:
        payload = raw_envelope  # the envelope itself may be what could not be decoded
    error_type = error.get("type")
    message = error.get("message")
    if error_type and message is not None:
        text = f"{error_type}: {message}"
    else:
        text = str(error_type or message or error.get("reason", "unknown"))
    return DeadTimer(
        topic=topic,
        timer_id=dead.timer_id,
        payload=payload,
        error=text,
        reason=str(error.get("reason", "unknown")),
        attempts=int(record.get("attempts") or 0),
        died_at=datetime_of_ms(dead.died_ms),
        error_type=error_type,
        traceback=error.get("traceback"),
        headers=headers,
        correlation_id=correlation_id,
    )
