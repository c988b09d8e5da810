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
from .metrics import Metrics
from .models import DeadTimer, Delivery, TimerInfo, TimerPage, TimerSpec, TopicStats
from .retry import RetryPolicy
from .router import Router
from .scheduler import TimerScheduler

__version__ = "0.1.0"

__all__ = [
    "ConfigurationError",
    "DeadTimer",
    "Delivery",
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
    "TimerInfo",
    "TimerPage",
    "TimerScheduler",
    "TimerSpec",
    "TopicStats",
    "__version__",
]
