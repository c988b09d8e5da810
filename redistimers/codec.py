"""Payloads and envelopes on the wire: JSON through cattrs, never pickle.

The envelope (version 1) is a compact JSON object, documented in the README so that
other languages can schedule timers::

    {"v": 1, "p": <payload>, "h": {"k": "v"}, "c": "<correlation id>", "t": <created ms>}

"h", "c" and "t" are left out when empty (the library writes no "t": a pending timer's
bytes are what a Redis holding millions of them is made of). A periodic timer adds
{"a": <anchor ms>, "e": <every ms>} (written first, so that the schedule script can fill
in "a") or {"cron": "<expr>", "tz": "<zone>"}.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from json import encoder as json_encoder
from json import scanner as json_scanner
from types import MappingProxyType
from typing import Any, NamedTuple

import cattrs
from cattrs.preconf.json import make_converter
from cattrs.v import format_exception

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
    created_ms: int | None = None
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
    created_ms: int | None = None,
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
            text = _dumps(_finish(body, period, headers, correlation_id, created_ms))
        except (TypeError, ValueError, RecursionError):
            pass
        else:
            return _utf8(topic, text)
    body["p"] = unstructure_payload(topic, payload, payload_type)
    _finish(body, period, headers, correlation_id, created_ms)
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
    created_ms: int | None,
) -> dict[str, Any]:
    """The envelope's fields after the payload."""
    if period is not None:
        body.update(period.to_wire())
    if headers:
        body["h"] = dict(headers)
    if correlation_id is not None:
        body["c"] = correlation_id
    if created_ms is not None:
        body["t"] = created_ms
    return body


#: One encoder for every envelope: json.dumps with options builds a new one per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _c_encoder() -> Callable[[Any, int], Sequence[str]] | None:
    """CPython's C encoder with _ENCODER's options, built once; None where there is none.

    JSONEncoder.encode builds this object anew on every call, a third of the cost of a
    small envelope. No circular-reference markers: markers shared between threads would
    report false cycles, and a real cycle still fails (RecursionError) before any write.
    """
    make = getattr(json_encoder, "c_make_encoder", None)
    if make is None:
        return None
    try:
        encoder: Callable[[Any, int], Sequence[str]] = make(
            None, _ENCODER.default, json_encoder.encode_basestring, None, ":", ",",
            False, False, False,
        )
        sample = {"v": 1, "p": [1, 1.5, "é\n", None, True, {"k": -2e300}]}
        if "".join(encoder(sample, 0)) != _ENCODER.encode(sample):
            return None
    except (TypeError, ValueError):  # another signature: keep the public way
        return None
    return encoder


_C_ENCODE = _c_encoder()


def _dumps(body: dict[str, Any]) -> str:
    if _C_ENCODE is not None:
        return "".join(_C_ENCODE(body, 0))
    return _ENCODER.encode(body)


#: json's scanner (C where there is one): (value, end) of the JSON text at an index.
_SCAN_JSON: Callable[[str, int], tuple[Any, int]] = json_scanner.make_scanner(
    json.JSONDecoder()  # type: ignore[arg-type]  # typeshed names the class, not a decoder
)


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
    created = body.get("t")
    anchor = body.get("a")
    try:
        period = Period.from_wire(body)
    except (TypeError, ValueError) as exc:
        raise EnvelopeError(f"envelope period is malformed: {exc}") from exc
    return Envelope(
        payload=body["p"],
        headers=headers,
        correlation_id=correlation_id,
        created_ms=created if isinstance(created, int) else None,
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
