"""The checks of option values: each turns text into a value, or bad text into an
`argparse.ArgumentTypeError` whose message is one line. The flags use them, and so do
their environment variables (environment.py), so both refuse the same values alike."""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from typing import Any

from ..durations import parse_duration
from ..errors import InvalidTimerError
from ..inputs import header_pair, read_instant, read_json
from ..validation import check_namespace


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def port_number(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"{value} is not a port number (0 to 65535)")
    return value


def duration(text: str) -> dt.timedelta:
    """'90s', '15m', '2h', '7d', '1h30m', '250ms' or plain seconds."""
    try:
        return parse_duration(text)
    except InvalidTimerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def aware_datetime(text: str) -> dt.datetime:
    """ISO 8601 with a UTC offset or Z, read by the input adapter the HTTP API shares."""
    try:
        return read_instant(text)
    except InvalidTimerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def json_value(text: str) -> Any:
    """A JSON document; '@FILE' reads it from FILE and '@-' from stdin."""
    source = ""
    if text.startswith("@"):
        source = "stdin: " if text == "@-" else f"{text[1:]}: "
        try:
            if text == "@-":
                text = sys.stdin.read()
            else:
                with open(text[1:], encoding="utf-8") as file:
                    text = file.read()
        except OSError as exc:
            raise argparse.ArgumentTypeError(f"{source}cannot read it: {exc.strerror}") from None
    try:
        return read_json(text)
    except InvalidTimerError as exc:
        raise argparse.ArgumentTypeError(f"{source}{exc}") from None


def header(text: str) -> tuple[str, str]:
    try:
        return header_pair(text)
    except InvalidTimerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_duration(text: str) -> dt.timedelta:
    """A duration (as `duration` reads it) longer than zero."""
    value = duration(text)
    if not value:
        raise argparse.ArgumentTypeError(f"must be more than 0s, got {text!r}")
    return value


def namespace(text: str) -> str:
    """A namespace as the library takes it: non-empty, without braces."""
    try:
        return check_namespace(text)
    except InvalidTimerError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


#: The levels --log-level takes, lowest first.
LOG_LEVELS = ("debug", "info", "warning", "error")
#: The formats --log-format takes: lines for people, or one JSON object per line.
LOG_FORMATS = ("text", "json")


def _one_of(text: str, allowed: tuple[str, ...]) -> str:
    value = text.strip().lower()
    if value not in allowed:
        raise argparse.ArgumentTypeError(f"{text!r} is not one of {', '.join(allowed)}")
    return value


def log_level(text: str) -> str:
    """debug, info, warning or error, in any case."""
    return _one_of(text, LOG_LEVELS)


def log_format(text: str) -> str:
    """text or json, in any case."""
    return _one_of(text, LOG_FORMATS)


#: What a switch's variable (REDISTIMERS_VERBOSE, REDISTIMERS_INSECURE) may say.
TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


def boolean(text: str) -> bool:
    """A switch's variable: 1, true, yes or on; 0, false, no or off (any case)."""
    value = text.strip().lower()
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    raise argparse.ArgumentTypeError(
        f"{text!r} is not one of {', '.join(TRUE_WORDS + FALSE_WORDS)}"
    )


def host_name(text: str) -> str:
    """A host name or address to listen on: not blank."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be blank")
    return text
