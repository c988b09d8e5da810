"""Reading a worker's log (worker.py writes ``<epoch s> <LEVEL> <logger>: <message>``):
what the library said during a fault and after it, whatever its exact wording."""

from __future__ import annotations

import re

import attrs

#: Words of a message saying Redis is back (the library's wording may change).
RECOVERY = re.compile(r"again|recover|restor|resum|reconnect|\bback\b", re.IGNORECASE)
_LINE = re.compile(r"^(\d+\.\d+) ([A-Z]+) ([\w.]+): (.*)$")


@attrs.frozen
class Line:
    created: float
    level: str
    logger: str
    message: str


def parse(text: str) -> list[Line]:
    """The log's lines in the worker's format (tracebacks and other lines are skipped)."""
    lines = []
    for raw in text.splitlines():
        found = _LINE.match(raw)
        if found:
            lines.append(Line(float(found[1]), found[2], found[3], found[4]))
    return lines


def complaints(lines: list[Line], start: float, end: float) -> list[Line]:
    """WARNING and worse lines logged between `start` and `end` (epoch seconds)."""
    return [line for line in lines if start <= line.created <= end
            and line.level in ("WARNING", "ERROR", "CRITICAL")]


def recoveries(lines: list[Line], after: float) -> list[Line]:
    """Lines of the library logged after `after` that say Redis is back."""
    return [line for line in lines if line.created >= after
            and line.logger.startswith("redistimers") and RECOVERY.search(line.message)]
