"""The wake-up listener: pub/sub messages that say a topic has a new earliest timer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import redis

from . import defaults
from .failures import call_error
from .outage import OutageTracker, is_refused_access

log = logging.getLogger("redistimers.wakeup")


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class WakeListener:
    """A thread subscribed to the wake channels of the topics this process handles.

    It calls `on_wake(topic)` for each wake-up message, and `on_wake(None)` ("look at every
    topic") each time its subscription becomes active, since messages published while it
    was not subscribed are lost. A lost connection is reported to `tracker`, so that an
    idle scheduler knows of an outage as soon as a busy one.
    """

    def __init__(
        self,
        client: redis.Redis,
        channels: Mapping[str, str],
        on_wake: Callable[[str | None], None],
        tracker: OutageTracker,
        who: str = "the default user",
    ) -> None:
        self._client = client
        self._tracker = tracker
        self._who = who
        self._topic_of = dict(channels)  # channel -> topic
        self._on_wake = on_wake
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="redistimers-wakeup", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def signal_stop(self) -> None:
        """Ask the thread to end; `join` waits for it."""
        self._stop.set()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _run(self) -> None:
        pubsub: Any = None
        failures = 0
        heard = time.monotonic()  # when the connection last said anything
        pinged: float | None = None  # when a keepalive PING went unanswered so far
        while not self._stop.is_set():
            try:
                if pubsub is None:
                    pubsub = self._client.pubsub()  # type: ignore[no-untyped-call]
                    pubsub.subscribe(*self._topic_of)
                    heard, pinged = time.monotonic(), None
                message = pubsub.get_message(timeout=defaults.LISTENER_POLL_INTERVAL)
                now = time.monotonic()
                if message is None:
                    # A connection that died without a word (a dropped NAT entry, a
                    # half-open TCP) would lose wake-ups unseen: ask it now and then.
                    if pinged is not None and now - pinged > defaults.LISTENER_PING_TIMEOUT:
                        raise ConnectionError("the pub/sub connection did not answer a PING")
                    if pinged is None and now - heard > defaults.LISTENER_KEEPALIVE:
                        pubsub.ping()
                        pinged = now
                    continue
                heard, pinged = now, None
                if message["type"] == "message":
                    self._on_wake(self._topic_of.get(_text(message["channel"])))
                elif message["type"] == "subscribe":
                    # Also seen when redis-py reconnects and subscribes again by itself.
                    if failures:
                        self._tracker.succeeded()
                    failures = 0
                    self._on_wake(None)
            except Exception as exc:
                if is_refused_access(exc):  # a password or an ACL: waiting will not mend it
                    self._tracker.refuse(call_error(exc, self._tracker.where, self._who) or exc)
                    break
                self._tracker.failed(exc)
                failures += 1
                self._close(pubsub)
                pubsub = None
                self._stop.wait(min(defaults.REDIS_BACKOFF_MAX, 0.1 * 2 ** min(failures, 6)))
        self._close(pubsub)

    @staticmethod
    def _close(pubsub: Any) -> None:
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception as exc:  # closing a broken connection may fail; nothing to do
                log.debug("closing the pub/sub connection failed: %s", exc)
