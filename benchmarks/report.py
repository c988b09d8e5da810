"""The outputs of a run: a markdown table (one row per figure, one column per library, and
redistimers' ratio to the best peer), the raw JSON, and a PNG of the lateness CDFs."""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from .figures import Cell, Figure
from .peers import OURS
from .session import Sizes, Subject

METHOD = """\
## How it measures

- Every library runs through its adapter (`benchmarks/adapters/`, PROTOCOL.md) in its own
  interpreter, on one Redis for the whole run (one redis-server, unless the section above
  says a Cluster or Sentinel), with FLUSHALL and CONFIG RESETSTAT before each case.
  Workers are separate processes; handlers do nothing but record
  `[id, topic, time.time()]`. Each library's cases run minutes apart from the others'.
- **drain**: the timers are scheduled already due, then one worker starts; timers/s from
  the first fire to the last. Redis figures are INFO deltas from just before the worker
  started until {settle:g} s after the last fire (its last acks), less the harness's own
  commands. *Round trips (server)* is `total_reads_processed` per timer: socket reads of
  client requests, which approximates client round trips for every library (a pipeline
  read at once counts one). *Counted by the client* is redistimers' own count (its
  adapter's counting connection, over the worker's whole life, pub/sub included); the
  peers' adapters do not count. *Commands* come from `INFO commandstats`, which counts the
  commands run inside Lua scripts as well; *Redis CPU* from `used_cpu_user + used_cpu_sys`.
  The adapters' progress reports (a SET at most every 50 ms) are included.
- **drain-4**, **two workers**: the timers are all due at one moment a little ahead, and
  the workers are started and ready before it; duplicates are timers fired more than once,
  missed/never fired those not fired within the time limit.
- **lateness**: fired - due in ms, one clock (the Redis server's machine); the worker is
  running and idle before the timers are scheduled, a few seconds ahead of the first due
  time, the library's fastest way. A timer never fired counts as infinitely late.
- **memory**: Redis `used_memory` growth per pending timer, ids given as 36-character
  uuid4 strings (the protocol gives every library the ids; redistimers' own default ids
  are 22 characters). **worker memory**: VmRSS of the worker and its child processes,
  before and after the timers were scheduled, with the worker already running.
- **idle load**: commands per second (commandstats, scripts' inner commands included) of
  one idle worker, after its start-up.
- **crash**: `--durable` workers; the first is SIGKILLed with its process group; a second
  starts at once. How fast timers come back depends on the lease or visibility timeout,
  listed in each library's settings.
- **scale**: pending timers due in a day, on the topic the scale drain and lateness use,
  filled in bulk (or from 8 threads) and added up from one size to the next; at each size
  a new worker drains {scale_due:,} due timers, then the idle lateness plan runs. Filling
  has {scale_fill_limit:g} s per library for all sizes: a size the library's measured
  scheduling rate cannot fill in what is left (or whose Redis memory, from the memory
  figure, this machine does not have) is not started, and its cells say why.
- **Time limits**: a drain of a backlog has {drain_limit:g} s; when the tuned drain shows
  a library cannot make that, its later drains (the default profile's too) get a quarter
  of it and report the part that fired. Lateness cases wait {lateness_grace:g} s past the
  last due time. Each peer has {library_budget:g} s for all its workloads (ours
  {ours_budget:g} s), less when the run's {run_budget:g} s would not last: a workload that
  would start later is skipped and says so.
- **schedule**: one `schedule` command of {schedule:,} timers into an empty Redis (due in
  an hour). Its Redis CPU is the INFO delta from before the command started to after it
  ended (the adapter's start-up and connections included).
- The ratio column divides redistimers' value by the best peer's: above 1 is better for
  ↑ figures, below 1 for ↓ ones (↓ figures compare sizes: a timer fired 5 ms early is as
  far off as one 5 ms late). A cell without a number says why.
"""


@attrs.frozen
class Report:
    meta: dict[str, Any]
    sizes: Sizes
    subjects: list[Subject]
    figures: list[Figure]
    cells: dict[str, dict[str, Cell]]
    raw: dict[str, dict[str, Any]]
    #: Paragraphs about the Redis measured (a Cluster's masters, topics, background).
    notes: list[str] = attrs.Factory(list)

    def label(self, figure: Figure) -> str:
        arrow = {"higher": " ↑", "lower": " ↓"}.get(figure.better or "", "")
        return figure.label.format(**attrs.asdict(self.sizes)) + arrow

    def ratio(self, figure: Figure) -> str:
        ours = self.cells.get(OURS, {}).get(figure.key)
        if figure.better is None or ours is None or not ours.ok:
            return "—"
        peers = [cells[figure.key] for name, cells in self.cells.items()
                 if name != OURS and figure.key in cells and cells[figure.key].ok]
        if not peers:
            return "no peer"
        values = [float(cell.value) for cell in peers if cell.value is not None]
        mine = ours.value
        if mine is None:
            return "—"
        if figure.better == "lower":
            # Lower is better down to 0: a timer fired 600 ms early is no better than one
            # 600 ms late (lateness), and a negative growth is noise (worker memory).
            values, mine = [abs(v) for v in values], abs(mine)
        best = max(values) if figure.better == "higher" else min(values)
        if best <= 0 or mine <= 0:
            return "—"
        return f"{mine / best:.2f}x"

    def table(self) -> str:
        names = [subject.name for subject in self.subjects]
        heads = [
            f"{s.name} {s.info.raw.get('version', '')}".strip() if s.info else s.name
            for s in self.subjects
        ]
        rows = [
            "| figure | " + " | ".join(heads) + " | redistimers / best peer |",
            "|---|" + "---:|" * (len(names) + 1),
        ]
        for figure in self.figures:
            cells = [self.cells.get(name, {}).get(figure.key, Cell(None, "not measured"))
                     for name in names]
            rendered = [cell.render(figure.digits).replace("|", "\\|") for cell in cells]
            rows.append(f"| {self.label(figure)} | " + " | ".join(rendered)
                        + f" | {self.ratio(figure)} |")
        return "\n".join(rows)

    def libraries(self) -> str:
        lines = ["## Libraries and settings", ""]
        for subject in self.subjects:
            if subject.info is None:
                lines.append(f"- **{subject.name}**: {subject.unavailable}")
                continue
            raw = subject.info.raw
            lines.append(
                f"- **{subject.name} {raw.get('version', '?')}**: multi-worker safe "
                f"{'yes' if subject.info.multi_worker_safe else 'no'}, bulk API "
                f"{'yes' if subject.info.bulk else 'no'}; worker `--concurrency "
                f"{subject.concurrency}`. Tuned: `{json.dumps(raw.get('tuned', {}))}`. "
                f"Defaults: `{json.dumps(raw.get('defaults', {}))}`. {raw.get('notes', '')}"
            )
        return "\n".join(lines)

    def markdown(self) -> str:
        meta = self.meta
        head = (
            f"# redistimers benchmarks\n\n{meta['mode']} run of {meta['date']}: "
            f"`{meta['command']}`, {meta['duration_s'] / 60:.0f} min.\n"
            f"{meta['cpus']} CPUs ({meta['cpu_model']}), {meta['memory_gib']:.0f} GiB, "
            f"Python {meta['python']}, redis-server {meta['redis_version']} "
            f"({meta['redis_where']}); redistimers at commit {meta.get('commit', '?')}.\n"
        )
        method = METHOD.format(**attrs.asdict(self.sizes))
        redis = ("## Redis\n\n" + "\n".join(f"- {note}" for note in self.notes) + "\n\n"
                 if self.notes else "")
        return (f"{head}\n{self.table()}\n\n{redis}{self.libraries()}\n\n{self.times()}"
                f"\n\n{method}")

    def times(self) -> str:
        """How long each library's workloads took: where the run's time went."""
        lines = ["## Time taken (s)", ""]
        for subject in self.subjects:
            seconds = self.raw.get(subject.name, {}).get("seconds")
            if not isinstance(seconds, dict) or "total" not in seconds:
                continue
            parts = ", ".join(f"{k} {v:g}" for k, v in seconds.items() if k != "total")
            lines.append(f"- **{subject.name}**: {seconds['total']:g} in all: {parts}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "sizes": attrs.asdict(self.sizes),
            "libraries": {
                s.name: {
                    "info": s.info.raw if s.info else None,
                    "unavailable": s.unavailable,
                    "concurrency": s.concurrency,
                    "startup_s": s.info.seconds if s.info else None,
                    "fast_schedule_rate": s.fast_rate,
                }
                for s in self.subjects
            },
            "figures": [
                {"key": f.key, "workload": f.workload, "label": self.label(f), "better": f.better}
                for f in self.figures
            ],
            "cells": {name: {key: cell.to_json() for key, cell in cells.items()}
                      for name, cells in self.cells.items()},
            "raw": _finite(self.raw),
        }


def _finite(value: Any) -> Any:
    """JSON has no inf or nan: they become null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def plot(report: Report, path: Path) -> None:
    """Lateness CDFs of every library, idle and busy, side by side."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, workload, title in ((axes[0], "idle-lateness", "idle"),
                                (axes[1], "busy-lateness", "busy")):
        drawn = 0
        for subject in report.subjects:
            cdf = report.raw.get(subject.name, {}).get(workload, {}).get("cdf")
            if cdf:
                xs, ys = zip(*cdf, strict=True)
                ax.step(xs, ys, where="post", label=subject.name)
                drawn += 1
        ax.set_xscale("symlog", linthresh=1.0)
        ax.set_xlabel("fired - due (ms, symlog)")
        ax.set_ylabel("fraction of timers fired")
        ax.set_ylim(0, 1.02)
        ax.set_title(f"{title} lateness")
        ax.grid(True, which="both", alpha=0.3)
        if drawn:
            ax.legend(loc="best", fontsize="small")
        else:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write(report: Report, folder: Path, stem: str) -> Sequence[Path]:
    """Write <stem>.md, <stem>.json and, if a lateness workload ran, <stem>-lateness.png
    into `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    md, js, png = (folder / f"{stem}.md", folder / f"{stem}.json",
                   folder / f"{stem}-lateness.png")
    md.write_text(report.markdown())
    js.write_text(json.dumps(report.to_json(), indent=1) + "\n")
    if not {"idle-lateness", "busy-lateness"} & set(report.meta.get("workloads", ())):
        return md, js
    plot(report, png)
    return md, js, png
