"""Commands that inspect and repair timers: topics, stats, list, get, schedule, cancel,
reschedule, purge and dead letters. Each returns its exit code: 0 done, 1 not found
(raised as `NotFound`); bad input and Redis errors are left to `main` (exit code 2).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import TypeVar

from .. import inputs
from ..errors import PayloadTypeError
from ..jsonforms import (
    all_stats_json,
    cancelled_json,
    dead_page_json,
    payload_json,
    purged_json,
    requeued_json,
    stats_json,
    timer_json,
    timer_page_json,
    topics_json,
)
from ..models import DeadTimer, TimerInfo, TopicStats
from .context import Context
from .output import CliError, NotFound, compact, duration, plural, when

T = TypeVar("T")

#: The option of each set_timer argument, for errors naming the one at fault.
OPTIONS = {
    "activate_in": "--in", "activate_at": "--at", "timer_id": "--id", "headers": "--header",
    "correlation_id": "--correlation-id", "every": "--every", "cron": "--cron", "tz": "--tz",
}


def topics(ctx: Context) -> int:
    names = ctx.scheduler().topics()
    if ctx.json:
        ctx.console.json(topics_json(names))
    elif not names:
        ctx.console.note(f"no topics{ctx.where}")
    else:
        for name in names:
            ctx.console.line(name)
    return 0


def stats(ctx: Context) -> int:
    scheduler = ctx.scheduler()
    topic: str | None = ctx.args.topic
    rows: list[TopicStats]
    if topic is not None:
        rows = [scheduler.stats(topic)]
        if ctx.json:
            ctx.console.json(stats_json(rows[0]))
            return 0
    else:
        every = scheduler.stats()
        if ctx.json:
            ctx.console.json(all_stats_json(every))
            return 0
        rows = list(every.values())
    if not rows:
        ctx.console.note(f"no topics{ctx.where}")
        return 0
    ctx.console.table(
        ["TOPIC", "PENDING", "DUE", "LEASED", "DEAD", "OLDEST DUE"],
        [
            [
                s.topic, s.pending, s.due, s.leased, s.dead,
                "-" if s.oldest_due_lag is None else f"{duration(s.oldest_due_lag)} late",
            ]
            for s in rows
        ],
    )
    return 0


def _state(timer: TimerInfo) -> str:
    if timer.leased:
        return "running"
    return "due" if not timer.remaining else "waiting"


def list_timers(ctx: Context) -> int:
    args = ctx.args
    page = ctx.scheduler().list_timers(
        args.topic, due_before=args.due_before, limit=args.limit, cursor=args.cursor
    )
    if ctx.json:
        ctx.console.json(timer_page_json(page))
        return 0
    if not page.timers:
        ctx.console.note(f"no pending timers on topic {args.topic!r}{ctx.where}")
        return 0
    ctx.console.table(
        ["ID", "DUE AT", "IN", "STATE", "ATTEMPTS", "PAYLOAD"],
        [
            [
                t.timer_id, when(t.due_at), duration(t.remaining) if t.remaining else "-",
                _state(t), t.attempts, compact(t.payload),
            ]
            for t in page.timers
        ],
    )
    if page.cursor is not None:
        ctx.console.line(f"more: --cursor {page.cursor}")
    return 0


def _repeats(timer: TimerInfo) -> str | None:
    if timer.every is not None:
        return f"every {duration(timer.every)}"
    if timer.cron is not None:
        return f"at the times of cron {timer.cron!r} in {timer.tz or 'UTC'}"
    return None


def get(ctx: Context) -> int:
    topic, timer_id = ctx.args.topic, ctx.args.timer_id
    timer = ctx.scheduler().get_timer(topic, timer_id)
    if ctx.json:
        ctx.console.json(None if timer is None else timer_json(timer))
    if timer is None:
        raise NotFound(f"no pending timer {timer_id!r} on topic {topic!r}{ctx.where}")
    if ctx.json:
        return 0
    due = when(timer.due_at) + (f" (in {duration(timer.remaining)})" if timer.remaining else "")
    fields: list[tuple[str, str | None]] = [
        ("topic", timer.topic),
        ("id", timer.timer_id),
        ("due at", due),
        ("state", _state(timer) + (" (due at is when its lease ends)" if timer.leased else "")),
        ("attempts", str(timer.attempts)),
        ("repeats", _repeats(timer)),
        ("correlation id", timer.correlation_id),
        ("headers", ", ".join(f"{k}={v}" for k, v in timer.headers.items()) or None),
    ]
    for name, value in fields:
        if value is not None:
            ctx.console.line(f"{name + ':':<16}{value}")
    payload = json.dumps(payload_json(timer.payload), indent=2, ensure_ascii=False)
    ctx.console.line(f"{'payload:':<16}" + payload.replace("\n", "\n" + " " * 16))
    return 0


def _due_text(due: inputs.DueArgs) -> str:
    """When the timer was asked to be due, as the options said it."""
    if "activate_at" in due:
        return f"due at {when(due['activate_at'])}"
    if not due["activate_in"]:
        return "due now"
    return f"due in {duration(due['activate_in'])}"


def _adapted(ctx: Context, read: Callable[[], T]) -> T:
    """`read()` of the input adapter, its InputError a usage error naming the option."""
    try:
        return read()
    except inputs.InputError as exc:
        option = OPTIONS.get(exc.field, exc.field)
        raise CliError(f"argument {option}: {exc} (see 'redistimers {ctx.args.command} "
                       "--help')") from None


def schedule(ctx: Context) -> int:
    args = ctx.args
    if all(value is None for value in (args.activate_in, args.activate_at, args.every,
                                       args.cron)):
        raise CliError("one of the arguments --in --at --every --cron is required "
                       "(see 'redistimers schedule --help')")
    options = _adapted(ctx, lambda: inputs.timer_args(
        activate_in=args.activate_in, activate_at=args.activate_at, timer_id=args.timer_id,
        headers=dict(args.headers), correlation_id=args.correlation_id, every=args.every,
        cron=args.cron, tz=args.tz,
    ))
    scheduler = ctx.scheduler()
    try:
        payload = inputs.topic_payload(scheduler, args.topic, args.payload)
    except PayloadTypeError as exc:
        raise CliError(f"argument --payload: {exc}") from None
    timer = scheduler.set_timer_and_get(args.topic, payload, **options)
    if ctx.json:  # the timer as Redis wrote it (a worker may hold it already)
        ctx.console.json(timer_json(timer))
        return 0
    if "activate_in" in options or "activate_at" in options:
        due = _due_text(options)
    else:  # the first of a series: when Redis computed it
        due = f"due at {when(timer.due_at)}"
        if timer.remaining:
            due += f" (in {duration(timer.remaining)})"
    repeats = _repeats(timer)
    if repeats is not None:
        due += f", then {repeats}"
    ctx.console.line(f"scheduled timer {timer.timer_id} on topic {args.topic!r}, {due}")
    return 0


def cancel(ctx: Context) -> int:
    topic, timer_id = ctx.args.topic, ctx.args.timer_id
    cancelled = ctx.scheduler().cancel_timer(topic, timer_id)
    if ctx.json:
        ctx.console.json(cancelled_json(cancelled))
    if not cancelled:
        raise NotFound(f"no timer {timer_id!r} on topic {topic!r}{ctx.where}")
    if not ctx.json:
        ctx.console.line(f"cancelled timer {timer_id} on topic {topic!r}")
    return 0


def reschedule(ctx: Context) -> int:
    args = ctx.args
    due = _adapted(ctx, lambda: inputs.due_args(activate_in=args.activate_in,
                                                activate_at=args.activate_at))
    timer = ctx.scheduler().reschedule_and_get(args.topic, args.timer_id, **due)
    if ctx.json:  # as moved; as it is when a handler holds it (leased: not moved)
        ctx.console.json(None if timer is None else timer_json(timer))
    if timer is None:
        raise NotFound(f"no pending timer {args.timer_id!r} on topic {args.topic!r}{ctx.where}")
    if timer.leased:
        raise NotFound(
            f"timer {args.timer_id!r} on topic {args.topic!r} is running (a handler holds "
            "it), so it was not moved; try again when it has finished"
        )
    if not ctx.json:
        ctx.console.line(
            f"rescheduled timer {args.timer_id} on topic {args.topic!r}, {_due_text(due)}"
        )
    return 0


def purge(ctx: Context) -> int:
    topic = ctx.args.topic
    scheduler = ctx.scheduler()
    pending = scheduler.stats(topic).pending
    ctx.confirm(
        f"Delete all {plural(pending, 'pending timer')} of topic {topic!r}{ctx.where}? "
        "(Dead letters are kept.)"
    )
    count = scheduler.purge(topic)
    if ctx.json:
        ctx.console.json(purged_json(count))
    else:
        ctx.console.line(f"purged {plural(count, 'pending timer')} of topic {topic!r}")
    return 0


def dead_list(ctx: Context) -> int:
    args = ctx.args
    dead: list[DeadTimer] = ctx.scheduler().dead_timers(args.topic, args.limit, args.offset)
    if ctx.json:
        ctx.console.json(dead_page_json(dead, args.offset, args.limit))
        return 0
    if not dead:
        ctx.console.note(f"no dead timers on topic {args.topic!r}{ctx.where}")
        return 0
    ctx.console.table(
        ["ID", "DIED AT", "ATTEMPTS", "REASON", "ERROR"],
        [[d.timer_id, when(d.died_at), d.attempts, d.reason, compact(d.error)] for d in dead],
    )
    if len(dead) == args.limit:
        ctx.console.line(f"more: --offset {args.offset + len(dead)}")
    return 0


def dead_requeue(ctx: Context) -> int:
    topic, timer_id = ctx.args.topic, ctx.args.timer_id
    count = ctx.scheduler().requeue_dead(topic, timer_id)
    if ctx.json:
        ctx.console.json(requeued_json(count))
    if timer_id is not None and not count:
        raise NotFound(f"no dead timer {timer_id!r} on topic {topic!r}{ctx.where}")
    if not ctx.json:
        ctx.console.line(f"requeued {plural(count, 'dead timer')} of topic {topic!r}: due now")
    return 0


def dead_purge(ctx: Context) -> int:
    topic = ctx.args.topic
    scheduler = ctx.scheduler()
    count = scheduler.stats(topic).dead
    ctx.confirm(f"Delete all {plural(count, 'dead timer')} of topic {topic!r}{ctx.where}?")
    purged = scheduler.purge_dead(topic)
    if ctx.json:
        ctx.console.json(purged_json(purged))
    else:
        ctx.console.line(f"purged {plural(purged, 'dead timer')} of topic {topic!r}")
    return 0
