"""The HTTP admin API's guard: the bearer token on every route and every unrouted path,
mounting in an application, the access log, and create_app() from the environment.
A real HTTP server and client, against the session's real redis-server."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import logging
from collections.abc import Iterator
from typing import Any

import flask
import pytest
import redis

from redistimers import ConfigurationError
from redistimers.contrib.http_api import create_app, create_blueprint

from ._http_support import (
    NO_BODY,
    TOKEN,
    Api,
    ServeFactory,
    allowed,
    api_servers,
    create,
    http_server,
    redis_state,
)
from .helpers import SchedulerFactory, closed_port


@pytest.fixture
def serve_api(make_scheduler: SchedulerFactory) -> Iterator[ServeFactory]:
    with api_servers(make_scheduler) as serve:
        yield serve


@pytest.fixture
def api(serve_api: ServeFactory) -> Api:
    return serve_api()


# -- authentication -----------------------------------------------------------------------

EVERY_ROUTE = [
    ("GET", "/topics", NO_BODY),
    ("GET", "/stats", NO_BODY),
    ("GET", "/topics/invoices/stats", NO_BODY),
    ("POST", "/topics/invoices/timers", {"payload": 1, "in": "1h", "id": "sneaky"}),
    ("GET", "/topics/invoices/timers", NO_BODY),
    ("DELETE", "/topics/invoices/timers", NO_BODY),
    ("GET", "/topics/invoices/timers/INV-1", NO_BODY),
    ("PATCH", "/topics/invoices/timers/INV-1", {"in": 0}),
    ("DELETE", "/topics/invoices/timers/INV-1", NO_BODY),
    ("GET", "/topics/invoices/dead", NO_BODY),
    ("POST", "/topics/invoices/dead/requeue", NO_BODY),
    ("POST", "/topics/invoices/dead/INV-1/requeue", NO_BODY),
    ("DELETE", "/topics/invoices/dead", NO_BODY),
    ("GET", "/workers", NO_BODY),
    ("GET", "/metrics", NO_BODY),
]


@pytest.mark.parametrize(("method", "path", "body"), EVERY_ROUTE)
def test_every_route_needs_the_right_bearer_token(
    api: Api, redis_client: redis.Redis, method: str, path: str, body: Any
) -> None:
    create(api, id="INV-1")
    before = redis_state(redis_client)
    missing = api.call(method, path, body, token=None)
    assert missing.status == 401
    assert missing.headers["WWW-Authenticate"] == 'Bearer realm="redistimers"'
    wrong = api.call(method, path, body, token=TOKEN + "x")
    assert wrong.status == 401
    assert 'error="invalid_token"' in wrong.headers["WWW-Authenticate"]
    basic = api.call(method, path, body, token=None,
                     headers={"Authorization": f"Basic {TOKEN}"})
    assert basic.status == 401
    assert redis_state(redis_client) == before
    assert api.call(method, path, body).status != 401


def test_the_token_is_compared_in_constant_time(
    api: Api, monkeypatch: pytest.MonkeyPatch
) -> None:
    compared: list[tuple[object, object]] = []
    real = hmac.compare_digest

    def recording(a: Any, b: Any) -> bool:
        compared.append((a, b))
        return real(a, b)

    monkeypatch.setattr(hmac, "compare_digest", recording)
    assert api.call("GET", "/topics", token="guess").status == 401
    assert api.call("GET", "/topics", headers={"Authorization": f"bearer  {TOKEN} "},
                    token=None).status == 200
    digest = hashlib.sha256(TOKEN.encode()).digest()  # digests: the length does not leak
    assert compared == [(hashlib.sha256(b"guess").digest(), digest), (digest, digest)]


def test_a_non_ascii_token_works(serve_api: ServeFactory) -> None:
    api = serve_api(token="clé-секрет")
    conn = http.client.HTTPConnection("127.0.0.1", api.port, timeout=10)
    conn.putrequest("GET", "/topics")
    conn.putheader("Authorization", b"Bearer " + "clé-секрет".encode())
    conn.endheaders()
    assert conn.getresponse().status == 200
    assert api.call("GET", "/topics", token="cle").status == 401


def test_without_a_token_the_api_is_open(serve_api: ServeFactory) -> None:
    api = serve_api(token=None)
    assert api.call("GET", "/topics").status == 200


@pytest.mark.parametrize("token", ["", "two words", "tab\there", 42])
def test_an_unusable_token_is_a_configuration_error(
    make_scheduler: SchedulerFactory, token: Any
) -> None:
    with pytest.raises(ConfigurationError, match="token"):
        create_blueprint(make_scheduler(), token=token)


def test_other_settings_are_checked(make_scheduler: SchedulerFactory) -> None:
    with pytest.raises(ConfigurationError, match="max_body_bytes"):
        create_blueprint(make_scheduler(), token=TOKEN, max_body_bytes=0)
    with pytest.raises(ConfigurationError, match="TimerScheduler"):
        create_blueprint(redis.Redis(), token=TOKEN)  # type: ignore[arg-type]


# -- mounting ----------------------------------------------------------------------------


def test_the_blueprint_mounts_under_a_prefix_in_an_application(
    make_scheduler: SchedulerFactory,
) -> None:
    app = flask.Flask("host")
    app.add_url_rule("/", "home", lambda: "home page")
    app.register_blueprint(create_blueprint(make_scheduler(), token=TOKEN),
                           url_prefix="/admin/timers")
    with http_server(app) as port:
        api = Api(port)
        reply = api.call("POST", "/admin/timers/topics/invoices/timers",
                         {"payload": 1, "in": "1h", "id": "INV-1"})
        assert reply.headers["Location"] == "/admin/timers/topics/invoices/timers/INV-1"
        assert api.call("GET", reply.headers["Location"]).status == 200
        assert api.call("GET", "/admin/timers/topics", token=None).status == 401
        assert api.call("GET", "/", token=None).raw == b"home page"


def test_create_app_takes_a_url_prefix(serve_api: ServeFactory) -> None:
    api = serve_api(url_prefix="/v1")
    reply = api.call("POST", "/v1/topics/invoices/timers", {"payload": 1, "in": 1, "id": "INV-1"})
    assert reply.headers["Location"] == "/v1/topics/invoices/timers/INV-1"
    assert api.call("GET", "/topics").status == 404



# -- no route enumeration: without the token, 401 whatever the path or method -------------

UNROUTED = [("GET", "/nope"), ("GET", "/"), ("PUT", "/topics"), ("POST", "/stats"),
            ("GET", "/topics/invoices/timers/INV-1/nope/requeue"), ("DELETE", "/topics"),
            ("OPTIONS", "/topics"), ("GET", "/topics/")]


@pytest.mark.parametrize("url_prefix", ["", "/v1"])
def test_create_app_answers_401_to_every_request_without_the_token(
    serve_api: ServeFactory, redis_client: redis.Redis, url_prefix: str
) -> None:
    api = serve_api(url_prefix=url_prefix)
    requests = UNROUTED + [(method, url_prefix + path) for method, path in UNROUTED]
    for method, path in requests:
        for token in (None, TOKEN + "x"):
            reply = api.call(method, path, token=token)
            assert reply.status == 401, (method, path, token, reply.raw)
            assert reply.json["error"], (method, path)
            assert reply.headers["WWW-Authenticate"].startswith('Bearer realm="redistimers"')
    assert redis_state(redis_client) == {}


def test_with_the_token_unknown_paths_are_404_and_wrong_methods_405_as_json(
    serve_api: ServeFactory,
) -> None:
    for api, prefix in ((serve_api(), ""), (serve_api(url_prefix="/v1"), "/v1")):
        for path in (f"{prefix}/nope", f"{prefix}/topics/x/nope", "/other"):
            missing = api.call("GET", path)
            assert (missing.status, missing.json["field"]) == (404, None), path
        wrong = api.call("PUT", f"{prefix}/stats")
        assert (wrong.status, allowed(wrong)) == (405, {"GET", "HEAD", "OPTIONS"})
        assert wrong.headers["Content-Type"] == "application/json"
        assert wrong.json["error"]


def test_the_mounted_blueprint_answers_401_to_every_request_under_its_prefix(
    make_scheduler: SchedulerFactory,
) -> None:
    app = flask.Flask("host")
    app.add_url_rule("/", "home", lambda: "home page")
    app.add_url_rule("/admin/timers/help", "help", lambda: "the host's own page")
    app.register_blueprint(create_blueprint(make_scheduler(), token=TOKEN),
                           url_prefix="/admin/timers")
    with http_server(app) as port:
        api = Api(port)
        for method, path in UNROUTED:
            reply = api.call(method, "/admin/timers" + path, token=None)
            assert reply.status == 401, (method, path, reply.raw)
            assert reply.headers["WWW-Authenticate"] == 'Bearer realm="redistimers"'
        assert api.call("GET", "/admin/timers", token=None).status == 401
        # The host application's own pages are its business, under the prefix or not.
        assert api.call("GET", "/", token=None).raw == b"home page"
        assert api.call("GET", "/admin/timers/help", token=None).raw == b"the host's own page"
        assert api.call("GET", "/nope", token=None).status == 404
        assert api.call("GET", "/admin/timersx", token=None).status == 404
        # With the token: the API's own JSON errors.
        missing = api.call("GET", "/admin/timers/nope")
        assert (missing.status, missing.json["field"]) == (404, None)
        wrong = api.call("PUT", "/admin/timers/topics")
        assert (wrong.status, allowed(wrong)) == (405, {"GET", "HEAD", "OPTIONS"})
        assert wrong.json["error"]


def test_a_blueprint_mounted_twice_guards_both_prefixes(make_scheduler: SchedulerFactory) -> None:
    blueprint = create_blueprint(make_scheduler(), token=TOKEN)
    app = flask.Flask("host")
    app.register_blueprint(blueprint, url_prefix="/a")
    app.register_blueprint(blueprint, url_prefix="/b", name="timers_b")
    with http_server(app) as port:
        api = Api(port)
        for prefix in ("/a", "/b"):
            assert api.call("GET", f"{prefix}/nope", token=None).status == 401
            assert api.call("GET", f"{prefix}/topics").status == 200
        assert api.call("GET", "/c/nope", token=None).status == 404


# -- the access log -------------------------------------------------------------------------


def access_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records
            if r.name == "redistimers.http" and r.levelname == "INFO"]


def test_each_request_is_logged_once_without_query_or_authorization(
    serve_api: ServeFactory, caplog: pytest.LogCaptureFixture
) -> None:
    api = serve_api()
    caplog.set_level(logging.INFO, logger="redistimers.http")
    api.call("GET", "/topics?token=query-secret", token=None)
    api.call("GET", "/topics?token=query-secret")
    api.call("GET", "/topics/a%20b/timers/x%0Ay")
    api.call("POST", "/topics/invoices/timers", {"payload": 1, "in": "1h", "id": "INV-1"})
    lines = access_lines(caplog)
    assert [line.rsplit(" ", 1)[0] for line in lines] == [
        '127.0.0.1 "GET /topics" 401', '127.0.0.1 "GET /topics" 400',
        '127.0.0.1 "GET /topics/a%20b/timers/x%0Ay" 404',
        '127.0.0.1 "POST /topics/invoices/timers" 201',
    ]
    ours = "\n".join(lines)  # (werkzeug's test server logs its own lines, query and all)
    assert "query-secret" not in ours
    assert TOKEN not in ours


def test_the_mounted_blueprint_logs_only_its_own_requests(
    make_scheduler: SchedulerFactory, caplog: pytest.LogCaptureFixture
) -> None:
    app = flask.Flask("host")
    app.add_url_rule("/", "home", lambda: "home page")
    app.register_blueprint(create_blueprint(make_scheduler(), token=TOKEN),
                           url_prefix="/admin/timers")
    caplog.set_level(logging.INFO, logger="redistimers.http")
    with http_server(app) as port:
        api = Api(port)
        api.call("GET", "/")
        api.call("GET", "/nope")
        api.call("GET", "/admin/timers/topics?cursor=x")
        api.call("GET", "/admin/timers/nope", token=None)
    assert [line.rsplit(" ", 1)[0] for line in access_lines(caplog)] == [
        '127.0.0.1 "GET /admin/timers/topics" 400', '127.0.0.1 "GET /admin/timers/nope" 401',
    ]


# -- create_app() from the environment (gunicorn 'redistimers.contrib.http_api:create_app()')


def test_create_app_without_a_scheduler_reads_the_environment(
    redis_url: str, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", redis_url)
    monkeypatch.setenv("REDISTIMERS_NAMESPACE", "envns")
    monkeypatch.setenv("REDISTIMERS_API_TOKEN", TOKEN)
    with http_server(create_app()) as port:
        api = Api(port)
        assert api.call("GET", "/topics", token=None).status == 401
        create(api, "invoices", id="INV-1")
        assert redis_client.zscore("envns:{invoices}:due", "INV-1") is not None
    monkeypatch.delenv("REDISTIMERS_NAMESPACE")
    with http_server(create_app()) as port:
        create(Api(port), "invoices", id="INV-2")
        assert redis_client.zscore("redistimers:{invoices}:due", "INV-2") is not None


def test_create_app_from_the_environment_needs_redis_url_and_the_token(
    redis_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("REDISTIMERS_API_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        create_app()
    monkeypatch.setenv("REDIS_URL", "http://not-redis")
    with pytest.raises(ConfigurationError, match="REDIS_URL"):
        create_app()
    monkeypatch.setenv("REDIS_URL", redis_url)
    with pytest.raises(ConfigurationError, match="REDISTIMERS_API_TOKEN"):
        create_app()
    monkeypatch.setenv("REDISTIMERS_API_TOKEN", "")
    with pytest.raises(ConfigurationError, match="REDISTIMERS_API_TOKEN"):
        create_app()
    monkeypatch.setenv("REDISTIMERS_NAMESPACE", "a{b}")
    with pytest.raises(ConfigurationError, match="REDISTIMERS_NAMESPACE"):
        create_app(token=None)
    monkeypatch.delenv("REDISTIMERS_NAMESPACE")
    with http_server(create_app(token=None)) as port:  # open only when asked for explicitly
        assert Api(port, token=None).call("GET", "/topics").status == 200


def test_create_app_from_the_environment_does_not_need_redis_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{closed_port()}/0")
    monkeypatch.setenv("REDISTIMERS_API_TOKEN", TOKEN)
    with http_server(create_app()) as port:
        reply = Api(port).call("GET", "/topics")
        assert (reply.status, reply.headers["Retry-After"]) == (503, "5")


def test_create_app_with_a_scheduler_takes_the_token_from_the_environment_by_default(
    make_scheduler: SchedulerFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("REDISTIMERS_API_TOKEN", raising=False)
    with pytest.raises(ConfigurationError, match="REDISTIMERS_API_TOKEN"):
        create_app(make_scheduler())
    monkeypatch.setenv("REDISTIMERS_API_TOKEN", TOKEN)
    with http_server(create_app(make_scheduler())) as port:
        assert Api(port).call("GET", "/topics").status == 200
        assert Api(port, token="other").call("GET", "/topics").status == 401
    with pytest.raises(ConfigurationError, match="TimerScheduler"):
        create_app("redis://localhost")  # type: ignore[arg-type]
