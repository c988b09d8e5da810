"""The dashboard's actions: each a POST form that changes Redis (cancel, reschedule, fire
now, requeue, requeue all, purge dead letters, purge the topic), confirmed first (by the
page's script, or without it by a confirmation page), then answered with a redirect that
carries what happened to the next page's #message."""

from __future__ import annotations

from collections.abc import Callable

import attrs
import flask

from ... import inputs
from ...scheduler import TimerScheduler
from ...validation import check_timer_id, check_topic

Done = tuple[str, str]  # (message, the endpoint to go back to)


@attrs.frozen
class Action:
    """One action: what the confirmation asks, and whether it is about one timer."""

    question: str
    one_timer: bool


ACTIONS: dict[str, Action] = {
    "cancel": Action("Cancel timer {timer_id} of {topic}? It will never fire.", True),
    "reschedule": Action("Move timer {timer_id} of {topic} to {when}?", True),
    "fire-now": Action("Make timer {timer_id} of {topic} due now?", True),
    "requeue": Action("Requeue dead letter {timer_id} of {topic} (due now)?", True),
    "requeue-all": Action("Requeue every dead letter of {topic} (due now)?", False),
    "purge-dead": Action("Delete every dead letter of {topic}? This cannot be undone.", False),
    "purge": Action("Delete every pending timer of {topic}? This cannot be undone.", False),
}


class ActionRefused(Exception):
    """An action's input that cannot be done, said to the user on the next page."""


class Actions:
    """Runs the actions of one dashboard on one scheduler."""

    def __init__(self, scheduler: TimerScheduler) -> None:
        self.scheduler = scheduler
        self._run: dict[str, Callable[[str, str, str], Done]] = {
            "cancel": self._cancel, "reschedule": self._reschedule,
            "fire-now": self._fire_now, "requeue": self._requeue,
            "requeue-all": self._requeue_all, "purge-dead": self._purge_dead,
            "purge": self._purge,
        }

    def question(self, name: str, topic: str, timer_id: str, when: str) -> str:
        return ACTIONS[name].question.format(topic=topic, timer_id=timer_id, when=when)

    def run(self, name: str, topic: str, timer_id: str, when: str) -> Done:
        """Do action `name`; (what happened, the endpoint of the page to show it on)."""
        topic = check_topic(topic)
        if ACTIONS[name].one_timer:
            timer_id = check_timer_id(timer_id)
        return self._run[name](topic, timer_id, when)

    def _cancel(self, topic: str, timer_id: str, when: str) -> Done:
        if self.scheduler.cancel_timer(topic, timer_id):
            return f"Cancelled timer {timer_id}.", ".topic"
        return f"No pending timer {timer_id}: nothing cancelled.", ".topic"

    def _reschedule(self, topic: str, timer_id: str, when: str) -> Done:
        due = _due(when)
        info = self.scheduler.reschedule_and_get(topic, timer_id, **due)
        if info is None:
            return f"No pending timer {timer_id}: nothing moved.", ".topic"
        if info.leased:
            return (f"A handler is running timer {timer_id} now: not moved; try again when "
                    "it is done."), ".timer"
        return f"Timer {timer_id} is now due at {info.due_at:%Y-%m-%d %H:%M:%S} UTC.", ".timer"

    def _fire_now(self, topic: str, timer_id: str, when: str) -> Done:
        return self._reschedule(topic, timer_id, "0s")

    def _requeue(self, topic: str, timer_id: str, when: str) -> Done:
        if self.scheduler.requeue_dead(topic, timer_id):
            return f"Requeued dead letter {timer_id}: it is due now.", ".dead"
        return f"No dead letter {timer_id}: nothing requeued.", ".dead"

    def _requeue_all(self, topic: str, timer_id: str, when: str) -> Done:
        count = self.scheduler.requeue_dead(topic)
        return f"Requeued {count:,} dead letter(s) of {topic}.", ".dead"

    def _purge_dead(self, topic: str, timer_id: str, when: str) -> Done:
        count = self.scheduler.purge_dead(topic)
        return f"Deleted {count:,} dead letter(s) of {topic}.", ".dead"

    def _purge(self, topic: str, timer_id: str, when: str) -> Done:
        count = self.scheduler.purge(topic)
        return f"Deleted {count:,} pending timer(s) of {topic}.", ".topic"


def _due(when: str) -> inputs.DueArgs:
    """A delay ("30m", "1h30m", "0") or an ISO 8601 time, read by redistimers.inputs."""
    text = when.strip()
    if not text:
        raise ActionRefused("Give a delay like 30m or a time like 2030-01-01T09:00:00Z.")
    try:
        return inputs.due_args(activate_in=text)
    except inputs.InputError as as_delay:
        try:
            return inputs.due_args(activate_at=text)
        except inputs.InputError as as_time:
            looks_like_time = any(c in text for c in "T:") or text.count("-") >= 2
            raise ActionRefused(f"Not moved: {as_time if looks_like_time else as_delay}") from None


def form_value(name: str) -> str:
    value = flask.request.form.get(name, "")
    return value if isinstance(value, str) else ""
