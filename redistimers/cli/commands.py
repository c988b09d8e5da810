"""Commands that inspect and repair timers: topics, stats, list, get, schedule, cancel,
reschedule, purge and dead letters. Each returns its exit code: 0 done, 1 not found
(raised as `NotFound`); bad input and Redis errors are left to `main` (exit code 2).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from typing import Any

from ..codec import EnvelopeError, structure_payload
from ..errors import InvalidTimerError
from ..models import DeadTimer, TimerInfo, TopicStats
from ..periodic import check_period
from ..scheduler import TimerScheduler
from .context import Context
from .output import CliError, NotFound, compact, duration, jsonable, plural, when


def topics(ctx: Context) -> int:
    names = ctx.scheduler().topics()
    if ctx.json:
        ctx.console.json(names)
    elif not names:
        ctx.console.note(f"no topics{ctx.where}")
    else:
        for name in names:
            ctx.console.line(name)
    return 0


def stats(ctx: Context) -> int:
    scheduler = ctx.scheduler()
    topic: str | None = ctx.args.topic
    if topic is not None:
        one = scheduler.stats(topic)
        rows = [one]
        result: TopicStats | dict[str, TopicStats] = one
    else:
        result = scheduler.stats()
        rows = list(result.values())
    if ctx.json:
        ctx.console.json(result)
        return 0
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
        ctx.console.json(page)
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
        ctx.console.json(timer)
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
    payload = json.dumps(jsonable(timer.payload), indent=2, ensure_ascii=False)
    ctx.console.line(f"{'payload:':<16}" + payload.replace("\n", "\n" + " " * 16))
    return 0


def _due_text(ctx: Context) -> str:
    if ctx.args.activate_at is not None:
        return f"due at {when(ctx.args.activate_at)}"
    if not ctx.args.activate_in:
        return "due now"
    return f"due in {duration(ctx.args.activate_in)}"


def _check_repeats(args: argparse.Namespace) -> None:
    """The options of `schedule` that go together, checked as set_timer checks them
    (--every and --cron exclusive, --tz with --cron only), before Redis is asked."""
    if args.every is None and args.cron is None and (
        args.activate_in is None and args.activate_at is None
    ):
        raise CliError("one of the arguments --in --at --every --cron is required "
                           "(see 'redistimers schedule --help')")
    try:
        if args.every is not None and args.cron is not None:
            check_period(args.every, args.cron, None)
        if args.tz is not None and args.cron is None:
            check_period(None, None, args.tz)
    except InvalidTimerError as exc:  # the Python API's own words
        raise CliError(str(exc)) from None
    if args.cron is not None:
        try:
            check_period(None, args.cron, args.tz)
        except InvalidTimerError as exc:  # --cron was checked by the parser: --tz is wrong
            raise CliError(f"argument --tz: {exc}") from None


def _as_written(args: argparse.Namespace, timer_id: str, payload: Any,
                sent: dt.datetime) -> TimerInfo:
    """The timer `schedule` wrote, for when a worker took it before it could be read
    back: its due time computed from the arguments and this machine's clock."""
    repeat = check_period(args.every, args.cron, args.tz)
    if args.activate_at is not None:
        due_at: dt.datetime = args.activate_at
    elif args.activate_in is not None:
        due_at = sent + args.activate_in
    elif repeat is not None:
        sent_ms = sent.timestamp() * 1000
        due_at = dt.datetime.fromtimestamp(
            repeat.next_after(sent_ms, None) / 1000, dt.timezone.utc
        )
    else:  # unreachable: _check_repeats wants one of them
        due_at = sent
    return TimerInfo(
        topic=args.topic, timer_id=timer_id, due_at=due_at, remaining=dt.timedelta(0),
        attempts=0, leased=False, payload=payload, headers=dict(args.headers),
        correlation_id=args.correlation_id, every=args.every, cron=args.cron,
        tz=(repeat.tz if repeat is not None and repeat.cron is not None else None),
    )


def _typed_payload(scheduler: TimerScheduler, topic: str, raw: Any) -> Any:
    """The JSON of --payload in the topic's payload type, when the scheduler has a handler
    for the topic (as a web app's scheduler given to `main` does); else as it is."""
    payload_type = scheduler.payload_type(topic)
    if payload_type is None:
        return raw
    try:
        return structure_payload(raw, payload_type)
    except EnvelopeError as exc:
        raise CliError(f"--payload for topic {topic!r}: {exc}") from None


def schedule(ctx: Context) -> int:
    args = ctx.args
    _check_repeats(args)
    scheduler = ctx.scheduler()
    payload = _typed_payload(scheduler, args.topic, args.payload)
    sent = dt.datetime.now(dt.timezone.utc)
    timer_id = scheduler.set_timer(
        args.topic,
        payload,
        activate_in=args.activate_in,
        activate_at=args.activate_at,
        timer_id=args.timer_id,
        headers=dict(args.headers),
        correlation_id=args.correlation_id,
        every=args.every,
        cron=args.cron,
        tz=args.tz,
    )
    read_back = scheduler.get_timer(args.topic, timer_id)
    timer = read_back or _as_written(args, timer_id, payload, sent)
    if ctx.json:  # as `get --json` shows it, and whether it is still there to get
        shown = jsonable(timer)
        shown["pending"] = read_back is not None
        if read_back is None:
            shown["attempts"] = None  # a worker took it: how often is not known
        ctx.console.json(shown)
        return 0
    if args.activate_in is None and args.activate_at is None:  # the first of a series
        due = f"due at {when(timer.due_at)}"
        if read_back is not None and timer.remaining:
            due += f" (in {duration(timer.remaining)})"
    else:
        due = _due_text(ctx)
    repeats = _repeats(timer)
    if repeats is not None:
        due += f", then {repeats}"
    gone = "" if read_back is not None else "; a worker took it already"
    ctx.console.line(f"scheduled timer {timer_id} on topic {args.topic!r}, {due}{gone}")
    return 0


def cancel(ctx: Context) -> int:
    topic, timer_id = ctx.args.topic, ctx.args.timer_id
    cancelled = ctx.scheduler().cancel_timer(topic, timer_id)
    if ctx.json:
        ctx.console.json({"topic": topic, "timer_id": timer_id, "cancelled": cancelled})
    if not cancelled:
        raise NotFound(f"no timer {timer_id!r} on topic {topic!r}{ctx.where}")
    if not ctx.json:
        ctx.console.line(f"cancelled timer {timer_id} on topic {topic!r}")
    return 0


def reschedule(ctx: Context) -> int:
    args = ctx.args
    scheduler = ctx.scheduler()
    moved = scheduler.reschedule(
        args.topic, args.timer_id, activate_in=args.activate_in, activate_at=args.activate_at
    )
    if ctx.json:
        ctx.console.json({"topic": args.topic, "timer_id": args.timer_id, "rescheduled": moved})
    if not moved:
        timer = scheduler.get_timer(args.topic, args.timer_id)
        if timer is not None and timer.leased:
            raise NotFound(
                f"timer {args.timer_id!r} on topic {args.topic!r} is running (a handler holds "
                "it), so it was not moved; try again when it has finished"
            )
        raise NotFound(f"no pending timer {args.timer_id!r} on topic {args.topic!r}{ctx.where}")
    if not ctx.json:
        ctx.console.line(
            f"rescheduled timer {args.timer_id} on topic {args.topic!r}, {_due_text(ctx)}"
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
        ctx.console.json({"topic": topic, "purged": count})
    else:
        ctx.console.line(f"purged {plural(count, 'pending timer')} of topic {topic!r}")
    return 0


def dead_list(ctx: Context) -> int:
    args = ctx.args
    dead: list[DeadTimer] = ctx.scheduler().dead_timers(args.topic, args.limit, args.offset)
    if ctx.json:
        ctx.console.json(dead)
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
        ctx.console.json({"topic": topic, "requeued": count})
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
        ctx.console.json({"topic": topic, "purged": purged})
    else:
        ctx.console.line(f"purged {plural(purged, 'dead timer')} of topic {topic!r}")
    return 0
