"""Exceptions: one root for the library's errors, and control-flow signals for handlers."""

from __future__ import annotations

import datetime as dt

import redis


class RedisTimersError(Exception):
    """Root of every error redistimers raises; `except RedisTimersError` catches them all."""


class ConfigurationError(RedisTimersError, ValueError):
    """The scheduler or a router was set up with settings that cannot work."""


class InvalidHandlerError(ConfigurationError, TypeError):
    """A handler that cannot be called as one: a coroutine function, or a callable that
    cannot take the payload (and a Delivery)."""


class InvalidTimerError(RedisTimersError, ValueError):
    """A timer's arguments (topic, id, time, headers) are wrong; nothing was written."""


class PayloadTypeError(RedisTimersError, TypeError):
    """A payload does not fit its topic's type or cannot be stored as JSON; nothing was written."""


class PayloadTooLargeError(RedisTimersError, ValueError):
    """A payload is larger, as JSON, than the scheduler's `max_payload_bytes`; nothing was
    written."""


class RedisCallError(RedisTimersError):
    """Redis failed a call: it could not be reached, stopped answering, or refused the write.

    Raised by `set_timer` or `set_timers`, it says what became of each timer:
    `written_ids` Redis confirmed, `unwritten_ids` it refused or never received, and
    `unconfirmed_ids` it received without confirming (they may or may not exist). Setting
    a timer again with the same id is safe: it replaces the timer.
    """

    written_ids: tuple[str, ...] = ()
    unwritten_ids: tuple[str, ...] = ()
    unconfirmed_ids: tuple[str, ...] = ()

    def with_timers(
        self,
        written: tuple[str, ...] = (),
        unwritten: tuple[str, ...] = (),
        unconfirmed: tuple[str, ...] = (),
    ) -> RedisCallError:
        """This error, telling which timers were written, not written, or unconfirmed."""
        self.written_ids, self.unwritten_ids, self.unconfirmed_ids = (
            written, unwritten, unconfirmed
        )
        return self


class RedisUnavailableError(RedisCallError, redis.exceptions.ConnectionError):
    """Redis could not be reached or stopped answering; the message names where it was
    looked for."""


class RedisFullError(RedisCallError):
    """Redis refused a write because its used memory is over `maxmemory` (with the
    `noeviction` policy). Workers go on delivering, which frees memory."""


class RedisAuthenticationError(RedisCallError):
    """Redis refused the credentials (user name or password); waiting will not help."""


class RedisPermissionError(RedisCallError):
    """Redis's ACL does not let this user run a command, or touch a key or channel, that
    redistimers needs; the README's "Redis permissions" section has the rule to grant."""


class RedisReplicationError(RedisCallError):
    """Redis ran the write, but fewer replicas than `min_replicas` confirmed it within
    `replica_timeout`: it stays unless the primary fails before a replica has it. Setting
    the same timers again (same ids) is safe."""


class SchedulerStateError(RedisTimersError, RuntimeError):
    """An operation that does not fit the scheduler's state (say, run_pending while it runs)."""


class RetryTimer(Exception):
    """Raise from a handler to have the timer delivered again after `delay`."""

    def __init__(self, delay: float | dt.timedelta = 0.0) -> None:
        seconds = delay.total_seconds() if isinstance(delay, dt.timedelta) else float(delay)
        if not seconds >= 0:
            raise ValueError(f"RetryTimer delay must be >= 0 seconds, got {delay!r}")
        super().__init__(f"retry in {seconds:g}s")
        self.delay = seconds


class RejectTimer(Exception):
    """Raise from a handler to give the timer up at once, without retrying it: removed
    for good, or with `dead_letter=True` kept in the dead letters with this error (for a
    permanent failure someone should see, such as a webhook URL that is not allowed)."""

    def __init__(self, reason: str = "", *, dead_letter: bool = False) -> None:
        super().__init__(reason)
        self.dead_letter = dead_letter
