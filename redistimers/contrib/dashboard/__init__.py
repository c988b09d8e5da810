"""The dashboard: server-rendered pages over the HTTP admin API's scheduler (topics,
timers, dead letters, workers, Redis), with a few actions, for people rather than scripts.

``dashboard_blueprint`` is mounted inside the API's blueprint (``create_blueprint(...,
dashboard=True)``; ``create_app`` and ``redistimers serve`` turn it on): ``/`` is the
overview, the other pages are under ``/ui/``. The API's guard leaves these paths to the
dashboard's own gate (`_gate`), which takes the session cookie or the bearer token.
"""

from __future__ import annotations

import urllib.parse
from typing import Any

import flask
import redis
from werkzeug.exceptions import HTTPException
from werkzeug.wrappers import Response

from ...errors import InvalidTimerError, RedisCallError
from ...scheduler import TimerScheduler
from .actions import ACTIONS, ActionRefused, Actions, form_value
from .auth import MESSAGE_COOKIE, Sessions
from .formatting import FILTERS, ago, relative
from .views import Pages, render

__all__ = ["NAME", "dashboard_blueprint"]

#: The nested blueprint's name: its endpoints are "<the API's name>.redistimers_dashboard.*".
NAME = "redistimers_dashboard"
#: Endpoints anyone may reach: the sign-in form and the stylesheet and script.
_PUBLIC = ("login", "static")
_WRITES = ("POST", "PUT", "PATCH", "DELETE")


def dashboard_blueprint(
    scheduler: TimerScheduler, *, token: str | None, read_only: bool = False
) -> flask.Blueprint:
    """The dashboard of `scheduler` as a blueprint to nest in the API's; `token=None`
    leaves it open; `read_only` shows no action and refuses every POST but sign-in/out."""
    sessions = Sessions(token)
    pages, actions = Pages(scheduler), Actions(scheduler)
    bp = flask.Blueprint(NAME, __name__, template_folder="templates",
                         static_folder="static", static_url_path="/ui/static")

    @bp.before_request
    def gate() -> Response | None:
        return _gate(sessions, read_only)

    @bp.context_processor
    def page_context() -> dict[str, Any]:
        sid = flask.g.get("dashboard_sid")
        return {
            "read_only": read_only,
            "csrf": sessions.csrf_token(sid) if sid else "",
            "signed_in": sid is not None and not sessions.open,
            "message": sessions.message(),
            "actions": ACTIONS,
            "relative": relative,
            "ago": ago,
            **FILTERS,  # in the context, not the app's filters: a host app keeps its own
        }

    @bp.after_request
    def headers(response: Response) -> Response:
        if response.mimetype == "text/html":
            response.headers.setdefault("Cache-Control", "no-store")
            response.headers.setdefault("X-Frame-Options", "DENY")
            response.headers.setdefault("Referrer-Policy", "same-origin")
            response.headers.setdefault(
                "Content-Security-Policy",
                "default-src 'self'; style-src 'self'; script-src 'self'; "
                "img-src 'self' data:; frame-ancestors 'none'; form-action 'self'",
            )
            if sessions.message() is not None and flask.request.method == "GET":
                response.delete_cookie(MESSAGE_COOKIE, path=_root())
        return response

    def login() -> Response:
        if flask.request.method == "GET":
            return render("login.html", next=_safe_next(flask.request.args.get("next")))
        if not sessions.token_is_valid(form_value("token")):
            return render("login.html", 401, next=_safe_next(form_value("next")),
                          error="That is not the API token.")
        response = flask.redirect(_safe_next(form_value("next")) or _root(), 303)
        sessions.start(response, _root())
        return response

    def logout() -> Response:
        response = flask.redirect(flask.url_for(".login"), 303)
        sessions.end(response, _root())
        return response

    def act(topic: str, action: str) -> Response:
        if action not in ACTIONS:
            raise flask.abort(404)
        timer_id, when = form_value("timer_id"), form_value("when")
        if action == "fire-now":
            when = "0s"
        if form_value("confirmed") != "yes":
            return render("confirm.html", topic=topic, action=action, timer_id=timer_id,
                          when=when, question=actions.question(action, topic, timer_id, when))
        try:
            message, endpoint = actions.run(action, topic, timer_id, when)
        except ActionRefused as exc:
            message, endpoint = str(exc), ".timer"
        where: dict[str, Any] = {"topic": topic}
        if endpoint == ".timer":
            where["timer_id"] = timer_id
        response = flask.redirect(flask.url_for(endpoint, **where), 303)
        sessions.leave_message(response, message, _root())
        return response

    bp.add_url_rule("/", "overview", pages.overview)
    bp.add_url_rule("/ui/overview.json", "overview_json", pages.overview_json)
    bp.add_url_rule("/ui/login", "login", login, methods=["GET", "POST"])
    bp.add_url_rule("/ui/logout", "logout", logout, methods=["POST"])
    bp.add_url_rule("/ui/topics/<topic>", "topic", pages.topic)
    bp.add_url_rule("/ui/topics/<topic>/dead", "dead", pages.dead)
    bp.add_url_rule("/ui/topics/<topic>/timers/<path:timer_id>", "timer", pages.timer)
    bp.add_url_rule("/ui/topics/<topic>/actions/<action>", "act", act, methods=["POST"])
    _error_pages(bp)
    return bp


def _root() -> str:
    """The overview's path: the session cookie's path, and where sign-in leads."""
    return flask.url_for(".overview")


def _safe_next(value: str | None) -> str:
    """Where to go after signing in: a path of this dashboard, never another site."""
    if not value or not value.startswith(_root()) or value.startswith("//") or "\\" in value:
        return ""
    return value


def _gate(sessions: Sessions, read_only: bool) -> Response | None:
    """Who may see or change what, before any view runs."""
    request = flask.request
    view = (request.endpoint or "").rsplit(".", 1)[-1]
    if view == "static":
        return None
    if "token" in request.args and request.method == "GET" and not sessions.open:
        return _sign_in_from_query(sessions)
    sid = sessions.session_id()
    bearer = sid is None and sessions.bearer_is_valid()
    if sid is None and not bearer and view not in _PUBLIC:
        return _sign_in_wall()
    flask.g.dashboard_sid = sid
    if request.method in _WRITES and view != "login":
        if read_only and view != "logout":
            return _refused(403, "This dashboard is read-only.")
        if not bearer and not sessions.csrf_is_valid(sid, request.form.get("csrf")):
            return _refused(403, "The form is missing its CSRF token or it is not valid; "
                                 "reload the page and try again.")
    return None


def _sign_in_from_query(sessions: Sessions) -> Response:
    """``?token=...`` once: sign in and go to the same address without it (as Jupyter)."""
    request = flask.request
    if not sessions.token_is_valid(request.args["token"]):
        return render("login.html", 401, next="", error="That is not the API token.")
    kept = [(k, v) for k, v in request.args.items(multi=True) if k != "token"]
    target = request.script_root + request.path
    if kept:
        target += "?" + urllib.parse.urlencode(kept)
    response = flask.redirect(target, 303)
    sessions.start(response, _root())
    return response


def _sign_in_wall() -> Response:
    """Nothing but the sign-in form for a browser; the API's JSON 401 for other clients,
    so the dashboard's paths tell a script no more than the API's do."""
    request = flask.request
    if not request.accept_mimetypes.accept_html:
        from .._http_json import REALM, error_response

        return error_response(401, "this API needs an 'Authorization: Bearer <token>' header",
                              headers={"WWW-Authenticate": REALM})
    target = request.full_path if request.args else request.path
    return render("login.html", 401, next=_safe_next(request.script_root + target))


def _refused(status: int, text: str) -> Response:
    return render("error.html", status, title="Refused", error=text)


def _error_pages(bp: flask.Blueprint) -> None:
    @bp.errorhandler(InvalidTimerError)
    def invalid(exc: InvalidTimerError) -> Response:
        return render("error.html", 400, title="Not understood", error=str(exc))

    @bp.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> Response:
        title = "Not found" if exc.code == 404 else exc.name
        return render("error.html", exc.code or 500, title=title, error=exc.description or "")

    @bp.errorhandler(RedisCallError)
    @bp.errorhandler(redis.exceptions.RedisError)
    def unreachable(exc: Exception) -> Response:
        if (flask.request.endpoint or "").endswith(".overview_json"):
            response = flask.jsonify({"error": "redis", "message": str(exc)})
            response.status_code = 503
            return response
        return render("error.html", 503, title="Redis unreachable", error=str(exc))

