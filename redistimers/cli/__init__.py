"""The `redistimers` command: run workers, and inspect and repair timers.

::

    redistimers worker myapp.tasks:router --concurrency 20
    redistimers stats
    redistimers list invoices --limit 20
    redistimers schedule invoices --in 30m --id INV-1 --payload '{"invoice_id": "INV-1"}'

Results print as aligned tables, or as JSON with ``--json``. Exit codes: 0 done, 1 not
found, 2 bad input or Redis unreachable, with one line ``redistimers: error: ...`` on
stderr. Unlike the library, which only logs, the command prints: it is user interface.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Sequence

import redis

from ..errors import RedisTimersError
from ..scheduler import TimerScheduler
from .context import Context
from .output import CliError, Console
from .parser import build_parser, subcommands

__all__ = ["build_parser", "main", "subcommands"]

#: Commands that connect by themselves even when `main` is given a scheduler.
OWN_CONNECTION = ("demo", "worker")
#: Commands that run for long: their logs (at INFO) are what an operator watches.
LONG_RUNNING = ("worker", "serve")


#: Characters a log line must not carry to a terminal or a log file: C0 controls (ANSI
#: escapes start with ESC), DEL and C1 controls (CSI), but tabs and the newlines of a
#: traceback.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class PlainFormatter(logging.Formatter):
    """Log lines as plain text: a control character in a message (an escape sequence in
    a client's request path, in a handler's message) is written as ``\\x1b``, so a log
    line can neither colour nor rewrite the terminal or the log file it goes to."""

    def format(self, record: logging.LogRecord) -> str:
        return _CONTROL.sub(lambda found: f"\\x{ord(found[0]):02x}", super().format(record))


def _configure_logging(command: str, verbose: bool, level_name: str | None) -> None:
    log_format = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    if command in LONG_RUNNING:
        level = logging.DEBUG if verbose else getattr(logging, (level_name or "info").upper())
        log_format = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
    elif verbose:
        level = logging.INFO
    else:  # the command reports its own results and errors (the demo, errors too, as ever)
        level = logging.ERROR if command == "demo" else logging.CRITICAL
    if logging.root.handlers:  # configured already (as basicConfig would leave it)
        return
    handler = logging.StreamHandler()
    handler.setFormatter(PlainFormatter(log_format))
    logging.root.addHandler(handler)
    logging.root.setLevel(level)


def main(argv: Sequence[str] | None = None, *, scheduler: TimerScheduler | None = None) -> int:
    """Run the `redistimers` command with `argv` (default: ``sys.argv[1:]``); returns the
    exit code: 0 done, 1 not found (or a confirmation declined), 2 bad input or Redis
    unreachable.

    With `scheduler`, every command but ``demo`` and ``worker`` works on it, ignoring
    ``--redis-url`` and ``--namespace`` (how a web framework's command line reuses its
    app's scheduler); logging is then left as the caller set it.
    """
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    console = Console(json_output=bool(getattr(args, "json", False)))
    given = None if args.command in OWN_CONNECTION else scheduler
    if given is None:
        _configure_logging(args.command, args.verbose, getattr(args, "log_level", None))
    try:
        code: int = args.run(Context(args, console, given))
    except CliError as exc:
        console.error(str(exc))
        return exc.code
    except RedisTimersError as exc:
        console.error(str(exc))
        return 2
    except redis.exceptions.RedisError as exc:  # say, a wrong password or a read-only replica
        console.error(f"Redis: {type(exc).__name__}: {exc}")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # the reader went away (`redistimers list t | head`)
        _silence_stdout()
        return 141  # as a command killed by SIGPIPE
    return code


def _silence_stdout() -> None:
    """Send what is left for stdout to /dev/null, so that Python's flush at exit does not
    fail on the closed pipe again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (a test's capture)
        pass

