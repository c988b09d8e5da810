"""Redis calls that outlast an outage: tenacity backoff, one log line down, one line up."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis
import tenacity

from . import defaults

T = TypeVar("T")

log = logging.getLogger("redistimers.outage")

#: Errors that mean "Redis cannot serve us right now" rather than "this call is wrong":
#: connection loss, timeouts, a server still loading its data, a replica mid-failover.
TRANSIENT_ERRORS: tuple[type[Exception], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,
    redis.exceptions.ReadOnlyError,
    redis.exceptions.TryAgainError,
    redis.exceptions.ClusterDownError,
)


def is_transient(exc: BaseException) -> bool:
    """True for errors worth waiting out; OOM replies count (Redis may free memory)."""
    if isinstance(exc, TRANSIENT_ERRORS):
        return True
    return isinstance(exc, redis.exceptions.ResponseError) and str(exc).startswith("OOM")


class OutageTracker:
    """Runs Redis calls again with exponential backoff and jitter until they succeed or the
    caller gives up; knows whether Redis was reachable at the last attempt (`healthy`).
    """

    def __init__(self, where: str) -> None:
        self.where = where
        self.healthy = True
        self.errors = 0
        self._lock = threading.Lock()
        self._down_since: float | None = None

    def failed(self, exc: BaseException) -> None:
        """Record a failed call; the first failure of an outage is logged."""
        with self._lock:
            self.errors += 1
            first = self._down_since is None
            if first:
                self._down_since = time.monotonic()
            self.healthy = False
        if first:
            log.error("Redis at %s unavailable: %s; retrying with backoff", self.where, exc)

    def succeeded(self) -> None:
        """Record a successful call; the end of an outage is logged."""
        if self._down_since is None:
            return
        with self._lock:
            down_since, self._down_since = self._down_since, None
            self.healthy = True
        if down_since is not None:
            log.warning(
                "Redis at %s reachable again after %.1fs", self.where, time.monotonic() - down_since
            )

    def call(
        self,
        fn: Callable[[], T],
        *,
        give_up: Callable[[], bool],
        sleep: Callable[[float], object],
    ) -> T:
        """`fn()`, tried again on transient Redis errors until it succeeds or `give_up()`.

        `sleep` waits between tries and should return early when the caller is stopping.
        The last error is raised when the caller gives up.
        """
        try:  # the common case, without building a retrying loop on every call
            result = fn()
        except Exception as exc:
            if not is_transient(exc):
                raise
            self.failed(exc)
            if give_up():
                raise
        else:
            self.succeeded()
            return result

        def before_sleep(state: tenacity.RetryCallState) -> None:
            if state.outcome is not None:
                exc = state.outcome.exception()
                if exc is not None:
                    self.failed(exc)

        def wait(seconds: float) -> None:
            sleep(seconds)

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(is_transient),
            wait=tenacity.wait_random_exponential(
                multiplier=defaults.REDIS_BACKOFF_INITIAL * 2,
                min=defaults.REDIS_BACKOFF_INITIAL,
                max=defaults.REDIS_BACKOFF_MAX,
            ),
            stop=lambda _state: give_up(),
            sleep=wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            result = retrying(fn)
        except Exception as exc:
            if is_transient(exc):
                self.failed(exc)
            raise
        self.succeeded()
        return result
