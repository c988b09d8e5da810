"""Text and JSON into what `set_timer` takes: the one input adapter of the command line,
the HTTP admin API and Python code holding JSON.

Durations read ``"90s"``, ``"1h30m"``, ``"250ms"``, ``"-5s"`` or a number of seconds;
times are ISO 8601 with a UTC offset or ``Z``. Each value is then judged by the check
`set_timer` itself runs (`check_due`, `check_period`, `check_timer_id`, `check_headers`,
`check_correlation_id`), called here once, so every front end refuses what Python
refuses, in its words. Refusals are `InputError` (an `InvalidTimerError`) naming the
`set_timer` argument at fault, and `PayloadTypeError` naming the payload's field path;
each front end words the field its own way (``--in``, ``"in"``).

Payloads follow one rule: JSON is converted to the topic's declared payload type without
coercion between JSON kinds. A string is never a number, a number with a fraction never an
int, a number never a bool, a bool never a number, an array never an object; an int is
fine for a float, as in Python. Nested attrs and dataclass fields follow the same rule.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import datetime as dt
import enum
import json
import math
import threading
import types
import typing
from collections.abc import Callable, Mapping
from typing import Any, Protocol, TypedDict, TypeVar

import attrs
import cattrs
from cattrs.preconf.json import make_converter

from .codec import converter as stored_form
from .codec import type_name
from .durations import parse_duration
from .errors import InvalidTimerError, PayloadTypeError
from .periodic import check_period
from .validation import check_correlation_id, check_due, check_headers, check_timer_id

__all__ = [
    "DueArgs",
    "InputError",
    "PayloadTypes",
    "TimerArgs",
    "due_args",
    "header_pair",
    "payload_as",
    "read_duration",
    "read_instant",
    "read_json",
    "timer_args",
    "topic_payload",
]

T = TypeVar("T")

_ISO_EXAMPLE = "like 2030-01-01T09:00:00Z or 2030-01-01T10:00:00+01:00"


class InputError(InvalidTimerError):
    """Input refused before anything is written; `field` is the `set_timer` argument it
    was for ("activate_in", "activate_at", "timer_id", "headers", "correlation_id",
    "every", "cron" or "tz"), for each front end to name in its own words."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class DueArgs(TypedDict, total=False):
    """When a timer is due, as `set_timer` and `reschedule` take it."""

    activate_in: dt.timedelta
    activate_at: dt.datetime


class TimerArgs(DueArgs, total=False):
    """The keyword arguments of `set_timer` besides the payload."""

    timer_id: str
    headers: dict[str, str]
    correlation_id: str | None
    every: dt.timedelta
    cron: str
    tz: str


# -- single values ------------------------------------------------------------------------


def read_duration(value: object) -> dt.timedelta:
    """A duration from text ("90s", "15m", "1h30m", "250ms", "42", "-5s") or a number of
    seconds; negative ones are read, for the checks that use them to refuse them."""
    if isinstance(value, str):
        text = value.strip()
        negative = text.startswith("-")
        unsigned = text[1:] if negative else text
        try:
            delta = parse_duration(unsigned)
        except InvalidTimerError as exc:  # in its words, naming all of `value`
            raise InvalidTimerError(str(exc).replace(repr(unsigned), repr(value))) from None
        return -delta if negative else delta
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InvalidTimerError(
            f"a duration is text like '90s' or a number of seconds, got {_kind(value)}"
        )
    if not math.isfinite(value):
        raise InvalidTimerError(f"duration {value!r} is not a finite number of seconds")
    try:
        return dt.timedelta(seconds=value)
    except OverflowError:
        raise InvalidTimerError(f"duration {value!r} is out of range") from None


def read_instant(value: object) -> dt.datetime:
    """An aware datetime from ISO 8601 with a UTC offset or Z; one without an offset is
    refused as ambiguous."""
    if not isinstance(value, str):
        raise InvalidTimerError(
            f"a time is ISO 8601 text with a UTC offset, {_ISO_EXAMPLE}; got {_kind(value)}"
        )
    text = value.strip()
    if text[-1:] in ("Z", "z"):
        text = text[:-1] + "+00:00"
    try:
        moment = dt.datetime.fromisoformat(text)
    except ValueError:
        raise InvalidTimerError(f"{value!r} is not an ISO 8601 time, {_ISO_EXAMPLE}") from None
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise InvalidTimerError(
            f"{value!r} has no UTC offset, so it is ambiguous; add one, like "
            f"{moment.isoformat()}+00:00 or {moment.isoformat()}Z"
        )
    return moment


def header_pair(text: str) -> tuple[str, str]:
    """A header written KEY=VALUE (the command line's form of it)."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise InvalidTimerError(f"{text!r} is not KEY=VALUE")
    return key, value


def read_json(text: str) -> Any:
    """A JSON document; NaN and Infinity, which JSON has not, are refused."""

    def refuse(constant: str) -> None:
        raise ValueError(f"{constant} is not JSON")

    try:
        return json.loads(text, parse_constant=refuse)
    except (ValueError, RecursionError) as exc:
        raise InvalidTimerError(f"invalid JSON: {exc}") from None


# -- set_timer's arguments ----------------------------------------------------------------


def _checked(field: str, given: object, check: Callable[[], T], shown: object = None) -> T:
    """`check()`, its InvalidTimerError raised as an InputError of `field`, with the value
    as it was given ('-5s', not a timedelta's repr) in its words."""
    try:
        return check()
    except InvalidTimerError as exc:
        message = str(exc)
        if shown is not None and given is not shown:
            message = message.replace(repr(shown), repr(given))
        raise InputError(field, message) from None


def _read(field: str, read: Callable[[object], T], value: object) -> T:
    try:
        return read(value)
    except InvalidTimerError as exc:
        raise InputError(field, str(exc)) from None


def due_args(*, activate_in: object = None, activate_at: object = None) -> DueArgs:
    """`activate_in` (a duration) or `activate_at` (an ISO 8601 time) as `set_timer` and
    `reschedule` take them, judged by `check_due`; exactly one must be given."""
    delay = None if activate_in is None else _read("activate_in", read_duration, activate_in)
    moment = None if activate_at is None else _read("activate_at", read_instant, activate_at)
    field = "activate_in" if activate_at is None else "activate_at"
    _checked(field, activate_in, lambda: check_due(delay, moment), delay)
    if delay is not None:
        return {"activate_in": delay}
    assert moment is not None  # check_due wants one of them
    return {"activate_at": moment}


def timer_args(
    *,
    activate_in: object = None,
    activate_at: object = None,
    timer_id: object = None,
    headers: object = None,
    correlation_id: object = None,
    every: object = None,
    cron: object = None,
    tz: object = None,
) -> TimerArgs:
    """`set_timer`'s keyword arguments from text or JSON (None is absent), each judged by
    `set_timer`'s own check; the due time may be left out for a periodic timer."""
    args = TimerArgs()
    if activate_in is not None or activate_at is not None or (every is None and cron is None):
        due = due_args(activate_in=activate_in, activate_at=activate_at)
        if "activate_in" in due:
            args["activate_in"] = due["activate_in"]
        else:
            args["activate_at"] = due["activate_at"]
    period = None if every is None else _read("every", read_duration, every)
    try:
        check_period(period, cron, tz)
    except InvalidTimerError as exc:
        message = str(exc)
        if period is not None:
            message = message.replace(repr(period), repr(every))
        raise InputError(_period_field(every, cron, tz), message) from None
    if period is not None:
        args["every"] = period
    if cron is not None:
        args["cron"] = typing.cast(str, cron)
    if tz is not None:
        args["tz"] = typing.cast(str, tz)
    if timer_id is not None:
        args["timer_id"] = _checked("timer_id", timer_id, lambda: check_timer_id(timer_id))
    args["headers"] = _checked("headers", headers, lambda: check_headers(headers))
    args["correlation_id"] = _checked(
        "correlation_id", correlation_id, lambda: check_correlation_id(correlation_id)
    )
    return args


def _period_field(every: object, cron: object, tz: object) -> str:
    """Which of every, cron and tz check_period refused, from which were given."""
    if every is not None and cron is not None:
        return "cron"
    if cron is None:
        return "every" if tz is None else "tz"
    if tz is None:
        return "cron"
    try:
        check_period(None, cron, None)
    except InvalidTimerError:
        return "cron"
    return "tz"


# -- payloads -----------------------------------------------------------------------------


def _kind(value: object) -> str:
    """What a JSON value is, for error messages: 'the string '5'', 'the number 5.7'."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"the bool {json.dumps(value)}"
    if isinstance(value, (int, float)):
        return f"the number {value!r}"
    if isinstance(value, str):
        shown = value if len(value) <= 40 else value[:37] + "..."
        return f"the string {shown!r}"
    if isinstance(value, Mapping):
        return "an object"
    if isinstance(value, (list, tuple)):
        return "an array"
    return f"a {type(value).__name__}"


def _integer(value: Any, _: Any) -> int:
    if type(value) is int:
        return value
    if type(value) is float and value.is_integer():
        return int(value)
    raise TypeError(f"expected an integer, got {_kind(value)}")


def _number(value: Any, _: Any) -> float:
    if type(value) in (int, float):
        return float(value)
    raise TypeError(f"expected a number, got {_kind(value)}")


def _text(value: Any, _: Any) -> str:
    if type(value) is str:
        return value
    raise TypeError(f"expected a string, got {_kind(value)}")


def _boolean(value: Any, _: Any) -> bool:
    if type(value) is bool:
        return value
    raise TypeError(f"expected true or false, got {_kind(value)}")


def _container(cls: Any) -> tuple[type, str] | None:
    """The JSON kind (Python type, name) a type is read from, when it is a container."""
    origin = typing.get_origin(cls) or cls
    if attrs.has(origin) or dataclasses.is_dataclass(origin):
        return dict, "an object"
    if not isinstance(origin, type) or issubclass(origin, (str, bytes, bytearray)):
        return None
    if issubclass(origin, Mapping):
        return dict, "an object"
    if issubclass(origin, (collections.abc.Sequence, collections.abc.Set)):
        return list, "an array"
    return None


def _is_union(cls: Any) -> bool:
    return typing.get_origin(cls) in (typing.Union, types.UnionType)


def _strict_converter() -> cattrs.Converter:
    """cattrs' JSON converter with every coercion between JSON kinds taken out."""
    strict = make_converter()
    for cls, hook in ((int, _integer), (float, _number), (str, _text), (bool, _boolean)):
        strict.register_structure_hook(cls, hook)
    building = threading.local()

    def in_progress() -> set[Any]:
        found: set[Any] | None = getattr(building, "types", None)
        if found is None:
            found = building.types = set()
        return found

    def guarded(cls: Any) -> bool:
        try:
            return _container(cls) is not None and cls not in in_progress()
        except TypeError:  # an unhashable type
            return False

    def kind_first(cls: Any) -> Callable[[Any, Any], Any]:
        """cattrs' own hook of a container type, behind a check of the JSON kind."""
        expected, name = _container(cls) or (object, "")
        in_progress().add(cls)
        try:
            base = _text_keys(strict, cls) or strict.get_structure_hook(cls, cache_result=False)
        finally:
            in_progress().discard(cls)

        def structure(value: Any, target: Any) -> Any:
            if not isinstance(value, expected):
                raise TypeError(f"expected {name}, got {_kind(value)}")
            return base(value, target)

        return structure

    def one_of(cls: Any) -> Callable[[Any, Any], Any]:
        """A union: the first member the value fits, in the order written."""
        members = typing.get_args(cls)
        hooks = [
            (member, strict.get_structure_hook(member))
            for member in members if member is not type(None)
        ]

        def structure(value: Any, _: Any) -> Any:
            if value is None and type(None) in members:
                return None
            for member, hook in hooks:
                try:
                    return hook(value, member)
                except Exception:  # the next member may fit
                    continue
            names = " or ".join("null" if m is type(None) else type_name(m) for m in members)
            raise TypeError(f"expected {names}, got {_kind(value)}")

        return structure

    def enum_member(cls: Any) -> Callable[[Any, Any], Any]:
        """An Enum from one of its values, of the same JSON kind (True is not 1)."""

        def structure(value: Any, _: Any) -> Any:
            for member in cls:
                if type(member.value) is type(value) and member.value == value:
                    return member
            values = ", ".join(json.dumps(m.value) for m in cls)
            raise ValueError(f"expected one of {values}, got {_kind(value)}")

        return structure

    strict.register_structure_hook_factory(_is_union, one_of)
    strict.register_structure_hook_factory(
        lambda cls: isinstance(cls, type) and issubclass(cls, enum.Enum), enum_member
    )
    strict.register_structure_hook_factory(guarded, kind_first)
    return strict


def _text_keys(strict: cattrs.Converter, cls: Any) -> Callable[[Any, Any], Any] | None:
    """For a mapping whose keys are not text (dict[int, X]): JSON keys are always text,
    so they are read as the key type reads its text form; the values strictly."""
    origin = typing.get_origin(cls) or cls
    args = typing.get_args(cls)
    if not (isinstance(origin, type) and issubclass(origin, Mapping)) or len(args) != 2:
        return None
    key_type, value_type = args
    if key_type in (str, Any):
        return None
    values = strict.get_structure_hook(dict[str, value_type])  # type: ignore[valid-type]

    def structure(value: Any, _: Any) -> Any:
        read = values(value, dict)
        keyed = {}
        for key, item in read.items():
            try:
                keyed[stored_form.structure(key, key_type)] = item
            except Exception as exc:
                raise ValueError(
                    f"key {key!r} does not read as {type_name(key_type)}"
                ) from exc
        return keyed

    return structure


_STRICT = _strict_converter()


def _paths(exc: BaseException) -> str:
    """Where the value went wrong and why: 'payload.amount_cents: expected an integer,
    got the string '5''."""

    def leaf(error: BaseException, _type: Any) -> str:
        if isinstance(error, KeyError):
            return "required field missing"
        return str(error) or type(error).__name__

    lines = cattrs.transform_error(exc, path="payload", format_exception=leaf)
    return "; ".join(
        f"{path}: {message}" for message, _, path in (line.rpartition(" @ ") for line in lines)
    )


def payload_as(raw: Any, payload_type: Any, topic: str) -> Any:
    """The JSON value `raw` as `payload_type`, without coercion between JSON kinds; what
    does not fit is PayloadTypeError naming the field path."""
    try:
        return _STRICT.structure(raw, payload_type)
    except Exception as exc:
        raise PayloadTypeError(
            f"payload for topic {topic!r} does not fit {type_name(payload_type)}: {_paths(exc)}"
        ) from None


class PayloadTypes(Protocol):
    """What knows the topics' payload types: a TimerScheduler."""

    def payload_type(self, topic: str) -> Any | None: ...


def topic_payload(scheduler: PayloadTypes, topic: str, raw: Any) -> Any:
    """The JSON payload in the topic's declared type, when this process has a typed handler
    for the topic (`payload_as`); else the JSON value as it is."""
    payload_type = scheduler.payload_type(topic)
    if payload_type is None:
        return raw
    return payload_as(raw, payload_type, topic)
