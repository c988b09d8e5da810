"""The workers' ledgers: one append-only file per worker process, a line per handler start
("S") and end ("E"), written with one os.write on an O_APPEND fd so that a SIGKILLed
process keeps every line it wrote.

A line is ``KIND\\tTOPIC\\tTIMER_ID\\tATTEMPT\\tDUE_MS\\tREAL_MS\\n``; "R" (ready) lines carry
only the real time. REAL_MS is the real wall clock, computed as monotonic + an offset the
harness measured (a worker whose wall clock is faked cannot read it).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path

import attrs

#: Environment variable: the harness's real wall time minus its monotonic time, seconds.
OFFSET_ENV = "FAULTS_REAL_OFFSET"
SUFFIX = ".ledger"


def real_offset() -> float:
    """Real wall time minus monotonic time, in this (unfaked) process."""
    return time.time() - time.monotonic()


@attrs.frozen
class Record:
    """One line of a ledger, with the worker process that wrote it."""

    kind: str
    topic: str
    timer_id: str
    attempt: int
    due_ms: float
    real_ms: float
    process: str


class RealClock:
    """The real wall clock in a process whose own may be faked: monotonic + the offset
    the harness measured and passed in $FAULTS_REAL_OFFSET."""

    def __init__(self, offset: float | None = None) -> None:
        if offset is None:
            given = os.environ.get(OFFSET_ENV)
            offset = float(given) if given else real_offset()
        self.offset = offset

    def ms(self) -> float:
        return (time.monotonic() + self.offset) * 1000


class Journal:
    """The writing side, in a worker process."""

    def __init__(self, path: Path, clock: RealClock | None = None) -> None:
        self.clock = clock or RealClock()
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, kind: str, topic: str = "", timer_id: str = "", attempt: int = 0,
              due_ms: float = 0.0) -> None:
        line = f"{kind}\t{topic}\t{timer_id}\t{attempt}\t{due_ms:.3f}\t{self.clock.ms():.3f}\n"
        os.write(self._fd, line.encode())


def read(path: Path) -> Iterator[Record]:
    """The complete, well-formed lines of one ledger."""
    process = path.name[: -len(SUFFIX)] if path.name.endswith(SUFFIX) else path.name
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return
    for line in text.split("\n")[:-1]:  # the last piece has no newline: not a whole line
        parts = line.split("\t")
        if len(parts) != 6:
            continue
        try:
            yield Record(parts[0], parts[1], parts[2], int(parts[3]), float(parts[4]),
                         float(parts[5]), process)
        except ValueError:
            continue


def read_all(folder: Path) -> list[Record]:
    """Every record of every ledger in `folder`."""
    return [record for path in sorted(folder.glob(f"*{SUFFIX}")) for record in read(path)]


def is_ready(path: Path) -> bool:
    """True once the worker writing `path` said it runs."""
    return any(record.kind == "R" for record in read(path))
