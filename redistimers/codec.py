"""Payloads and envelopes on the wire: JSON through cattrs, never pickle.

The envelope (version 1) is a compact JSON object, documented in the README so that
other languages can schedule timers::

    {"v": 1, "p": <payload>, "h": {"k": "v"}, "c": "<correlation id>"}

"h" and "c" are left out when empty; a "t" (a creation time, in ms, written by older
versions) is ignored. A periodic timer adds
{"a": <anchor ms>, "e": <every ms>} (written first, so that the schedule script can fill
in "a") or {"cron": "<expr>", "tz": "<zone>"}.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, NamedTuple

import cattrs
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception

from ._json_speedups import c_encoder, c_scanner
from .errors import PayloadTypeError
from .periodic import Period
from .validation import lone_surrogate

ENVELOPE_VERSION = 1

converter = make_converter()


class EnvelopeError(ValueError):
    """A stored envelope or payload cannot be decoded."""


class Envelope(NamedTuple):
    """A timer's stored body: its payload in JSON form plus what travels with it.

    (A tuple: every delivery decodes one, and a frozen attrs class costs 2 µs more.)
    """

    payload: Any
    headers: Mapping[str, str] = MappingProxyType({})
    correlation_id: str | None = None
    period: Period | None = None
    #: Where an `every` grid starts: its first due time.
    anchor_ms: float | None = None


def type_name(payload_type: Any) -> str:
    """A readable name of a payload type, for error messages."""
    if isinstance(payload_type, type):
        return payload_type.__qualname__
    return repr(payload_type)


def _format_leaf(exc: BaseException, type_: Any) -> str:
    """cattrs' words for one bad field, plus the exception's own message (an attrs
    validator's reason, say), which cattrs leaves out."""
    text = format_exception(exc, type_)
    message = str(exc)
    return f"{text} ({message})" if message and message not in text else text


def _describe(exc: Exception) -> str:
    """What went wrong while (un)structuring, with cattrs' paths to the bad fields."""
    if isinstance(exc, cattrs.BaseValidationError):
        return "; ".join(cattrs.transform_error(exc, format_exception=_format_leaf))
    return str(exc) or type(exc).__name__


def _wrong_class(payload: Any, payload_type: Any) -> bool:
    """True when a plain class is asked for and the payload is not one (an int may stand
    for a float, a bool for neither). Generic aliases are checked by the round trip."""
    if not isinstance(payload_type, type):
        return False
    if isinstance(payload, bool) and payload_type in (int, float):
        return True
    if payload_type is float and type(payload) is int:
        return False
    return not isinstance(payload, payload_type)


def unstructure_payload(topic: str, payload: Any, payload_type: Any | None) -> Any:
    """The JSON form of a payload. With the topic's type known, it must be that type and
    must structure back into it, as a worker will do; else PayloadTypeError."""
    if payload_type is not None and _wrong_class(payload, payload_type):
        raise PayloadTypeError(
            f"payload for topic {topic!r} must be {type_name(payload_type)}, "
            f"got {type(payload).__name__}"
        )
    if payload_type is None:
        try:
            return converter.unstructure(payload)
        except Exception as exc:
            raise PayloadTypeError(
                f"payload for topic {topic!r} ({type(payload).__name__}) cannot be stored as "
                f"JSON: {_describe(exc)}"
            ) from exc
    try:
        raw = converter.unstructure(payload, unstructure_as=payload_type)
        converter.structure(raw, payload_type)
    except Exception as exc:
        raise PayloadTypeError(
            f"payload for topic {topic!r} does not match {type_name(payload_type)}: "
            f"{_describe(exc)}"
        ) from exc
    return raw


def encode_envelope(
    topic: str,
    payload: Any,
    payload_type: Any | None,
    headers: Mapping[str, str],
    correlation_id: str | None,
    period: Period | None = None,
    anchor_ms: float | None = None,
) -> str:
    """The envelope JSON of a new timer; raises PayloadTypeError before anything is written.

    For an `every` timer without `anchor_ms`, "a" is left null for the schedule script.
    """
    body: dict[str, Any] = {}
    if period is not None and period.every_ms is not None:
        body["a"] = anchor_ms
    body["v"] = ENVELOPE_VERSION
    if payload_type is None and type(payload) in _JSON_NATIVE:
        # Fast path: JSON-native payloads need no cattrs; anything else json refuses
        # goes the long way below.
        body["p"] = payload
        try:
            text = _dumps(_finish(body, period, headers, correlation_id))
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            return _utf8(topic, text)
    body["p"] = unstructure_payload(topic, payload, payload_type)
    _finish(body, period, headers, correlation_id)
    try:
        text = _dumps(body)
    except (TypeError, ValueError, RecursionError) as exc:
        raise PayloadTypeError(
            f"payload for topic {topic!r} ({type(payload).__name__}) cannot be stored as JSON: "
            f"{exc}"
        ) from exc
    return _utf8(topic, text)


def _utf8(topic: str, envelope: str) -> str:
    """`envelope`, refused with PayloadTypeError when it holds a lone surrogate, which
    UTF-8 cannot encode (headers and correlation ids are checked before)."""
    bad = lone_surrogate(envelope)
    if bad is not None:
        raise PayloadTypeError(
            f"payload for topic {topic!r} holds a string with a lone surrogate ({bad!r}), "
            "which cannot be encoded as UTF-8"
        )
    return envelope


_JSON_NATIVE = (dict, list, str, int, float, bool, type(None))


def _finish(
    body: dict[str, Any],
    period: Period | None,
    headers: Mapping[str, str],
    correlation_id: str | None,
) -> dict[str, Any]:
    """The envelope's fields after the payload."""
    if period is not None:
        body.update(period.to_wire())
    if headers:
        body["h"] = dict(headers)
    if correlation_id is not None:
        body["c"] = correlation_id
    return body


#: One encoder for every envelope: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


#: CPython's C encoder with _ENCODER's options, built once (JSONEncoder.encode builds it
#: anew on every call, a third of the cost of a small envelope); None where there is none.
_C_ENCODE = c_encoder(_ENCODER)


def _dumps(body: dict[str, Any]) -> str:
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(body, 0))
    return _ENCODER.encode(body)


_DECODER = json.JSONDecoder()
#: (value, end) of the JSON text at an index: CPython's C scanner alone where there is one
#: (as json.loads would call it, after two regex matches and three calls), else the
#: decoder's public raw_decode.
_SCAN_JSON = c_scanner(_DECODER) or _DECODER.raw_decode


def decode_envelope(raw: bytes | str) -> Envelope:
    """Parse a stored envelope; raises EnvelopeError when it is not a version-1 envelope."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
    except ValueError as exc:
        raise EnvelopeError(f"envelope is not valid JSON (not UTF-8): {exc}") from exc
    try:
        # The scanner alone, as json.loads would call it after two regex matches and
        # three calls: envelopes are written without surrounding whitespace.
        body, end = _SCAN_JSON(text, 0)
        if end != len(text):
            raise ValueError("extra data")
    except (StopIteration, ValueError):
        try:  # the long way, for json's own words about what is wrong
            body = json.loads(text)
        except ValueError as exc:
            raise EnvelopeError(f"envelope is not valid JSON: {exc}") from exc
    if not isinstance(body, dict) or "p" not in body:
        raise EnvelopeError("envelope is not a JSON object with a payload ('p')")
    if body.get("v") != ENVELOPE_VERSION:
        raise EnvelopeError(f"envelope version {body.get('v')!r} is not supported")
    headers = body.get("h") or {}
    correlation_id = body.get("c")
    if not isinstance(headers, dict) or not isinstance(correlation_id, (str, type(None))):
        raise EnvelopeError("envelope headers ('h') or correlation id ('c') are malformed")
    anchor = body.get("a")
    try:
        period = Period.from_wire(body)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"envelope period is malformed: {exc}") from exc
    return Envelope(
        payload=body["p"],
        headers=headers,
        correlation_id=correlation_id,
        period=period,
        anchor_ms=float(anchor) if isinstance(anchor, (int, float)) else None,
    )


def structure_payload(raw: Any, payload_type: Any | None) -> Any:
    """The payload in the handler's type; raises EnvelopeError when it no longer fits."""
    if payload_type is None:
        return raw
    try:
        return converter.structure(raw, payload_type)
    except Exception as exc:
        raise EnvelopeError(
            f"payload does not decode into {type_name(payload_type)}: {_describe(exc)}"
        ) from exc
