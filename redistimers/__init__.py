"""redistimers: distributed timers on Redis for synchronous, thread-based Python.

Schedule a payload on a topic to fire at a time; any number of worker processes deliver
each due timer to the function registered for its topic, at least once and never early.
"""

from __future__ import annotations

from .errors import (
    ConfigurationError,
    InvalidHandlerError,
    InvalidTimerError,
    PayloadTooLargeError,
    PayloadTypeError,
    RedisAuthenticationError,
    RedisCallError,
    RedisFullError,
    RedisPermissionError,
    RedisReplicationError,
    RedisTimersError,
    RedisUnavailableError,
    RejectTimer,
    RetryTimer,
    SchedulerStateError,
)
from .metrics import Histogram, Metrics, TopicMetrics
from .models import (
    DeadTimer,
    Delivery,
    DueForecast,
    ServerInfo,
    TimerInfo,
    TimerPage,
    TimerSpec,
    TopicStats,
    WorkerInfo,
)
from .retry import RetryPolicy
from .router import Router
from .scheduler import TimerScheduler
from .version import __version__

__all__ = [
    "ConfigurationError",
    "DeadTimer",
    "Delivery",
    "DueForecast",
    "Histogram",
    "InvalidHandlerError",
    "InvalidTimerError",
    "Metrics",
    "PayloadTooLargeError",
    "PayloadTypeError",
    "RedisAuthenticationError",
    "RedisCallError",
    "RedisFullError",
    "RedisPermissionError",
    "RedisReplicationError",
    "RedisTimersError",
    "RedisUnavailableError",
    "RejectTimer",
    "RetryPolicy",
    "RetryTimer",
    "Router",
    "SchedulerStateError",
    "ServerInfo",
    "TimerInfo",
    "TimerPage",
    "TimerScheduler",
    "TimerSpec",
    "TopicMetrics",
    "TopicStats",
    "WorkerInfo",
    "__version__",
]
