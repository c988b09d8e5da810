"""``flask redistimers``: the `redistimers` command with a Flask app's configuration.

``worker`` is the group's own: it delivers with the handlers registered through the
app's `Timers` extension, inside the app context. Every other command (``stats``,
``list``, ``get``, ``schedule``, ``dead`` ...) goes to ``redistimers.cli.main`` with the
app's scheduler, so it takes the same arguments and exits with the same codes.

The extension (flask) imports this module; this one reaches the app's state through
flask_state, below both.
"""

from __future__ import annotations

import logging
import os

try:
    import click
    from flask import current_app
    from flask.cli import AppGroup, with_appcontext
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without Flask
    raise ImportError(
        "redistimers.contrib.flask_cli needs Flask: pip install 'redistimers[flask]'"
    ) from exc

from ..durations import parse_duration
from ..errors import InvalidTimerError, RedisTimersError
from .flask_state import AppState, app_state

#: Commands of `redistimers` not listed under ``flask redistimers``: ``worker`` is the
#: group's own (it runs this app's handlers); ``demo`` ignores the app (its own Redis).
NOT_LISTED = ("worker", "demo")


def commands_group() -> click.Group:
    """The ``redistimers`` group that `Timers.init_app` adds to ``app.cli``."""
    group = _CommandsGroup(
        "redistimers", help="Distributed timers of this app: deliver, inspect, repair."
    )
    group.add_command(_worker_command())
    return group


def _current_state() -> AppState:
    return app_state(current_app)


class _CommandError(click.ClickException):
    """An error of the command: one line on stderr, exit code 2 (as `redistimers`)."""

    exit_code = 2

    def format_message(self) -> str:
        return f"redistimers: error: {self.message}"


class _CommandsGroup(AppGroup):
    """``worker`` here; any other name is forwarded to the `redistimers` command."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *_library_commands()})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        return command if command is not None else _forwarder(cmd_name)


def _forwarder(name: str) -> click.Command:
    """``flask redistimers NAME ARGS...`` = ``redistimers NAME ARGS...`` on the app's
    scheduler; unknown names and bad arguments are the `redistimers` parser's to refuse."""

    def forward(args: tuple[str, ...]) -> None:
        from ..cli import main

        try:
            scheduler = _current_state().scheduler
        except RedisTimersError as exc:
            raise _CommandError(str(exc)) from exc
        click.get_current_context().exit(main([name, *args], scheduler=scheduler))

    summary = _library_commands().get(name) or f"`redistimers {name}` on this app's Redis"
    return click.Command(
        name,
        callback=with_appcontext(forward),
        params=[click.Argument(["args"], nargs=-1, type=click.UNPROCESSED)],
        context_settings={"ignore_unknown_options": True},
        add_help_option=False,  # --help goes to the redistimers command
        help=f"{summary} (`redistimers {name}` with this app's scheduler)",
        short_help=summary,
    )


def _library_commands() -> dict[str, str]:
    """Name -> help of the `redistimers` command's subcommands listed under the group."""
    from ..cli import subcommands

    return {name: summary for name, summary in subcommands().items() if name not in NOT_LISTED}


def _show_library_logs(level: str) -> None:
    """The worker's logs are what an operator watches: the library's at `level`, to
    stderr unless the app configured logging itself."""
    library_log = logging.getLogger("redistimers")
    library_log.setLevel(level.upper())
    if not logging.root.handlers and not library_log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
        )
        library_log.addHandler(handler)


def _duration(text: str) -> float:
    try:
        return parse_duration(text).total_seconds()
    except InvalidTimerError as exc:
        raise click.BadParameter(str(exc)) from exc


def _worker_command() -> click.Command:
    @click.command("worker", short_help="deliver this app's timers until SIGTERM or Ctrl-C")
    @click.option(
        "--concurrency",
        type=click.IntRange(min=1),
        default=None,
        metavar="N",
        help="Handlers run at once per topic (overrides every max_concurrent).",
    )
    @click.option(
        "--shutdown-timeout",
        type=_duration,
        default=None,
        metavar="DURATION",
        help="On SIGTERM, how long running handlers may finish, e.g. 30s "
        "(default: REDISTIMERS_SHUTDOWN_TIMEOUT, else 10s; a second signal stops at once).",
    )
    @click.option(
        "--log-level",
        type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False),
        default="info",
        show_default=True,
    )
    @with_appcontext
    def worker(concurrency: int | None, shutdown_timeout: float | None, log_level: str) -> None:
        """Deliver this app's timers until SIGTERM or Ctrl-C: the handlers registered
        with @timers.handler and timers.include_router, inside the app context."""
        _show_library_logs(log_level)
        state = _current_state()
        if not state.extension.topics_handled:
            raise _CommandError(
                f"app {current_app.name!r} registers no timer handlers (@timers.handler or "
                "timers.include_router): a worker would deliver nothing"
            )
        timeout = state.settings.shutdown_timeout if shutdown_timeout is None else shutdown_timeout
        try:
            scheduler = state.create_scheduler(concurrency)
            click.echo(
                f"redistimers worker {os.getpid()}: delivering {scheduler.topics_handled} "
                f"of app {current_app.name!r}",
                err=True,
            )
            scheduler.run_forever(shutdown_timeout=timeout)
        except RedisTimersError as exc:
            raise _CommandError(str(exc)) from exc

    return worker
