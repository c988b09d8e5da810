"""The webhook errors: one root, WebhookError; a refused URL is a RejectTimer (dead letter at
once), a Retry-After a RetryTimer; the others are retried per the topic's RetryPolicy."""

from __future__ import annotations

from ...errors import RedisTimersError, RejectTimer, RetryTimer
from .response import WebhookResponse


class WebhookError(RedisTimersError):
    """Root of the webhook errors."""


class InvalidWebhookError(WebhookError, ValueError):
    """A WebhookPayload that can never be sent: bad URL, scheme, method or headers."""


class WebhookRefused(WebhookError, RejectTimer):
    """This worker will not send to the URL: host not allowed, or not a public address.

    Permanent: no request is made, and the timer goes to the dead letters at once (a
    RejectTimer with dead_letter=True), where someone can see it.
    """

    def __init__(self, message: str) -> None:
        RejectTimer.__init__(self, message, dead_letter=True)


class WebhookFailed(WebhookError):
    """The receiver answered with a status other than 2xx; retried per the topic's policy."""

    def __init__(self, message: str, response: WebhookResponse) -> None:
        Exception.__init__(self, message)  # not super(): RetryTimer may follow in the MRO
        self.response = response
        self.status = response.status


class WebhookRetryAfter(WebhookFailed, RetryTimer):
    """A 429 or 503 with a Retry-After: delivered again after that many seconds (capped)."""

    def __init__(self, message: str, response: WebhookResponse, delay: float) -> None:
        RetryTimer.__init__(self, delay)
        WebhookFailed.__init__(self, message, response)


class WebhookConnectionError(WebhookError):
    """No answer: the host did not resolve, refused the connection, or broke it."""


class WebhookTimeout(WebhookConnectionError):
    """No complete answer within the timeout."""
