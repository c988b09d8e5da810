"""The fault suite's outputs: a markdown table with a header (machine, redis-server,
date) and the scenarios' descriptions, and the raw JSON."""

from __future__ import annotations

import json
import os
import platform
import re
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from redistimers.testing import find_redis_server

from ..machine import cpu_model, memory_gib
from .counts import COLUMNS
from .suite import Row, Scenario

HEADINGS = ("scenario", "scheduled", "fired", "lost", "duplicated", "early", "dead-lettered",
            "dead without running", "notes")

HOW = """\
Counts come from the workers' ledgers (one append-only file per worker process: a line
per handler start and end, with the real wall time) and from what Redis holds at the end.
*scheduled*: timers whose set_timers call Redis confirmed; *fired*: distinct timers whose
handler ran to completion at least once; *lost*: scheduled, never fired, not pending and
not dead-lettered at the end; *duplicated*: completed more than once (a periodic timer:
one occurrence more than once); *early*: handler starts before `Delivery.due_at` by the
real clock; *dead without running*: dead letters whose handler never started."""


def redis_version() -> tuple[str, str]:
    """(version, path) of the redis-server RedisServer starts."""
    try:
        path = find_redis_server()
        out = subprocess.run([path, "--version"], capture_output=True, text=True,
                             timeout=10, check=False).stdout
    except Exception as exc:
        return f"unknown ({exc})", "?"
    found = re.search(r"v=(\S+)", out)
    return (found.group(1) if found else out.strip() or "?"), path


def machine() -> dict[str, Any]:
    version, path = redis_version()
    return {
        "cpu_model": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": round(memory_gib(), 1),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "redis_version": version,
        "redis_server": path,
    }


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: Sequence[Row]) -> str:
    lines = ["| " + " | ".join(HEADINGS) + " |",
             "|" + "|".join("---" if i in (0, 8) else "---:" for i in range(9)) + "|"]
    for row in rows:
        numbers = [str(row.counts[c]) if row.counts is not None else "-" for c in COLUMNS]
        lines.append("| " + " | ".join([row.scenario, *numbers, _cell("; ".join(row.notes))])
                     + " |")
    return "\n".join(lines)


def markdown(meta: dict[str, Any], rows: Sequence[Row], scenarios: Sequence[Scenario]) -> str:
    m = meta
    head = [
        f"# Fault injection: redistimers {m['version']} ({m['mode']})",
        "",
        f"- machine: {m['cpu_model']}, {m['cpus']} CPUs, {m['memory_gib']} GiB, {m['system']}",
        f"- redis-server {m['redis_version']} ({m['redis_server']}), Python {m['python']}",
        f"- date: {m['date']}; `{m['command']}` took {m['duration_s']:.0f} s",
        "",
        table(rows),
        "",
        "## What each scenario does",
        "",
    ]
    head += [f"- **{s.name}**: {s.description()}" for s in scenarios]
    return "\n".join([*head, "", "## How it counts", "", HOW, ""])


def as_json(row: Row) -> dict[str, Any]:
    """A row as a flat JSON object: the counts (null when it could not run) beside the
    scenario, notes, seconds, error and details."""
    counts = row.counts if row.counts is not None else dict.fromkeys(COLUMNS)
    raw = attrs.asdict(row)
    del raw["counts"]
    return {"scenario": row.scenario, **counts, **raw}


def write(meta: dict[str, Any], rows: Sequence[Row], scenarios: Sequence[Scenario],
          out: Path, stem: str) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    md, raw = out / f"{stem}.md", out / f"{stem}.json"
    md.write_text(markdown(meta, rows, scenarios))
    document = {"meta": meta, "rows": [as_json(row) for row in rows]}
    raw.write_text(json.dumps(document, indent=2, default=str) + "\n")
    return [md, raw]
