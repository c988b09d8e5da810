"""What a command runs with: its arguments, the console, and the scheduler it works on."""

from __future__ import annotations

import argparse
import sys

from redis.backoff import NoBackoff
from redis.retry import Retry

from .. import defaults
from ..connect import client_from_url
from ..scheduler import TimerScheduler
from .output import CliError, Console

#: Redis used when neither --redis-url nor $REDIS_URL says otherwise (as rq and celery do).
DEFAULT_REDIS_URL = "redis://localhost:6379/0"
#: Seconds a quick check (`health`) waits for Redis to connect or answer: a probe that
#: runs every few seconds must not pile up behind a Redis that does not answer.
PROBE_TIMEOUT = 1.0


class Declined(CliError):
    """The person at the terminal said no: nothing was done, exit code 1."""

    code = 1


class Context:
    """One command's arguments and console, and the scheduler its work goes through:
    the one given to `main(scheduler=...)`, or one connected by --redis-url/--namespace."""

    def __init__(
        self, args: argparse.Namespace, console: Console, given: TimerScheduler | None = None
    ) -> None:
        self.args = args
        self.console = console
        self.given = given
        self._made: TimerScheduler | None = None

    @property
    def json(self) -> bool:
        return self.console.json_output

    @property
    def redis_url(self) -> str:
        """--redis-url, else $REDIS_URL (environment.resolve put it there), else the default."""
        url: str = self.args.redis_url or DEFAULT_REDIS_URL
        return url

    @property
    def namespace(self) -> str:
        namespace: str = self.args.namespace or defaults.NAMESPACE
        return namespace

    @property
    def where(self) -> str:
        """' in namespace 'x'' for messages about what was not found (nothing when the
        scheduler was given: its caller knows where it points)."""
        return "" if self.given is not None else f" in namespace {self.namespace!r}"

    def scheduler(self) -> TimerScheduler:
        """The scheduler to work on, connected on first use (RedisUnavailableError if
        Redis does not answer)."""
        if self.given is not None:
            return self.given
        if self._made is None:
            self._made = TimerScheduler.from_url(self.redis_url, namespace=self.namespace)
        return self._made

    def probe_scheduler(self) -> TimerScheduler:
        """A scheduler for a quick check (`health`): its connection gives up after
        PROBE_TIMEOUT seconds, without retrying; the given one as it is."""
        if self.given is not None:
            return self.given
        if self._made is None:
            client = client_from_url(
                self.redis_url, socket_connect_timeout=PROBE_TIMEOUT,
                socket_timeout=PROBE_TIMEOUT, retry=Retry(NoBackoff(), 0),
            )
            self._made = TimerScheduler(client, namespace=self.namespace)
        return self._made

    def confirm(self, question: str) -> None:
        """Ask on the terminal; raise Declined unless the answer is yes. Without a terminal
        to ask on, refuse: a script must say --yes."""
        if self.args.yes:
            return
        if not sys.stdin.isatty():
            raise CliError(
                f"{self.args.command} asks for confirmation and stdin is not a terminal; "
                "pass --yes to go ahead"
            )
        if self.console.ask(f"{question} [y/N] ").strip().lower() not in ("y", "yes"):
            raise Declined("not confirmed; nothing was deleted")


