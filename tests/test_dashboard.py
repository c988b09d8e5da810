"""The dashboard (redistimers.contrib.dashboard) as create_app serves it: its pages show
what the scheduler says, its actions change Redis only when confirmed with a CSRF token,
its sign-in, its read-only mode, and escaping. Flask's test client, the real redis-server."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from typing import Any

import flask
import pytest
import redis
from flask.testing import FlaskClient

from redistimers import TimerScheduler
from redistimers.contrib.dashboard import NAME
from redistimers.contrib.http_api import DASHBOARD, create_app, create_blueprint

from ._http_support import TOKEN, dead_letter_scheduler, redis_state
from .helpers import SchedulerFactory, wait_for

HTML = {"Accept": "text/html"}
XSS = "<script>alert(1)</script>"


def client_of(scheduler: TimerScheduler, **options: Any) -> FlaskClient:
    options.setdefault("token", TOKEN)
    return create_app(scheduler, **options).test_client()


def signed_in(scheduler: TimerScheduler, **options: Any) -> FlaskClient:
    client = client_of(scheduler, **options)
    reply = client.post("/ui/login", data={"token": TOKEN}, headers=HTML)
    assert reply.status_code == 303
    return client


def page(client: FlaskClient, path: str) -> str:
    reply = client.get(path, headers=HTML)
    assert reply.status_code == 200, reply.text
    return reply.text


def csrf_of(text: str) -> str:
    found = re.search(r'name="csrf" value="([0-9a-f]+)"', text)
    assert found, "no CSRF field on the page"
    return found.group(1)


def cell(text: str, row: str, name: str) -> str:
    found = re.search(rf'{row}.*?<td class="[^"]*\b{name}\b[^"]*" data-value="([^"]*)"',
                      text, re.S)
    assert found, (row, name)
    return found.group(1)


def row_ids(text: str) -> list[str]:
    return [html.unescape(i) for i in re.findall(r'<tr data-timer-id="([^"]*)"', text)]


def test_the_blueprint_names_the_dashboard_as_the_guard_expects() -> None:
    assert NAME == DASHBOARD


# -- pages ----------------------------------------------------------------------------------


def test_the_overview_shows_the_numbers_stats_returns_trouble_first(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1", "d2", topic="jobs")
    for n in range(1234):
        scheduler.set_timer("calm", n, activate_in=3600, timer_id=f"c{n}")
    scheduler.set_timer("jobs", 1, activate_in=0, timer_id="now")
    text = page(signed_in(scheduler), "/")
    stats = scheduler.stats()
    for topic in ("calm", "jobs"):
        row = f'data-topic="{topic}"'
        for name in ("pending", "due", "leased", "dead"):
            assert int(cell(text, row, name)) == getattr(stats[topic], name), (topic, name)
    assert cell(text, 'data-topic="calm"', "lag") == ""
    assert float(cell(text, 'data-topic="jobs"', "lag")) >= 0
    assert text.index('data-topic="jobs"') < text.index('data-topic="calm"')
    assert "1,234" in text
    version = redis_client.info()["redis_version"]
    assert f'id="redis" data-version="{version}" data-used-memory="' in text
    assert 'id="status"' in text


def test_the_overview_lists_live_workers(recording: Any) -> None:
    scheduler, _ = recording("ticks", heartbeat_interval=0.2)
    scheduler.start()
    wait_for(scheduler.workers)
    [worker] = scheduler.workers()
    text = page(signed_in(scheduler), "/")
    assert f'<tr data-worker-id="{worker.worker_id}"' in text
    assert 'id="workers"' in text


def test_overview_json_has_the_numbers_for_the_refresh(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=60)
    reply = signed_in(scheduler).get("/ui/overview.json")
    assert reply.status_code == 200
    body = reply.get_json()
    assert body["topics"] == [{"topic": "jobs", "pending": 1, "due": 0, "leased": 0,
                               "dead": 0, "lag": None, "delivered": 0, "failed": 0,
                               "url": "/ui/topics/jobs", "dead_url": "/ui/topics/jobs/dead"}]
    assert body["redis"]["version"]


def test_paging_visits_each_timer_once_and_keeps_the_filters(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    for n in range(120):
        scheduler.set_timer("jobs", {"n": n}, activate_in=60 + n, timer_id=f"{'ab'[n % 2]}{n}")
    client = signed_in(scheduler)
    seen, path = [], "/ui/topics/jobs"
    while path:
        text = page(client, path)
        assert 'id="due-chart"' in text
        assert 'id="filter"' in text
        seen += row_ids(text)
        found = re.search(r'<a id="next-page" href="([^"]+)"', text)
        path = html.unescape(found.group(1)) if found else ""
    assert seen == [t.timer_id for t in scheduler.list_timers("jobs", limit=1000).timers]
    assert len(seen) == 120
    first = page(client, "/ui/topics/jobs?prefix=b")
    second_path = html.unescape(re.search(r'id="next-page" href="([^"]+)"', first).group(1))
    assert "prefix=b" in second_path
    filtered = row_ids(first) + row_ids(page(client, second_path))
    assert filtered == [f"b{n}" for n in range(1, 120, 2)]


def test_the_chart_counts_timers_due_in_the_next_hour(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    for seconds in (30, 40, 125, 7200):
        scheduler.set_timer("jobs", 1, activate_in=seconds)
    text = page(signed_in(scheduler), "/ui/topics/jobs")
    assert re.search(r'<svg id="due-chart"[^>]*data-total="3"', text)
    assert sorted(map(int, re.findall(r'data-count="(\d+)"', text))) == [1, 2]


def test_the_timer_page_shows_a_timer_and_its_dead_letter_and_404s_unknown_ones(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "gone", topic="jobs")
    scheduler.set_timer("jobs", {"x": 1}, activate_in=60, timer_id="a/b", correlation_id="c-9")
    client = signed_in(scheduler)
    text = page(client, "/ui/topics/jobs/timers/a/b")
    assert 'id="timer" data-timer-id="a/b"' in text
    assert "c-9" in text
    dead = page(client, "/ui/topics/jobs/timers/gone")
    assert "card declined" in dead
    assert "failed" in dead
    missing = client.get("/ui/topics/jobs/timers/nope", headers=HTML)
    assert missing.status_code == 404
    assert "Not found" in missing.text


def test_the_dead_page_shows_reason_error_and_traceback(make_scheduler: SchedulerFactory) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1", topic="jobs")
    text = page(signed_in(scheduler), "/ui/topics/jobs/dead")
    assert row_ids(text) == ["d1"]
    assert "ValueError" in text
    assert "card declined" in text
    assert "Traceback" in text


# -- actions --------------------------------------------------------------------------------

Check = Callable[[TimerScheduler], bool]
ACTIONS: list[tuple[str, dict[str, str], Check]] = [
    ("cancel", {"timer_id": "t1"}, lambda s: s.get_timer("jobs", "t1") is None),
    ("reschedule", {"timer_id": "t1", "when": "2h"},
     lambda s: 7000 < s.get_timer("jobs", "t1").remaining.total_seconds() <= 7200),  # type: ignore[union-attr]
    ("fire-now", {"timer_id": "t1"}, lambda s: s.stats("jobs").due == 1),
    ("requeue", {"timer_id": "d1"}, lambda s: s.stats("jobs").dead == 1),
    ("requeue-all", {}, lambda s: s.stats("jobs").dead == 0),
    ("purge-dead", {}, lambda s: s.stats("jobs").dead == 0 and s.stats("jobs").pending == 1),
    ("purge", {}, lambda s: s.stats("jobs").pending == 0 and s.stats("jobs").dead == 2),
]


@pytest.mark.parametrize(("action", "form", "done"), ACTIONS, ids=[a[0] for a in ACTIONS])
def test_each_action_needs_csrf_and_confirmation_then_does_what_it_says(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis,
    action: str, form: dict[str, str], done: Check,
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1", "d2", topic="jobs")
    scheduler.set_timer("jobs", 1, activate_in=3600, timer_id="t1")
    client = signed_in(scheduler)
    path = f"/ui/topics/jobs/actions/{action}"
    before = redis_state(redis_client)
    for csrf in ({}, {"csrf": "0" * 64}):
        refused = client.post(path, data={**form, **csrf, "confirmed": "yes"}, headers=HTML)
        assert refused.status_code == 403
    token = csrf_of(page(client, "/ui/topics/jobs/dead"))
    asked = client.post(path, data={**form, "csrf": token}, headers=HTML)
    assert asked.status_code == 200
    assert 'name="confirmed" value="yes"' in asked.text
    assert redis_state(redis_client) == before
    reply = client.post(path, data={**form, "csrf": token, "confirmed": "yes"}, headers=HTML)
    assert reply.status_code == 303
    assert done(scheduler)
    shown = page(client, reply.headers["Location"])
    message = re.search(r'<div id="message"[^>]*>([^<]+)</div>', shown)
    assert message
    assert message.group(1).strip()
    assert page(client, reply.headers["Location"]).count('id="message"') == 1


def test_a_bad_reschedule_time_is_told_and_changes_nothing(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=3600, timer_id="t1")
    client = signed_in(scheduler)
    token = csrf_of(page(client, "/ui/topics/jobs"))
    before = redis_state(redis_client)
    reply = client.post("/ui/topics/jobs/actions/reschedule", headers=HTML, data={
        "timer_id": "t1", "when": "soonish", "csrf": token, "confirmed": "yes"})
    assert reply.status_code == 303
    assert "Not moved" in page(client, reply.headers["Location"])
    assert redis_state(redis_client) == before


def test_the_bearer_token_may_act_without_a_session(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=3600, timer_id="t1")
    reply = client_of(scheduler).post(
        "/ui/topics/jobs/actions/cancel", data={"timer_id": "t1", "confirmed": "yes"},
        headers={"Authorization": f"Bearer {TOKEN}"},
    )
    assert reply.status_code == 303
    assert scheduler.get_timer("jobs", "t1") is None


# -- signing in -----------------------------------------------------------------------------


def test_signing_in_sets_a_strict_httponly_expiring_cookie(
    make_scheduler: SchedulerFactory,
) -> None:
    client = client_of(make_scheduler())
    reply = client.post("/ui/login", data={"token": TOKEN}, headers=HTML)
    assert reply.status_code == 303
    cookie = reply.headers["Set-Cookie"]
    assert cookie.startswith("redistimers_session=")
    for attribute in ("HttpOnly", "SameSite=Strict", "Max-Age=43200", "Expires=", "Path=/"):
        assert attribute in cookie
    assert "Secure" not in cookie
    secure = client_of(make_scheduler()).post(
        "/ui/login", data={"token": TOKEN}, headers=HTML, base_url="https://localhost"
    )
    assert "Secure" in secure.headers["Set-Cookie"]
    assert client.get("/", headers=HTML).status_code == 200
    logout = client.post("/ui/logout", data={"csrf": csrf_of(page(client, "/"))})
    assert logout.status_code == 303
    assert client.get("/", headers=HTML).status_code == 401


def test_a_token_in_the_address_signs_in_and_redirects_without_it(
    make_scheduler: SchedulerFactory,
) -> None:
    client = client_of(make_scheduler())
    reply = client.get(f"/ui/topics/jobs?prefix=a&token={TOKEN}", headers=HTML)
    assert reply.status_code == 303
    assert reply.headers["Location"] == "/ui/topics/jobs?prefix=a"
    assert "HttpOnly" in reply.headers["Set-Cookie"]
    assert client.get("/ui/topics/jobs?prefix=a", headers=HTML).status_code == 200


@pytest.mark.parametrize("token", [None, "wrong"])
def test_without_a_valid_token_only_the_sign_in_form_shows(
    make_scheduler: SchedulerFactory, token: str | None
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("secret-topic", 1, activate_in=60, timer_id="secret-id")
    client = client_of(scheduler)
    if token is not None:
        client.post("/ui/login", data={"token": token})
    for path in ("/", "/ui/topics/secret-topic", "/ui/topics/secret-topic/timers/secret-id",
                 "/ui/topics/secret-topic/dead", f"/?token={token or ''}"):
        reply = client.get(path, headers=HTML)
        assert reply.status_code == 401, path
        assert 'id="login"' in reply.text
        assert 'name="token"' in reply.text
        assert "secret" not in reply.text.replace(f"next\" value=\"{path}", "")
        assert 'class="action"' not in reply.text
    # A client that is no browser gets the API's JSON 401.
    assert client.get("/").get_json()["error"]


def test_a_new_token_ends_old_sessions(make_scheduler: SchedulerFactory) -> None:
    scheduler = make_scheduler()
    client = signed_in(scheduler)
    cookie = client.get_cookie("redistimers_session")
    assert cookie is not None
    other = client_of(scheduler, token=TOKEN + "-new")
    other.set_cookie("redistimers_session", cookie.value)
    assert other.get("/", headers=HTML).status_code == 401


def test_without_a_token_the_dashboard_is_open_but_still_needs_csrf(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="t1")
    client = client_of(scheduler, token=None)
    text = page(client, "/ui/topics/jobs")
    refused = client.post("/ui/topics/jobs/actions/cancel",
                          data={"timer_id": "t1", "confirmed": "yes"})
    assert refused.status_code == 403
    done = client.post("/ui/topics/jobs/actions/cancel",
                       data={"timer_id": "t1", "confirmed": "yes", "csrf": csrf_of(text)})
    assert done.status_code == 303
    assert scheduler.get_timer("jobs", "t1") is None


# -- read-only ------------------------------------------------------------------------------


def test_read_only_shows_no_action_and_refuses_every_change(
    make_scheduler: SchedulerFactory, redis_client: redis.Redis
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, "d1", topic="jobs")
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="t1")
    client = signed_in(scheduler, read_only=True)
    token = ""
    for path in ("/", "/ui/topics/jobs", "/ui/topics/jobs/timers/t1", "/ui/topics/jobs/dead",
                 "/ui/topics/jobs/timers/d1"):
        text = page(client, path)
        assert 'class="action"' not in text, path
        assert "data-action" not in text, path
        token = csrf_of(text)  # the sign-out form's
    before = redis_state(redis_client)
    for action in ("cancel", "purge", "requeue-all", "purge-dead"):
        reply = client.post(f"/ui/topics/jobs/actions/{action}", headers=HTML,
                            data={"timer_id": "t1", "csrf": token, "confirmed": "yes"})
        assert reply.status_code == 403
    bearer = {"Authorization": f"Bearer {TOKEN}"}
    for method, path, body in (
        ("POST", "/topics/jobs/timers", {"payload": 1, "in": "1h"}),
        ("PATCH", "/topics/jobs/timers/t1", {"in": 0}),
        ("DELETE", "/topics/jobs/timers/t1", None),
        ("DELETE", "/topics/jobs/timers", None),
        ("POST", "/topics/jobs/dead/requeue", None),
        ("DELETE", "/topics/jobs/dead", None),
    ):
        reply = client.open(path, method=method, json=body, headers=bearer)
        assert reply.status_code == 403, (method, path)
    assert client.get("/stats", headers=bearer).status_code == 200
    assert redis_state(redis_client) == before


# -- escaping -------------------------------------------------------------------------------


def test_markup_in_stored_values_is_shown_as_text_on_every_page(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = dead_letter_scheduler(make_scheduler, XSS, topic="jobs")
    scheduler.set_timer("jobs", {"note": XSS}, activate_in=60, timer_id="t1",
                        headers={"h": XSS}, correlation_id=XSS)
    scheduler.set_timer(f"x{XSS.replace('/', '')}", XSS, activate_in=60)
    client = signed_in(scheduler)
    escaped = html.escape("<script>alert(1)")
    for path in ("/", "/ui/topics/jobs", "/ui/topics/jobs/timers/t1", "/ui/topics/jobs/dead",
                 "/ui/topics/jobs/timers/" + XSS):
        text = page(client, path)
        assert "<script>alert" not in text, path
        assert escaped in text or "&lt;script&gt;alert" in text, path


# -- mounting -------------------------------------------------------------------------------


def test_the_blueprint_mounts_the_dashboard_under_its_prefix(
    make_scheduler: SchedulerFactory,
) -> None:
    scheduler = make_scheduler()
    scheduler.set_timer("jobs", 1, activate_in=60, timer_id="t1")
    app = flask.Flask("host")
    app.register_blueprint(create_blueprint(scheduler, token=TOKEN, dashboard=True),
                           url_prefix="/admin/timers")
    client = app.test_client()
    reply = client.get(f"/admin/timers/?token={TOKEN}", headers=HTML)
    assert reply.headers["Location"] == "/admin/timers/"
    assert "Path=/admin/timers/" in reply.headers["Set-Cookie"]
    text = page(client, "/admin/timers/")
    assert 'href="/admin/timers/ui/topics/jobs"' in text
    assert 'href="/admin/timers/ui/static/dashboard.css' in text
    assert 'data-timer-id="t1"' in page(client, "/admin/timers/ui/topics/jobs")
    assert client.get("/admin/timers/ui/static/dashboard.js").status_code == 200
    assert client.get("/admin/timers/stats").status_code == 401  # the API: bearer only
    plain = flask.Flask("plain")
    plain.register_blueprint(create_blueprint(scheduler, token=TOKEN), url_prefix="/t")
    assert plain.test_client().get("/t/", headers=HTML).status_code == 401
