"""Who may see the dashboard: a signed session cookie got by signing in with the API token
(or by opening a page once with ``?token=``), the bearer token itself, and CSRF tokens
for every form that changes something.

The signing key is derived from the API token, so a new token ends every old session;
the cookie's value carries its own signing time, so it expires at SESSION_S even if a
browser keeps it. The CSRF token is an HMAC of the session's random id: a page of ours
holds it, a page of another site cannot read it.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets

import flask
from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Response

#: The session cookie's name, and how long a session lasts (in the cookie and its value).
COOKIE = "redistimers_session"
SESSION_S = 12 * 3600
#: A one-shot cookie carrying an action's result across its redirect.
MESSAGE_COOKIE = "redistimers_message"
MESSAGE_S = 120
#: The session id of a dashboard served without a token (everyone shares it).
OPEN_SESSION = "open"


class Sessions:
    """Sessions and CSRF tokens of one dashboard; `token=None`: open to all."""

    def __init__(self, token: str | None) -> None:
        self.open = token is None
        # Without a token a per-process random key still makes CSRF tokens unguessable.
        root = hashlib.sha256(token.encode()).digest() if token is not None else os.urandom(32)
        self._token_digest = hashlib.sha256(token.encode()).digest() if token else None
        key = hmac.new(root, b"redistimers dashboard", hashlib.sha256).digest()
        self._sessions = URLSafeTimedSerializer(key, salt="redistimers-dashboard-session")
        self._messages = URLSafeTimedSerializer(key, salt="redistimers-dashboard-message")
        self._csrf_key = hmac.new(key, b"csrf", hashlib.sha256).digest()

    # -- tokens -----------------------------------------------------------------------------

    def token_is_valid(self, presented: str) -> bool:
        """Whether `presented` is the API token (compared by digest, in constant time)."""
        if self._token_digest is None:
            return True
        digest = hashlib.sha256(presented.encode("utf-8", "replace")).digest()
        return hmac.compare_digest(digest, self._token_digest)

    def bearer_is_valid(self) -> bool:
        """Whether the request carries ``Authorization: Bearer <the API token>``."""
        scheme, _, presented = flask.request.headers.get("Authorization", "").partition(" ")
        return scheme.lower() == "bearer" and bool(presented.strip()) and (
            self.token_is_valid(presented.strip())
        )

    # -- sessions ---------------------------------------------------------------------------

    def new_session(self) -> str:
        """A fresh cookie value: a random session id, signed with the time."""
        return self._sessions.dumps(secrets.token_urlsafe(18))

    def session_id(self) -> str | None:
        """The session id of the request's cookie, if signed by us and not expired."""
        if self.open:
            return OPEN_SESSION
        value = flask.request.cookies.get(COOKIE)
        if not value:
            return None
        try:
            sid = self._sessions.loads(value, max_age=SESSION_S)
        except BadSignature:  # SignatureExpired is one
            return None
        return sid if isinstance(sid, str) else None

    def start(self, response: Response, path: str) -> None:
        """Set a new session cookie on `response`: HttpOnly, SameSite=Strict, Secure over
        https, for the dashboard's `path`."""
        response.set_cookie(
            COOKIE, self.new_session(), max_age=SESSION_S, path=path, httponly=True,
            samesite="Strict", secure=flask.request.is_secure,
        )

    @staticmethod
    def end(response: Response, path: str) -> None:
        response.delete_cookie(COOKIE, path=path, httponly=True, samesite="Strict",
                               secure=flask.request.is_secure)

    # -- CSRF -------------------------------------------------------------------------------

    def csrf_token(self, session_id: str) -> str:
        return hmac.new(self._csrf_key, session_id.encode(), hashlib.sha256).hexdigest()

    def csrf_is_valid(self, session_id: str | None, presented: str | None) -> bool:
        if session_id is None or not presented:
            return False
        return hmac.compare_digest(self.csrf_token(session_id), presented)

    # -- messages across a redirect ---------------------------------------------------------

    def leave_message(self, response: Response, text: str, path: str) -> None:
        response.set_cookie(
            MESSAGE_COOKIE, self._messages.dumps(text), max_age=MESSAGE_S, path=path,
            httponly=True, samesite="Strict", secure=flask.request.is_secure,
        )

    def message(self) -> str | None:
        """The message an action left for this page (shown once), if any."""
        value = flask.request.cookies.get(MESSAGE_COOKIE)
        if not value:
            return None
        try:
            text = self._messages.loads(value, max_age=MESSAGE_S)
        except BadSignature:
            return None
        return text if isinstance(text, str) else None
