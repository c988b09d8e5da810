"""What the `redistimers` command shows: aligned tables for people, JSON for scripts.

The command is user interface, so it prints (the library itself only logs). Everything
goes through `Console`, which looks up `sys.stdout` and `sys.stderr` when it writes, so
callers and tests that redirect them see all of it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from ..jsonforms import payload_json

#: Widest a payload or an error gets in a table row; `get` and `--json` show all of it.
CELL_WIDTH = 60


class CliError(Exception):
    """A command cannot do what it was asked: one line on stderr, exit code `code`."""

    code = 2
    #: The word after ``redistimers:`` on that line.
    label = "error"


class NotFound(CliError):
    """What the command was about does not exist (an unknown timer id): exit code 1."""

    code = 1


class Console:
    """Writes a command's results: tables and lines, or one JSON document with `--json`."""

    def __init__(self, json_output: bool = False) -> None:
        self.json_output = json_output
        #: How remarks are written, when not as they are (as JSON log lines, say).
        self.note_format: Callable[[str], str] | None = None

    def line(self, text: str = "") -> None:
        print(text, file=sys.stdout, flush=True)

    def note(self, text: str) -> None:
        """A remark for the person at the terminal, kept out of the results (stderr)."""
        shown = text if self.note_format is None else self.note_format(text)
        print(shown, file=sys.stderr, flush=True)

    def ask(self, question: str) -> str:
        """Ask on stderr (stdout may be piped), read the answer from stdin."""
        print(question, end="", file=sys.stderr, flush=True)
        return sys.stdin.readline()

    def error(self, message: str, label: str = "error") -> None:
        """One line on stderr: ``redistimers: error: <message>`` (or another `label`)."""
        print(f"redistimers: {label}: {one_line(message)}", file=sys.stderr, flush=True)

    def json(self, value: Any) -> None:
        """One JSON document: a value of redistimers.jsonforms, the HTTP API's vocabulary."""
        self.line(json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False))

    def table(self, headers: Sequence[str], rows: Iterable[Sequence[object]]) -> None:
        """Columns aligned on their widest cell; columns of integers to the right."""
        values = [list(row) for row in rows]
        numeric = [
            bool(values) and all(
                isinstance(row[i], int) and not isinstance(row[i], bool) for row in values
            )
            for i in range(len(headers))
        ]
        cells = [[str(cell) for cell in row] for row in values]
        widths = [
            max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)
        ]

        def render(row: Sequence[str]) -> str:
            parts = [
                cell.rjust(width) if numeric[i] else cell.ljust(width)
                for i, (cell, width) in enumerate(zip(row, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        self.line(render(headers))
        for row in cells:
            self.line(render(row))


def one_line(message: str) -> str:
    return " ".join(str(message).split())


def compact(value: Any, width: int = CELL_WIDTH) -> str:
    """A payload or an error on one line of at most `width` characters."""
    text = value if isinstance(value, str) else json.dumps(
        payload_json(value), ensure_ascii=False, separators=(",", ":")
    )
    text = one_line(text)
    return text if len(text) <= width else text[: width - 1] + "…"


def plural(count: int, noun: str) -> str:
    """'1 dead timer', '3 dead timers'."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def when(moment: dt.datetime) -> str:
    """An aware datetime in UTC to the second, for tables: 2030-01-01T07:00:00Z."""
    return moment.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def duration(delta: dt.timedelta) -> str:
    """A duration for people: 250ms, 4.2s, 15m, 1h30m, 2d3h (two units at most)."""
    seconds = delta.total_seconds()
    if seconds < 0:
        return "-" + duration(-delta)
    if seconds < 1:
        return f"{round(seconds * 1000)}ms"
    if seconds < 60:
        return f"{seconds:.1f}".rstrip("0").rstrip(".") + "s"
    parts = []
    rest = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if rest >= size:
            parts.append(f"{rest // size}{unit}")
            rest %= size
    return "".join(parts[:2])
