"""The clock-skew scenario: workers and scheduling processes whose wall clocks run 120 s
behind or ahead of Redis's, with one-shot, `every=` and cron timers."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from typing import Any

import attrs

from . import grid, skew
from .fleet import run_child
from .harness import Context, now_ms, poll, topic_conf

#: Who sets timers: a label, its clock shift in seconds, and its timer-id prefix.
SOURCES = (("unskewed", 0, "ref"), ("-120 s", -120, "m120"), ("+120 s", 120, "p120"))
CRONS = (("min", "* * * * *"), ("5s", "* * * * * */5"))


def _plan(prefix: str, n_once: int, window: float, every_s: float) -> list[dict[str, Any]]:
    span = max(1.0, window - 8.0)
    plan: list[dict[str, Any]] = [
        {"topic": "once", "id": f"{prefix}-once-{i:03d}",
         "in_s": 1.0 + span * i / max(1, n_once - 1)}
        for i in range(n_once)
    ]
    plan += [{"topic": "every", "id": f"{prefix}-every-{i}", "every_s": every_s} for i in range(2)]
    plan += [{"topic": "cron", "id": f"{prefix}-cron-{name}", "cron": expr} for name, expr in CRONS]
    return plan


def _set(ctx: Context, url: str, plan: Sequence[dict[str, Any]], seconds: int,
         library: str | None) -> tuple[float, set[str], str | None]:
    """Run the scheduling process (benchmarks/faults/schedule.py) with its clock shifted."""
    argv = [sys.executable, "-m", "benchmarks.faults.schedule", "--url", url,
            "--plan", json.dumps(list(plan))]
    out = run_child(argv, skew.skew_env(seconds, library), timeout=30.0)
    reply = json.loads(out.strip().splitlines()[-1])
    return float(reply["real_ms"]), set(reply["confirmed"]), reply["error"]


def clock_skew(ctx: Context) -> None:
    """Two workers with wall clocks at -120 s and +120 s (libfaketime, else a Python
    patch), timers set by processes at 0, -120 s and +120 s: one-shot timers, two
    `every=` timers and two cron timers ("* * * * *" and every 5 s) from each."""
    library = skew.find_libfaketime()
    if library is None:
        ctx.log(f"clock-skew: {skew.INSTALL_HINT}")
    window, every_s, n_once = ctx.size(25.0, 200.0), ctx.size(3.0, 10.0), ctx.size(20, 100)
    server = ctx.server()
    admin = ctx.admin(server.url)
    topics = [topic_conf(name, lease_ttl=5.0, sleep=0.01) for name in ("once", "every", "cron")]
    for seconds in (-120, 120):
        ctx.worker(f"clock{seconds:+d}", server.url, topics,
                   env=skew.skew_env(seconds, library))
    ctx.fleet.wait_ready()
    begin = time.monotonic()
    periodic: list[grid.Periodic] = []
    for label, seconds, prefix in SOURCES:
        plan = _plan(prefix, n_once, window, every_s)
        set_ms, confirmed, error = _set(ctx, server.url, plan, seconds, library)
        if error:
            ctx.notes.append(f"{label} scheduler: {error[:120]}")
        for item in plan:
            key = (item["topic"], item["id"])
            if item["id"] not in confirmed:
                ctx.unconfirmed.add(key)
            elif "in_s" in item:
                ctx.scheduled[key] = set_ms + item["in_s"] * 1000
            else:
                ctx.scheduled[key] = None
                ctx.periodic.add(key)
                periodic.append(grid.Periodic(key, label, set_ms, item.get("every_s"),
                                              item.get("cron")))
    ctx.wait_settled(admin, ["once"], timeout=window + 20)
    poll(lambda: time.monotonic() - begin >= window, window + 5)  # the periodic window
    until_ms = now_ms() - 2000  # occurrences due later may not have fired yet
    for worker in ctx.fleet.workers:
        worker.stop()
    ctx.finish(admin, ["once", "every", "cron"])
    summary = grid.summarise(periodic, ctx.records(), until_ms)
    how = skew.method(library)
    head = f"clocks shifted with {how}; workers at -120 s and +120 s; window {window:g} s"
    if library is None:
        head += " (libfaketime missing: `apt-get install libfaketime` for the real shift)"
    ctx.notes.insert(0, head)
    for label, _, _ in SOURCES:
        parts = []
        for kind in ("every", "cron"):
            g = summary.get((label, kind))
            if g is None:
                continue
            text = (f"{kind} {g.fires} fires, {g.skipped}/{g.expected} skipped, "
                    f"{g.off_grid} off grid")
            if g.stale:
                text += f", {g.stale} due before set"
            parts.append(text)
        ctx.notes.append(f"set at {label}: " + "; ".join(parts))
    ctx.details["grid"] = {f"{label} {kind}": {f.name: getattr(g, f.name)
                                                for f in attrs.fields(grid.GridCounts)}
                           for (label, kind), g in summary.items()}
    ctx.details["clock_method"] = how
