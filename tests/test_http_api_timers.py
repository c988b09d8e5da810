"""The HTTP admin API's timers: scheduling, moving, reading and cancelling one, the bad
input each refuses with a 400 naming the field (nothing written), and the body limits.
A real HTTP server and client, against the session's real redis-server."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import redis

from redistimers import Router

from ._http_support import (
    NO_BODY,
    Api,
    ServeFactory,
    api_servers,
    create,
    redis_state,
)
from .helpers import InvoiceDue, SchedulerFactory, running, wait_for


@pytest.fixture
def serve_api(make_scheduler: SchedulerFactory) -> Iterator[ServeFactory]:
    with api_servers(make_scheduler) as serve:
        yield serve


@pytest.fixture
def api(serve_api: ServeFactory) -> Api:
    return serve_api()


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
                               ("GET", f"/topics/{topic}/timers", NO_BODY),
                               ("GET", f"/topics/{topic}/timers/x", NO_BODY)]:
        reply = api.call(method, path, body)
        assert (reply.status, reply.json["field"]) == (400, "topic"), (method, path)
    assert redis_state(redis_client) == {}


@pytest.mark.parametrize("timer_id", ["bell%07", "x" * 257])
def test_an_invalid_id_in_the_path_is_400_naming_id(
    api: Api, redis_client: redis.Redis, timer_id: str
) -> None:
    create(api, id="INV-1")
    before = redis_state(redis_client)
    for method, body in [("GET", NO_BODY), ("PATCH", {"in": 1}), ("DELETE", NO_BODY)]:
        reply = api.call(method, f"/topics/invoices/timers/{timer_id}", body)
        assert (reply.status, reply.json["field"]) == (400, "id"), method
    assert redis_state(redis_client) == before


def test_a_timer_a_worker_takes_at_once_is_answered_as_written(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, release: threading.Event
) -> None:
    """A worker may take a timer due now before the answer is written: the answer is
    still the timer as Redis wrote it, never read back (this races, so it runs 100 times)."""
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
            assert (timer["attempts"], timer["leased"], timer["remaining_s"]) == (0, False, 0)
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


# -- what cannot be stored ---------------------------------------------------------------


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
