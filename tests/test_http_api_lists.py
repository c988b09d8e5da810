"""The HTTP admin API's lists and counts: pages of timers, stats, purges, dead letters;
Redis down or full; unknown routes; and the README's curl examples, run as written.
A real HTTP server and client, against the session's real redis-server."""

from __future__ import annotations

import json
import os
import subprocess
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from redistimers import TimerScheduler
from redistimers.admin import encode_cursor

from ._http_support import (
    NO_BODY,
    TOKEN,
    Api,
    ServeFactory,
    api_servers,
    create,
    dead_letter_scheduler,
)
from .helpers import SchedulerFactory, closed_port


@pytest.fixture
def serve_api(make_scheduler: SchedulerFactory) -> Iterator[ServeFactory]:
    with api_servers(make_scheduler) as serve:
        yield serve


@pytest.fixture
def api(serve_api: ServeFactory) -> Api:
    return serve_api()


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


# -- Redis down or full, unknown routes ---------------------------------------------------


def test_redis_unreachable_is_503_with_retry_after(serve_api: ServeFactory) -> None:
    nowhere = redis.Redis(host="127.0.0.1", port=closed_port(), socket_connect_timeout=1,
                          retry=Retry(NoBackoff(), 0))
    api = serve_api(TimerScheduler(nowhere))
    for method, path, body in [("GET", "/topics", NO_BODY),
                               ("POST", "/topics/t/timers", {"payload": 1, "in": 1}),
                               ("GET", "/topics/t/timers/x", NO_BODY)]:
        reply = api.call(method, path, body)
        assert reply.status == 503, (method, path)
        assert reply.headers["Retry-After"] == "5"
        assert "Redis" in reply.json["error"]


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
