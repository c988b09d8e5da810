"""The HTTP admin API: timers as JSON over HTTP, for services that are not Python.

``create_blueprint`` gives a Flask blueprint to mount in an application, ``create_app`` a
ready application (``create_app()`` reads its settings from the environment, for
``gunicorn 'redistimers.contrib.http_api:create_app()'``), and ``serve`` runs one on
waitress (``redistimers serve``). Without the token, every request under the API gets 401,
whatever its path or method, so its routes cannot be enumerated. A request is checked in
full before the scheduler is called, so one that is refused writes nothing.
"""

from __future__ import annotations

import enum
import ipaddress
import logging
import os
import signal
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any, cast

import redis
from redis.backoff import ExponentialWithJitterBackoff
from redis.retry import Retry

try:
    import flask
    from waitress import wasyncore
    from waitress.adjustments import Adjustments
    from waitress.channel import HTTPChannel
    from waitress.server import TcpWSGIServer
    from waitress.task import ThreadedTaskDispatcher
except ImportError as exc:  # the optional `flask` extra
    raise ImportError(
        "the HTTP admin API needs Flask and waitress: pip install 'redistimers[flask]'"
    ) from exc
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException
from werkzeug.serving import get_sockaddr, select_address_family

from .. import defaults
from ..connect import client_from_url
from ..errors import ConfigurationError, InvalidTimerError, RedisFullError
from ..scheduler import TimerScheduler
from ..validation import check_namespace
from ._http_json import ApiError, authenticate, error_response, token_digest
from ._http_routes import RULES, Routes

__all__ = [
    "CHANNEL_TIMEOUT_S",
    "CONNECTION_LIMIT",
    "DEFAULT_MAX_BODY_BYTES",
    "SERVE_THREADS",
    "ApiError",
    "create_app",
    "create_blueprint",
    "serve",
]

log = logging.getLogger("redistimers.http")

#: Largest request body accepted: a timer with a generous payload, far from a flood.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: Seconds a client is told to wait when Redis cannot be reached.
RETRY_AFTER_S = 5

#: Where ``create_app()`` without a scheduler finds its settings.
ENV_REDIS_URL = "REDIS_URL"
ENV_NAMESPACE = "REDISTIMERS_NAMESPACE"
ENV_TOKEN = "REDISTIMERS_API_TOKEN"
#: Seconds to wait for a connection to Redis (as TimerScheduler.from_url): a request
#: fails with 503 rather than hang while Redis is down.
REDIS_CONNECT_TIMEOUT_S = 5.0

# `serve` (waitress). Idle connections cost no thread: one thread watches every socket and
# a fixed pool runs the requests.
#: Connections open at once; at the limit a new one displaces the one idle longest, so
#: idle or slow clients cannot lock others out (waitress's default).
CONNECTION_LIMIT = 100
#: Seconds a connection may send nothing (before a request, or kept alive after one)
#: before it is closed: clients send their requests at once; idlers are dropped.
CHANNEL_TIMEOUT_S = 30
#: Seconds between two looks for connections past CHANNEL_TIMEOUT_S (they close up to
#: this much later).
CLEANUP_INTERVAL_S = 5
#: Threads running requests: each takes milliseconds of Redis, so a few serve hundreds a
#: second; more requests wait in a queue, not in new threads.
SERVE_THREADS = 4
#: Largest body waitress buffers before the application sees it (its default is 1 GiB,
#: spilled to disk); bodies over DEFAULT_MAX_BODY_BYTES below it get the API's JSON 413.
SERVE_MAX_REQUEST_BODY_BYTES = 4 * DEFAULT_MAX_BODY_BYTES
#: Seconds that requests in progress get to finish after SIGTERM or SIGINT.
SHUTDOWN_GRACE_S = 5
#: Seconds between two warnings that the connection limit displaces idle connections.
EVICTION_REPORT_S = 60.0

#: Characters left as they are in a logged path (those of RFC 3986 paths); the others,
#: control characters included, are percent-encoded, so a path cannot forge log lines.
_PATH_SAFE = "/:@!$&'()*+,;=-._~"


#: The dashboard's blueprint, nested in the API's (its endpoints' middle name).
DASHBOARD = "redistimers_dashboard"
#: Methods a read-only API refuses.
_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class _Unset(enum.Enum):
    FROM_ENVIRONMENT = "from the environment"


# -- the blueprint ------------------------------------------------------------------------


def create_blueprint(
    scheduler: TimerScheduler,
    *,
    token: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    dashboard: bool = False,
    read_only: bool = False,
) -> flask.Blueprint:
    """The HTTP admin API of `scheduler` as a Flask blueprint (mount it with a url_prefix).

    Every request under the url_prefix needs ``Authorization: Bearer <token>`` or gets
    401, unknown paths too (the host application's own views there excepted);
    `token=None` leaves the API open, for an application that authenticates requests
    itself. Bodies over `max_body_bytes` are refused with 413. Each request is logged at
    INFO to ``redistimers.http``.

    `dashboard` adds the web dashboard at the prefix's ``/`` and under ``/ui/`` (off by
    default: it adds HTML pages to the host's site); its pages take a session cookie got
    by signing in with the token. `read_only` refuses every POST, PATCH and DELETE with
    403, the dashboard's actions too, and shows no action.
    """
    return _blueprint(scheduler, token, max_body_bytes, whole_app=False,
                      dashboard=dashboard, read_only=read_only)


def _blueprint(
    scheduler: TimerScheduler, token: str | None, max_body_bytes: int, whole_app: bool,
    dashboard: bool = False, read_only: bool = False,
) -> flask.Blueprint:
    """The blueprint; `whole_app` guards every path of the app, not only the prefix's."""
    if not isinstance(scheduler, TimerScheduler):
        raise ConfigurationError(f"scheduler must be a TimerScheduler, got "
                                 f"{type(scheduler).__name__}")
    expected = token_digest(token)
    if not isinstance(max_body_bytes, int) or isinstance(max_body_bytes, bool) or (
        max_body_bytes < 1
    ):
        raise ConfigurationError(f"max_body_bytes must be an int >= 1, got {max_body_bytes!r}")
    routes = Routes(scheduler, max_body_bytes)
    blueprint = flask.Blueprint("redistimers_api", __name__)

    @blueprint.record
    def guard_on_registration(state: BlueprintSetupState) -> None:
        # An app-level hook: it runs even when routing failed, where blueprint hooks do not.
        name = f"{state.name_prefix}.{state.name}".lstrip(".")
        prefix = "" if whole_app else (state.url_prefix or "")
        state.app.before_request(_guard(
            expected, max_body_bytes, prefix, None if whole_app else name + ".",
            f"{name}.{DASHBOARD}." if dashboard else None, read_only,
        ))

    @blueprint.errorhandler(ApiError)
    def refused(exc: ApiError) -> flask.Response:
        return error_response(exc.status, exc.message, exc.field, exc.headers)

    @blueprint.errorhandler(RedisFullError)
    def full(exc: RedisFullError) -> flask.Response:
        log.warning("HTTP API: %s", exc)
        return error_response(507, str(exc))

    @blueprint.errorhandler(redis.exceptions.ConnectionError)
    @blueprint.errorhandler(redis.exceptions.TimeoutError)
    def unavailable(exc: redis.exceptions.RedisError) -> flask.Response:
        log.warning("HTTP API: Redis is unavailable: %s", exc)
        return error_response(
            503, f"Redis is unavailable: {exc}", headers={"Retry-After": str(RETRY_AFTER_S)}
        )

    for rule, endpoint, method, view in RULES:
        blueprint.add_url_rule(rule, endpoint, getattr(routes, view), methods=[method])
    if dashboard:
        from .dashboard import dashboard_blueprint

        blueprint.register_blueprint(
            dashboard_blueprint(scheduler, token=token, read_only=read_only)
        )
    return blueprint


def _under(path: str, prefix: str) -> bool:
    prefix = prefix.rstrip("/")
    return not prefix or path == prefix or path.startswith(prefix + "/")


def _guard(
    expected: bytes | None, max_body_bytes: int, prefix: str, endpoints: str | None,
    dashboard: str | None = None, read_only: bool = False,
) -> Callable[[], flask.Response | None]:
    """The check of every request under `prefix`, routed or not: it is logged, then needs
    the token before anything else is told (even whether the path exists). Requests
    routed to endpoints not starting with `endpoints` (the host app's) are left alone;
    those routed to the dashboard's (starting with `dashboard`) are left to its own gate,
    which takes a session cookie too. `read_only`: writes are refused with 403."""

    def guard() -> flask.Response | None:
        request = flask.request
        if not _under(request.path, prefix):
            return None
        rule = request.url_rule
        if endpoints is not None and rule is not None and not (
            (rule.endpoint or "").startswith(endpoints)
        ):
            return None
        flask.after_this_request(_access_log(time.perf_counter()))
        if dashboard is not None and rule is not None and (rule.endpoint or "").startswith(
            dashboard
        ):
            return None
        try:
            if expected is not None:
                authenticate(expected)
            failed = request.routing_exception
            if isinstance(failed, HTTPException) and (failed.code or 500) >= 400:
                return _http_error(failed)  # 404, 405: as JSON, once authenticated
            length = request.content_length
            if length is not None and length > max_body_bytes:
                raise ApiError(413, f"the body is larger than {max_body_bytes} bytes")
            if read_only and request.method in _WRITES:
                raise ApiError(403, "this API is read-only: it changes nothing")
        except ApiError as exc:
            return error_response(exc.status, exc.message, exc.field, exc.headers)
        return None

    return guard


def _access_log(started: float) -> Callable[[flask.Response], flask.Response]:
    """Logs the request at INFO once answered: client, method, path (never the query
    string, which may hold secrets; never a header), status and milliseconds."""
    request = flask.request
    client = request.remote_addr or "-"
    method = urllib.parse.quote(request.method, safe="")
    path = urllib.parse.quote(request.script_root + request.path, safe=_PATH_SAFE)

    def log_access(response: flask.Response) -> flask.Response:
        elapsed_ms = (time.perf_counter() - started) * 1000
        log.info('%s "%s %s" %d %.1fms', client, method, path, response.status_code,
                 elapsed_ms)
        return response

    return log_access


def _http_error(exc: HTTPException) -> flask.Response:
    """An HTTP error of Flask or werkzeug (404, 405 with its Allow, ...) as the API's JSON."""
    headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
    return error_response(exc.code or 500, exc.description or exc.name, None, headers)


# -- the application ----------------------------------------------------------------------


def create_app(
    scheduler: TimerScheduler | None = None,
    *,
    token: str | _Unset | None = _Unset.FROM_ENVIRONMENT,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    url_prefix: str = "",
    dashboard: bool = True,
    read_only: bool = False,
) -> flask.Flask:
    """A Flask application serving only the HTTP admin API (errors as JSON too); without
    the token every request gets 401, whatever its path.

    Without `scheduler`, one is built from ``$REDIS_URL`` (required) and
    ``$REDISTIMERS_NAMESPACE`` (default "redistimers"), without connecting yet: this is
    ``gunicorn 'redistimers.contrib.http_api:create_app()'``. Without `token`, it is
    ``$REDISTIMERS_API_TOKEN`` (required); ``token=None`` serves without one.
    `dashboard` serves the web dashboard at ``/`` and under ``/ui/`` (as
    `create_blueprint`); `read_only` refuses every write with 403.
    """
    from_environment = scheduler is None
    if scheduler is None:
        scheduler = _scheduler_from_environment()
    if token is _Unset.FROM_ENVIRONMENT:
        token = _token_from_environment()
    if from_environment:
        _log_to_stderr_unless_configured()
    app = flask.Flask(__name__, static_folder=None)
    app.register_blueprint(
        _blueprint(scheduler, token, max_body_bytes, whole_app=True, dashboard=dashboard,
                   read_only=read_only),
        url_prefix=url_prefix or None,
    )
    app.register_error_handler(HTTPException, _http_error)
    return app


def _token_from_environment() -> str:
    token = os.environ.get(ENV_TOKEN)
    if not token:
        raise ConfigurationError(
            f"the HTTP admin API needs a bearer token: set ${ENV_TOKEN} (or pass token=..., "
            "or token=None to serve without one)"
        )
    return token


def _scheduler_from_environment() -> TimerScheduler:
    """A scheduler on ``$REDIS_URL`` in ``$REDISTIMERS_NAMESPACE``; nothing connects until
    the first request, so the app starts while Redis is down (requests then get 503)."""
    url = os.environ.get(ENV_REDIS_URL)
    if not url:
        raise ConfigurationError(
            f"create_app() without a scheduler needs ${ENV_REDIS_URL}, such as "
            "redis://localhost:6379/0"
        )
    try:
        namespace = check_namespace(os.environ.get(ENV_NAMESPACE) or defaults.NAMESPACE)
    except InvalidTimerError as exc:
        raise ConfigurationError(f"${ENV_NAMESPACE}: {exc}") from None
    try:
        client = client_from_url(
            url,
            socket_connect_timeout=REDIS_CONNECT_TIMEOUT_S,
            # One quick retry replaces a pooled connection that died with a Redis restart.
            retry=Retry(ExponentialWithJitterBackoff(base=0.01, cap=0.1), retries=1),
        )
    except ConfigurationError as exc:  # its message shows the URL without its password
        raise ConfigurationError(f"${ENV_REDIS_URL} is not a Redis URL: {exc}") from None
    return TimerScheduler(client, namespace=namespace)


def _log_to_stderr_unless_configured() -> None:
    """Under gunicorn nobody configures Python's logging: show the library's INFO lines
    (the access log) on stderr, unless the process configured logging itself."""
    library_log = logging.getLogger("redistimers")
    if logging.root.handlers or library_log.handlers:
        return
    handler = logging.StreamHandler()
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s")
    )
    library_log.addHandler(handler)
    if library_log.level == logging.NOTSET:
        library_log.setLevel(logging.INFO)


# -- serving ------------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """True when every address `host` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(
        ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos
    )


def check_serve_settings(host: str, token: str | None, insecure: bool) -> None:
    """Refuse to serve without a token unless asked to (`insecure`) on a loopback address."""
    token_digest(token)
    if token is not None:
        return
    how = "give a token (redistimers serve --token, or $REDISTIMERS_API_TOKEN)"
    if not insecure:
        raise ConfigurationError(f"refusing to serve the HTTP admin API without a token: {how}; "
                                 "to run without one on a loopback address, add --insecure")
    if not is_loopback(host):
        raise ConfigurationError(
            f"refusing to serve the HTTP admin API without a token on {host!r}: --insecure "
            f"is allowed only on a loopback address such as 127.0.0.1; {how}"
        )


def _listen(host: str, port: int) -> socket.socket:
    """A socket listening on host:port, or ConfigurationError saying why not."""
    family = select_address_family(host, port)
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(get_sockaddr(host, port, family))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    return sock


class _Server(TcpWSGIServer):
    """waitress's server, except that at the connection limit a new connection displaces
    the one idle longest instead of waiting for a free slot: with waitress alone, enough
    idle connections would keep every other client out until they time out."""

    _evicted = 0
    _next_report = 0.0

    def channels(self) -> list[HTTPChannel]:
        """The open connections not already closing."""
        every = cast("dict[int, HTTPChannel]", self.active_channels).values()
        return [channel for channel in every if not channel.will_close]

    def _idlest(self, channels: list[HTTPChannel]) -> HTTPChannel | None:
        """The connection idle longest among those with no request to answer."""
        idle = [c for c in channels if not c.requests and not c.total_outbufs_len]
        return min(idle, key=lambda channel: channel.last_activity, default=None)

    def readable(self) -> bool:
        now = time.time()
        if now >= self.next_channel_cleanup:  # as waitress: close the silent ones
            self.next_channel_cleanup = int(now) + self.adj.cleanup_interval
            self.maintenance(int(now))
        if not self.accepting:
            return False
        channels = self.channels()
        return len(channels) < self.adj.connection_limit or self._idlest(channels) is not None

    def handle_accept(self) -> None:
        channels = self.channels()
        if len(channels) < self.adj.connection_limit:
            super().handle_accept()
            return
        victim = self._idlest(channels)
        if victim is None:
            return  # every connection has a request running: the new one waits
        # Closed in its own turn of the loop, and the newcomer accepted in the next.
        victim.will_close = True
        self._evicted += 1
        now = time.monotonic()
        if now >= self._next_report:
            log.warning(
                "HTTP API at its limit of %d connections: closed %d idle connection(s) to "
                "let new ones in (reported at most every %.0f s)",
                self.adj.connection_limit, self._evicted, EVICTION_REPORT_S,
            )
            self._evicted, self._next_report = 0, now + EVICTION_REPORT_S

    def busy(self) -> bool:
        """True while a request is running or an answer is still being sent."""
        every = cast("dict[int, HTTPChannel]", self.active_channels).values()
        return any(channel.requests or channel.total_outbufs_len for channel in every)


def serve(
    scheduler: TimerScheduler,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    insecure: bool = False,
    read_only: bool = False,
) -> None:
    """Serve the HTTP admin API and its dashboard (at ``/``; `read_only`: no writes) on
    waitress until SIGINT or SIGTERM, then let requests in
    progress finish (up to SHUTDOWN_GRACE_S seconds).

    At most CONNECTION_LIMIT connections and SERVE_THREADS threads whatever the clients
    do; a connection silent for CHANNEL_TIMEOUT_S seconds is closed. No Server header.
    Raises ConfigurationError, before listening, without a token unless `insecure` is
    true and `host` is a loopback address, and when it cannot listen on host:port.
    """
    if not isinstance(host, str) or not host:
        raise ConfigurationError(f"host must be a non-empty str, got {host!r}")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be an int from 0 to 65535, got {port!r}")
    check_serve_settings(host, token, insecure)
    app = create_app(scheduler, token=token, read_only=read_only)
    sock = _listen(host, port)
    socket_map: dict[int, Any] = {}  # waitress's dispatchers, by file descriptor
    try:
        adj = Adjustments(
            sockets=[sock], threads=SERVE_THREADS, connection_limit=CONNECTION_LIMIT,
            channel_timeout=CHANNEL_TIMEOUT_S, cleanup_interval=CLEANUP_INTERVAL_S,
            max_request_body_size=SERVE_MAX_REQUEST_BODY_BYTES, ident="",
            asyncore_use_poll=True,  # select() fails past 1024 descriptors
        )
        workers = ThreadedTaskDispatcher()
        workers.set_thread_count(adj.threads)
        server = _Server(
            app, map=socket_map, _sock=sock, dispatcher=workers, adj=adj, bind_socket=False,
            sockinfo=(sock.family, sock.type, sock.proto, sock.getsockname()),
        )
    except BaseException:
        sock.close()
        raise
    if token is None:
        log.warning("serving the HTTP admin API WITHOUT authentication (--insecure)")
    shown = f"[{host}]" if ":" in host else host
    log.info("HTTP admin API listening on http://%s:%d", shown, sock.getsockname()[1])
    stopping = threading.Event()
    previous: dict[signal.Signals, object] = {}
    if threading.current_thread() is threading.main_thread():
        def on_signal(signum: int, frame: object) -> None:
            stopping.set()  # the loop's poll wakes up at the trigger, pulled off this frame
            threading.Thread(target=server.pull_trigger, daemon=True).start()

        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            previous[stop_signal] = signal.signal(stop_signal, on_signal)
    try:
        while not stopping.is_set():
            wasyncore.loop(timeout=1.0, use_poll=True, map=socket_map, count=1)
    finally:
        wasyncore.dispatcher.close(server)  # the listening socket: no new connections
        deadline = time.monotonic() + SHUTDOWN_GRACE_S
        while server.busy() and time.monotonic() < deadline:
            wasyncore.loop(timeout=0.05, use_poll=True, map=socket_map, count=1)
        workers.shutdown(timeout=1)
        wasyncore.close_all(socket_map)
        for stop_signal, handler in previous.items():
            signal.signal(stop_signal, handler)  # type: ignore[arg-type]
