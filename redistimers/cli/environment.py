"""The environment variables of `redistimers` options, in one table: what a container or a
systemd unit sets instead of flags. A flag given on the command line wins over its
variable; an empty variable counts as unset; a variable is read with its flag's own check
(argtypes.py), and a bad value is a usage error naming the variable."""

from __future__ import annotations

import argparse
import datetime as dt
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .. import defaults
from . import argtypes
from .output import CliError

#: The commands that run until stopped, configured by the environment of a deployment.
RUNNING = ("worker", "serve")


@attrs.frozen
class Setting:
    """An option and its environment variable."""

    #: Where argparse keeps the option's value (None, or [], when the flag is not given).
    dest: str
    #: The flag as the help shows it (MODULE:ROUTER for the worker's positional).
    flag: str
    variable: str
    #: The flag's check, applied to the variable's text too.
    read: Callable[[str], Any]
    #: The value when neither the flag nor the variable gives one.
    default: Any = None
    #: The commands whose option this is (None: every command).
    commands: tuple[str, ...] | None = None
    #: A list of words, separated by commas or spaces in the variable (the routers).
    many: bool = False
    #: Whether a value must be given, by the flag or the variable.
    required: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("redis_url", "--redis-url", "REDIS_URL", str),
    Setting("namespace", "--namespace", "REDISTIMERS_NAMESPACE", argtypes.namespace),
    Setting("verbose", "-v/--verbose", "REDISTIMERS_VERBOSE", argtypes.boolean, False, RUNNING),
    Setting("log_level", "--log-level", "REDISTIMERS_LOG_LEVEL", argtypes.log_level, "info",
            RUNNING),
    Setting("log_format", "--log-format", "REDISTIMERS_LOG_FORMAT", argtypes.log_format, "text",
            RUNNING),
    Setting("routers", "MODULE:ROUTER", "REDISTIMERS_ROUTERS", str, [], ("worker",), many=True,
            required=True),
    Setting("concurrency", "--concurrency", "REDISTIMERS_CONCURRENCY", argtypes.positive_int,
            None, ("worker",)),
    Setting("shutdown_timeout", "--shutdown-timeout", "REDISTIMERS_SHUTDOWN_TIMEOUT",
            argtypes.duration, dt.timedelta(seconds=defaults.SHUTDOWN_TIMEOUT), ("worker",)),
    Setting("heartbeat_interval", "--heartbeat-interval", "REDISTIMERS_HEARTBEAT_INTERVAL",
            argtypes.positive_duration, dt.timedelta(seconds=defaults.HEARTBEAT_INTERVAL),
            ("worker",)),
    Setting("metrics_port", "--metrics-port", "REDISTIMERS_METRICS_PORT",
            argtypes.port_number, None, ("worker",)),
    Setting("metrics_host", "--metrics-host", "REDISTIMERS_METRICS_HOST", argtypes.host_name,
            "0.0.0.0", ("worker",)),
    Setting("host", "--host", "REDISTIMERS_HOST", argtypes.host_name, "127.0.0.1", ("serve",)),
    Setting("port", "--port", "REDISTIMERS_PORT", argtypes.port_number, 8080, ("serve",)),
    Setting("token", "--token", "REDISTIMERS_API_TOKEN", str, None, ("serve",)),
    Setting("insecure", "--insecure", "REDISTIMERS_INSECURE", argtypes.boolean, False,
            ("serve",)),
    Setting("read_only", "--read-only", "REDISTIMERS_READ_ONLY", argtypes.boolean, False,
            ("serve",)),
)

_BY_DEST = {setting.dest: setting for setting in SETTINGS}
_WORDS = re.compile(r"[\s,]+")


def setting(dest: str) -> Setting:
    """The setting of the option kept at `dest`."""
    return _BY_DEST[dest]


def variable_help(dest: str, text: str) -> str:
    """`text`, the help of the option at `dest`, naming its variable."""
    return f"{text} (env: {setting(dest).variable})"


def applies(one: Setting, command: str) -> bool:
    return one.commands is None or command in one.commands


def resolve(args: argparse.Namespace, environ: Mapping[str, str]) -> argparse.Namespace:
    """Fill in `args` (as parsed) the options not given as flags: from their variables in
    `environ`, else their defaults. CliError (exit 2) for a bad value of a variable, or a
    required value that neither gives."""
    for one in SETTINGS:
        if not hasattr(args, one.dest):
            continue
        if getattr(args, one.dest) in (None, []):
            value = _from_environment(one, environ) if applies(one, args.command) else None
            setattr(args, one.dest, one.default if value is None else value)
        if one.required and applies(one, args.command) and getattr(args, one.dest) in (None, []):
            raise CliError(
                f"the following arguments are required: {one.flag} (or ${one.variable}) "
                f"(see 'redistimers {args.command} --help')"
            )
    return args


def _from_environment(one: Setting, environ: Mapping[str, str]) -> Any:
    """The value of `one`'s variable, checked as its flag's; None when unset or empty."""
    text = environ.get(one.variable, "")
    if not text.strip():
        return None
    try:
        if one.many:
            return [one.read(word) for word in _WORDS.split(text.strip())]
        return one.read(text)
    except argparse.ArgumentTypeError as exc:
        raise CliError(f"${one.variable}: {exc}") from None
