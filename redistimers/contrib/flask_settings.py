"""The Flask extension's settings: the ``REDISTIMERS_*`` keys of ``app.config``, read and
checked into a `TimersSettings` (strings accepted where environment variables give them)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import attrs
import redis

from .. import defaults
from ..connect import check_url, is_single_server
from ..errors import ConfigurationError, InvalidTimerError
from ..failures import redacted_url
from ..retry import RetryPolicy
from ..validation import check_namespace, seconds_of

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}

#: Keywords REDISTIMERS_REDIS_OPTIONS must not hold, and why. `TimerScheduler.from_url`
#: keeps the first ones for the scheduler (or takes them itself) instead of passing them
#: to redis-py, so they would not do what their redis-py namesakes do.
_REFUSED_OPTIONS = {
    "url": "use REDISTIMERS_URL",
    "namespace": "use REDISTIMERS_NAMESPACE",
    "routers": "register handlers with @timers.handler or timers.include_router",
    "retry": "the scheduler would take it as its RetryPolicy: use REDISTIMERS_RETRY",
    "max_poll_interval": "use REDISTIMERS_MAX_POLL_INTERVAL",
    "on_success": "it is a TimerScheduler argument, not a redis-py one",
    "on_failure": "it is a TimerScheduler argument, not a redis-py one",
    "on_dead": "it is a TimerScheduler argument, not a redis-py one",
    "max_payload_bytes": "it is a TimerScheduler argument, not a redis-py one",
    "single_connection_client": (
        "it connects when the scheduler is created (the app could not boot while Redis is "
        "down) and makes every thread wait for one connection"
    ),
}


def _flag(name: str, value: object) -> bool:
    """A boolean setting; strings as environment variables spell them are accepted."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise ConfigurationError(f"{name} must be a bool, got {value!r}")


def _seconds(name: str, value: object, minimum: float, inclusive: bool) -> float:
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            value = float(value)
    try:
        seconds = seconds_of(value, name)
    except InvalidTimerError as exc:
        raise ConfigurationError(str(exc)) from exc
    if seconds < minimum or (not inclusive and seconds == minimum):
        raise ConfigurationError(
            f"{name} must be {'>=' if inclusive else '>'} {minimum:g} seconds, got {value!r}"
        )
    return seconds


def _redis_options(value: object) -> dict[str, Any]:
    """REDISTIMERS_REDIS_OPTIONS: a mapping of redis-py keywords, none that the scheduler
    would take for itself."""
    if value is None or value == "":  # unset, or an empty environment variable
        return {}
    if not isinstance(value, Mapping):
        raise ConfigurationError(
            "REDISTIMERS_REDIS_OPTIONS must be a dict of redis.Redis.from_url keyword "
            f"arguments, got {type(value).__name__}"
        )
    for key in value:
        if not isinstance(key, str):
            raise ConfigurationError(
                f"REDISTIMERS_REDIS_OPTIONS keys must be keyword names (str), got {key!r}"
            )
        if key in _REFUSED_OPTIONS:
            raise ConfigurationError(
                f"REDISTIMERS_REDIS_OPTIONS must not set {key!r}: {_REFUSED_OPTIONS[key]}"
            )
    return dict(value)


def _check_client(url: str, options: Mapping[str, Any]) -> None:
    """Build, without connecting, the connection redis-py would open for `url` and
    `options`, so that a malformed URL or an unknown keyword is refused at ``init_app``,
    not at the first call (redis-py only builds connections then)."""
    try:
        single = is_single_server(url)
        if not single:  # a Sentinel's or a Cluster's URL: read here, its nodes at first use
            check_url(url)
    except ConfigurationError as exc:
        raise ConfigurationError(f"REDISTIMERS_URL: {exc}") from None
    if not single:
        return
    try:
        client = redis.Redis.from_url(url, **options)
    except ValueError as exc:  # scheme, port, or a query-string option
        raise ConfigurationError(
            f"REDISTIMERS_URL {redacted_url(url)!r} is not a Redis URL: {exc} "
            "(e.g. 'redis://localhost:6379/0', 'rediss://...' or 'unix:///path/redis.sock')"
        ) from exc
    except TypeError as exc:
        raise ConfigurationError(f"REDISTIMERS_REDIS_OPTIONS: {exc}") from exc
    pool = client.connection_pool
    try:
        pool.connection_class(**pool.connection_kwargs)  # what the pool does, minus connect
    except (TypeError, ValueError, redis.exceptions.RedisError) as exc:
        culprit = "REDISTIMERS_REDIS_OPTIONS (redis.Redis.from_url keyword arguments)"
        raise ConfigurationError(
            f"{culprit if options else f'REDISTIMERS_URL {redacted_url(url)!r}'}: {exc}"
        ) from exc
    finally:
        client.close()


@attrs.frozen
class TimersSettings:
    """The ``REDISTIMERS_*`` settings of one app, read and checked by `init_app`."""

    url: str
    namespace: str = defaults.NAMESPACE
    retry: RetryPolicy | None = None
    max_poll_interval: float = defaults.MAX_POLL_INTERVAL
    run_in_web: bool = False
    shutdown_timeout: float = defaults.SHUTDOWN_TIMEOUT
    redis_options: Mapping[str, Any] = attrs.field(factory=dict)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> TimersSettings:
        """The settings of `config`, checked without connecting to Redis (an app boots
        while Redis is down); ConfigurationError names the first setting that is wrong."""
        url = config.get("REDISTIMERS_URL")
        if not isinstance(url, str) or not url.strip():
            raise ConfigurationError(
                "REDISTIMERS_URL is not set: set app.config['REDISTIMERS_URL'] to the Redis "
                "URL (e.g. 'redis://localhost:6379/0') before timers.init_app(app)"
                + ("" if url is None else f"; got {url!r}")
            )
        try:
            namespace = check_namespace(config.get("REDISTIMERS_NAMESPACE", defaults.NAMESPACE))
        except InvalidTimerError as exc:
            raise ConfigurationError(f"REDISTIMERS_NAMESPACE: {exc}") from exc
        retry = config.get("REDISTIMERS_RETRY")
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise ConfigurationError(
                f"REDISTIMERS_RETRY must be a redistimers.RetryPolicy, got {type(retry).__name__}"
            )
        redis_options = _redis_options(config.get("REDISTIMERS_REDIS_OPTIONS"))
        url = url.strip()
        _check_client(url, redis_options)
        return cls(
            url=url,
            namespace=namespace,
            retry=retry,
            max_poll_interval=_seconds(
                "REDISTIMERS_MAX_POLL_INTERVAL",
                config.get("REDISTIMERS_MAX_POLL_INTERVAL", defaults.MAX_POLL_INTERVAL),
                0.0,
                inclusive=False,
            ),
            run_in_web=_flag("REDISTIMERS_RUN_IN_WEB", config.get("REDISTIMERS_RUN_IN_WEB", False)),
            shutdown_timeout=_seconds(
                "REDISTIMERS_SHUTDOWN_TIMEOUT",
                config.get("REDISTIMERS_SHUTDOWN_TIMEOUT", defaults.SHUTDOWN_TIMEOUT),
                0.0,
                inclusive=True,
            ),
            redis_options=redis_options,
        )
