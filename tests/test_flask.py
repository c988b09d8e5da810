"""The Flask extension (redistimers.contrib.flask) with Flask's test client and CLI runner,
against the session's real redis-server."""

from __future__ import annotations

import concurrent.futures
import json
import logging
import os
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import redis
from flask import Flask, current_app, g

from redistimers import (
    ConfigurationError,
    Delivery,
    InvalidHandlerError,
    PayloadTypeError,
    RedisTimersError,
    RedisUnavailableError,
    RetryPolicy,
    Router,
    SchedulerStateError,
    TimerScheduler,
)
from redistimers.contrib.flask import Timers
from redistimers.testing import RedisServer
from tests.helpers import redistimers_threads, wait_for

REPO = Path(__file__).resolve().parent.parent
DEADLINE = 30.0


@attrs.frozen
class Reminder:
    user: str


AppFactory = Callable[..., Flask]


def _closed_port() -> int:
    """A local port nothing listens on (free a moment ago)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.fixture
def make_app(redis_client: redis.Redis, redis_url: str) -> Iterator[AppFactory]:
    """Flask apps configured for the session's Redis (namespace "web"); at teardown every
    scheduler they created is stopped."""
    apps: list[Flask] = []

    def make(timers: Timers, name: str = "web_app", **config: Any) -> Flask:
        app = Flask(name)
        app.config.update(
            {"TESTING": True, "REDISTIMERS_URL": redis_url, "REDISTIMERS_NAMESPACE": "web"}
        )
        app.config.update(config)
        timers.init_app(app)
        apps.append(app)
        return app

    yield make
    for app in apps:
        state = app.extensions["redistimers"]
        state.stop_here(timeout=5)
        if state.created:
            state.scheduler.stop(timeout=5)


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

    down = _readme_example(f"redis://127.0.0.1:{_closed_port()}/0").create_app()
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
        ("REDISTIMERS_URL", "http://localhost:6379", r"REDISTIMERS_URL 'http://localhost:6379' "
         r"is not a Redis URL.*redis://"),
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


# -- the in-process mode -----------------------------------------------------------------


def _started_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage().startswith("started the timer scheduler")]


def test_in_process_mode_starts_once_per_process_on_the_first_request_and_delivers(
    make_app: AppFactory, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="redistimers.flask")
    delivered: list[tuple[str, str]] = []
    lock = threading.Lock()
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: int, delivery: Delivery) -> None:
        with lock:
            delivered.append((current_app.name, delivery.timer_id))

    app = make_app(timers, name="inproc", REDISTIMERS_RUN_IN_WEB=True)

    @app.post("/ping")
    def schedule() -> dict[str, object]:
        return {
            "timer_id": timers.set_timer("pings", 1, activate_in=0),
            "running": timers.scheduler.running,
        }

    scheduler = timers.get_scheduler(app)
    assert not scheduler.running  # nothing starts before a request

    def post(_: int) -> dict[str, Any]:
        response = app.test_client().post("/ping")
        return response.get_json()  # type: ignore[no-any-return]

    with concurrent.futures.ThreadPoolExecutor(8) as pool:  # first requests arrive together
        answers = list(pool.map(post, range(24)))
    assert all(answer["running"] for answer in answers)
    assert len(_started_records(caplog)) == 1
    assert app.extensions["redistimers"].started_pid == os.getpid()
    assert timers.start_in_process(app) is False  # already running here

    expected = {answer["timer_id"] for answer in answers}
    wait_for(lambda: len(delivered) >= len(expected), DEADLINE)
    assert sorted(delivered) == sorted(("inproc", timer_id) for timer_id in expected)

    assert timers.stop_in_process(app) is True
    assert not scheduler.running
    app.test_client().post("/ping")  # a later request starts it again
    assert scheduler.running
    assert len(_started_records(caplog)) == 2


@pytest.fixture
def down_redis() -> Iterator[RedisServer]:
    """A redis-server on a free port, not started: nothing listens there until the test
    calls start(). Closed at teardown."""
    server = RedisServer(port=_closed_port())
    try:
        yield server
    finally:
        server.close()


def _redis_down_app(timers: Timers, server: RedisServer, **config: Any) -> Flask:
    """An app of `server` (maybe down): ``GET /health`` needs no Redis, ``POST /ping``
    schedules, and RedisUnavailableError is a 503 (as README's example does)."""
    app = Flask("down_app")
    app.config.update(REDISTIMERS_URL=server.url, REDISTIMERS_NAMESPACE="down", **config)
    timers.init_app(app)
    app.get("/health")(lambda: "ok")

    @app.post("/ping")
    def ping() -> dict[str, object]:
        return {"timer_id": timers.set_timer("pings", 1, activate_in=0),
                "running": timers.scheduler.running}

    @app.errorhandler(RedisUnavailableError)
    def redis_down(exc: RedisUnavailableError) -> tuple[str, int]:
        return str(exc), 503

    return app


def test_the_app_boots_and_serves_while_redis_is_down_and_schedules_once_it_is_up(
    down_redis: RedisServer,
) -> None:
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: int) -> None: ...

    threads_before = redistimers_threads()
    app = _redis_down_app(timers, down_redis)  # init_app does not connect
    client = app.test_client()
    health = client.get("/health")
    assert (health.status_code, health.text) == (200, "ok")
    down = client.post("/ping")
    assert down.status_code == 503
    assert f"cannot reach Redis at 127.0.0.1:{down_redis.port}" in down.text
    assert not timers.get_scheduler(app).running
    assert redistimers_threads() == threads_before  # nothing started in the background

    down_redis.start()
    up = client.post("/ping")  # the same process, the same scheduler: nothing to restart
    assert up.status_code == 200, up.text
    timer = timers.get_scheduler(app).get_timer("pings", up.get_json()["timer_id"])
    assert timer is not None
    assert timer.payload == 1


def test_in_process_mode_serves_requests_while_redis_is_down_and_delivers_once_it_is_up(
    down_redis: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    delivered: list[tuple[str, str]] = []
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: int, delivery: Delivery) -> None:
        delivered.append((current_app.name, delivery.timer_id))

    app = _redis_down_app(timers, down_redis, REDISTIMERS_RUN_IN_WEB=True)
    client = app.test_client()
    try:
        health = client.get("/health")  # the first request starts the scheduler...
        assert (health.status_code, health.text) == (200, "ok")  # ...and is served at once
        state = app.extensions["redistimers"]
        assert state.started_pid == os.getpid()
        assert state.scheduler.running
        assert not any("could not start" in r.getMessage() for r in caplog.records)
        where = f"127.0.0.1:{down_redis.port}"

        def waiting() -> list[str]:
            return [m for r in caplog.records if "waiting for Redis" in (m := r.getMessage())]

        wait_for(waiting, DEADLINE)  # its threads wait in the background
        assert where in waiting()[0]
        assert client.post("/ping").status_code == 503
        assert client.get("/health").status_code == 200

        down_redis.start()
        answer = client.post("/ping")
        assert answer.status_code == 200, answer.text
        assert answer.get_json()["running"] is True
        wait_for(lambda: delivered, DEADLINE)
        assert delivered == [("down_app", answer.get_json()["timer_id"])]
        assert len(waiting()) == 1, waiting()  # one line for the whole wait
        assert len(_started_records(caplog)) == 1
    finally:
        assert timers.stop_in_process(app, timeout=5)


@pytest.mark.slow
def test_in_process_mode_after_fork_starts_again_in_the_child_and_delivers_there(
    redis_client: redis.Redis, redis_url: str
) -> None:
    result = subprocess.run(
        [sys.executable, str(REPO / "tests" / "_flask_fork.py"), redis_url, "forking"],
        capture_output=True, text=True, cwd=REPO, timeout=DEADLINE * 2, check=False,
    )
    detail = f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"
    assert result.returncode == 0, detail
    report = json.loads(result.stdout.strip().splitlines()[-1])
    child = report["pid"]
    assert report["running_before"] is False, detail  # the parent's start is not inherited
    assert report["running_after"] is True, detail
    assert report["started_pid"] == child, detail
    assert report["delivered"] == [f"{child} {report['timer_id']}"], detail


# -- the `flask redistimers` group -------------------------------------------------------


def test_cli_group_forwards_stats_and_list_to_the_redistimers_command(
    make_app: AppFactory,
) -> None:
    timers = Timers()
    app = make_app(timers, REDISTIMERS_NAMESPACE="clins")
    with app.app_context():
        timers.set_timer("invoices", {"n": 1}, activate_in=600, timer_id="inv-1")
        timers.set_timer("invoices", {"n": 2}, activate_in=900, timer_id="inv-2")
    runner = app.test_cli_runner()

    stats = runner.invoke(args=["redistimers", "stats"])
    assert stats.exit_code == 0, stats.output
    assert "invoices" in stats.output

    listed = runner.invoke(args=["redistimers", "list", "invoices"])
    assert listed.exit_code == 0, listed.output
    assert "inv-1" in listed.output
    assert "inv-2" in listed.output

    unknown = runner.invoke(args=["redistimers", "no-such-command"])
    assert unknown.exit_code == 2, unknown.output


def test_cli_group_lists_worker_and_the_library_commands(make_app: AppFactory) -> None:
    app = make_app(Timers())
    result = app.test_cli_runner().invoke(args=["redistimers", "--help"])
    assert result.exit_code == 0, result.output
    assert "deliver this app's timers" in result.output  # worker, the group's own
    for command in ("stats", "list", "get", "schedule", "cancel", "dead"):
        assert f"\n  {command} " in result.output, result.output
    assert "demo" not in result.output  # it would not use the app's Redis


def test_cli_worker_delivers_with_the_apps_handlers_and_concurrency_until_stopped(
    make_app: AppFactory, redis_url: str
) -> None:
    release = threading.Event()
    running: list[str] = []
    timers = Timers()

    @timers.handler("reports", max_concurrent=10)
    def report(payload: int) -> None:
        running.append(current_app.config["GREETING"])
        release.wait(DEADLINE)

    app = make_app(timers, GREETING="hi")
    outsider = TimerScheduler.from_url(redis_url, namespace="web")  # schedules, as a web app
    for n in range(5):
        outsider.set_timer("reports", n, activate_in=0)

    results: list[Any] = []
    runner = app.test_cli_runner()
    thread = threading.Thread(
        target=lambda: results.append(
            runner.invoke(args=["redistimers", "worker", "--concurrency", "2",
                                "--shutdown-timeout", "5s"])
        )
    )
    thread.start()
    try:
        wait_for(lambda: len(running) == 2, DEADLINE)
        state = app.extensions["redistimers"]
        wait_for(lambda: state.created and state.scheduler.running, DEADLINE)
        assert state.scheduler.metrics().in_flight == {"reports": 2}  # --concurrency 2, not 10
    finally:
        release.set()
    wait_for(lambda: outsider.stats("reports").pending == 0, DEADLINE)
    state.scheduler.stop(5)  # run_forever returns, as it does on SIGTERM
    thread.join(DEADLINE)
    assert not thread.is_alive()
    assert results[0].exit_code == 0, results[0].output
    assert running == ["hi"] * 5


def test_cli_worker_with_wrong_credentials_exits_saying_so() -> None:
    timers = Timers()

    @timers.handler("pings")
    def ping(payload: object) -> None: ...

    with RedisServer() as url:
        with redis.Redis.from_url(url) as admin:
            admin.acl_setuser("timers", enabled=True, passwords=["+s3cret"], keys=["*"],
                              commands=["+@all"])
        app = Flask("wrong_password")
        app.config["REDISTIMERS_URL"] = url.replace("redis://", "redis://timers:wrong@")
        timers.init_app(app)
        result = app.test_cli_runner().invoke(args=["redistimers", "worker"])
    assert result.exit_code == 2, result.output
    assert "redistimers: error: Redis at 127.0.0.1:" in result.output
    assert "refused to authenticate" in result.output


def test_cli_forwarded_command_while_redis_is_down_is_one_line_naming_it(
    down_redis: RedisServer,
) -> None:
    app = _redis_down_app(Timers(), down_redis)
    result = app.test_cli_runner().invoke(args=["redistimers", "stats"])
    assert result.exit_code == 2, result.output
    assert f"cannot reach Redis at 127.0.0.1:{down_redis.port}" in result.output
    assert "Traceback" not in result.output


def test_cli_worker_without_handlers_refuses_to_start(make_app: AppFactory) -> None:
    app = make_app(Timers())
    result = app.test_cli_runner().invoke(args=["redistimers", "worker"])
    assert result.exit_code == 2
    assert "registers no timer handlers" in result.output
