"""How the dashboard shows values: numbers with thousands separators, times relative to
now with the absolute one at hand, bytes in units, topics trouble first, and the bars of
the due-per-minute and lateness charts. Plain functions of values, no request, no Redis."""

from __future__ import annotations

import bisect
import datetime as dt
import json
import math
from collections.abc import Sequence
from typing import Any

import attrs

from ...metrics import LATENESS_BUCKETS
from ...models import DueForecast, TopicStats
from .recent import Lateness

UTC = dt.timezone.utc


def thousands(value: int | float) -> str:
    """1234567 -> "1,234,567"."""
    return f"{value:,}" if isinstance(value, int) else f"{value:,.1f}"


def span(seconds: float) -> str:
    """A duration as a person reads it: "12 s", "4 min 10 s", "3 h 20 min", "2 d 5 h"."""
    whole = int(abs(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min {secs} s" if secs and minutes < 10 else f"{minutes} min"
    return f"{secs} s"


def relative(when: dt.datetime, now: dt.datetime) -> str:
    """"in 3 h 20 min" for a time ahead, "12 s late" for one past, "now" within a second."""
    seconds = (when - now).total_seconds()
    if abs(seconds) < 1:
        return "now"
    return f"in {span(seconds)}" if seconds > 0 else f"{span(seconds)} late"


def ago(when: dt.datetime, now: dt.datetime) -> str:
    """"5 s ago" (a past event, such as a heartbeat)."""
    seconds = (now - when).total_seconds()
    return "just now" if seconds < 1 else f"{span(seconds)} ago"


def absolute(when: dt.datetime) -> str:
    """"2030-01-01 09:00:00 UTC": the title shown on hover."""
    return when.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def iso(when: dt.datetime) -> str:
    """The ISO 8601 form for <time datetime=...>, which the page's script localises."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def size(value: int | None) -> str:
    """Bytes in binary units: "1.5 MiB"; "none" for no limit."""
    if value is None:
        return "none"
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < 1024 or unit == "GiB":
            return f"{amount:,.0f} {unit}" if unit == "B" else f"{amount:,.1f} {unit}"
        amount /= 1024
    raise AssertionError("unreachable")


def pretty_json(value: Any) -> str:
    """A payload as indented JSON (text: the template escapes it)."""
    try:
        return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(value)


def lag_seconds(stats: TopicStats) -> float | None:
    return stats.oldest_due_lag.total_seconds() if stats.oldest_due_lag is not None else None


def in_trouble(stats: TopicStats) -> bool:
    return stats.dead > 0 or stats.oldest_due_lag is not None


def trouble_first(stats: dict[str, TopicStats]) -> list[TopicStats]:
    """Topics with dead letters or a due backlog first (the latest backlog first), then
    the others by name."""
    return sorted(stats.values(), key=lambda s: (
        not in_trouble(s), -(lag_seconds(s) or 0.0), -s.dead, s.topic,
    ))


@attrs.frozen
class Bar:
    """One bar of the chart, in the SVG's units."""

    x: float
    y: float
    width: float
    height: float
    count: int
    label: str


@attrs.frozen
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int
    total: int


CHART_WIDTH, CHART_HEIGHT = 600, 120


def due_chart(forecast: DueForecast) -> Chart:
    """Bars of timers due per minute, the tallest filling the chart's height."""
    counts = forecast.counts
    peak = max(counts, default=0)
    step = CHART_WIDTH / max(len(counts), 1)
    bars = []
    for minute, count in enumerate(counts):
        height = 0.0 if not peak else max(1.0, count / peak * (CHART_HEIGHT - 4))
        start = forecast.start + dt.timedelta(minutes=minute)
        bars.append(Bar(
            x=round(minute * step + 1, 2), y=round(CHART_HEIGHT - height, 2),
            width=round(max(step - 2, 1), 2), height=round(height, 2), count=count,
            label=f"{start.astimezone(UTC):%H:%M} UTC: {count:,} due",
        ))
    return Chart(CHART_WIDTH, CHART_HEIGHT, bars, peak, sum(counts))


def bound_text(seconds: float) -> str:
    """A lateness bucket's bound: "≤ 2.5 ms", "≤ 1 s", "> 300 s"."""
    if math.isinf(seconds):
        return f"> {LATENESS_BUCKETS[-1]:g} s"
    return f"≤ {seconds * 1000:g} ms" if seconds < 1 else f"≤ {seconds:g} s"


def lateness_chart(points: Sequence[Lateness], window_s: float) -> Chart:
    """Bars of the p99 lateness between the dashboard's looks, now at the right edge; the
    height is the bucket (the buckets grow by steps of about 2.5x: a log scale)."""
    top = len(LATENESS_BUCKETS) + 1
    step = CHART_WIDTH / max(window_s / 5, 1)
    bars = []
    for point in points:
        level = bisect.bisect_left(LATENESS_BUCKETS, point.p99_s) + 1
        height = max(1.0, level / top * (CHART_HEIGHT - 4))
        x = CHART_WIDTH - point.ago_s / window_s * CHART_WIDTH - step
        bars.append(Bar(
            x=round(max(0.0, x), 2), y=round(CHART_HEIGHT - height, 2),
            width=round(max(step - 1, 1), 2), height=round(height, 2), count=point.deliveries,
            label=f"{span(point.ago_s)} ago: {point.deliveries:,} deliveries, p50 "
                  f"{bound_text(point.p50_s)}, p99 {bound_text(point.p99_s)} late",
        ))
    return Chart(CHART_WIDTH, CHART_HEIGHT, bars, max((b.count for b in bars), default=0),
                 sum(b.count for b in bars))


FILTERS = {
    "thousands": thousands,
    "absolute": absolute,
    "iso": iso,
    "size": size,
    "pretty_json": pretty_json,
    "span": span,
}
