"""What the Flask extension keeps per app: its settings and its scheduler, created on first
use; and the in-process mode's start and stop of that scheduler in this very process (never
trusting a start inherited through fork; stopped gracefully at exit).

Nothing here connects to Redis: the scheduler's client connects at its first call, so an
app boots, and serves requests that do not schedule, while Redis is down.

The bottom of the Flask integration: the extension (flask) and its commands (flask_cli)
import this module, never the other way; the extension is known here by the `Extension`
protocol it meets."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import weakref
from typing import TYPE_CHECKING, Protocol

from ..errors import ConfigurationError, SchedulerStateError
from ..scheduler import TimerScheduler

if TYPE_CHECKING:
    from flask import Flask

    from ..router import Router
    from .flask_settings import TimersSettings

log = logging.getLogger("redistimers.flask")

EXTENSION_KEY = "redistimers"


class Extension(Protocol):
    """What the per-app state needs of the extension (`Timers` meets it)."""

    @property
    def topics_handled(self) -> list[str]:
        """Topics with a handler registered through the extension."""
        ...

    def router_for(self, app: Flask, concurrency: int | None = None) -> Router:
        """Every handler, each run in `app`'s context (`concurrency` at once, if given)."""
        ...


class AppState:
    """What the extension keeps per app, in ``app.extensions["redistimers"]``."""

    def __init__(self, extension: Extension, app: Flask, settings: TimersSettings) -> None:
        self.extension = extension
        self.app = app
        self.settings = settings
        self.lock = threading.Lock()
        self.started_pid: int | None = None  # the process whose scheduler runs, in-process mode
        self._scheduler: TimerScheduler | None = None
        _states.add(self)

    @property
    def scheduler(self) -> TimerScheduler:
        """The app's scheduler, created on first use. Creating it does not connect: its
        calls do, and raise RedisUnavailableError while Redis is down."""
        scheduler = self._scheduler
        return scheduler if scheduler is not None else self.create_scheduler()

    def create_scheduler(self, concurrency: int | None = None) -> TimerScheduler:
        """The app's scheduler, created now unless it exists; with `concurrency` (the
        worker's ``--concurrency``), a new one whose handlers run that many at once.
        Neither connects to Redis."""
        with self.lock:
            if self._scheduler is not None and concurrency is None:
                return self._scheduler
            settings = self.settings
            scheduler = TimerScheduler.from_url(
                settings.url,
                routers=[self.extension.router_for(self.app, concurrency)],
                namespace=settings.namespace,
                retry=settings.retry,
                max_poll_interval=settings.max_poll_interval,
                **settings.redis_options,
            )
            if self._scheduler is None:
                self._scheduler = scheduler
            return scheduler

    @property
    def created(self) -> bool:
        """Whether the app's scheduler exists (its handlers are then fixed)."""
        return self._scheduler is not None

    def start_here(self) -> bool:
        """Start the scheduler in this process unless it already runs here; True if this
        call started it. A start inherited through fork (say, in a gunicorn master before
        it forked its workers) is never trusted: the pid must be this process's. Returns
        at once even while Redis is down: the scheduler's threads wait for it."""
        pid = os.getpid()
        if self.started_pid == pid and self._scheduler is not None and self._scheduler.running:
            return False
        scheduler = self.scheduler
        with self.lock:
            if scheduler.running and self.started_pid in (None, pid):
                self.started_pid = pid  # started here, by this extension or by the app
                return False
            scheduler.start()  # SchedulerStateError if a parent's "running" came through fork
            self.started_pid = pid
        _stop_at_exit()
        log.info("started the timer scheduler of app %r in process %d", self.app.name, pid)
        return True

    def stop_here(self, timeout: float | None = None) -> bool:
        """Stop the scheduler if it runs in this process; True when everything drained."""
        with self.lock:
            scheduler, started = self._scheduler, self.started_pid == os.getpid()
            self.started_pid = None
        if scheduler is None or not started:
            return True
        return scheduler.stop(self.settings.shutdown_timeout if timeout is None else timeout)

    def after_fork_in_child(self) -> None:
        """Replace the lock, which a thread the child does not have may have held."""
        self.lock = threading.Lock()  # a thread of the parent may have held it


_states: weakref.WeakSet[AppState] = weakref.WeakSet()
_atexit_lock = threading.Lock()
_atexit_registered = False


def _stop_all_at_exit() -> None:
    for state in list(_states):
        try:
            state.stop_here()
        except Exception:  # an exit hook must not stop the others
            log.exception("stopping the timer scheduler of app %r failed", state.app.name)


def _stop_at_exit() -> None:
    """Register, once per interpreter (fork keeps the registration), the graceful stop of
    every scheduler started in this process."""
    global _atexit_registered
    with _atexit_lock:
        if not _atexit_registered:
            atexit.register(_stop_all_at_exit)
            _atexit_registered = True


def _after_fork_in_child() -> None:
    global _atexit_lock
    _atexit_lock = threading.Lock()
    for state in list(_states):
        state.after_fork_in_child()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def check_app(app: object) -> Flask:
    """`app`, if it is a Flask app; ConfigurationError naming what it is otherwise."""
    from flask import Flask

    if not isinstance(app, Flask):
        raise ConfigurationError(f"expected a Flask app, got {type(app).__name__}")
    return app


def app_state(app: Flask) -> AppState:
    """The extension's state of `app`; SchedulerStateError when `init_app` was not called."""
    state = check_app(app).extensions.get(EXTENSION_KEY)
    if not isinstance(state, AppState):
        raise SchedulerStateError(
            f"redistimers is not initialised on app {app.name!r}: call timers.init_app(app) "
            "in the app factory before using timers with this app"
        )
    return state


def scheduler_created(extension: Extension) -> bool:
    """Whether an app of `extension` has created its scheduler (which then has its handlers)."""
    return any(state.extension is extension and state.created for state in list(_states))
