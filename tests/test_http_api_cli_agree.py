"""The command line, the HTTP admin API and Python agree: one rule converts a JSON payload
to its topic's type, one JSON vocabulary shows timers, stats and dead letters, and
creating or moving a timer answers what Redis wrote, never a read-back or a guess.
main() in this process, a real HTTP server and client, the session's real redis-server."""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import redis

from redistimers import PayloadTypeError, Router, TimerInfo, TimerScheduler
from redistimers.codec import converter
from redistimers.inputs import topic_payload

from ._cli_support import Cli
from ._http_support import ServeFactory, api_servers, dead_letter_scheduler, redis_state
from .helpers import REPO, RecordingFactory, SchedulerFactory, running, server_now, wait_for


@attrs.frozen
class Line:
    sku: str
    quantity: int


@attrs.frozen
class Order:
    order_id: str
    lines: list[Line]
    total: float
    paid: bool = False


def typed_router() -> Router:
    """Handlers that declare payload types: int, float, bool and a nested attrs class."""
    router = Router()
    for topic, payload_type in (("ints", int), ("floats", float), ("flags", bool),
                                ("orders", Order)):
        router.handler(topic, payload=payload_type)(lambda payload: None)
    return router


@pytest.fixture
def serve_api(make_scheduler: SchedulerFactory) -> Iterator[ServeFactory]:
    with api_servers(make_scheduler) as serve:
        yield serve


# -- one rule for payloads --------------------------------------------------------------------

ORDER = {"order_id": "O-1", "lines": [{"sku": "A", "quantity": 2}], "total": 9}

#: (topic, the payload as JSON, what the handler gets, or the words of the refusal)
PAYLOADS: list[tuple[str, str, Any, str | None]] = [
    ("ints", "5", 5, None),
    ("ints", "5.0", 5, None),  # JSON has one kind of number: 5.0 is 5
    ("ints", '"5"', None, "payload: expected an integer, got the string '5'"),
    ("ints", "5.7", None, "payload: expected an integer, got the number 5.7"),
    ("ints", "true", None, "payload: expected an integer, got the bool true"),
    ("floats", "5", 5.0, None),  # an int is fine for a float, as in Python
    ("floats", '"5.5"', None, "payload: expected a number, got the string '5.5'"),
    ("flags", "true", True, None),
    ("flags", "1", None, "payload: expected true or false, got the number 1"),
    ("orders", json.dumps(ORDER), Order("O-1", [Line("A", 2)], 9.0), None),
    ("orders", json.dumps({**ORDER, "lines": [{"sku": "A", "quantity": "2"}]}), None,
     "payload.lines[0].quantity: expected an integer, got the string '2'"),
    ("orders", json.dumps({**ORDER, "lines": [{"sku": "A", "quantity": 2.5}]}), None,
     "payload.lines[0].quantity: expected an integer, got the number 2.5"),
    ("orders", json.dumps({**ORDER, "lines": "A"}), None,
     "payload.lines: expected an array, got the string 'A'"),
    ("orders", json.dumps({**ORDER, "paid": 0}), None,
     "payload.paid: expected true or false, got the number 0"),
    ("orders", json.dumps({"order_id": "O-1", "total": 9}), None,
     "payload.lines: required field missing"),
    ("orders", "[]", None, "payload: expected an object, got an array"),
]


@pytest.mark.parametrize(("topic", "text", "expected", "refusal"), PAYLOADS)
def test_one_payload_rule_through_python_the_command_line_and_http(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, cli: Cli,
    redis_client: redis.Redis, topic: str, text: str, expected: Any, refusal: str | None,
) -> None:
    scheduler = make_scheduler(typed_router())
    api = serve_api(scheduler)
    raw = json.loads(text)
    if refusal is None:
        assert topic_payload(scheduler, topic, raw) == expected
    else:
        with pytest.raises(PayloadTypeError, match=r"^payload for topic") as refused:
            topic_payload(scheduler, topic, raw)
        assert refusal in str(refused.value)

    command = cli("schedule", topic, "--in", "1h", "--id", "by-cli", "--payload", text,
                  scheduler=scheduler)
    reply = api.call("POST", f"/topics/{topic}/timers", data=text.join(
        ['{"in": "1h", "id": "by-http", "payload": ', "}"]).encode(),
        headers={"Content-Type": "application/json"})
    if refusal is None:
        assert (command.code, reply.status) == (0, 201), (command, reply.raw)
        for timer_id in ("by-cli", "by-http"):
            timer = scheduler.get_timer(topic, timer_id)
            assert timer is not None
            assert timer.payload == expected
            assert type(timer.payload) is type(expected)
        assert reply.json["payload"] == converter.unstructure(expected)
    else:
        assert (command.code, command.out) == (2, "")
        assert command.err.startswith("redistimers: error: argument --payload: ")
        assert refusal in command.err
        assert (reply.status, reply.json["field"]) == (400, "payload")
        assert refusal in reply.json["error"]
        assert redis_state(redis_client) == {}


@pytest.mark.parametrize(("topic", "payload"), [("ints", "5"), ("ints", 5.7), ("flags", 1)])
def test_set_timer_refuses_the_primitives_the_adapter_refuses(
    make_scheduler: SchedulerFactory, topic: str, payload: Any
) -> None:
    scheduler = make_scheduler(typed_router())
    with pytest.raises(PayloadTypeError):
        scheduler.set_timer(topic, payload, activate_in=60)
    assert scheduler.set_timer_and_get("floats", 5, activate_in=60).payload == 5.0


def test_a_topic_without_a_typed_handler_takes_any_json_as_it_is(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, cli: Cli
) -> None:
    scheduler = make_scheduler()
    api = serve_api(scheduler)
    assert cli("schedule", "free", "--in", "1h", "--id", "c", "--payload", '"5"',
               scheduler=scheduler).code == 0
    assert api.call("POST", "/topics/free/timers", {"payload": "5", "in": "1h"}).status == 201
    assert [t.payload for t in scheduler.list_timers("free").timers] == ["5", "5"]


# -- one JSON vocabulary ----------------------------------------------------------------------


def test_the_command_line_and_http_show_timers_stats_and_dead_letters_alike(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, cli: Cli
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1")
    api = serve_api(scheduler)
    scheduler.set_timer("jobs", {"n": 1}, activate_in=3600, timer_id="once",
                        headers={"k": "v"}, correlation_id="c-1")
    scheduler.set_timer("jobs", 2, every=dt.timedelta(minutes=5), timer_id="every")
    scheduler.set_timer("jobs", 3, cron="0 7 * * mon", tz="Europe/Berlin", timer_id="cron")

    def steady(form: Any) -> Any:
        """`form` without the seconds left, which tick between two requests."""
        if isinstance(form, dict):
            return {k: steady(v) for k, v in form.items() if k != "remaining_s"}
        if isinstance(form, list):
            return [steady(item) for item in form]
        return form

    def same(argv: list[str], path: str) -> Any:
        shown, served = cli(*argv, "--json").json, api.call("GET", path).json
        assert steady(shown) == steady(served), (argv, path)
        return shown

    for timer_id in ("once", "every", "cron"):
        timer = same(["get", "jobs", timer_id], f"/topics/jobs/timers/{timer_id}")
        assert timer["id"] == timer_id
    listed = same(["list", "jobs"], "/topics/jobs/timers")
    assert sorted(listed) == ["next_cursor", "timers"]
    assert {t["id"] for t in listed["timers"]} == {"once", "every", "cron"}
    assert same(["stats", "jobs"], "/topics/jobs/stats")["dead"] == 1
    assert list(same(["stats"], "/stats")["topics"]) == ["jobs"]
    assert same(["topics"], "/topics") == {"topics": ["jobs"]}
    dead = same(["dead", "list", "jobs"], "/topics/jobs/dead")
    assert [d["id"] for d in dead["dead"]] == ["d1"]

    written = cli("schedule", "jobs", "--in", "1h", "--id", "new", "--json").json
    created = api.call("POST", "/topics/jobs/timers", {"payload": None, "in": "1h"}).json
    assert list(written) == list(created)
    moved = cli("reschedule", "jobs", "new", "--in", "2h", "--json").json
    patched = api.call("PATCH", "/topics/jobs/timers/new", {"in": "2h"}).json
    assert moved.pop("remaining_s") >= patched.pop("remaining_s")
    assert moved.pop("due_at") <= patched.pop("due_at")
    assert moved == patched
    for argv, method, path in [
        (["dead", "requeue", "nope"], "POST", "/topics/nope/dead/requeue"),
        (["dead", "purge", "nope", "--yes"], "DELETE", "/topics/nope/dead"),
        (["purge", "nope", "--yes"], "DELETE", "/topics/nope/timers"),
    ]:
        assert cli(*argv, "--json").json == api.call(method, path).json, argv


def readme_json_forms() -> dict[str, list[str]]:
    """The field names README.rst's "JSON of timers, stats and dead letters" lists, by the
    words its bullet starts with ("a timer", "a page of timers", ...)."""
    text = (REPO / "README.rst").read_text(encoding="utf-8")
    section = text[text.index("JSON of timers, stats and dead letters\n---"):]
    section = section[:section.index("What a JSON payload becomes")]
    forms = {}
    for bullet in section.split("\n- ")[1:]:
        name, _, rest = bullet.partition(": ")
        forms[name] = [word for word in re.findall(r"``(\w+)``", rest)
                       if word not in ("null", "true", "false")]
    return forms


def test_the_readme_lists_every_field_of_the_json_forms(
    make_scheduler: SchedulerFactory, serve_api: ServeFactory, cli: Cli
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1")
    api = serve_api(scheduler)
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="once")
    scheduler.set_timer("jobs", 2, every=dt.timedelta(minutes=5), timer_id="every")
    scheduler.set_timer("jobs", 3, cron="0 7 * * mon", timer_id="cron")
    forms = readme_json_forms()
    timer = forms["a timer"]
    assert timer[-3:] == ["every_s", "cron", "tz"]
    assert list(cli("get", "jobs", "once", "--json").json) == timer[:-3]
    assert list(api.call("GET", "/topics/jobs/timers/every").json) == timer[:-2]
    assert list(cli("get", "jobs", "cron", "--json").json) == [*timer[:-3], "cron", "tz"]
    assert list(api.call("GET", "/topics/jobs/timers").json) == forms["a page of timers"]
    stats = forms["a topic's stats"]
    assert list(cli("stats", "jobs", "--json").json) == stats[:-1]
    assert list(api.call("GET", "/stats").json) == stats[-1:]
    assert list(cli("dead", "list", "jobs", "--json").json["dead"][0]) == forms["a dead letter"]
    assert list(api.call("GET", "/topics/jobs/dead").json) == forms["a page of dead letters"]
    topics, cancelled, purged, requeued = forms["the topics"]
    assert list(cli("topics", "--json").json) == [topics]
    assert list(cli("cancel", "jobs", "once", "--json").json) == [cancelled]
    assert list(api.call("DELETE", "/topics/jobs/timers").json) == [purged]
    assert list(cli("dead", "requeue", "jobs", "--json").json) == [requeued]


# -- what was written, not read back ----------------------------------------------------------


class _TakenAtOnce(TimerScheduler):
    """A scheduler whose process delivers what is due as soon as a timer is written or
    moved, before anything could read it back (as a busy worker may)."""

    def set_timer_and_get(self, *args: Any, **kwargs: Any) -> TimerInfo:
        written = super().set_timer_and_get(*args, **kwargs)
        assert self.run_pending() == 1
        return written

    def reschedule_and_get(self, *args: Any, **kwargs: Any) -> TimerInfo | None:
        moved = super().reschedule_and_get(*args, **kwargs)
        assert self.run_pending() == 1
        return moved


def test_a_timer_delivered_before_the_answer_is_answered_as_written(
    redis_url: str, redis_client: redis.Redis, serve_api: ServeFactory, cli: Cli
) -> None:
    router = Router()
    router.handler("jobs")(lambda payload: None)
    worker = _TakenAtOnce.from_url(redis_url, routers=[router])
    api = serve_api(worker)
    try:
        past = cli("schedule", "jobs", "--at", "2020-01-01T00:00:00Z", "--id", "a",
                   "--payload", "[1]", "--header", "k=v", "--json", scheduler=worker)
        assert past.code == 0, past
        assert past.json == {
            "topic": "jobs", "id": "a", "due_at": "2020-01-01T00:00:00.000000Z",
            "remaining_s": 0, "attempts": 0, "leased": False, "payload": [1],
            "headers": {"k": "v"}, "correlation_id": None,
        }
        posted = api.call("POST", "/topics/jobs/timers",
                          {"payload": [1], "at": "2020-01-01T00:00:00Z", "id": "b"})
        assert posted.status == 201
        assert posted.json == {**past.json, "id": "b", "headers": {}}
        plain = cli("schedule", "jobs", "--in", "0s", "--id", "c", scheduler=worker)
        assert plain.out == "scheduled timer c on topic 'jobs', due now\n"
        before = server_now(redis_client)
        now = api.call("POST", "/topics/jobs/timers", {"payload": 1, "in": 0}).json
        after = server_now(redis_client)
        assert before <= dt.datetime.fromisoformat(now["due_at"]) <= after
        worker.set_timer("jobs", 1, activate_in=3600, timer_id="m")
        moved = api.call("PATCH", "/topics/jobs/timers/m", {"at": "2021-06-01T00:00:00Z"})
        assert moved.status == 200
        assert (moved.json["due_at"], moved.json["leased"]) == (
            "2021-06-01T00:00:00.000000Z", False,
        )
        assert worker.stats("jobs").pending == 0  # every one of them was delivered
    finally:
        worker.stop(timeout=5)


def test_a_timer_a_running_handler_holds_was_answered_with_its_written_due_time(
    recording: RecordingFactory, serve_api: ServeFactory, cli: Cli, release: threading.Event
) -> None:
    """Read back, a leased timer shows its lease's expiry: the answers show the due time."""
    scheduler, recorder = recording("jobs", lambda payload, delivery: release.wait(10) and None)
    api = serve_api(scheduler)
    with running(scheduler, release):
        written = cli("schedule", "jobs", "--at", "2020-01-01T00:00:00Z", "--id", "j1",
                      "--json", scheduler=scheduler).json
        posted = api.call("POST", "/topics/jobs/timers",
                          {"payload": 2, "at": "2020-01-01T00:00:00Z", "id": "j2"}).json
        recorder.wait_calls(2)
        for answer in (written, posted):
            assert (answer["due_at"], answer["leased"], answer["attempts"]) == (
                "2020-01-01T00:00:00.000000Z", False, 0,
            )
            path = f"/topics/jobs/timers/{answer['id']}"
            wait_for(lambda path=path: api.call("GET", path).json["leased"])
            held = api.call("GET", path).json
            assert held["due_at"] > "2020-01-02"  # its lease's expiry
        refused = api.call("PATCH", "/topics/jobs/timers/j1", {"in": "1h"})
        assert (refused.status, refused.json["field"]) == (409, "id")
        as_it_is = cli("reschedule", "jobs", "j2", "--in", "1h", "--json", scheduler=scheduler)
        assert (as_it_is.code, as_it_is.json["leased"], as_it_is.json["attempts"]) == (1, True, 1)
