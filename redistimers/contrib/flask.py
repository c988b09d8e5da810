"""Flask integration: schedule timers from request handlers, deliver them in worker
processes (or, in the in-process mode, in the web processes themselves).

::

    from redistimers.contrib.flask import Timers

    timers = Timers()                       # or Timers(app)

    @timers.handler("invoices", payload=InvoiceDue)
    def on_invoice_due(invoice: InvoiceDue) -> None:
        ...                                 # runs inside app.app_context()

    def create_app() -> Flask:
        app = Flask(__name__)
        app.config["REDISTIMERS_URL"] = "redis://localhost:6379/0"
        timers.init_app(app)
        return app

    timers.set_timer("invoices", InvoiceDue("INV-1", 995), activate_in=3600)  # in a view

``flask redistimers worker`` delivers; ``flask redistimers <command>`` runs the other
``redistimers`` commands against the app's configuration. Needs ``redistimers[flask]``.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import os
from collections.abc import Callable
from typing import Any, Concatenate, ParamSpec, TypeVar

try:
    from flask import Flask, current_app, has_app_context
except ImportError as exc:  # pragma: no cover - exercised in a subprocess without Flask
    raise ImportError(
        "redistimers.contrib.flask needs Flask: pip install 'redistimers[flask]'"
    ) from exc

from .. import defaults
from ..errors import ConfigurationError, RedisTimersError, SchedulerStateError
from ..retry import RetryPolicy
from ..router import HandlerSpec, Router, merge_routers
from ..scheduler import TimerScheduler
from .flask_cli import commands_group
from .flask_settings import TimersSettings
from .flask_state import EXTENSION_KEY, AppState, app_state, check_app, scheduler_created

__all__ = ["Timers", "TimersSettings"]

log = logging.getLogger("redistimers.flask")

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def _run_in_app_context(app: Flask, func: F) -> F:
    """`func`, run inside ``app.app_context()``. The wrapper keeps `func`'s signature
    (``__wrapped__``), so the scheduler passes it the same arguments as `func`."""

    @functools.wraps(func)
    def run(*args: Any) -> Any:
        with app.app_context():
            return func(*args)

    return run  # type: ignore[return-value]


def _proxy(
    method: Callable[Concatenate[TimerScheduler, P], R],
) -> Callable[Concatenate[Timers, P], R]:
    """A method of `Timers` calling `method` on the current app's scheduler."""

    @functools.wraps(method)
    def call(self: Timers, /, *args: P.args, **kwargs: P.kwargs) -> R:
        return method(self.scheduler, *args, **kwargs)

    return call


class Timers:
    """The Flask extension: one `TimerScheduler` per app, created from ``app.config`` on
    first use, and handlers that run inside the app's application context.

    Settings (``app.config``): ``REDISTIMERS_URL`` (required), ``REDISTIMERS_NAMESPACE``,
    ``REDISTIMERS_RETRY`` (a RetryPolicy), ``REDISTIMERS_MAX_POLL_INTERVAL``,
    ``REDISTIMERS_SHUTDOWN_TIMEOUT``, ``REDISTIMERS_REDIS_OPTIONS`` (keyword arguments of
    ``redis.Redis.from_url``) and ``REDISTIMERS_RUN_IN_WEB``: when true, each web process
    starts delivering on its first request (after any fork) and stops at exit.
    """

    def __init__(self, app: Flask | None = None) -> None:
        self._router = Router()
        self._included: list[Router] = []
        self._app = app
        self.cli = commands_group()
        if app is not None:
            self.init_app(app)

    # -- set-up ---------------------------------------------------------------------------

    def init_app(self, app: Flask) -> None:
        """Read and check the app's ``REDISTIMERS_*`` settings (ConfigurationError names
        a missing or wrong one), add ``flask redistimers``, and in the in-process mode
        start delivering before the first request of each process. It does not connect
        to Redis, so the app boots while Redis is down."""
        check_app(app)
        if EXTENSION_KEY in app.extensions:
            raise SchedulerStateError(
                f"redistimers is already initialised on app {app.name!r}: call init_app "
                "once per app, with one Timers extension (register every handler on it)"
            )
        settings = TimersSettings.from_config(app.config)
        app.extensions[EXTENSION_KEY] = AppState(self, app, settings)
        app.cli.add_command(self.cli)
        if settings.run_in_web:
            app.before_request(self._start_before_request)

    def handler(
        self,
        topic: str,
        *,
        payload: Any | None = None,
        max_concurrent: int = defaults.MAX_CONCURRENT,
        lease_ttl: float | dt.timedelta = defaults.LEASE_TTL,
        retry: RetryPolicy | None = None,
    ) -> Callable[[F], F]:
        """Register the decorated function as `topic`'s handler, like `Router.handler`;
        it runs inside ``app.app_context()`` of the app whose scheduler delivers it.
        InvalidHandlerError for a function the handler threads cannot run (async def, a
        generator function, or one that cannot take the payload)."""
        if callable(topic):  # @timers.handler without its parentheses
            raise ConfigurationError(
                "timers.handler takes the topic first: write @timers.handler(\"topic\"), "
                f"not @timers.handler above {getattr(topic, '__qualname__', topic)!r}"
            )
        self._check_open()
        if any(topic in router for router in self._included):
            raise ConfigurationError(f"topic {topic!r} already has a handler in an included router")
        return self._router.handler(
            topic,
            payload=payload,
            max_concurrent=max_concurrent,
            lease_ttl=lease_ttl,
            retry=retry,
        )

    def include_router(self, router: Router) -> None:
        """Deliver the handlers of an existing `Router` too, inside the app context."""
        self._check_open()
        if not isinstance(router, Router):
            raise ConfigurationError(f"include_router takes a Router, got {type(router).__name__}")
        merge_routers([self._router, *self._included, router])  # a topic handled twice raises
        self._included.append(router)

    def _check_open(self) -> None:
        """Refuse a handler the apps' schedulers, already created, would never deliver."""
        if scheduler_created(self):
            raise ConfigurationError(
                "register timer handlers before the scheduler is first used: it has been "
                "created already and would not deliver them"
            )

    def router_for(self, app: Flask, concurrency: int | None = None) -> Router:
        """A router of every handler, each wrapped to run in `app`'s context (and at most
        `concurrency` at once, when given): what `app`'s scheduler and worker deliver.
        Handlers are checked as registered, before this wrapping: the wrapper is a plain
        def, which hides an async handler."""
        router = Router()
        specs: list[HandlerSpec] = list(merge_routers([self._router, *self._included]).values())
        for spec in specs:
            router.handler(
                spec.topic,
                payload=spec.payload_type,
                max_concurrent=spec.max_concurrent if concurrency is None else concurrency,
                lease_ttl=spec.lease_ttl,
                retry=spec.retry,
            )(_run_in_app_context(app, spec.func))
        return router

    @property
    def topics_handled(self) -> list[str]:
        """Topics with a handler registered through this extension."""
        return list(merge_routers([self._router, *self._included]))

    # -- the scheduler --------------------------------------------------------------------

    def _state(self, app: Flask | None) -> AppState:
        """This extension's state of `app`, else of the current app, else of the app
        given to ``Timers(app)``; SchedulerStateError saying what to do when none fits."""
        if app is None:
            if has_app_context():
                app = current_app._get_current_object()  # type: ignore[attr-defined]
            elif self._app is not None:
                app = self._app
            else:
                raise SchedulerStateError(
                    "no Flask app: use timers inside an application context (a request, "
                    "a CLI command, `with app.app_context():`) or pass the app "
                    "(timers.get_scheduler(app))"
                )
        state = app_state(app)
        if state.extension is not self:
            raise SchedulerStateError(
                f"app {app.name!r} was initialised with another Timers extension: use that "
                "one with this app, or create the app without it and call timers.init_app(app)"
            )
        return state

    def get_scheduler(self, app: Flask | None = None) -> TimerScheduler:
        """The scheduler of `app` (default: the current app, else the one given to
        ``Timers(app)``), created on first use; it connects to Redis at its first call."""
        return self._state(app).scheduler

    @property
    def scheduler(self) -> TimerScheduler:
        """The current app's scheduler (see `get_scheduler`)."""
        return self.get_scheduler()

    def settings(self, app: Flask | None = None) -> TimersSettings:
        """The settings `init_app` read from `app`'s config."""
        return self._state(app).settings

    def start_in_process(self, app: Flask | None = None) -> bool:
        """Deliver in this process from now on (idempotent; True if this call started).
        The in-process mode calls it before each request; call it from gunicorn's
        ``post_worker_init`` hook to start without waiting for a request. Returns at
        once while Redis is down: the scheduler's threads wait for it."""
        return self._state(app).start_here()

    def stop_in_process(self, app: Flask | None = None, timeout: float | None = None) -> bool:
        """Stop delivering in this process (the in-process mode does it at exit)."""
        return self._state(app).stop_here(timeout)

    def _start_before_request(self) -> None:
        """The in-process mode's start, once per process; the request is served whatever
        happens (a Redis that is down is waited for by the scheduler's threads)."""
        state = self._state(None)
        if state.started_pid == os.getpid():
            return
        try:
            state.start_here()
        except RedisTimersError as exc:  # the request goes on; the next one tries again
            log.error(
                "could not start the timer scheduler in process %d: %s; the next request "
                "tries again", os.getpid(), exc,
            )

    # -- the scheduler's methods, on the current app's scheduler --------------------------

    set_timer = _proxy(TimerScheduler.set_timer)
    set_timers = _proxy(TimerScheduler.set_timers)
    cancel_timer = _proxy(TimerScheduler.cancel_timer)
    get_timer = _proxy(TimerScheduler.get_timer)
    list_timers = _proxy(TimerScheduler.list_timers)
    reschedule = _proxy(TimerScheduler.reschedule)
    purge = _proxy(TimerScheduler.purge)
    topics = _proxy(TimerScheduler.topics)
    stats = _proxy(TimerScheduler.stats)
    dead_timers = _proxy(TimerScheduler.dead_timers)
    requeue_dead = _proxy(TimerScheduler.requeue_dead)
    purge_dead = _proxy(TimerScheduler.purge_dead)
    metrics = _proxy(TimerScheduler.metrics)
    workers = _proxy(TimerScheduler.workers)
