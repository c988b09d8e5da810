"""The dashboard in a real browser: headless Chromium (Debian's, through its chromedriver)
against a real `redistimers serve` on a real Redis, with a real worker beside it."""

from __future__ import annotations

import io
import time
import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import redis
from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, StaleElementReferenceException
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement

from redistimers import RetryPolicy, Router, TimerScheduler, TimerSpec

from ._browser import chromium
from .helpers import (
    REPO,
    SchedulerFactory,
    ServerFactory,
    cli_command,
    closed_port,
    wait_for,
)
from .test_serve import server_process

pytestmark = pytest.mark.slow

TOKEN = "browser-test-token"
T = TypeVar("T")
#: Where the README's screenshot is kept.
SCREENSHOT = REPO / "docs" / "dashboard.png"


class Dashboard:
    """A `redistimers serve` and the address of its dashboard."""

    def __init__(self, port: int) -> None:
        self.base = f"http://127.0.0.1:{port}"

    def url(self, path: str = "/", **query: str) -> str:
        return self.base + path + (f"?{urllib.parse.urlencode(query)}" if query else "")


def _serve(redis_url: str, *extra: str) -> Iterator[Dashboard]:
    port = closed_port()
    argv = [*cli_command(), "serve", "--redis-url", redis_url, "--port", str(port), *extra]
    with server_process(argv, port, REDISTIMERS_API_TOKEN=TOKEN):
        yield Dashboard(port)


@pytest.fixture
def dashboard(redis_url: str, redis_client: redis.Redis) -> Iterator[Dashboard]:
    yield from _serve(redis_url)


@pytest.fixture
def read_only_dashboard(redis_url: str, redis_client: redis.Redis) -> Iterator[Dashboard]:
    yield from _serve(redis_url, "--read-only")


@pytest.fixture(scope="module")
def module_browser() -> Iterator[webdriver.Chrome]:
    with chromium() as browser:
        yield browser


@pytest.fixture
def browser(module_browser: webdriver.Chrome) -> webdriver.Chrome:
    """The module's Chromium, signed out before each test: every cookie of every site
    cleared (cookies ignore ports, so the last test's server's session would hold)."""
    module_browser.get("about:blank")
    module_browser.execute_cdp_cmd("Network.clearBrowserCookies", {})
    return module_browser


def sign_in(browser: webdriver.Chrome, dashboard: Dashboard, path: str = "/") -> None:
    """Open `path` with ?token= once, as a script would: the page sets the session
    cookie and redirects to the address without the token."""
    browser.get(dashboard.url(path, token=TOKEN))
    wait_for(lambda: "token=" not in browser.current_url, 10)


def cells(row: WebElement) -> dict[str, str]:
    found = {}
    for name in ("pending", "due", "leased", "dead", "lag"):
        value = row.find_element(By.CSS_SELECTOR, f"td.{name}").get_attribute("data-value")
        found[name] = value or ""
    return found


def submit(browser: webdriver.Chrome, form: WebElement) -> None:
    """Submit an action form and accept its confirmation."""
    form.find_element(By.CSS_SELECTOR, "button[type=submit], input[type=submit]").click()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            browser.switch_to.alert.accept()
            break
        except NoAlertPresentException:
            time.sleep(0.05)
    wait_for(lambda: browser.find_elements(By.ID, "message"), 10)


def fresh(browser: webdriver.Chrome, read: Callable[[], T]) -> T:
    """`read()` of elements the overview's refresh may replace meanwhile: tried again
    when they were replaced between finding and reading them."""
    for _ in range(20):
        try:
            return read()
        except StaleElementReferenceException:
            time.sleep(0.05)
    return read()


def assert_no_alert(browser: webdriver.Chrome) -> None:
    try:
        text = browser.switch_to.alert.text
    except NoAlertPresentException:
        return
    raise AssertionError(f"a script ran on the page: alert {text!r}")


def action(browser: webdriver.Chrome, name: str) -> WebElement:
    return browser.find_element(By.CSS_SELECTOR, f"form.action[data-action={name}]")


# -- the overview ---------------------------------------------------------------------------


def test_the_overview_shows_what_stats_returns_and_the_live_workers(
    browser: webdriver.Chrome, dashboard: Dashboard, make_scheduler: SchedulerFactory,
) -> None:
    router = Router()
    router.handler("worked", retry=RetryPolicy(max_attempts=1))(_fail_on_bad)
    worker = make_scheduler(router, heartbeat_interval=0.2)
    scheduling = make_scheduler()
    scheduling.set_timers([TimerSpec("idle", i, activate_in=3600) for i in range(1234)])
    scheduling.set_timers([TimerSpec("lagging", i, activate_in=0) for i in range(3)])
    scheduling.set_timer("worked", "bad", activate_in=0, timer_id="dies")
    with worker:
        wait_for(lambda: len(worker.dead_timers("worked")) == 1, 10)
        wait_for(lambda: len(worker.workers()) == 1, 10)
        sign_in(browser, dashboard)
        assert browser.current_url.rstrip("/") == dashboard.base  # the token is gone
        stats = scheduling.stats()
        def shown() -> tuple[dict[str, dict[str, str]], dict[str, str], list[str]]:
            rows = browser.find_elements(By.CSS_SELECTOR, "table#topics tr[data-topic]")
            workers = browser.find_elements(By.CSS_SELECTOR, "table#workers tr[data-worker-id]")
            return ({r.get_attribute("data-topic") or "": cells(r) for r in rows},
                    {r.get_attribute("data-topic") or "": r.text for r in rows},
                    [w.get_attribute("data-worker-id") or "" for w in workers])

        topics, texts, workers = fresh(browser, shown)
        assert set(topics) == set(stats)
        for topic, counts in stats.items():
            row = topics[topic]
            assert (row["pending"], row["due"], row["leased"], row["dead"]) == tuple(
                str(n) for n in (counts.pending, counts.due, counts.leased, counts.dead)
            ), topic
        assert float(topics["lagging"]["lag"]) >= 0
        assert "1,234" in texts["idle"]  # thousands separators
        assert workers == [worker.worker_id]
        redis_info = browser.find_element(By.ID, "redis")
        assert redis_info.get_attribute("data-version")
        assert int(redis_info.get_attribute("data-used-memory") or 0) > 0


def _fail_on_bad(payload: object) -> None:
    if payload == "bad":
        raise ValueError("card declined <script>alert(1)</script>")


def test_the_overview_refreshes_by_itself_without_reloading(
    browser: webdriver.Chrome, dashboard: Dashboard, make_scheduler: SchedulerFactory,
) -> None:
    scheduling = make_scheduler()
    scheduling.set_timer("growing", 1, activate_in=3600)
    sign_in(browser, dashboard)
    browser.execute_script("window.__notReloaded = true;")
    scheduling.set_timers([TimerSpec("growing", i, activate_in=3600) for i in range(9)])

    def pending() -> str:
        return fresh(browser, lambda: cells(browser.find_element(
            By.CSS_SELECTOR, 'table#topics tr[data-topic="growing"]'))["pending"])

    wait_for(lambda: pending() == "10", 15)
    # A new topic and a worker that starts show up too, with working links.
    router = Router()
    router.handler("appearing")(lambda payload: None)
    worker = make_scheduler(router, heartbeat_interval=0.2)
    scheduling.set_timer("appearing", 1, activate_in=3600, timer_id="new-1")
    with worker:
        wait_for(lambda: browser.find_elements(
            By.CSS_SELECTOR, f'table#workers tr[data-worker-id="{worker.worker_id}"]'), 15)
        assert fresh(browser, lambda: cells(browser.find_element(
            By.CSS_SELECTOR, 'table#topics tr[data-topic="appearing"]'))["pending"]) == "1"
        assert not browser.find_element(By.ID, "no-workers").is_displayed()
        assert browser.execute_script("return window.__notReloaded === true;")
        fresh(browser, lambda: browser.find_element(
            By.CSS_SELECTOR, 'table#topics tr[data-topic="appearing"] td.topic a').click())
        wait_for(lambda: browser.find_elements(
            By.CSS_SELECTOR, 'table#timers tr[data-timer-id="new-1"]'), 10)


def test_the_overview_says_when_redis_cannot_be_reached(
    browser: webdriver.Chrome, own_server: ServerFactory,
) -> None:
    server = own_server()
    for dashboard in _serve(server.url):
        TimerScheduler.from_url(server.url).set_timer("t", 1, activate_in=60)
        sign_in(browser, dashboard)
        server.stop()
        status = browser.find_element(By.ID, "status")
        wait_for(lambda s=status: "unreachable" in s.text.lower(), 20)


# -- a topic's timers -------------------------------------------------------------------------


def test_paging_through_2500_timers_visits_each_once(
    browser: webdriver.Chrome, dashboard: Dashboard, make_scheduler: SchedulerFactory,
) -> None:
    scheduling = make_scheduler()
    ids = [f"t-{i:04d}" for i in range(2500)]
    scheduling.set_timers([
        TimerSpec("paged", i, activate_in=60 + i, timer_id=timer_id)
        for i, timer_id in enumerate(ids)
    ])
    sign_in(browser, dashboard, "/ui/topics/paged")
    seen: list[str] = []
    while True:
        rows = browser.find_elements(By.CSS_SELECTOR, "table#timers tr[data-timer-id]")
        seen += [r.get_attribute("data-timer-id") or "" for r in rows]
        following = browser.find_elements(By.ID, "next-page")
        if not following:
            break
        following[0].click()
    assert seen == ids  # each once, in due order


# -- actions ----------------------------------------------------------------------------------


def test_cancel_reschedule_fire_now_requeue_and_purge_do_what_they_say(
    browser: webdriver.Chrome, dashboard: Dashboard, make_scheduler: SchedulerFactory,
) -> None:
    scheduling = make_scheduler()
    for timer_id in ("to-cancel", "to-move", "to-fire"):
        scheduling.set_timer("acts", timer_id, activate_in=3600, timer_id=timer_id)
    sign_in(browser, dashboard, "/ui/topics/acts/timers/to-cancel")
    submit(browser, action(browser, "cancel"))
    assert scheduling.get_timer("acts", "to-cancel") is None

    browser.get(dashboard.url("/ui/topics/acts/timers/to-move"))
    form = action(browser, "reschedule")
    field = form.find_element(By.CSS_SELECTOR, "input[type=text], input:not([type])")
    field.clear()
    field.send_keys("2h")
    submit(browser, form)
    moved = scheduling.get_timer("acts", "to-move")
    assert moved is not None
    assert 7100 < moved.remaining.total_seconds() <= 7200

    browser.get(dashboard.url("/ui/topics/acts/timers/to-fire"))
    submit(browser, action(browser, "fire-now"))
    fired = scheduling.get_timer("acts", "to-fire")
    assert fired is not None
    assert fired.remaining.total_seconds() == 0

    browser.get(dashboard.url("/ui/topics/acts"))
    submit(browser, action(browser, "purge"))
    assert scheduling.stats("acts").pending == 0


def test_dead_letters_are_shown_requeued_and_purged(
    browser: webdriver.Chrome, dashboard: Dashboard, make_scheduler: SchedulerFactory,
) -> None:
    router = Router()
    router.handler("fragile", retry=RetryPolicy(max_attempts=1))(_fail_on_bad)
    worker = make_scheduler(router)
    for i in range(3):
        worker.set_timer("fragile", "bad", activate_in=0, timer_id=f"d-{i}")
    wait_for(lambda: worker.run_pending() == 0 and len(worker.dead_timers("fragile")) == 3, 10)
    sign_in(browser, dashboard, "/ui/topics/fragile/dead")
    rows = browser.find_elements(By.CSS_SELECTOR, "table#dead tr[data-timer-id]")
    assert sorted(r.get_attribute("data-timer-id") for r in rows) == ["d-0", "d-1", "d-2"]
    assert "card declined <script>alert(1)</script>" in browser.page_source.replace(
        "&lt;", "<").replace("&gt;", ">")  # shown as text
    assert_no_alert(browser)  # the <script> in the message was shown, not run
    one = browser.find_element(By.CSS_SELECTOR, 'table#dead tr[data-timer-id="d-0"]')
    submit(browser, one.find_element(By.CSS_SELECTOR, "form.action[data-action=requeue]"))
    assert [d.timer_id for d in worker.dead_timers("fragile")] == ["d-1", "d-2"]
    assert worker.get_timer("fragile", "d-0") is not None
    browser.get(dashboard.url("/ui/topics/fragile/dead"))
    submit(browser, action(browser, "purge-dead"))
    assert worker.dead_timers("fragile") == []


# -- who may look -----------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong-token"], ids=["missing", "wrong"])
def test_without_the_token_the_page_asks_for_it_and_shows_nothing(
    browser: webdriver.Chrome, dashboard: Dashboard, make_scheduler: SchedulerFactory,
    token: str | None,
) -> None:
    make_scheduler().set_timer("secret-topic", 1, activate_in=60)
    browser.get(dashboard.url("/", **({"token": token} if token else {})))
    assert browser.find_elements(By.ID, "login")
    assert not browser.find_elements(By.ID, "topics")
    assert "secret-topic" not in browser.page_source
    field = browser.find_element(By.CSS_SELECTOR, "form#login input[name=token]")
    field.send_keys(TOKEN)
    browser.find_element(By.CSS_SELECTOR, "form#login button, form#login input[type=submit]"
                         ).click()
    wait_for(lambda: browser.find_elements(By.ID, "topics"), 10)
    assert "secret-topic" in browser.page_source
    cookie = browser.get_cookies()[0]
    assert (cookie["httpOnly"], cookie["sameSite"]) == (True, "Strict")
    assert "expiry" in cookie


def test_a_read_only_server_has_no_buttons(
    browser: webdriver.Chrome, read_only_dashboard: Dashboard, make_scheduler: SchedulerFactory,
) -> None:
    make_scheduler().set_timer("ro", 1, activate_in=60, timer_id="ro-1")
    for path in ("/", "/ui/topics/ro", "/ui/topics/ro/timers/ro-1", "/ui/topics/ro/dead"):
        sign_in(browser, read_only_dashboard, path)
        assert browser.find_elements(By.CSS_SELECTOR, "form.action") == [], path


def test_with_javascript_off_the_page_still_lists_topics(
    dashboard: Dashboard, make_scheduler: SchedulerFactory,
) -> None:
    make_scheduler().set_timer("plain", 1, activate_in=60)
    with chromium(javascript=False) as browser:
        sign_in(browser, dashboard)
        rows = browser.find_elements(By.CSS_SELECTOR, "table#topics tr[data-topic]")
        assert [r.get_attribute("data-topic") for r in rows] == ["plain"]


def test_a_screenshot_is_taken_and_is_not_blank(
    browser: webdriver.Chrome, dashboard: Dashboard, make_scheduler: SchedulerFactory,
    tmp_path: Path,
) -> None:
    from PIL import Image

    scheduling = make_scheduler()
    scheduling.set_timers([TimerSpec("invoices", i, activate_in=60 * i) for i in range(300)])
    scheduling.set_timers([TimerSpec("reminders", i, activate_in=0) for i in range(40)])
    sign_in(browser, dashboard)
    shot = browser.get_screenshot_as_png()
    image = Image.open(io.BytesIO(shot)).convert("RGB")
    colours = image.getcolors(maxcolors=1 << 20) or []
    assert len(colours) > 20  # text, tables and colour: not one blank fill
    (tmp_path / "dashboard.png").write_bytes(shot)
    assert SCREENSHOT.exists(), "README's screenshot, docs/dashboard.png, is missing"
