"""The handlers the workers deliver: ``redistimers worker reminders.tasks:router``.

A plain `Router`, importable without Flask, so a worker needs nothing but this module;
the web app includes the same router, so it checks payloads before they are written.
"""

from __future__ import annotations

import logging

import attrs

from redistimers import Delivery, Router

log = logging.getLogger("reminders")

#: Topics, named once for the web app and the handlers.
REMINDERS = "reminders"
TRIALS = "trials"

router = Router()


@attrs.frozen
class Reminder:
    user: str
    text: str


@router.handler(REMINDERS, payload=Reminder, max_concurrent=20)
def send_reminder(reminder: Reminder, delivery: Delivery) -> None:
    """Send the reminder (a real app would e-mail it; delivery is at least once, so a
    real sender would skip one it already sent, by `delivery.timer_id`)."""
    log.info(
        "reminder %s for %s: %s (attempt %d)",
        delivery.timer_id, reminder.user, reminder.text, delivery.attempt,
    )


@router.handler(TRIALS, max_concurrent=4)
def end_trial(user: str, delivery: Delivery) -> None:
    """End a user's free trial (a real app would update its database)."""
    log.info("trial of %s ended (timer %s)", user, delivery.timer_id)
