"""The Flask extension's settings: the ``REDISTIMERS_*`` keys of ``app.config``, read and
checked into a `TimersSettings` (strings accepted where environment variables give them)."""

from __future__ import annotations

import contextlib
from collections.abc import Mapping
from typing import Any

import attrs

from .. import defaults
from ..errors import ConfigurationError, InvalidTimerError
from ..retry import RetryPolicy
from ..validation import check_namespace, seconds_of

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


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
        redis_options = config.get("REDISTIMERS_REDIS_OPTIONS") or {}
        if not isinstance(redis_options, Mapping):
            raise ConfigurationError(
                "REDISTIMERS_REDIS_OPTIONS must be a dict of redis.Redis.from_url keyword "
                f"arguments, got {type(redis_options).__name__}"
            )
        return cls(
            url=url.strip(),
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
            redis_options=dict(redis_options),
        )
