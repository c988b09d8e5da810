"""The Flask extension (redistimers.contrib.flask): its packaging, its settings, scheduling
from requests and handlers run in the app context; with Flask's test client, against the
session's real redis-server."""


from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import types
from collections.abc import Iterator

import pytest
import redis
from flask import Flask, current_app, g

from redistimers import (
    ConfigurationError,
    Delivery,
    InvalidHandlerError,
    PayloadTypeError,
    RedisTimersError,
    RetryPolicy,
    Router,
    SchedulerStateError,
    TimerScheduler,
)
from redistimers.contrib.flask import Timers

from ._flask_support import (
    DEADLINE,
    AppFactory,
    Reminder,
    closed_port,
)
from ._import_graph import sibling_imports, upward_or_private
from .helpers import REPO, redistimers_threads, wait_for

# -- packaging ---------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, env=env,
        timeout=DEADLINE, check=False,
    )


def test_importing_the_extension_without_flask_is_an_import_error_naming_the_extra() -> None:
    result = _python(
        "import sys; sys.modules['flask'] = None\n"
        "try:\n"
        "    import redistimers.contrib.flask\n"
        "except ImportError as exc:\n"
        "    print(exc)\n"
    )
    assert result.returncode == 0, result.stderr
    assert "pip install 'redistimers[flask]'" in result.stdout


def test_the_core_package_does_not_import_flask() -> None:
    result = _python(
        "import pkgutil, sys, importlib, redistimers\n"
        "for module in pkgutil.iter_modules(redistimers.__path__):\n"
        "    if module.name != 'contrib':\n"
        "        importlib.import_module('redistimers.' + module.name)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('flask', 'werkzeug')))\n"
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_the_flask_modules_import_one_way_and_no_private_names() -> None:
    """The extension, then its commands, then the per-app state, then the settings: no
    module imports one above it (not even lazily), so there is no import cycle."""
    contrib = REPO / "redistimers" / "contrib"
    order = ["flask", "flask_cli", "flask_state", "flask_settings"]
    assert upward_or_private(contrib, order) == []
    assert ("flask_state", "AppState") in sibling_imports(contrib / "flask_cli.py")


def _readme_example(url: str) -> types.ModuleType:
    """The Python block of README.rst's "Flask and gunicorn" section, run as a module whose
    REDISTIMERS_URL is `url`."""
    readme = (REPO / "README.rst").read_text()
    section = readme[readme.index("\nFlask and gunicorn\n") :]
    block = section[section.index(".. code-block:: python\n") : section.index("\n**")]
    code = textwrap.dedent(block.split("\n", 1)[1])
    assert code.count("redis://localhost:6379/0") == 1, code
    module = types.ModuleType("readme_flask_example")
    module.__file__ = str(REPO / "README.rst")
    sys.modules[module.__name__] = module
    try:
        exec(compile(code.replace("redis://localhost:6379/0", url), "README.rst", "exec"),
             module.__dict__)
    finally:
        del sys.modules[module.__name__]
    return module


def test_readme_example_schedules_delivers_in_the_app_context_and_503s_while_redis_is_down(
    redis_client: redis.Redis, redis_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    example = _readme_example(redis_url)
    app = example.create_app()
    answer = app.test_client().post("/invoices/INV-7/remind")
    assert answer.status_code == 204, answer.text
    scheduler = example.timers.get_scheduler(app)
    info = scheduler.get_timer("invoices", "INV-7")
    assert info is not None
    assert info.payload == example.InvoiceDue("INV-7", 995)
    assert 29 < info.remaining.total_seconds() / 86400 <= 30
    assert scheduler.reschedule("invoices", "INV-7", activate_in=0)
    caplog.set_level(logging.INFO, logger=app.logger.name)
    assert scheduler.run_pending() == 1  # in this thread: no app context but the handler's
    assert "invoice INV-7 is due" in caplog.text

    down = _readme_example(f"redis://127.0.0.1:{closed_port()}/0").create_app()
    answer = down.test_client().post("/invoices/INV-8/remind")
    assert (answer.status_code, answer.headers["Retry-After"]) == (503, "5")


# -- configuration -----------------------------------------------------------------------


def test_settings_come_from_app_config(make_app: AppFactory, redis_client: redis.Redis) -> None:
    policy = RetryPolicy(max_attempts=3)
    timers = Timers()
    app = make_app(
        timers,
        REDISTIMERS_NAMESPACE="shop",
        REDISTIMERS_RETRY=policy,
        REDISTIMERS_MAX_POLL_INTERVAL=2.5,
        REDISTIMERS_SHUTDOWN_TIMEOUT="4",
        REDISTIMERS_RUN_IN_WEB="false",
        REDISTIMERS_REDIS_OPTIONS={"client_name": "shop-web"},
    )
    settings = timers.settings(app)
    assert (settings.namespace, settings.retry, settings.max_poll_interval) == ("shop", policy, 2.5)
    assert (settings.shutdown_timeout, settings.run_in_web) == (4.0, False)

    with app.app_context():
        timers.set_timer("emails", {"to": "ann"}, activate_in=60, timer_id="e1")
        assert isinstance(timers.scheduler, TimerScheduler)
        assert timers.scheduler is timers.get_scheduler(app)
    assert redis_client.zscore("shop:{emails}:due", "e1") is not None
    names = [client["name"] for client in redis_client.client_list()]
    assert "shop-web" in names
    assert app.extensions["redistimers"].extension is timers


def test_missing_url_is_a_configuration_error_at_init_app() -> None:
    app = Flask("no_url")
    with pytest.raises(ConfigurationError, match=r"REDISTIMERS_URL is not set.*redis://"):
        Timers(app)
    assert "redistimers" not in app.extensions


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("REDISTIMERS_NAMESPACE", "a{b}", "REDISTIMERS_NAMESPACE"),
        ("REDISTIMERS_RETRY", {"max_attempts": 3}, "REDISTIMERS_RETRY must be a"),
        ("REDISTIMERS_MAX_POLL_INTERVAL", 0, "REDISTIMERS_MAX_POLL_INTERVAL must be > 0"),
        ("REDISTIMERS_RUN_IN_WEB", "maybe", "REDISTIMERS_RUN_IN_WEB must be a bool"),
        ("REDISTIMERS_REDIS_OPTIONS", "ssl=1", "REDISTIMERS_REDIS_OPTIONS must be a dict"),
        ("REDISTIMERS_URL", "http://localhost:6379", r"REDISTIMERS_URL: invalid Redis URL "
         r"'http://localhost:6379'.*redis://.*redis\+sentinel://.*redis\+cluster://"),
        ("REDISTIMERS_URL", "redis://:s3cret@localhost:63x9/0", r"'redis://:\*\*\*@localhost:63x9/0'"
         r" is not a Redis URL.*Port"),
        ("REDISTIMERS_URL", "redis://localhost?socket_timeout=soon", "socket_timeout"),
        ("REDISTIMERS_REDIS_OPTIONS", {"sokcet_timeout": 1}, r"REDISTIMERS_REDIS_OPTIONS.*sokcet"),
        ("REDISTIMERS_REDIS_OPTIONS", {1: 2}, "keys must be keyword names"),
        ("REDISTIMERS_REDIS_OPTIONS", {"retry": None}, r"not set 'retry'.*REDISTIMERS_RETRY"),
        ("REDISTIMERS_REDIS_OPTIONS", {"namespace": "x"}, "REDISTIMERS_NAMESPACE"),
        ("REDISTIMERS_REDIS_OPTIONS", {"single_connection_client": True},
         r"not set 'single_connection_client'.*connects"),
    ],
    ids=["namespace", "retry", "max_poll_interval", "run_in_web", "redis_options", "url_scheme",
         "url_port", "url_query", "unknown_option", "option_key", "scheduler_option",
         "namespace_option", "eager_option"],
)
def test_invalid_settings_are_refused_at_init_app(
    redis_url: str, key: str, value: object, message: str
) -> None:
    app = Flask("bad_config")
    app.config.update({"REDISTIMERS_URL": redis_url, key: value})
    with pytest.raises(ConfigurationError, match=message) as caught:
        Timers().init_app(app)
    assert "s3cret" not in str(caught.value)  # a password is never repeated
    assert "redistimers" not in app.extensions


def test_scheduler_needs_an_app_initialised_with_this_extension(make_app: AppFactory) -> None:
    timers = Timers()
    app = make_app(timers)
    # SchedulerStateError is a RedisTimersError and a RuntimeError: both excepts catch it.
    with pytest.raises(SchedulerStateError, match=r"application context.*get_scheduler\(app\)"):
        timers.set_timer("t", 1, activate_in=1)
    with pytest.raises(SchedulerStateError, match="application context"):
        timers.scheduler  # noqa: B018
    with Flask("other").app_context(), pytest.raises(
        SchedulerStateError, match=r"not initialised on app 'other': call timers.init_app\(app\)"
    ):
        timers.set_timer("t", 1, activate_in=1)
    with app.app_context(), pytest.raises(SchedulerStateError, match="another Timers extension"):
        Timers().stats()
    with pytest.raises(ConfigurationError, match="expected a Flask app, got str"):
        timers.get_scheduler("web_app")  # type: ignore[arg-type]
    assert issubclass(SchedulerStateError, RuntimeError)
    assert issubclass(SchedulerStateError, RedisTimersError)


def test_init_app_twice_on_one_app_is_refused(make_app: AppFactory) -> None:
    timers = Timers()
    app = make_app(timers)
    with pytest.raises(SchedulerStateError, match=r"already initialised on app 'web_app'.*once"):
        Timers().init_app(app)
    with pytest.raises(SchedulerStateError, match="already initialised"):
        timers.init_app(app)
    assert app.extensions["redistimers"].extension is timers


def test_init_app_needs_a_flask_app() -> None:
    with pytest.raises(ConfigurationError, match="expected a Flask app, got dict"):
        Timers({"REDISTIMERS_URL": "redis://localhost"})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="expected a Flask app, got NoneType"):
        Timers().init_app(None)  # type: ignore[arg-type]


# -- scheduling from requests ------------------------------------------------------------


def test_route_schedules_a_timer_and_the_web_process_runs_no_scheduler(
    make_app: AppFactory,
) -> None:
    timers = Timers()

    @timers.handler("reminders", payload=Reminder)
    def remind(reminder: Reminder) -> None:
        raise AssertionError("no handler runs in a web process by default")

    app = make_app(timers)

    @app.post("/remind/<user>")
    def schedule(user: str) -> dict[str, str]:
        return {"timer_id": timers.set_timer("reminders", Reminder(user), activate_in=0)}

    @app.post("/bad")
    def bad() -> dict[str, str]:
        return {"timer_id": timers.set_timer("reminders", {"user": 1}, activate_in=0)}

    threads_before = redistimers_threads()
    client = app.test_client()
    timer_ids = [client.post(f"/remind/u{i}").get_json()["timer_id"] for i in range(3)]
    with pytest.raises(PayloadTypeError, match="reminders"):  # checked, since the type is known
        client.post("/bad")

    scheduler = timers.get_scheduler(app)
    assert not scheduler.running
    assert redistimers_threads() == threads_before
    for i, timer_id in enumerate(timer_ids):
        info = scheduler.get_timer("reminders", timer_id)
        assert info is not None
        assert info.payload == Reminder(f"u{i}")
    assert scheduler.stats("reminders").pending == 3


def test_proxies_act_on_the_current_apps_scheduler(make_app: AppFactory) -> None:
    timers = Timers()
    app = make_app(timers)
    with app.app_context():
        timers.set_timer("jobs", {"n": 1}, activate_in=60, timer_id="j1")
        timers.set_timer("jobs", {"n": 2}, activate_in=120, timer_id="j2")
        assert timers.topics() == ["jobs"]
        assert [t.timer_id for t in timers.list_timers("jobs").timers] == ["j1", "j2"]
        assert timers.reschedule("jobs", "j2", activate_in=1)
        info = timers.get_timer("jobs", "j2")
        assert info is not None
        assert info.remaining.total_seconds() <= 1
        assert timers.cancel_timer("jobs", "j1")
        assert timers.stats()["jobs"].pending == 1
        assert timers.purge("jobs") == 1
        assert timers.dead_timers("jobs") == []
        assert timers.requeue_dead("jobs") == 0
        assert timers.purge_dead("jobs") == 0
        assert timers.metrics().claimed == 0
        assert timers.workers() == []  # nothing delivers here


# -- handlers inside the app context -----------------------------------------------------


def test_handlers_run_inside_the_app_context_and_its_teardown_runs_after_each(
    make_app: AppFactory,
) -> None:
    seen: list[tuple[str, str, str, int]] = []
    torn_down: list[str] = []
    timers = Timers()

    @timers.handler("greetings", payload=Reminder)
    def greet(reminder: Reminder, delivery: Delivery) -> None:
        g.user = reminder.user  # g exists: the app context is pushed
        seen.append(
            (current_app.config["GREETING"], reminder.user, delivery.timer_id, delivery.attempt)
        )

    app = make_app(timers, GREETING="hello")

    @app.teardown_appcontext
    def release_session(exc: BaseException | None) -> None:  # as Flask-SQLAlchemy does
        torn_down.append(g.get("user", "?"))

    scheduler = timers.get_scheduler(app)
    with scheduler:  # handlers run in the scheduler's threads, where no context is pushed
        timers_ids = [
            scheduler.set_timer("greetings", Reminder(user), activate_in=0, timer_id=user)
            for user in ("ann", "bob")
        ]
        wait_for(lambda: len(torn_down) == 2, DEADLINE)
    assert sorted(seen) == [("hello", user, user, 1) for user in timers_ids]
    assert sorted(torn_down) == ["ann", "bob"]


def test_included_router_handlers_run_in_the_app_context_with_or_without_delivery(
    make_app: AppFactory,
) -> None:
    seen: list[tuple[str, object]] = []
    router = Router()

    @router.handler("plain")
    def plain(payload: int) -> None:
        seen.append((current_app.name, payload))

    @router.handler("detailed", payload=Reminder)
    def detailed(reminder: Reminder, delivery: Delivery) -> None:
        seen.append((current_app.name, (reminder.user, delivery.topic)))

    timers = Timers()
    timers.include_router(router)
    assert timers.topics_handled == ["plain", "detailed"]
    app = make_app(timers, name="routed")
    scheduler = timers.get_scheduler(app)
    scheduler.set_timer("plain", 7, activate_in=0)
    scheduler.set_timer("detailed", Reminder("cy"), activate_in=0)
    assert scheduler.run_pending() == 2  # in this thread, which has no app context
    assert sorted(seen, key=str) == [("routed", ("cy", "detailed")), ("routed", 7)]
    assert [spec.func for spec in router] == [plain, detailed]  # the router is left as it was


def test_one_extension_serves_two_apps_each_with_its_own_config_and_context(
    make_app: AppFactory,
) -> None:
    seen: list[tuple[str, str]] = []
    timers = Timers()

    @timers.handler("audit")
    def audit(payload: str) -> None:
        seen.append((current_app.name, payload))

    first = make_app(timers, name="first", REDISTIMERS_NAMESPACE="one")
    second = make_app(timers, name="second", REDISTIMERS_NAMESPACE="two")
    with first.app_context():
        timers.set_timer("audit", "from first", activate_in=0)
    with second.app_context():
        timers.set_timer("audit", "from second", activate_in=0)
    assert timers.get_scheduler(first) is not timers.get_scheduler(second)
    assert timers.get_scheduler(first).run_pending() == 1
    assert timers.get_scheduler(second).run_pending() == 1
    assert seen == [("first", "from first"), ("second", "from second")]


def test_handlers_are_registered_before_the_scheduler_is_created(make_app: AppFactory) -> None:
    timers = Timers()

    @timers.handler("early")
    def early(payload: object) -> None: ...

    other = Router()
    other.handler("early")(early)
    with pytest.raises(ConfigurationError, match="early"):
        timers.include_router(other)
    with pytest.raises(ConfigurationError, match="max_concurrent"):
        timers.handler("bad", max_concurrent=0)

    app = make_app(timers)
    assert timers.get_scheduler(app).topics_handled == ["early"]
    with pytest.raises(ConfigurationError, match="before the scheduler is first used"):
        timers.handler("late")
    with pytest.raises(ConfigurationError, match="before the scheduler is first used"):
        timers.include_router(Router())


def test_async_generator_and_payloadless_handlers_are_refused_at_registration(
    make_app: AppFactory,
) -> None:
    timers = Timers()

    async def pinged(payload: int) -> None: ...

    def pings(payload: int) -> Iterator[int]:
        yield payload

    def no_payload() -> None: ...

    with pytest.raises(InvalidHandlerError, match=r"pinged' of topic 'a' is an async function"):
        timers.handler("a")(pinged)
    with pytest.raises(InvalidHandlerError, match=r"pings' of topic 'g' is a generator function"):
        timers.handler("g")(pings)
    with pytest.raises(InvalidHandlerError, match=r"no_payload' of topic 'n' cannot be called"):
        timers.handler("n")(no_payload)
    assert issubclass(InvalidHandlerError, ConfigurationError)
    assert issubclass(InvalidHandlerError, TypeError)
    with pytest.raises(ConfigurationError, match=r"@timers.handler\(\"topic\"\)"):
        timers.handler(pinged)  # type: ignore[arg-type]  # the decorator without its topic

    @timers.handler("a")  # the refused topics are free, and registration still open
    def ping(payload: int) -> None:
        seen.append((current_app.name, payload))

    seen: list[tuple[str, int]] = []
    assert timers.topics_handled == ["a"]
    app = make_app(timers, name="checked")
    scheduler = timers.get_scheduler(app)  # the app-context wrapper of each handler is
    scheduler.set_timer("a", 5, activate_in=0)  # accepted by the scheduler's router
    assert scheduler.run_pending() == 1
    assert seen == [("checked", 5)]


