"""The scenarios, in the report's order, and running one: a fresh Context per row, its
errors caught into the row, everything it started stopped and removed afterwards."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from typing import Any

import attrs

from .harness import Context, Log
from .scenarios_clock import clock_skew
from .scenarios_network import partition
from .scenarios_redis import full_redis, redis_restart, redis_restart_everysec, redis_stall
from .scenarios_workers import poison, worker_kill, worker_stall

Body = Callable[[Context], None]


@attrs.frozen
class Scenario:
    """A scenario of the command line, and the rows it runs (redis-restart runs two)."""

    name: str
    rows: tuple[tuple[str, Body], ...]

    def description(self) -> str:
        lines = [" ".join((body.__doc__ or "").split()) for _, body in self.rows]
        return " ".join(line for line in lines if line)


def _one(name: str, body: Body) -> Scenario:
    return Scenario(name, ((name, body),))


SCENARIOS: tuple[Scenario, ...] = (
    _one("worker-kill", worker_kill),
    Scenario("redis-restart", (("redis-restart", redis_restart),
                               ("redis-restart everysec", redis_restart_everysec))),
    _one("redis-stall", redis_stall),
    _one("worker-stall", worker_stall),
    _one("partition", partition),
    _one("clock-skew", clock_skew),
    _one("full-redis", full_redis),
    _one("poison", poison),
)
NAMES = tuple(scenario.name for scenario in SCENARIOS)


@attrs.define
class Row:
    """One row of the table: counts (None when the scenario could not run) and notes."""

    scenario: str
    counts: dict[str, int] | None
    notes: list[str]
    seconds: float
    error: str | None = None
    details: dict[str, Any] = attrs.Factory(dict)


def run_row(name: str, body: Body, quick: bool, log: Log) -> Row:
    """Run one row's scenario in a Context of its own, always closed afterwards."""
    log(f"{name} ...")
    ctx = Context(name.replace(" ", "-"), quick, log)
    started = time.monotonic()
    error = None
    try:
        body(ctx)
    except Exception as exc:
        error = f"{type(exc).__name__}: {exc}"
        log(f"{name} failed:\n{traceback.format_exc()}")
    finally:
        ctx.close()
    seconds = time.monotonic() - started
    counts = ctx.counts.columns() if ctx.counts is not None and error is None else None
    details = {**(ctx.counts.details if ctx.counts is not None else {}), **ctx.details}
    notes = [f"did not run: {error}"] if error else ctx.all_notes()
    row = Row(name, counts, notes, round(seconds, 1), error, details)
    log(f"{name} took {seconds:.1f} s: {counts}")
    return row
