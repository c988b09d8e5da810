"""Running adapters (PROTOCOL.md): `info` and `schedule` as commands, workers as processes.

Every worker runs in a process group of its own, so that killing it (a crash, a time
limit, the end of a case) also kills whatever processes the library started.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs

from .peers import Library

#: [timer id, topic, fired ms], as the adapters record them.
Record = tuple[str, str, float]


class CaseError(Exception):
    """A case of one library could not be measured; the message goes in its cells."""


class Unable(CaseError):
    """The adapter said the library cannot do what was asked (exit 3)."""


def _tail(text: str, limit: int = 160) -> str:
    """The last non-empty line of `text`, shortened: enough to say what went wrong."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    return last if len(last) <= limit else "..." + last[-limit:]


def _failure(what: str, returncode: int, stderr: str) -> CaseError:
    if returncode == 3:
        return Unable(f"cannot: {_tail(stderr) or 'the adapter refused'}")
    return CaseError(f"{what} failed (exit {returncode}): {_tail(stderr) or 'no message'}")


@attrs.frozen
class Info:
    """What an adapter's `info` printed, and how long the command took (its start-up)."""

    raw: dict[str, Any]
    seconds: float

    @property
    def multi_worker_safe(self) -> bool:
        return bool(self.raw.get("multi_worker_safe", False))

    @property
    def bulk(self) -> bool:
        return bool(self.raw.get("bulk_schedule", False))


def info(lib: Library, timeout: float = 120.0) -> Info:
    started = time.monotonic()
    try:
        result = subprocess.run(
            [*lib.command, "info"], capture_output=True, text=True, timeout=timeout,
            env=lib.environ(), check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CaseError(f"info did not answer within {timeout:g} s") from exc
    if result.returncode != 0:
        raise _failure("info", result.returncode, result.stderr)
    try:
        raw = json.loads(result.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as exc:
        raise CaseError(f"info printed no JSON object: {_tail(result.stdout)!r}") from exc
    if not isinstance(raw, dict):
        raise CaseError("info printed JSON that is not an object")
    return Info(raw, time.monotonic() - started)


@attrs.frozen
class Scheduled:
    """What `schedule` reported: timers scheduled and the seconds it spent scheduling."""

    n: int
    seconds: float
    #: Epoch ms when the command returned: every timer is in Redis by then.
    done_ms: float

    @property
    def rate(self) -> float:
        return self.n / self.seconds if self.seconds > 0 else float("inf")


def schedule(
    lib: Library, url: str, plan: Path, *, threads: int = 1, bulk: bool = False,
    timeout: float,
) -> Scheduled:
    argv = [*lib.command, "schedule", "--redis-url", url, "--plan", str(plan)]
    if threads > 1:
        argv += ["--threads", str(threads)]
    if bulk:
        argv.append("--bulk")
    try:
        result = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=lib.environ(),
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise CaseError(f"scheduling timed out after {timeout:g} s") from exc
    if result.returncode != 0:
        raise _failure("schedule", result.returncode, result.stderr)
    try:
        reply = json.loads(result.stdout.strip().splitlines()[-1])
        return Scheduled(int(reply["scheduled"]), float(reply["seconds"]), time.time() * 1000)
    except (ValueError, IndexError, KeyError, TypeError) as exc:
        raise CaseError(f"schedule printed no result: {_tail(result.stdout)!r}") from exc


def tree_rss_kib(pid: int) -> int:
    """Resident memory (VmRSS, KiB) of process `pid` and all its descendants."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo.extend(children.get(current, ()))
        try:
            for line in Path(f"/proc/{current}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            continue
    return total


def _read_records(rows: Sequence[Sequence[Any]]) -> list[Record]:
    return [(str(row[0]), str(row[1]), float(row[2])) for row in rows]


class Worker:
    """One `worker` process of an adapter."""

    def __init__(
        self, lib: Library, url: str, name: str, topics: Sequence[str], *, concurrency: int,
        profile: str, folder: Path, durable: bool = False,
    ) -> None:
        self.lib = lib
        self.name = name
        self.out = folder / f"{name}.json"
        self.log = folder / f"{name}.json.log"
        self.stderr_path = folder / f"{name}.stderr"
        self.argv = [
            *lib.command, "worker", "--redis-url", url, "--name", name,
            "--topics", ",".join(topics), "--concurrency", str(concurrency),
            "--profile", profile, "--out", str(self.out),
        ] + (["--durable"] if durable else [])
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.started_ms = 0.0
        self._terminated = False
        #: What the adapter wrote to its out file besides the records.
        self.extra: dict[str, Any] = {}

    def start(self) -> Worker:
        with open(self.stderr_path, "wb") as stderr:
            self.proc = subprocess.Popen(
                self.argv, stdin=subprocess.DEVNULL, stdout=stderr, stderr=stderr,
                env=self.lib.environ(), start_new_session=True,
            )
        self.started = time.monotonic()
        self.started_ms = time.time() * 1000
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def exited(self) -> int | None:
        return None if self.proc is None else self.proc.poll()

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""

    def failure(self) -> CaseError:
        """Why the process ended before it was asked to."""
        return _failure(f"worker {self.name}", self.exited() or 0, self.stderr_text())

    def durable_records(self) -> list[Record]:
        """The records a `--durable` worker has written so far (whole lines only)."""
        try:
            text = self.log.read_text()
        except OSError:
            return []
        lines = text.split("\n")[:-1]  # the last piece may be a line still being written
        return _read_records([json.loads(line) for line in lines if line.strip()])

    def terminate(self) -> None:
        """Send SIGTERM once (a second one may mean "stop at once" to a library)."""
        if self.proc is not None and self.proc.poll() is None and not self._terminated:
            self.proc.send_signal(signal.SIGTERM)
            self._terminated = True

    def stop(self, timeout: float) -> list[Record]:
        """SIGTERM, wait for the out file, return its records."""
        assert self.proc is not None
        self.terminate()
        if self.proc.poll() is None:
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired as exc:
                self.kill()
                raise CaseError(
                    f"worker {self.name} did not exit within {timeout:g} s of SIGTERM"
                ) from exc
        if self.proc.returncode != 0:
            raise self.failure()
        try:
            out = json.loads(self.out.read_text())
        except (OSError, ValueError) as exc:
            raise CaseError(f"worker {self.name} wrote no readable out file: {exc}") from exc
        self.extra = {key: value for key, value in out.items() if key != "fired"}
        return _read_records(out["fired"])

    def kill(self) -> None:
        """SIGKILL the worker's whole process group (a crash, or the end of a case)."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
