"""The wake-up listener: pub/sub messages that say a topic has a new earliest timer."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from . import defaults
from .connect import RedisClient
from .failures import is_refused_access
from .outage import REDIS_BACKOFF, OutageTracker, keep_trying

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
        client: RedisClient,
        channels: Mapping[str, str],
        on_wake: Callable[[str | None], None],
        tracker: OutageTracker,
    ) -> None:
        self._client = client
        self._tracker = tracker
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
        while not self._stop.is_set():
            try:
                try:
                    self._listen()
                except Exception as exc:  # tried again with backoff until it listens again
                    if is_refused_access(exc):
                        raise
                    self._tracker.failed(exc)
                    keep_trying(
                        self._listen, retry_if=lambda error: not is_refused_access(error),
                        wait=REDIS_BACKOFF, give_up=self._stop.is_set, sleep=self._stop.wait,
                        before_sleep=self._tracker.failed,
                    )
            except Exception as exc:
                if is_refused_access(exc):  # a password or an ACL: waiting will not mend it
                    self._tracker.refuse(exc)
                    return
                if not self._stop.is_set():  # only a give-up ends the backoff: a bug
                    log.exception("the wake-up listener failed; listening again")
                    self._stop.wait(defaults.REDIS_BACKOFF_MAX)

    def _listen(self) -> None:
        """Subscribe and pass wake-ups on until stopped. Raises when it cannot subscribe or
        the connection fails before a subscription; returns after reporting a failure of a
        connection that did subscribe, so that the backoff starts afresh."""
        pubsub: Any = self._client.pubsub()  # type: ignore[no-untyped-call]
        subscribed = False
        try:
            pubsub.subscribe(*self._topic_of)
            heard = time.monotonic()  # when the connection last said anything
            pinged: float | None = None  # when a keepalive PING went unanswered so far
            while not self._stop.is_set():
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
                    subscribed = True
                    self._tracker.succeeded()
                    self._on_wake(None)
        except Exception as exc:
            if not subscribed or is_refused_access(exc):
                raise
            self._tracker.failed(exc)
        finally:
            self._close(pubsub)

    @staticmethod
    def _close(pubsub: Any) -> None:
        if pubsub is not None:
            try:
                pubsub.close()
            except Exception as exc:  # closing a broken connection may fail; nothing to do
                log.debug("closing the pub/sub connection failed: %s", exc)
