"""The dashboard's pages, server-rendered: the overview, a topic's timers, one timer, a
topic's dead letters, and the overview's numbers as JSON for the page's refresh."""

from __future__ import annotations

import datetime as dt
from typing import Any

import flask
from werkzeug.exceptions import NotFound

from ... import inputs
from ...admin import decode_cursor
from ...errors import InvalidTimerError
from ...models import DeadTimer
from ...scheduler import TimerScheduler
from ...validation import check_timer_id, check_topic
from .formatting import UTC, due_chart, lag_seconds, lateness_chart, trouble_first
from .recent import RECENT_S, RecentDeliveries

#: Timers on a page of a topic, dead letters on a page of them.
PAGE_SIZE = 50
#: Dead letters looked through for the one of a timer's page.
DEAD_SEARCH_LIMIT = 1000
#: Minutes ahead the due chart counts.
CHART_MINUTES = 60


def render(template: str, status: int = 200, **context: Any) -> flask.Response:
    html = flask.render_template(f"redistimers_dashboard/{template}", **context)
    return flask.Response(html, status, mimetype="text/html")


class Pages:
    """The GET views of one dashboard, around one scheduler."""

    def __init__(self, scheduler: TimerScheduler) -> None:
        self.scheduler = scheduler
        self.recent = RecentDeliveries()

    def overview(self) -> flask.Response:
        stats = trouble_first(self.scheduler.stats())
        workers = self.scheduler.workers()
        recent = self.recent.observe(workers)
        return render(
            "overview.html", topics=stats, lag_seconds=lag_seconds, workers=workers,
            recent=recent, lateness=lateness_chart(recent.lateness, RECENT_S),
            server=self.scheduler.server_info(), now=dt.datetime.now(UTC),
        )

    def overview_json(self) -> flask.Response:
        """The overview's numbers, for its script's refresh every few seconds."""
        server = self.scheduler.server_info()
        workers = self.scheduler.workers()
        recent = self.recent.observe(workers)
        return flask.jsonify({
            "topics": [
                {"topic": s.topic, "pending": s.pending, "due": s.due, "leased": s.leased,
                 "dead": s.dead, "lag": lag_seconds(s),
                 "delivered": recent.delivered.get(s.topic, 0),
                 "failed": recent.failed.get(s.topic, 0),
                 "url": flask.url_for(".topic", topic=s.topic),
                 "dead_url": flask.url_for(".dead", topic=s.topic)}
                for s in trouble_first(self.scheduler.stats())
            ],
            "workers": [
                {"worker_id": w.worker_id, "host": w.host, "pid": w.pid,
                 "topics": sorted(w.topics), "running": sum(w.running.values()),
                 "delivered": w.delivered, "failed": w.failed, "healthy": w.healthy,
                 "last_seen": w.last_seen.isoformat()}
                for w in workers
            ],
            "redis": {"version": server.version, "used_memory": server.used_memory,
                      "maxmemory": server.maxmemory},
        })

    def topic(self, topic: str) -> flask.Response:
        topic = check_topic(topic)
        args = flask.request.args
        cursor = args.get("cursor") or None
        if cursor is not None:
            decode_cursor(cursor)  # an InvalidTimerError (400) before Redis
        prefix = args.get("prefix", "").strip()
        due_text = args.get("due_before", "").strip()
        due_before = None
        if due_text:
            due_before = _instant(due_text)
        page = self.scheduler.list_timers(
            topic, limit=PAGE_SIZE, cursor=cursor, due_before=due_before,
            id_prefix=prefix or None,
        )
        forecast = self.scheduler.due_per_minute(topic, CHART_MINUTES)
        next_url = None
        if page.cursor is not None:
            filters = (("due_before", due_text), ("prefix", prefix))
            kept: dict[str, Any] = {k: v for k, v in filters if v}
            next_url = flask.url_for(".topic", topic=topic, cursor=page.cursor, **kept)
        return render(
            "topic.html", topic=topic, timers=page.timers, next_url=next_url,
            prefix=prefix, due_before=due_text, chart=due_chart(forecast),
            stats=self.scheduler.stats(topic), now=forecast.start, first_page=cursor is None,
        )

    def timer(self, topic: str, timer_id: str) -> flask.Response:
        topic, timer_id = check_topic(topic), check_timer_id(timer_id)
        info = self.scheduler.get_timer(topic, timer_id)
        dead = self._dead_letter(topic, timer_id)
        if info is None and dead is None:
            raise NotFound(f"no timer {timer_id!r} on topic {topic!r}, pending or dead")
        return render("timer.html", topic=topic, timer_id=timer_id, info=info, dead=dead,
                      now=dt.datetime.now(UTC))

    def _dead_letter(self, topic: str, timer_id: str) -> DeadTimer | None:
        for offset in range(0, DEAD_SEARCH_LIMIT, PAGE_SIZE):
            page = self.scheduler.dead_timers(topic, limit=PAGE_SIZE, offset=offset)
            for dead in page:
                if dead.timer_id == timer_id:
                    return dead
            if len(page) < PAGE_SIZE:
                return None
        return None

    def dead(self, topic: str) -> flask.Response:
        topic = check_topic(topic)
        offset_text = flask.request.args.get("offset", "0")
        if not (offset_text.isascii() and offset_text.isdigit()):
            raise InvalidTimerError(f"offset must be a whole number, got {offset_text!r}")
        offset = int(offset_text)
        letters = self.scheduler.dead_timers(topic, limit=PAGE_SIZE + 1, offset=offset)
        next_url = None
        if len(letters) > PAGE_SIZE:
            letters = letters[:PAGE_SIZE]
            next_url = flask.url_for(".dead", topic=topic, offset=offset + PAGE_SIZE)
        return render("dead.html", topic=topic, letters=letters, next_url=next_url,
                      stats=self.scheduler.stats(topic), now=dt.datetime.now(UTC))


def _instant(text: str) -> dt.datetime:
    """A time typed in the filter: ISO 8601 with an offset, or a browser's
    datetime-local value (no offset), read as UTC."""
    try:
        return inputs.read_instant(text)
    except InvalidTimerError:
        try:
            moment = dt.datetime.fromisoformat(text)
        except ValueError:
            raise InvalidTimerError(
                f"due before: {text!r} is not a time like 2030-01-01T09:00:00Z"
            ) from None
        return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment
