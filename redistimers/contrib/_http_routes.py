"""The views of the HTTP admin API, one method per route, and the table of routes
(`RULES`) that `create_blueprint` mounts. Each view checks the whole request (path, query,
body) before it calls the scheduler, so one that is refused writes nothing."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Mapping
from typing import Any

import attrs
import flask

from ..admin import decode_cursor
from ..errors import InvalidTimerError, PayloadTooLargeError, PayloadTypeError
from ..models import TimerInfo
from ..periodic import Period
from ..scheduler import TimerScheduler
from ..validation import check_correlation_id, check_headers, check_timer_id, check_topic
from ._http_json import (
    MAX_PAGE,
    ApiError,
    dead_json,
    due_args,
    field_value,
    instant,
    int_param,
    json_body,
    period_args,
    query,
    respond,
    stats_json,
    timer_json,
    typed_payload,
)

_NEW_TIMER_FIELDS = ("payload", "in", "at", "id", "headers", "correlation_id", "every",
                     "cron", "tz")
_MOVE_FIELDS = ("in", "at")


class Routes:
    """The views of one blueprint, around one scheduler."""

    def __init__(self, scheduler: TimerScheduler, max_body_bytes: int) -> None:
        self.scheduler = scheduler
        self.max_body_bytes = max_body_bytes

    def list_topics(self) -> flask.Response:
        query(())
        return respond({"topics": self.scheduler.topics()})

    def all_stats(self) -> flask.Response:
        query(())
        stats = self.scheduler.stats()
        return respond({"topics": {name: stats_json(s) for name, s in stats.items()}})

    def topic_stats(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        return respond(stats_json(self.scheduler.stats(topic)))

    def create_timer(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        body = json_body(self.max_body_bytes, _NEW_TIMER_FIELDS)
        if "payload" not in body:
            raise ApiError(400, 'the "payload" field is required (any JSON value)', "payload")
        periodic, period = period_args(body)
        args: dict[str, Any] = {**due_args(body, required=period is None), **periodic}
        if body.get("id") is not None:  # optional fields given as null count as absent
            args["timer_id"] = field_value("id", check_timer_id, body["id"])
        args["headers"] = field_value("headers", check_headers, body.get("headers"))
        args["correlation_id"] = field_value(
            "correlation_id", check_correlation_id, body.get("correlation_id")
        )
        payload = typed_payload(self.scheduler, topic, body["payload"])
        sent_at = time.time()
        try:
            timer_id = self.scheduler.set_timer(topic, payload, **args)
        except PayloadTypeError as exc:
            raise ApiError(400, str(exc), "payload") from exc
        except PayloadTooLargeError as exc:
            raise ApiError(413, str(exc), "payload") from exc
        except InvalidTimerError as exc:
            raise ApiError(400, str(exc)) from exc
        info = self.scheduler.get_timer(topic, timer_id)
        if info is None:  # delivered already: show it as it was written
            info = TimerInfo(
                topic=topic, timer_id=timer_id, due_at=_guess_due(args, period, sent_at),
                remaining=dt.timedelta(0), attempts=0, leased=False, payload=payload,
                headers=args["headers"], correlation_id=args["correlation_id"],
                every=args.get("every"), cron=args.get("cron"),
                tz=(period.tz if period is not None and period.cron else None),
            )
        location = flask.url_for(".timer", topic=topic, timer_id=timer_id)
        return respond(timer_json(info), 201, {"Location": location})

    def list_timers(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        args = query(("limit", "cursor", "due_before"))
        limit = int_param(args, "limit", 100, 1, MAX_PAGE)
        cursor = args.get("cursor") or None
        if cursor is not None:
            score, _ = field_value("cursor", decode_cursor, cursor)
            if not math.isfinite(float(score)):  # decode_cursor lets NaN through
                raise ApiError(400, f"cursor {cursor!r} is not one this API returned", "cursor")
        due_before = None
        if "due_before" in args:
            # A '+' of an offset arrives as a space when the client did not encode it.
            text = args["due_before"].strip()
            if len(text) > 6 and text[-6] == " ":
                text = text[:-6] + "+" + text[-5:]
            due_before = instant("due_before", text)
        page = self.scheduler.list_timers(topic, due_before=due_before, limit=limit,
                                          cursor=cursor)
        timers = [timer_json(t) for t in page.timers]
        return respond({"timers": timers, "next_cursor": page.cursor})

    def purge_timers(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        return respond({"purged": self.scheduler.purge(topic)})

    def _path(self, topic: str, timer_id: str) -> tuple[str, str]:
        return field_value("topic", check_topic, topic), field_value("id", check_timer_id, timer_id)

    def _missing(self, topic: str, timer_id: str) -> ApiError:
        return ApiError(404, f"no pending timer {timer_id!r} on topic {topic!r}", "id")

    def get_timer(self, topic: str, timer_id: str) -> flask.Response:
        topic, timer_id = self._path(topic, timer_id)
        query(())
        info = self.scheduler.get_timer(topic, timer_id)
        if info is None:
            raise self._missing(topic, timer_id)
        return respond(timer_json(info))

    def move_timer(self, topic: str, timer_id: str) -> flask.Response:
        topic, timer_id = self._path(topic, timer_id)
        query(())
        due = due_args(json_body(self.max_body_bytes, _MOVE_FIELDS), required=True)
        before = self.scheduler.get_timer(topic, timer_id)
        if before is None:
            raise self._missing(topic, timer_id)
        sent_at = time.time()
        if before.leased or not self.scheduler.reschedule(topic, timer_id, **due):
            if self.scheduler.get_timer(topic, timer_id) is None:
                raise self._missing(topic, timer_id)
            raise ApiError(409, f"a handler is running timer {timer_id!r} now; it is not "
                                "moved under it, try again when it is done", "id")
        info = self.scheduler.get_timer(topic, timer_id)
        if info is None:  # delivered already: show it as it was moved
            info = attrs.evolve(before, due_at=_guess_due(due, None, sent_at),
                                remaining=dt.timedelta(0))
        return respond(timer_json(info))

    def cancel_timer(self, topic: str, timer_id: str) -> flask.Response:
        topic, timer_id = self._path(topic, timer_id)
        query(())
        if not self.scheduler.cancel_timer(topic, timer_id):
            raise self._missing(topic, timer_id)
        return flask.Response(status=204)

    def list_dead(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        args = query(("limit", "offset"))
        limit = int_param(args, "limit", 100, 1, MAX_PAGE)
        offset = int_param(args, "offset", 0, 0)
        dead = self.scheduler.dead_timers(topic, limit=limit, offset=offset)
        next_offset = offset + len(dead) if len(dead) == limit else None
        return respond({"dead": [dead_json(d) for d in dead], "next_offset": next_offset})

    def requeue_all_dead(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        return respond({"requeued": self.scheduler.requeue_dead(topic)})

    def requeue_dead(self, topic: str, timer_id: str) -> flask.Response:
        topic, timer_id = self._path(topic, timer_id)
        query(())
        if not self.scheduler.requeue_dead(topic, timer_id):
            raise ApiError(404, f"no dead letter {timer_id!r} on topic {topic!r}", "id")
        return respond({"requeued": 1})

    def purge_dead(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        return respond({"purged": self.scheduler.purge_dead(topic)})


def _guess_due(args: Mapping[str, Any], period: Period | None, sent_at: float) -> dt.datetime:
    """Roughly when a timer written at `sent_at` was due, for one already delivered."""
    if args.get("activate_at") is not None:
        return args["activate_at"]  # type: ignore[no-any-return]
    sent = dt.datetime.fromtimestamp(sent_at, dt.timezone.utc)
    if args.get("activate_in") is not None:
        return sent + args["activate_in"]  # type: ignore[no-any-return]
    if period is not None:
        return dt.datetime.fromtimestamp(period.next_after(sent_at * 1000, None) / 1000,
                                         dt.timezone.utc)
    return sent


RULES: tuple[tuple[str, str, str, str], ...] = (
    # rule, endpoint, method, view
    ("/topics", "topics", "GET", "list_topics"),
    ("/stats", "stats", "GET", "all_stats"),
    ("/topics/<topic>/stats", "topic_stats", "GET", "topic_stats"),
    ("/topics/<topic>/timers", "timers", "GET", "list_timers"),
    ("/topics/<topic>/timers", "create_timer", "POST", "create_timer"),
    ("/topics/<topic>/timers", "purge_timers", "DELETE", "purge_timers"),
    ("/topics/<topic>/timers/<path:timer_id>", "timer", "GET", "get_timer"),
    ("/topics/<topic>/timers/<path:timer_id>", "move_timer", "PATCH", "move_timer"),
    ("/topics/<topic>/timers/<path:timer_id>", "cancel_timer", "DELETE", "cancel_timer"),
    ("/topics/<topic>/dead", "dead", "GET", "list_dead"),
    ("/topics/<topic>/dead", "purge_dead", "DELETE", "purge_dead"),
    ("/topics/<topic>/dead/requeue", "requeue_all_dead", "POST", "requeue_all_dead"),
    ("/topics/<topic>/dead/<path:timer_id>/requeue", "requeue_dead", "POST", "requeue_dead"),
)
