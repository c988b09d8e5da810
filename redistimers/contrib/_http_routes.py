"""The views of the HTTP admin API, one method per route, and the table of routes
(`RULES`) that `create_blueprint` mounts. Each view checks the whole request (path, query,
body) before it calls the scheduler, so one that is refused writes nothing."""

from __future__ import annotations

import math

import flask

from .. import inputs
from ..admin import decode_cursor
from ..errors import InvalidTimerError, PayloadTooLargeError, PayloadTypeError
from ..jsonforms import (
    all_stats_json,
    dead_page_json,
    purged_json,
    requeued_json,
    stats_json,
    timer_json,
    timer_page_json,
    topics_json,
    workers_json,
)
from ..scheduler import TimerScheduler
from ..validation import check_timer_id, check_topic
from ._http_json import (
    MAX_PAGE,
    ApiError,
    adapted,
    due_fields,
    field_value,
    int_param,
    json_body,
    query,
    respond,
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
        return respond(topics_json(self.scheduler.topics()))

    def all_stats(self) -> flask.Response:
        query(())
        return respond(all_stats_json(self.scheduler.stats()))

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
        periodic = body.get("every") is not None or body.get("cron") is not None
        delay, moment = due_fields(body, required=not periodic)
        args = adapted(lambda: inputs.timer_args(
            activate_in=delay, activate_at=moment, timer_id=body.get("id"),
            headers=body.get("headers"), correlation_id=body.get("correlation_id"),
            every=body.get("every"), cron=body.get("cron"), tz=body.get("tz"),
        ))
        payload = typed_payload(self.scheduler, topic, body["payload"])
        try:
            info = self.scheduler.set_timer_and_get(topic, payload, **args)
        except PayloadTypeError as exc:
            raise ApiError(400, str(exc), "payload") from exc
        except PayloadTooLargeError as exc:
            raise ApiError(413, str(exc), "payload") from exc
        except InvalidTimerError as exc:
            raise ApiError(400, str(exc)) from exc
        location = flask.url_for(".timer", topic=topic, timer_id=info.timer_id)
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
            due_before = field_value("due_before", inputs.read_instant, text)
        page = self.scheduler.list_timers(topic, due_before=due_before, limit=limit,
                                          cursor=cursor)
        return respond(timer_page_json(page))

    def purge_timers(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        return respond(purged_json(self.scheduler.purge(topic)))

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
        delay, moment = due_fields(json_body(self.max_body_bytes, _MOVE_FIELDS), required=True)
        due = adapted(lambda: inputs.due_args(activate_in=delay, activate_at=moment))
        info = self.scheduler.reschedule_and_get(topic, timer_id, **due)
        if info is None:
            raise self._missing(topic, timer_id)
        if info.leased:  # not moved under its running handler
            raise ApiError(409, f"a handler is running timer {timer_id!r} now; it is not "
                                "moved under it, try again when it is done", "id")
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
        return respond(dead_page_json(dead, offset, limit))

    def requeue_all_dead(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        return respond(requeued_json(self.scheduler.requeue_dead(topic)))

    def requeue_dead(self, topic: str, timer_id: str) -> flask.Response:
        topic, timer_id = self._path(topic, timer_id)
        query(())
        if not self.scheduler.requeue_dead(topic, timer_id):
            raise ApiError(404, f"no dead letter {timer_id!r} on topic {topic!r}", "id")
        return respond(requeued_json(1))

    def purge_dead(self, topic: str) -> flask.Response:
        topic = field_value("topic", check_topic, topic)
        query(())
        return respond(purged_json(self.scheduler.purge_dead(topic)))

    def list_workers(self) -> flask.Response:
        query(())
        return respond(workers_json(self.scheduler.workers()))

    def metrics(self) -> flask.Response:
        """Prometheus's text format: the topics' metrics, and this process's worker
        metrics when its scheduler runs handlers. 501 without prometheus_client (imported
        here, so that the rest of the API works without it)."""
        query(())
        try:
            from .prometheus import metrics_text
        except ImportError as exc:
            raise ApiError(501, str(exc)) from exc
        scheduler = self.scheduler
        include_worker = scheduler.running and bool(scheduler.topics_handled)
        body, content_type = metrics_text(scheduler, include_worker)
        return flask.Response(body, 200, content_type=content_type)


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
    ("/workers", "workers", "GET", "list_workers"),
    ("/metrics", "metrics", "GET", "metrics"),
)
