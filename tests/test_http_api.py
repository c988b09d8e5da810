"""The HTTP admin API: every route, every error status and authentication, through a real
HTTP server on 127.0.0.1 (werkzeug's, in a thread) and a real HTTP client (http.client),
against the session's real redis-server."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import http.client
import json
import logging
import os
import socket
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import attrs
import flask
import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry
from werkzeug.serving import make_server

from redistimers import ConfigurationError, Delivery, RetryPolicy, Router, TimerScheduler
from redistimers.admin import encode_cursor
from redistimers.contrib.http_api import create_app, create_blueprint

from .helpers import InvoiceDue, SchedulerFactory, running, wait_for

TOKEN = "s3cret-token-for-tests"
_DEFAULT: Any = object()
ONE_ATTEMPT = RetryPolicy(max_attempts=1, initial=0.01, maximum=0.01, jitter=False)


@attrs.frozen
class Reply:
    status: int
    headers: http.client.HTTPMessage
    raw: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.raw)


class Api:
    """A real HTTP client of a server on 127.0.0.1."""

    def __init__(self, port: int, token: str | None = TOKEN) -> None:
        self.port, self.token = port, token

    def call(
        self,
        method: str,
        path: str,
        body: Any = _DEFAULT,
        *,
        token: str | None = _DEFAULT,
        headers: dict[str, str] | None = None,
        data: bytes | Iterable[bytes] | None = None,
    ) -> Reply:
        token = self.token if token is _DEFAULT else token
        sent = {"Authorization": f"Bearer {token}"} if token is not None else {}
        if body is not _DEFAULT:
            data = json.dumps(body).encode()
            sent["Content-Type"] = "application/json"
        sent.update(headers or {})
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            conn.request(method, path, body=data, headers=sent)
            response = conn.getresponse()
            return Reply(response.status, response.headers, response.read())
        finally:
            conn.close()


@contextlib.contextmanager
def http_server(app: flask.Flask) -> Iterator[int]:
    """Serve `app` on a free port of 127.0.0.1 in a thread; yields the port."""
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


ServeFactory = Callable[..., Api]


@pytest.fixture
def serve_api(make_scheduler: SchedulerFactory) -> Iterator[ServeFactory]:
    """serve_api(scheduler=None, token=TOKEN, **create_app options) -> Api of a live server."""
    with contextlib.ExitStack() as stack:

        def serve(scheduler: TimerScheduler | None = None, token: str | None = TOKEN,
                  **options: Any) -> Api:
            app = create_app(scheduler or make_scheduler(), token=token, **options)
            return Api(stack.enter_context(http_server(app)), token)

        yield serve


@pytest.fixture
def api(serve_api: ServeFactory) -> Api:
    return serve_api()


def redis_state(client: redis.Redis) -> dict[bytes, bytes]:
    """Every key and its serialized value: equal snapshots mean nothing was written."""
    return {key: client.dump(key) for key in sorted(client.keys("*"))}  # type: ignore[misc]


def create(api: Api, topic: str = "invoices", /, **body: Any) -> Reply:
    when = {} if "at" in body or "every" in body else {"in": "1h"}
    reply = api.call("POST", f"/topics/{topic}/timers", {"payload": {"n": 1}, **when, **body})
    assert reply.status == 201, reply.raw
    return reply


# -- scheduling -----------------------------------------------------------------------------


def test_post_schedules_a_timer_and_answers_201_with_it_and_its_location(
    api: Api, redis_client: redis.Redis
) -> None:
    reply = api.call("POST", "/topics/invoices/timers", {
        "payload": {"invoice_id": "INV-1", "amount_cents": 995}, "in": "30s", "id": "INV-1",
        "headers": {"tenant": "acme"}, "correlation_id": "req-42",
    })
    assert reply.status == 201
    assert reply.headers["Location"] == "/topics/invoices/timers/INV-1"
    assert reply.headers["Content-Type"] == "application/json"
    timer = reply.json
    assert timer.pop("due_at").endswith("Z")
    assert 29 < timer.pop("remaining_s") <= 30
    assert timer == {
        "topic": "invoices", "id": "INV-1", "attempts": 0, "leased": False,
        "payload": {"invoice_id": "INV-1", "amount_cents": 995},
        "headers": {"tenant": "acme"}, "correlation_id": "req-42",
    }
    again = api.call("GET", reply.headers["Location"])
    assert again.status == 200
    assert again.json["due_at"] == reply.json["due_at"]
    assert redis_client.zscore("redistimers:{invoices}:due", "INV-1") is not None


def test_post_at_takes_iso_8601_with_an_offset_and_shows_it_in_utc(api: Api) -> None:
    reply = api.call("POST", "/topics/invoices/timers",
                     {"payload": 1, "at": "2030-01-01T10:00:00+01:00", "id": "new-year"})
    assert reply.status == 201
    assert reply.json["due_at"] == "2030-01-01T09:00:00.000000Z"
    zulu = api.call("POST", "/topics/invoices/timers",
                    {"payload": 1, "at": "2030-01-01T09:00:00.5Z"})
    assert zulu.json["due_at"] == "2030-01-01T09:00:00.500000Z"


def test_post_with_numbers_of_seconds_and_generated_ids(api: Api) -> None:
    first, second = create(api, **{"in": 90}), create(api, **{"in": 0.25})
    assert first.json["id"] != second.json["id"]
    assert 89 < first.json["remaining_s"] <= 90
    assert second.headers["Location"].endswith("/" + second.json["id"])


def test_post_periodic_timers_show_their_period(api: Api) -> None:
    every = api.call("POST", "/topics/reports/timers",
                     {"payload": {"kind": "refresh"}, "every": "5m", "id": "refresh"})
    assert every.status == 201
    assert every.json["every_s"] == 300.0
    assert 299 < every.json["remaining_s"] <= 300
    cron = api.call("POST", "/topics/reports/timers", {
        "payload": "weekly", "cron": "0 7 * * mon", "tz": "Europe/Berlin", "id": "weekly",
    })
    assert cron.status == 201
    assert (cron.json["cron"], cron.json["tz"]) == ("0 7 * * mon", "Europe/Berlin")
    assert "every_s" not in cron.json
    assert "cron" not in create(api).json


def test_optional_fields_given_as_null_count_as_absent(api: Api) -> None:
    reply = api.call("POST", "/topics/invoices/timers", {
        "payload": None, "in": "2h", "at": None, "id": None, "headers": None,
        "correlation_id": None, "every": None, "cron": None, "tz": None,
    })
    assert reply.status == 201, reply.raw
    assert (reply.json["payload"], reply.json["headers"]) == (None, {})
    assert len(reply.json["id"]) == 22
    assert "every_s" not in reply.json


def test_post_with_an_existing_id_replaces_that_timer(api: Api) -> None:
    create(api, id="INV-1", payload="old")
    create(api, id="INV-1", payload="new", **{"in": "2h"})
    timer = api.call("GET", "/topics/invoices/timers/INV-1").json
    assert timer["payload"] == "new"
    assert 7100 < timer["remaining_s"] <= 7200


def test_post_on_a_typed_topic_decodes_the_json_into_its_type(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, redis_client: redis.Redis
) -> None:
    router = Router()
    router.handler("invoices", payload=InvoiceDue)(lambda invoice: None)
    api = serve_api(make_scheduler(router))
    good = create(api, payload={"invoice_id": "INV-1", "amount_cents": 995}, id="INV-1")
    assert good.json["payload"] == {"invoice_id": "INV-1", "amount_cents": 995}
    before = redis_state(redis_client)
    for payload in ({"invoice_id": "INV-2"}, "INV-2", {"invoice_id": "INV-2", "amount_cents": "x"}):
        reply = api.call("POST", "/topics/invoices/timers",
                         {"payload": payload, "in": "1h", "id": "INV-1"})
        assert reply.status == 400, payload
        assert reply.json["field"] == "payload"
        assert "InvoiceDue" in reply.json["error"]
    assert redis_state(redis_client) == before


def test_ids_with_slashes_are_addressed_percent_encoded_or_not(api: Api) -> None:
    reply = create(api, id="acme/INV 7")
    assert reply.headers["Location"] == "/topics/invoices/timers/acme/INV%207"
    assert api.call("GET", "/topics/invoices/timers/acme%2FINV%207").json["id"] == "acme/INV 7"
    assert api.call("DELETE", reply.headers["Location"]).status == 204


# -- bad input: 400 naming the field, nothing written ---------------------------------------

BAD_TIMERS = [
    ({"in": "1h"}, "payload"),
    ({"payload": 1, "in": "soon"}, "in"),
    ({"payload": 1, "in": -1}, "in"),
    ({"payload": 1, "in": True}, "in"),
    ({"payload": 1, "in": None}, "in"),
    ({"payload": 1, "in": 1e300}, "in"),
    ({"payload": 1, "at": "tomorrow"}, "at"),
    ({"payload": 1, "at": "2030-01-01T09:00:00"}, "at"),
    ({"payload": 1, "at": 1893488400}, "at"),
    ({"payload": 1, "in": "1h", "at": "2030-01-01T09:00:00Z"}, "at"),
    ({"payload": 1}, "in"),
    ({"payload": 1, "in": "1h", "id": ""}, "id"),
    ({"payload": 1, "in": "1h", "id": 7}, "id"),
    ({"payload": 1, "in": "1h", "id": "x" * 300}, "id"),
    ({"payload": 1, "in": "1h", "headers": {"a": 1}}, "headers"),
    ({"payload": 1, "in": "1h", "headers": ["a"]}, "headers"),
    ({"payload": 1, "in": "1h", "correlation_id": 5}, "correlation_id"),
    ({"payload": 1, "every": "0s"}, "every"),
    ({"payload": 1, "every": "often"}, "every"),
    ({"payload": 1, "cron": "every monday"}, "cron"),
    ({"payload": 1, "cron": 5}, "cron"),
    ({"payload": 1, "every": "1m", "cron": "* * * * *"}, "cron"),
    ({"payload": 1, "in": "1h", "tz": "UTC"}, "tz"),
    ({"payload": 1, "cron": "* * * * *", "tz": "Mars/Olympus_Mons"}, "tz"),
    ({"payload": 1, "in": "1h", "delay": "1h"}, "delay"),
    ({"payload": 1, "in": "1h", "id": "line\nbreak"}, "id"),
]


@pytest.mark.parametrize(("body", "field"), BAD_TIMERS)
def test_bad_timer_is_refused_with_400_naming_the_field_and_nothing_written(
    api: Api, redis_client: redis.Redis, body: dict[str, Any], field: str
) -> None:
    create(api, id="existing")
    before = redis_state(redis_client)
    attempt = body if "id" in body else {**body, "id": "existing"}  # would replace it
    reply = api.call("POST", "/topics/invoices/timers", attempt)
    assert reply.status == 400, reply.raw
    assert reply.json["field"] == field
    assert reply.json["error"]
    assert redis_state(redis_client) == before


@pytest.mark.parametrize(
    ("data", "content_type", "status"),
    [
        (b"{not json", "application/json", 400),
        (b"[1, 2]", "application/json", 400),
        (b'{"payload": NaN, "in": 1}', "application/json", 400),
        (b'{"payload": "\xff", "in": 1}', "application/json", 400),
        (b"", "application/json", 400),
        (b'{"payload": 1, "in": 1}', "text/plain", 415),
        (b"payload=1&in=1", "application/x-www-form-urlencoded", 415),
    ],
)
def test_a_body_that_is_not_a_json_object_is_refused(
    api: Api, redis_client: redis.Redis, data: bytes, content_type: str, status: int
) -> None:
    reply = api.call("POST", "/topics/invoices/timers", data=data,
                     headers={"Content-Type": content_type})
    assert reply.status == status
    assert reply.json["field"] is None
    assert redis_state(redis_client) == {}


def test_a_body_without_content_type_is_415(api: Api, redis_client: redis.Redis) -> None:
    reply = api.call("POST", "/topics/invoices/timers", data=b'{"payload": 1, "in": 1}')
    assert reply.status == 415
    assert "application/json" in reply.json["error"]
    assert redis_state(redis_client) == {}


@pytest.mark.parametrize("topic", ["a%7Bb%7D", "x" * 201, "tab%09bed"])
def test_an_invalid_topic_in_the_path_is_400_naming_topic(
    api: Api, redis_client: redis.Redis, topic: str
) -> None:
    for method, path, body in [("POST", f"/topics/{topic}/timers", {"payload": 1, "in": 1}),
                               ("GET", f"/topics/{topic}/timers", _DEFAULT),
                               ("GET", f"/topics/{topic}/timers/x", _DEFAULT)]:
        reply = api.call(method, path, body)
        assert (reply.status, reply.json["field"]) == (400, "topic"), (method, path)
    assert redis_state(redis_client) == {}


@pytest.mark.parametrize("timer_id", ["bell%07", "x" * 257])
def test_an_invalid_id_in_the_path_is_400_naming_id(
    api: Api, redis_client: redis.Redis, timer_id: str
) -> None:
    create(api, id="INV-1")
    before = redis_state(redis_client)
    for method, body in [("GET", _DEFAULT), ("PATCH", {"in": 1}), ("DELETE", _DEFAULT)]:
        reply = api.call(method, f"/topics/invoices/timers/{timer_id}", body)
        assert (reply.status, reply.json["field"]) == (400, "id"), method
    assert redis_state(redis_client) == before


def test_a_timer_delivered_before_it_is_read_back_still_answers_201(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, release: threading.Event
) -> None:
    """A worker may fire a timer due now between the write and the read-back; the answer
    is then built from what was written (this races, so it runs a hundred times)."""
    router = Router()
    router.handler("fast")(lambda payload: None)
    scheduler = make_scheduler(router)
    api = serve_api(scheduler)
    with running(scheduler, release):
        for n in range(100):
            reply = api.call("POST", "/topics/fast/timers",
                             {"payload": n, "in": 0, "id": f"t{n}", "headers": {"n": str(n)}})
            assert reply.status == 201
            timer = reply.json
            assert (timer["id"], timer["payload"], timer["headers"]) == (f"t{n}", n, {"n": str(n)})
            assert timer["due_at"].endswith("Z")


# -- body size limit ----------------------------------------------------------------------


def test_a_body_over_the_limit_is_413_with_or_without_content_length(
    serve_api: ServeFactory, redis_client: redis.Redis
) -> None:
    api = serve_api(max_body_bytes=1024)
    exact = json.dumps({"payload": "x", "in": 1}).encode()
    exact += b" " * (1024 - len(exact))
    json_type = {"Content-Type": "application/json"}
    assert api.call("POST", "/topics/t/timers", data=exact, headers=json_type).status == 201
    before = redis_state(redis_client)
    over = exact + b" "
    reply = api.call("POST", "/topics/t/timers", data=over, headers=json_type)
    assert reply.status == 413
    assert "1024 bytes" in reply.json["error"]
    chunked = api.call("POST", "/topics/t/timers", data=iter([over[:600], over[600:]]),
                       headers=json_type)  # an iterable body goes chunked, without length
    assert chunked.status == 413
    assert redis_state(redis_client) == before


def test_the_default_limit_is_64_kib(api: Api, redis_client: redis.Redis) -> None:
    reply = api.call("POST", "/topics/t/timers", {"payload": "x" * 70_000, "in": 1})
    assert reply.status == 413
    assert redis_state(redis_client) == {}


# -- authentication -----------------------------------------------------------------------

EVERY_ROUTE = [
    ("GET", "/topics", _DEFAULT),
    ("GET", "/stats", _DEFAULT),
    ("GET", "/topics/invoices/stats", _DEFAULT),
    ("POST", "/topics/invoices/timers", {"payload": 1, "in": "1h", "id": "sneaky"}),
    ("GET", "/topics/invoices/timers", _DEFAULT),
    ("DELETE", "/topics/invoices/timers", _DEFAULT),
    ("GET", "/topics/invoices/timers/INV-1", _DEFAULT),
    ("PATCH", "/topics/invoices/timers/INV-1", {"in": 0}),
    ("DELETE", "/topics/invoices/timers/INV-1", _DEFAULT),
    ("GET", "/topics/invoices/dead", _DEFAULT),
    ("POST", "/topics/invoices/dead/requeue", _DEFAULT),
    ("POST", "/topics/invoices/dead/INV-1/requeue", _DEFAULT),
    ("DELETE", "/topics/invoices/dead", _DEFAULT),
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


# -- get, reschedule, cancel ----------------------------------------------------------------


def test_get_of_an_unknown_timer_is_404_naming_the_id(api: Api) -> None:
    """Whatever its topic: a topic without timers is not an error, an absent timer is."""
    create(api, id="INV-1")
    topic = api.call("GET", "/topics/nope/timers/INV-1")
    assert (topic.status, topic.json["field"]) == (404, "id")
    timer = api.call("GET", "/topics/invoices/timers/INV-2")
    assert (timer.status, timer.json["field"]) == (404, "id")
    assert "INV-2" in timer.json["error"]


def test_patch_moves_a_timer_and_answers_it(api: Api, redis_client: redis.Redis) -> None:
    create(api, id="INV-1", headers={"k": "v"})
    moved = api.call("PATCH", "/topics/invoices/timers/INV-1", {"at": "2031-06-01T00:00:00Z"})
    assert moved.status == 200
    assert moved.json["due_at"] == "2031-06-01T00:00:00.000000Z"
    assert moved.json["headers"] == {"k": "v"}
    soon = api.call("PATCH", "/topics/invoices/timers/INV-1", {"in": "90s"})
    assert 89 < soon.json["remaining_s"] <= 90
    before = redis_state(redis_client)
    for body, field in [({}, "in"), ({"in": "x"}, "in"), ({"at": "2031"}, "at"),
                        ({"in": 1, "at": "2031-06-01T00:00:00Z"}, "at"),
                        ({"payload": 2}, "payload")]:
        reply = api.call("PATCH", "/topics/invoices/timers/INV-1", body)
        assert (reply.status, reply.json["field"]) == (400, field), body
    assert redis_state(redis_client) == before
    assert api.call("PATCH", "/topics/invoices/timers/INV-9", {"in": 1}).status == 404
    assert api.call("PATCH", "/topics/nope/timers/INV-1", {"in": 1}).status == 404


def test_patch_of_a_timer_a_handler_is_running_is_409(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, redis_client: redis.Redis,
    release: threading.Event,
) -> None:
    router = Router()
    router.handler("jobs")(lambda payload: release.wait(10))
    scheduler = make_scheduler(router)
    api = serve_api(scheduler)
    with running(scheduler, release):
        create(api, "jobs", id="busy", **{"in": 0})
        wait_for(lambda: api.call("GET", "/topics/jobs/timers/busy").json["leased"])
        before = redis_state(redis_client)
        reply = api.call("PATCH", "/topics/jobs/timers/busy", {"in": "1h"})
        assert (reply.status, reply.json["field"]) == (409, "id")
        assert "handler is running" in reply.json["error"]
        assert redis_state(redis_client) == before


def test_delete_cancels_a_timer_then_404(api: Api, redis_client: redis.Redis) -> None:
    create(api, id="INV-1")
    reply = api.call("DELETE", "/topics/invoices/timers/INV-1")
    assert (reply.status, reply.raw) == (204, b"")
    assert redis_client.hlen("redistimers:{invoices}:body") == 0
    assert api.call("DELETE", "/topics/invoices/timers/INV-1").status == 404
    assert api.call("DELETE", "/topics/nope/timers/INV-1").json["field"] == "id"


# -- listing, stats, purge ----------------------------------------------------------------


def test_list_pages_through_timers_in_due_order_with_next_cursor(api: Api) -> None:
    for n in range(5):
        create(api, id=f"t{n}", **{"in": f"{n + 1}m"})
    seen, path = [], "/topics/invoices/timers?limit=2"
    while True:
        page = api.call("GET", path).json
        seen.append([timer["id"] for timer in page["timers"]])
        if page["next_cursor"] is None:
            break
        path = "/topics/invoices/timers?" + urllib.parse.urlencode(
            {"limit": 2, "cursor": page["next_cursor"]})
    assert seen == [["t0", "t1"], ["t2", "t3"], ["t4"]]
    everything = api.call("GET", "/topics/invoices/timers").json
    assert [t["id"] for t in everything["timers"]] == ["t0", "t1", "t2", "t3", "t4"]
    assert everything["next_cursor"] is None


def test_list_due_before_keeps_earlier_timers(api: Api) -> None:
    create(api, id="early", at="2030-01-01T00:00:00Z")
    create(api, id="late", at="2031-01-01T00:00:00Z")
    for value in ("2030-06-01T00:00:00Z", "2030-06-01T02:00:00+02:00"):
        query = urllib.parse.urlencode({"due_before": value})
        page = api.call("GET", f"/topics/invoices/timers?{query}").json
        assert [t["id"] for t in page["timers"]] == ["early"], value
    unencoded = api.call("GET", "/topics/invoices/timers?due_before=2030-06-01T02:00:00+02:00")
    assert [t["id"] for t in unencoded.json["timers"]] == ["early"]


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=1001", "limit"), ("limit=ten", "limit"),
     ("cursor=not-a-cursor", "cursor"), (f"cursor={encode_cursor('nan', 'x')}", "cursor"),
     ("due_before=soon", "due_before"),
     ("due_before=2030-01-01T00:00:00", "due_before"), ("page=2", "page")],
)
def test_list_refuses_bad_query_parameters(api: Api, query: str, field: str) -> None:
    create(api)
    reply = api.call("GET", f"/topics/invoices/timers?{query}")
    assert (reply.status, reply.json["field"]) == (400, field)


def test_a_topic_without_timers_lists_nothing_and_counts_zeros_as_in_python(api: Api) -> None:
    """One rule for Python, the CLI and HTTP: asking about a topic that has no timers
    and no dead letters is no error; it has nothing."""
    assert api.call("GET", "/topics/nope/timers").json == {"timers": [], "next_cursor": None}
    assert api.call("GET", "/topics/nope/dead").json == {"dead": [], "next_offset": None}
    assert api.call("GET", "/topics/nope/stats").json == {
        "topic": "nope", "pending": 0, "due": 0, "leased": 0, "dead": 0,
        "oldest_due_lag_s": None,
    }
    assert api.call("DELETE", "/topics/nope/timers").json == {"purged": 0}
    assert api.call("DELETE", "/topics/nope/dead").json == {"purged": 0}
    assert api.call("POST", "/topics/nope/dead/requeue").json == {"requeued": 0}


def test_topics_and_stats(api: Api) -> None:
    assert api.call("GET", "/topics").json == {"topics": []}
    assert api.call("GET", "/stats").json == {"topics": {}}
    create(api, "invoices", **{"in": 0})
    create(api, "reports")
    assert api.call("GET", "/topics").json == {"topics": ["invoices", "reports"]}
    stats = api.call("GET", "/stats").json["topics"]
    assert set(stats) == {"invoices", "reports"}
    assert stats["reports"] == {"topic": "reports", "pending": 1, "due": 0, "leased": 0,
                                "dead": 0, "oldest_due_lag_s": None}
    one = api.call("GET", "/topics/invoices/stats").json
    assert (one["pending"], one["due"]) == (1, 1)
    assert one["oldest_due_lag_s"] >= 0


def test_purge_removes_pending_timers_and_keeps_dead_letters(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1")
    api = serve_api(scheduler)
    create(api, "jobs", id="p1")
    create(api, "jobs", id="p2")
    assert api.call("DELETE", "/topics/jobs/timers").json == {"purged": 2}
    assert api.call("GET", "/topics/jobs/timers").json["timers"] == []
    assert api.call("GET", "/topics/jobs/stats").json["dead"] == 1


# -- dead letters -------------------------------------------------------------------------


def dead_letter_scheduler(
    make_scheduler: SchedulerFactory, *timer_ids: str, topic: str = "jobs"
) -> TimerScheduler:
    """A scheduler of `topic` whose handler always fails, with `timer_ids` dead."""
    router = Router()

    @router.handler(topic, retry=ONE_ATTEMPT)
    def fail(payload: Any, delivery: Delivery) -> None:
        raise ValueError(f"card declined: {payload}")

    scheduler = make_scheduler(router)
    for timer_id in timer_ids:
        scheduler.set_timer(topic, {"job": timer_id}, activate_in=0, timer_id=timer_id,
                            headers={"tenant": "acme"})
        assert scheduler.run_pending() == 1
    return scheduler


def test_dead_letters_are_listed_with_limit_and_offset(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory
) -> None:
    api = serve_api(dead_letter_scheduler(make_scheduler, "d1", "d2", "d3"))
    first = api.call("GET", "/topics/jobs/dead?limit=2").json
    assert [d["id"] for d in first["dead"]] == ["d1", "d2"]
    assert first["next_offset"] == 2
    dead = first["dead"][0]
    assert dead["died_at"].endswith("Z")
    assert dead["traceback"]
    assert {k: dead[k] for k in ("topic", "payload", "error", "reason", "error_type",
                                 "attempts", "headers", "correlation_id")} == {
        "topic": "jobs", "payload": {"job": "d1"}, "error": "ValueError: card declined: "
        "{'job': 'd1'}", "reason": "failed", "error_type": "ValueError", "attempts": 1,
        "headers": {"tenant": "acme"}, "correlation_id": None,
    }
    rest = api.call("GET", "/topics/jobs/dead?limit=2&offset=2").json
    assert ([d["id"] for d in rest["dead"]], rest["next_offset"]) == (["d3"], None)
    bad = api.call("GET", "/topics/jobs/dead?offset=-1")
    assert (bad.status, bad.json["field"]) == (400, "offset")


def test_dead_letters_are_requeued_one_or_all_and_purged(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1", "d2", "d3", "d4")
    api = serve_api(scheduler)
    one = api.call("POST", "/topics/jobs/dead/d2/requeue")
    assert (one.status, one.json) == (200, {"requeued": 1})
    timer = api.call("GET", "/topics/jobs/timers/d2").json
    assert (timer["attempts"], timer["payload"]) == (0, {"job": "d2"})
    missing = api.call("POST", "/topics/jobs/dead/d2/requeue")
    assert (missing.status, missing.json["field"]) == (404, "id")
    assert api.call("POST", "/topics/jobs/dead/requeue").json == {"requeued": 3}
    stats = api.call("GET", "/topics/jobs/stats").json
    assert (stats["pending"], stats["due"], stats["dead"]) == (4, 4, 0)
    assert scheduler.run_pending() == 4  # all four die again
    assert api.call("DELETE", "/topics/jobs/dead").json == {"purged": 4}
    assert api.call("GET", "/topics/jobs/dead").json == {"dead": [], "next_offset": None}
    assert api.call("POST", "/topics/nope/dead/x/requeue").status == 404


# -- Redis down, unknown routes, mounting -------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_redis_unreachable_is_503_with_retry_after(serve_api: ServeFactory) -> None:
    nowhere = redis.Redis(host="127.0.0.1", port=free_port(), socket_connect_timeout=1,
                          retry=Retry(NoBackoff(), 0))
    api = serve_api(TimerScheduler(nowhere))
    for method, path, body in [("GET", "/topics", _DEFAULT),
                               ("POST", "/topics/t/timers", {"payload": 1, "in": 1}),
                               ("GET", "/topics/t/timers/x", _DEFAULT)]:
        reply = api.call(method, path, body)
        assert reply.status == 503, (method, path)
        assert reply.headers["Retry-After"] == "5"
        assert "Redis" in reply.json["error"]


@pytest.mark.parametrize(
    ("extra", "field"),
    [({"payload": {"text": "\ud800"}}, "payload"), ({"headers": {"k": "\ud800"}}, "headers"),
     ({"correlation_id": "x\ud800"}, "correlation_id"), ({"id": "a\ud800"}, "id")],
)
def test_a_string_with_a_lone_surrogate_is_a_400_naming_its_field_and_writes_nothing(
    api: Api, redis_client: redis.Redis, extra: dict[str, Any], field: str
) -> None:
    """JSON can carry "\\ud800", which UTF-8 cannot: not a 500 from a failed encode."""
    before = redis_state(redis_client)
    reply = api.call("POST", "/topics/t/timers", {"payload": 1, "in": "1h", **extra})
    assert (reply.status, reply.json["field"]) == (400, field), reply.raw
    assert "lone surrogate" in reply.json["error"]
    assert redis_state(redis_client) == before


def test_a_payload_over_the_schedulers_limit_is_a_413_naming_it_and_writes_nothing(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, redis_client: redis.Redis
) -> None:
    api = serve_api(make_scheduler(max_payload_bytes=1000))
    before = redis_state(redis_client)
    reply = api.call("POST", "/topics/t/timers", {"payload": "x" * 2000, "in": "1h"})
    assert (reply.status, reply.json["field"]) == (413, "payload"), reply.raw
    assert "the limit is 1,000" in reply.json["error"]
    assert redis_state(redis_client) == before
    assert api.call("POST", "/topics/t/timers", {"payload": "x" * 500, "in": "1h"}).status == 201


def test_a_full_redis_is_a_507_and_reading_still_works(api: Api, redis_client: redis.Redis) -> None:
    create(api, "t", id="a")
    redis_client.config_set("maxmemory", 1)  # noeviction, Redis's default: full at once
    try:
        reply = api.call("POST", "/topics/t/timers", {"payload": 1, "in": "1h", "id": "b"})
        assert reply.status == 507, reply.raw
        assert "is full" in reply.json["error"]
        assert "'b' was not written" in reply.json["error"]
        assert api.call("GET", "/topics/t/timers/a").status == 200
        assert api.call("DELETE", "/topics/t/timers/a").status == 204
    finally:
        redis_client.config_set("maxmemory", 0)


def test_unknown_routes_and_methods_answer_json(api: Api) -> None:
    missing = api.call("GET", "/nope")
    assert (missing.status, missing.json["field"]) == (404, None)
    wrong = api.call("PUT", "/topics")
    assert wrong.status == 405
    assert "GET" in wrong.headers["Allow"]
    assert wrong.json["error"]


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


def allowed(reply: Reply) -> set[str]:
    return {method.strip() for method in reply.headers["Allow"].split(",")}


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
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{free_port()}/0")
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


# -- the README's curl examples -----------------------------------------------------------

#: The curl block of README.rst's "The HTTP admin API", verbatim.
README_CURL = r"""
H="Authorization: Bearer $REDISTIMERS_API_TOKEN"; API=http://localhost:8080
curl -s -H "$H" -H 'Content-Type: application/json' -X POST $API/topics/invoices/timers \
     -d '{"payload": {"invoice_id": "INV-1", "amount_cents": 995}, "in": "30m", "id": "INV-1"}'
curl -s -H "$H" $API/topics/invoices/timers/INV-1                    # the timer, or 404
curl -s -H "$H" -H 'Content-Type: application/json' -X PATCH \
     -d '{"at": "2030-01-01T09:00:00Z"}' $API/topics/invoices/timers/INV-1  # 409 if running
curl -s -H "$H" "$API/topics/invoices/timers?limit=50"   # {"timers": [...], "next_cursor"}
curl -s -H "$H" -X DELETE $API/topics/invoices/timers/INV-1          # cancel: 204, or 404
curl -s -H "$H" $API/topics                                          # {"topics": [...]}
curl -s -H "$H" $API/stats                                           # counts of every topic
curl -s -H "$H" $API/topics/invoices/stats                           # pending, due, leased, dead
curl -s -H "$H" -X DELETE $API/topics/invoices/timers                # purge: {"purged": n}
curl -s -H "$H" "$API/topics/invoices/dead?limit=20&offset=0"        # dead letters, oldest first
curl -s -H "$H" -X POST $API/topics/invoices/dead/INV-2/requeue      # one (or .../dead/requeue)
curl -s -H "$H" -X DELETE $API/topics/invoices/dead                  # purge the dead letters
"""


def readme_commands() -> tuple[str, list[str]]:
    """The block's first line (shell variables) and its commands, continuations joined
    and comments dropped (there is no '#' inside the commands themselves)."""
    text = "\n".join(line.split("  #")[0] for line in README_CURL.strip().splitlines())
    lines = text.replace("\\\n", " ").splitlines()
    return lines[0], lines[1:]


def test_the_readme_curl_block_is_the_one_in_readme_rst() -> None:
    readme = (Path(__file__).parent.parent / "README.rst").read_text()
    if "The HTTP admin API\n" not in readme:
        pytest.skip("README.rst has no 'The HTTP admin API' section yet")
    squeeze = lambda text: "\n".join(line.strip() for line in text.strip().splitlines())  # noqa: E731
    assert squeeze(README_CURL) in squeeze(readme)


def test_the_readme_curl_examples_work(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory
) -> None:
    dead_letter_scheduler(make_scheduler, "INV-2", topic="invoices")
    api = serve_api()
    variables, commands = readme_commands()
    variables = variables.replace("http://localhost:8080", f"http://127.0.0.1:{api.port}")
    assert len(commands) == 12
    replies = []
    for command in commands:
        done = subprocess.run(
            ["sh", "-c", f"{variables}; {command} -w '\\n%{{http_code}}'"],
            env={"REDISTIMERS_API_TOKEN": TOKEN, "PATH": os.environ["PATH"]},
            capture_output=True, text=True, timeout=10,
        )
        assert done.returncode == 0, (command, done.stderr)
        body, _, status = done.stdout.rpartition("\n")
        replies.append((int(status), json.loads(body) if body else None))
    statuses = [status for status, _ in replies]
    assert statuses == [201, 200, 200, 200, 204, 200, 200, 200, 200, 200, 200, 200]
    created, got, moved, listed, _, topics, stats, one, purged, dead, requeued, gone = (
        body for _, body in replies
    )
    # The tour's InvoiceDue: the timer its handler would deliver, not dead-letter.
    assert (created["id"], created["payload"]) == (
        "INV-1", {"invoice_id": "INV-1", "amount_cents": 995}
    )
    assert {**got, "remaining_s": 0} == {**created, "remaining_s": 0}
    assert moved["due_at"] == "2030-01-01T09:00:00.000000Z"
    assert [t["id"] for t in listed["timers"]] == ["INV-1"]
    assert topics == {"topics": ["invoices"]}
    assert stats["topics"]["invoices"] == one
    assert (one["pending"], one["dead"]) == (0, 1)
    assert purged == {"purged": 0}
    assert [d["id"] for d in dead["dead"]] == ["INV-2"]
    assert requeued == {"requeued": 1}
    assert gone == {"purged": 0}
