"""A scenario's counts, from what the harness scheduled, the workers' ledgers and what
Redis holds at the end (pending timers and dead letters).

- fired: distinct scheduled timers whose handler ran to completion at least once;
- lost: scheduled timers never fired, not pending and not dead-lettered at the end;
- duplicated: timers completed more than once (a periodic timer: one occurrence, that
  is one due time, completed more than once);
- early: handler starts before the delivery's due time (Delivery.due_at, Redis's clock)
  by the real clock;
- dead without running: dead letters whose handler never started at all.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Collection, Iterable, Mapping
from typing import Any

import attrs

from .ledger import Record

Key = tuple[str, str]  # (topic, timer id)

@attrs.define
class Counts:
    """The integer columns of a row, and details for the notes and the JSON."""

    scheduled: int = 0
    fired: int = 0
    lost: int = 0
    duplicated: int = 0
    early: int = 0
    dead_lettered: int = 0
    dead_without_running: int = 0
    details: dict[str, Any] = attrs.Factory(dict)

    def columns(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COLUMNS}


#: The table's count columns: the integer fields of Counts, in order.
COLUMNS = tuple(name for name in attrs.fields_dict(Counts) if name != "details")


@attrs.frozen
class FinalState:
    """What Redis holds at the end: pending timer keys, and dead letters' reasons."""

    pending: frozenset[Key]
    dead: Mapping[Key, str]


def _sample(keys: Iterable[Key], limit: int = 5) -> list[str]:
    return [f"{topic}/{timer_id}" for topic, timer_id in sorted(keys)[:limit]]


def count(
    scheduled: Mapping[Key, float | None],
    records: Iterable[Record],
    final: FinalState,
    *,
    periodic: Collection[Key] = (),
    unconfirmed: Collection[Key] = (),
    refused: Collection[Key] = (),
) -> Counts:
    """Counts of one scenario. `scheduled` maps each confirmed timer to the due time the
    harness meant (epoch ms, real clock) when it knows it; `unconfirmed` are timers whose
    set_timers call failed without saying whether they were written, `refused` those it
    said were not (one of them firing would make the error a lie)."""
    started: Counter[Key] = Counter()
    completed: Counter[Key] = Counter()
    occurrences: Counter[tuple[str, str, float]] = Counter()
    early_runs, early_intended, runs = 0, 0, 0
    max_early_ms = 0.0
    for record in records:
        key = (record.topic, record.timer_id)
        if record.kind == "S":
            runs += 1
            started[key] += 1
            ahead = record.due_ms - record.real_ms
            if ahead > 0:
                early_runs += 1
                max_early_ms = max(max_early_ms, ahead)
            meant = scheduled.get(key)
            if meant is not None and key not in periodic and record.real_ms < meant:
                early_intended += 1
        elif record.kind == "E":
            completed[key] += 1
            occurrences[(record.topic, record.timer_id, record.due_ms)] += 1

    fired = {key for key in scheduled if completed[key]}
    lost = {key for key in scheduled
            if not completed[key] and key not in final.pending and key not in final.dead}
    duplicated = {key for key in scheduled if key not in periodic and completed[key] > 1}
    duplicated |= {(topic, timer_id) for (topic, timer_id, _), n in occurrences.items()
                   if n > 1 and (topic, timer_id) in periodic}
    dead_unrun = {key for key in final.dead if not started[key]}
    started_not_done = {key for key in scheduled if started[key] and not completed[key]}
    unconfirmed_fired = {key for key in unconfirmed if completed[key]}
    refused_fired = {key for key in refused if started[key]}

    details: dict[str, Any] = {
        "handler_runs": runs,
        "pending_at_end": len({key for key in final.pending & set(scheduled)
                               if key not in periodic}),
        "dead_reasons": dict(Counter(final.dead.values())),
        "max_early_ms": round(max_early_ms, 3),
        "early_vs_intended_due": early_intended,
        "started_never_completed": len(started_not_done),
        "unconfirmed": len(unconfirmed),
        "unconfirmed_fired": len(unconfirmed_fired),
        "refused": len(refused),
        "refused_fired": len(refused_fired),
        "extra_runs": sum(completed[key] for key in duplicated if key not in periodic)
        - len([key for key in duplicated if key not in periodic]),
        "lost_sample": _sample(lost),
        "duplicated_sample": _sample(duplicated),
        "dead_unrun_sample": _sample(dead_unrun),
    }
    return Counts(
        scheduled=len(scheduled),
        fired=len(fired),
        lost=len(lost),
        duplicated=len(duplicated),
        early=early_runs,
        dead_lettered=len(final.dead),
        dead_without_running=len(dead_unrun),
        details=details,
    )


def standard_notes(counts: Counts) -> list[str]:
    """The notes every row gets when they say something: what is pending, how the dead
    died, starts never completed, early runs against the intended due time."""
    d = counts.details
    notes = []
    if d.get("pending_at_end"):
        notes.append(f"{d['pending_at_end']} still pending at the end")
    if d.get("dead_reasons"):
        reasons = ", ".join(f"{n} {reason}" for reason, n in sorted(d["dead_reasons"].items()))
        notes.append(f"dead: {reasons}")
    if d.get("early_vs_intended_due"):
        notes.append(f"{d['early_vs_intended_due']} runs before the due time asked for")
    if counts.early:
        notes.append(f"earliest run {d['max_early_ms']:.1f} ms before due_at")
    if d.get("unconfirmed"):
        notes.append(f"{d['unconfirmed']} unconfirmed writes (may or may not exist: "
                     f"{d['unconfirmed_fired']} fired)")
    if d.get("refused"):
        notes.append(f"{d['refused']} writes refused ({d['refused_fired']} of them ran, "
                     "which would make the error a lie)")
    if counts.lost:
        notes.append(f"lost e.g. {', '.join(d['lost_sample'][:3])}")
    return notes
