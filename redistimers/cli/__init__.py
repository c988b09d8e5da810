"""The `redistimers` command: run workers, and inspect and repair timers.

::

    redistimers worker myapp.tasks:router --concurrency 20
    redistimers workers
    redistimers health --topic invoices --max-lag 30s
    redistimers stats
    redistimers list invoices --limit 20
    redistimers schedule invoices --in 30m --id INV-1 --payload '{"invoice_id": "INV-1"}'

Results print as aligned tables, or as JSON with ``--json``. Exit codes: 0 done, 1 not
found (``health``: unhealthy), 2 bad input or Redis unreachable, with one line
``redistimers: error: ...`` on stderr. The options of ``worker`` and ``serve`` can be set
by environment variables instead (environment.py). Unlike the library, which only logs,
the command prints: it is user interface.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

import redis

from ..errors import RedisTimersError
from ..scheduler import TimerScheduler
from .context import Context
from .environment import resolve
from .logs import configure_logging, json_note
from .output import CliError, Console
from .parser import build_parser, subcommands

__all__ = ["build_parser", "main", "subcommands"]

#: Commands that connect by themselves even when `main` is given a scheduler.
OWN_CONNECTION = ("demo", "worker")


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
    try:
        resolve(args, os.environ)  # the options not given as flags, from the environment
    except CliError as exc:
        console.error(str(exc))
        return exc.code
    log_format = getattr(args, "log_format", None)
    if given is None:
        configure_logging(args.command, args.verbose, getattr(args, "log_level", None),
                          log_format)
    if log_format == "json":  # every line of stderr a JSON object, but errors
        console.note_format = json_note
    try:
        code: int = args.run(Context(args, console, given))
    except CliError as exc:
        console.error(str(exc), exc.label)
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

