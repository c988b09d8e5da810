"""``redistimers health``: a probe for Kubernetes and the like. Exit 0 when Redis answers
and live workers serve the topics in time; 1 with one line saying why not; 2 when Redis
does not answer (the `main` of every command). One connection, short timeouts, no
retries: it runs every few seconds."""

from __future__ import annotations

import datetime as dt

from ..models import TopicStats, WorkerInfo
from .context import Context
from .output import CliError, plural


class Unhealthy(CliError):
    """The check failed: ``redistimers: unhealthy: <why>`` on stderr, exit code 1."""

    code = 1
    label = "unhealthy"


def lag_of(stats: TopicStats) -> dt.timedelta:
    """How long the oldest due timer of a topic has waited (0 when none is due)."""
    return stats.oldest_due_lag or dt.timedelta(0)


def behind(topic: str, lag: dt.timedelta) -> str:
    return f"{topic} {lag.total_seconds():.1f}s behind"


def worker_problems(live: list[WorkerInfo], topics: list[str], where: str) -> list[str]:
    """Why the live workers do not serve `topics` (or, with none named, anything)."""
    if not live:
        return [f"no live workers{where}"]
    if not topics and not any(w.healthy for w in live):
        return [f"every live worker is unhealthy (its threads find Redis unreachable, stalled "
                f"or full): {', '.join(w.worker_id for w in live)}"]
    problems = []
    for topic in topics:
        serving = [w for w in live if topic in w.topics]
        if not serving:
            problems.append(f"no live worker serves topic {topic!r}{where}")
        elif not any(w.healthy for w in serving):
            problems.append(
                f"topic {topic!r} is served only by unhealthy workers (their threads find "
                f"Redis unreachable, stalled or full): {', '.join(w.worker_id for w in serving)}"
            )
    return problems


def health(ctx: Context) -> int:
    args = ctx.args
    topics = list(dict.fromkeys(args.topics))
    max_lag: dt.timedelta | None = args.max_lag
    scheduler = ctx.probe_scheduler()
    live = scheduler.workers()  # Redis does not answer: RedisUnavailableError, exit 2
    problems = worker_problems(live, topics, ctx.where)
    lags: dict[str, dt.timedelta] = {}
    if max_lag is not None:
        every = {t: scheduler.stats(t) for t in topics} if topics else scheduler.stats()
        lags = {topic: lag_of(stats) for topic, stats in every.items()}
        problems += [
            f"topic {topic!r} is {lag.total_seconds():.1f}s behind (limit "
            f"{max_lag.total_seconds():g}s)"
            for topic, lag in lags.items() if lag >= max_lag and lag
        ]
    if problems:
        raise Unhealthy("; ".join(problems))
    if not args.quiet:
        line = f"healthy: {plural(len(live), 'live worker')}"
        if topics and lags:
            line += "; " + ", ".join(behind(topic, lag) for topic, lag in lags.items())
        elif topics:
            line += f"; serving {', '.join(topics)}"
        elif lags:
            worst = max(lags, key=lambda topic: lags[topic])
            line += f"; most behind: {behind(worst, lags[worst])}"
        ctx.console.line(line)
    return 0
