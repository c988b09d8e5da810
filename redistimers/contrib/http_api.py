"""The HTTP admin API: timers as JSON over HTTP, for services that are not Python.

``create_blueprint`` gives a Flask blueprint to mount in an application, ``create_app`` a
ready application, and ``serve`` runs one on a threaded WSGI server (``redistimers
serve``). Every request needs ``Authorization: Bearer <token>`` unless the API was made
without a token. A request is checked in full before the scheduler is called, so one that
is refused writes nothing.
"""

from __future__ import annotations

import ipaddress
import logging
import signal
import socket
import threading

import redis

try:
    import flask
except ImportError as exc:  # the optional `flask` extra
    raise ImportError("the HTTP admin API needs Flask: pip install 'redistimers[flask]'") from exc
from werkzeug.exceptions import HTTPException
from werkzeug.serving import get_sockaddr, make_server, select_address_family

from ..errors import ConfigurationError
from ..scheduler import TimerScheduler
from ._http_json import ApiError, authenticate, error_response, token_digest
from ._http_routes import RULES, Routes

__all__ = ["DEFAULT_MAX_BODY_BYTES", "ApiError", "create_app", "create_blueprint", "serve"]

log = logging.getLogger("redistimers.http")

#: Largest request body accepted: a timer with a generous payload, far from a flood.
DEFAULT_MAX_BODY_BYTES = 64 * 1024
#: Seconds a client is told to wait when Redis cannot be reached.
RETRY_AFTER_S = 5


# -- the blueprint ------------------------------------------------------------------------


def create_blueprint(
    scheduler: TimerScheduler,
    *,
    token: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
) -> flask.Blueprint:
    """The HTTP admin API of `scheduler` as a Flask blueprint (mount it with a url_prefix).

    Requests need ``Authorization: Bearer <token>``; `token=None` leaves the API open, for
    an application that authenticates requests itself. Bodies over `max_body_bytes` are
    refused with 413.
    """
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

    @blueprint.before_request
    def guard() -> None:
        if expected is not None:
            authenticate(expected)
        length = flask.request.content_length
        if length is not None and length > max_body_bytes:
            raise ApiError(413, f"the body is larger than {max_body_bytes} bytes")

    @blueprint.errorhandler(ApiError)
    def refused(exc: ApiError) -> flask.Response:
        return error_response(exc.status, exc.message, exc.field, exc.headers)

    @blueprint.errorhandler(redis.exceptions.ConnectionError)
    @blueprint.errorhandler(redis.exceptions.TimeoutError)
    def unavailable(exc: redis.exceptions.RedisError) -> flask.Response:
        log.warning("HTTP API: Redis is unavailable: %s", exc)
        return error_response(
            503, f"Redis is unavailable: {exc}", headers={"Retry-After": str(RETRY_AFTER_S)}
        )

    for rule, endpoint, method, view in RULES:
        blueprint.add_url_rule(rule, endpoint, getattr(routes, view), methods=[method])
    return blueprint


def create_app(
    scheduler: TimerScheduler,
    *,
    token: str | None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    url_prefix: str = "",
) -> flask.Flask:
    """A Flask application serving only the HTTP admin API (errors as JSON too)."""
    app = flask.Flask(__name__)
    app.register_blueprint(
        create_blueprint(scheduler, token=token, max_body_bytes=max_body_bytes),
        url_prefix=url_prefix or None,
    )

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> flask.Response:
        headers = {k: v for k, v in exc.get_headers() if k.lower() != "content-type"}
        return error_response(exc.code or 500, exc.description or exc.name, None, headers)

    return app


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


def serve(
    scheduler: TimerScheduler,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    token: str | None = None,
    insecure: bool = False,
) -> None:
    """Serve the HTTP admin API on a threaded WSGI server until SIGINT or SIGTERM.

    Raises ConfigurationError, before listening, without a token unless `insecure` is
    true and `host` is a loopback address, and when it cannot listen on host:port.
    """
    if not isinstance(host, str) or not host:
        raise ConfigurationError(f"host must be a non-empty str, got {host!r}")
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ConfigurationError(f"port must be an int from 0 to 65535, got {port!r}")
    check_serve_settings(host, token, insecure)
    app = create_app(scheduler, token=token)
    with _listen(host, port) as sock:  # werkzeug would print and exit on a taken port
        server = make_server(host, port, app, threaded=True, fd=sock.fileno())
    if token is None:
        log.warning("serving the HTTP admin API WITHOUT authentication (--insecure)")
    shown = f"[{host}]" if ":" in host else host
    log.info("HTTP admin API listening on http://%s:%d", shown, server.port)
    previous = None
    if threading.current_thread() is threading.main_thread():
        def on_term(signum: int, frame: object) -> None:
            threading.Thread(target=server.shutdown, daemon=True).start()

        previous = signal.signal(signal.SIGTERM, on_term)
    try:
        server.serve_forever()  # returns on shutdown() and on KeyboardInterrupt
    finally:
        server.server_close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
